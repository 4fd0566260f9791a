"""The published SDK, tora==0.0.12 from PyPI, works unmodified against `tora serve`.

script_0012.py runs in a venv that has tora==0.0.12 ($TORA_COMPAT_PYTHON); this test then
reads everything back over HTTP and checks it value by value.

    python3 -m venv /tmp/venv0012 && /tmp/venv0012/bin/pip install tora==0.0.12
    TORA_COMPAT_PYTHON=/tmp/venv0012/bin/python python3 -m pytest tests/compat
"""

import json
import os
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import script_0012 as plan
from toraserver import ToraServer, User, call_ok

SCRIPT = Path(__file__).with_name("script_0012.py")
SCRIPT_TIMEOUT_S = 300


def compat_python() -> str:
    python = os.environ.get("TORA_COMPAT_PYTHON", "")
    if not python:
        # Never skip: a green run without this test would hide a broken SDK contract.
        pytest.fail(
            "TORA_COMPAT_PYTHON is unset. Point it at a python with the published SDK:\n"
            "  python3 -m venv /tmp/venv0012 && /tmp/venv0012/bin/pip install tora==0.0.12\n"
            "  export TORA_COMPAT_PYTHON=/tmp/venv0012/bin/python"
        )
    if not os.access(python, os.X_OK):
        pytest.fail(f"TORA_COMPAT_PYTHON={python} is not an executable")
    return python


def run_script(
    python: str, server: ToraServer, user: User, cwd: Path
) -> dict[str, Any]:
    # -I (isolated): no PYTHONPATH, no user site, no script dir on sys.path, so the
    # `tora` imported is the venv's published one, never this repo's python/src.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORA_")}
    env |= {"TORA_BASE_URL": server.api, "TORA_API_KEY": user.api_key}
    proc = subprocess.run(
        [python, "-I", str(SCRIPT)],
        check=False,  # the exit code is asserted below, with the output attached
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\nserver log:\n{server.logs()}"
    assert proc.returncode == 0, report
    # 0.0.12 swallows failed batch POSTs and only logs them at ERROR level.
    assert "ERROR" not in proc.stderr, report
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    assert last.startswith("RESULT "), report
    return json.loads(last.removeprefix("RESULT "))


def by_name(rows: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Group log rows as name -> [(step, value)], keeping the server's order."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in rows:
        out[row["name"]].append((row["step"], row["value"]))
    return dict(out)


def assert_points(actual: dict[str, list], expected: dict[str, list]) -> None:
    assert sorted(actual) == sorted(expected), "metric names differ"
    for name, want in expected.items():
        got = actual[name]
        assert len(got) == len(want), (
            f"{name}: {len(got)} points, expected {len(want)} (lost or duplicated)"
        )
        bad = [
            (g, w)
            for g, w in zip(got, want, strict=True)
            if g != w or type(g[0]) is not int
        ]
        # float.hex shows a one-ULP difference that repr might hide in a long diff.
        shown = [f"got {g} ({_hex(g[1])}) want {w} ({_hex(w[1])})" for g, w in bad[:5]]
        assert not bad, (
            f"{name}: {len(bad)} of {len(want)} points differ, first: {shown}"
        )


def _hex(v: Any) -> str:
    return float(v).hex() if isinstance(v, int | float) else repr(v)


def assert_experiment(
    exp: dict[str, Any], spec: dict[str, Any], workspace_id: str
) -> None:
    assert exp["name"] == spec["name"]
    assert exp["description"] == spec["description"]
    hyperparams = {hp["key"]: hp["value"] for hp in exp["hyperparams"]}
    assert hyperparams == spec["hyperparams"]
    assert len(exp["hyperparams"]) == len(spec["hyperparams"]), "duplicated hyperparams"
    # 32 must come back as the int 32, not "32" or 32.0: load_experiment hands it to user code.
    assert {k: type(v) for k, v in hyperparams.items()} == {
        k: type(v) for k, v in spec["hyperparams"].items()
    }
    assert sorted(exp["tags"]) == sorted(spec["tags"])
    assert exp["workspace_id"] == workspace_id
    assert exp["id"] in exp["url"]


def assert_logs(
    api: str, exp_id: str, key: str, metrics: dict, result: tuple[str, float]
) -> None:
    """Metrics, the one result, and the union of both under /logs, nothing duplicated."""
    rows = call_ok("GET", f"{api}/experiments/{exp_id}/metrics", api_key=key)
    assert_points(by_name(rows), metrics)
    assert all(
        r["metadata"] == {"type": "metric"} and r["experiment_id"] == exp_id
        for r in rows
    )
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps), "/metrics is not ordered by step"

    results = call_ok("GET", f"{api}/experiments/{exp_id}/results", api_key=key)
    assert [(r["name"], r["value"], r["step"]) for r in results] == [(*result, None)]
    assert results[0]["metadata"] == {"type": "result"}

    logs = call_ok("GET", f"{api}/experiments/{exp_id}/logs", api_key=key)
    assert len(logs) == len(rows) + 1
    msg_ids = [r["msg_id"] for r in logs]
    assert len(set(msg_ids)) == len(msg_ids), "a msg_id is stored twice"


def test_published_sdk_0012_round_trips_everything(
    server: ToraServer, user: User, tmp_path: Path
) -> None:
    out = run_script(compat_python(), server, user, tmp_path)
    api, key = server.api, user.api_key
    assert out["tora_version"] == "0.0.12", f"wrong SDK under test: {out['tora_file']}"
    assert out["buffered_after_flush"] == 0, (
        "flush() left points buffered: a batch POST failed"
    )
    assert out["resumed_id"] == out["main_id"]
    assert out["resumed_url"] == out["main_url"]

    ws_id = out["workspace_id"]
    workspace = call_ok("GET", f"{api}/workspaces/{ws_id}", api_key=key)
    assert (workspace["name"], workspace["description"]) == (
        plan.WORKSPACE["name"],
        plan.WORKSPACE["description"],
    )
    workspaces = call_ok("GET", f"{api}/workspaces", api_key=key)
    assert [w["name"] for w in workspaces].count(plan.WORKSPACE["name"]) == 1

    main = call_ok("GET", f"{api}/experiments/{out['main_id']}", api_key=key)
    assert_experiment(main, plan.MAIN, ws_id)
    # 0.0.12 sends no heartbeat and never ends a run: it reads as running while points are
    # recent and as finished (not crashed) once quiet for 5 minutes (tests/run_state.rs).
    assert (main["state"], main["ended_at"], main["metadata"]) == ("running", None, {})
    assert_logs(
        api,
        out["main_id"],
        key,
        plan.expected_main_metrics(),
        (plan.RESULT_NAME, plan.RESULT_VALUE),
    )

    # setup() without workspace_id lands in the caller's personal workspace, not in ws.
    glob = call_ok("GET", f"{api}/experiments/{out['global_id']}", api_key=key)
    assert glob["workspace_id"] != ws_id
    assert glob["workspace_id"] in {w["id"] for w in workspaces}
    assert_experiment(glob, plan.GLOBAL, glob["workspace_id"])
    assert_logs(
        api, out["global_id"], key, plan.expected_global_metrics(), plan.GLOBAL_RESULT
    )

    # Exactly one experiment per create call: load_experiment and setup() made no extras.
    in_ws = call_ok("GET", f"{api}/workspaces/{ws_id}/experiments", api_key=key)
    assert [e["id"] for e in in_ws] == [out["main_id"]]
    listed = call_ok("GET", f"{api}/experiments?workspace={ws_id}", api_key=key)
    assert [e["id"] for e in listed] == [out["main_id"]]
    personal = call_ok(
        "GET", f"{api}/experiments?workspace={glob['workspace_id']}", api_key=key
    )
    assert [e["id"] for e in personal] == [out["global_id"]]
