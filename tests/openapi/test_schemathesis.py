"""The published API description matches the server: schemathesis generates requests for every
operation in /api/openapi.json (valid and invalid, plus stateful sequences via inferred links)
and checks that nothing answers 5xx and every response fits its declared schema."""

import subprocess
import sys
from pathlib import Path

from toraserver import ToraServer, call, new_user


def test_openapi_describes_every_endpoint_family() -> None:
    with ToraServer() as server:
        status, doc = call("GET", f"{server.api}/openapi.json")
        assert status == 200
        assert doc["openapi"].startswith("3.")
        paths = doc["paths"]
        for path in [
            "/api/signup",
            "/api/login",
            "/api/refresh",
            "/api/api-keys/{id}",
            "/api/workspaces/{id}/members/{user_id}",
            "/api/workspace-invitations",
            "/api/invitations/{token}",
            "/api/invitations/accept",
            "/api/invitations/decline",
            "/api/experiments/{id}",
            "/api/experiments/{id}/logs/batch",
            "/api/experiments/{id}/points",
            "/api/experiments/{id}/logs/csv",
        ]:
            assert path in paths, path
        schemes = doc["components"]["securitySchemes"]
        assert schemes["api_key"]["name"] == "x-api-key"
        assert schemes["bearer"]["scheme"] == "bearer"


def test_schemathesis_finds_no_server_errors_and_no_schema_violations() -> None:
    st = Path(sys.executable).parent / "st"
    assert st.exists(), (
        f"schemathesis is not installed next to {sys.executable} (test.sh installs it)"
    )
    with ToraServer() as server:
        user = new_user(server.api)
        run = subprocess.run(
            [
                str(st),
                "run",
                f"{server.api}/openapi.json",
                "--url",
                server.url,
                "--header",
                f"x-api-key: {user.api_key}",
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
                "--max-examples",
                "25",
                # A valid stream never ends, so each case would wait out the request timeout;
                # its events and resume behaviour are tested in tests/charts_live.rs.
                "--exclude-path-regex",
                "/stream$",
                # A fixed seed keeps CI repeatable; change it to explore new inputs.
                "--seed",
                "20261126",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        # The failures come before a long list of warnings: show them first.
        failures = run.stdout.find("FAILURES")
        report = (
            (
                run.stdout[failures : failures + 6000] + "\n...\n"
                if failures >= 0
                else ""
            )
            + run.stdout[-3000:]
            + run.stderr[-2000:]
        )
        assert run.returncode == 0, report
        assert "passed" in run.stdout, report
        # Internal failures are logged as "error: ..." (never sent to clients).
        assert "error:" not in server.logs(), server.logs()[-3000:]
        # Secrets never reach the log, whatever schemathesis sent.
        for secret in (user.api_key, user.password, user.access_token):
            assert secret not in server.logs()
