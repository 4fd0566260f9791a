"""A wrong setting fails at setup() with a message that names it, and never shows the key.

The story of issue 12: `export TORA_API_KEY=$(tora api-key create ...)` held two lines, the SDK
called that an outage, printed the key to stderr, spooled the run and exited 0.
"""

from __future__ import annotations

import http.server
import logging
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ToraServer, free_port, run_python, spool_files, sync

import tora
from tora import Tora


@pytest.fixture(autouse=True)
def no_global_client() -> Iterator[None]:
    yield
    tora.shutdown()


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="tora")
    return caplog


def assert_key_nowhere(key: str, *texts: str) -> None:
    secret = key.strip().splitlines()[-1].strip()
    assert len(secret) > 20
    for text in texts:
        assert secret not in text
        assert secret[len("tora_sk_") :][:12] not in text, "not even part of the key"


MALFORMED = [
    ("two lines", "created API key 'cli' (id 5) for me@lab.org\n{key}", "TORA_API_KEY holds 2 lines"),
    ("trailing newline", "{key}\n", "TORA_API_KEY has whitespace or a newline before or after the key"),
    ("leading space", " {key}", "TORA_API_KEY has whitespace or a newline before or after the key"),
    ("space inside", "{key} extra", "TORA_API_KEY has whitespace inside the key"),
    ("wrong prefix", "sk_{key}", "TORA_API_KEY is not a Tora API key: keys start with tora_sk_"),
    ("a password", "correct horse battery", "TORA_API_KEY is not a Tora API key"),
]


@pytest.mark.parametrize(("case", "template", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_key_is_named_at_setup_and_never_shown(
    server: ToraServer,
    monkeypatch: pytest.MonkeyPatch,
    everything_logged: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    sdk_env: Path,
    case: str,
    template: str,
    message: str,
) -> None:
    bad = template.format(key=server.key)
    monkeypatch.setenv("TORA_API_KEY", bad)
    with pytest.raises(tora.ToraConfigurationError) as raised:
        tora.setup(f"malformed-{case}")
    assert message in str(raised.value)
    with pytest.raises(tora.ToraConfigurationError) as loading:
        Tora.load_experiment("00000000-0000-4000-8000-000000000000")
    assert message in str(loading.value)
    assert not tora.is_initialized()
    assert spool_files(sdk_env) == [], "nothing was run, so nothing is kept"
    out = capsys.readouterr()
    assert_key_nowhere(server.key, str(raised.value), repr(raised.value), everything_logged.text, out.out, out.err)


def test_the_api_key_argument_is_named_when_it_is_the_bad_one(server: ToraServer) -> None:
    with pytest.raises(tora.ToraConfigurationError, match=r"^The api_key argument holds 2 lines"):
        Tora.create_experiment("arg", api_key=f"key:\n{server.key}")
    with pytest.raises(tora.ToraConfigurationError, match=r"^The api_key argument holds 2 lines"):
        tora.create_workspace("ws", api_key=f"key:\n{server.key}")


def test_no_key_says_how_to_get_one(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORA_API_KEY")
    with pytest.raises(tora.ToraConfigurationError) as raised:
        tora.setup("no-key")
    assert str(raised.value) == (
        "No API key: set TORA_API_KEY (or pass api_key=). "
        "Create a key with `tora api-key create` or in the dashboard (API keys)."
    )
    assert "anonymous" not in str(raised.value)


def test_offline_needs_no_key(monkeypatch: pytest.MonkeyPatch, everything_logged: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TORA_MODE", "offline")
    tora.setup("offline-no-key")
    assert tora.shutdown() == 0
    assert "anonymous" not in everything_logged.text


def test_a_refused_key_is_named_with_the_server_and_the_fix(
    server: ToraServer, everything_logged: pytest.LogCaptureFixture
) -> None:
    revoked = "tora_sk_" + "A1b2C3d4" * 5
    with pytest.raises(tora.ToraAuthenticationError) as raised:
        tora.setup("refused", api_key=revoked)
    assert str(raised.value) == (
        f"The API key was refused by {server.api}; create one with `tora api-key create` (or in the dashboard) "
        "and set TORA_API_KEY to it."
    )
    with pytest.raises(tora.ToraAuthenticationError, match="refused by"):
        Tora.load_experiment("00000000-0000-4000-8000-000000000000", api_key=revoked)
    assert_key_nowhere(revoked, str(raised.value), everything_logged.text)


@pytest.mark.parametrize("suffix", ["", "/", "/experiments/00000000-0000-4000-8000-000000000000"])
def test_a_url_without_api_is_corrected_and_said(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, everything_logged: pytest.LogCaptureFixture, suffix: str
) -> None:
    """The dashboard's address, as copied from the browser: the API answers at its origin + /api."""
    root = server.api.removesuffix("/api")
    monkeypatch.setenv("TORA_BASE_URL", root + suffix)
    experiment_id = tora.setup("copied-from-browser")
    tora.tmetric("loss", 0.5, 0)
    assert tora.shutdown() == 0
    assert server.get(f"/experiments/{experiment_id}")["name"] == "copied-from-browser"
    assert len(server.metrics(experiment_id)) == 1
    [said] = [r for r in everything_logged.records if "is not the API root" in r.getMessage()]
    assert said.levelno == logging.WARNING
    assert said.getMessage().endswith(
        f"the Tora API answers at {server.api} and tora uses that. Set TORA_BASE_URL={server.api} to say so."
    )


class HtmlEverywhere(http.server.BaseHTTPRequestHandler):
    """Some other web server (a proxy's login page, another app) at the configured URL; or, under
    /down/, a proxy whose upstream Tora is down."""

    def answer(self) -> None:
        down = self.path.startswith("/down/")
        body = b"<!doctype html><html><body>Welcome to nginx!</body></html>"
        if down:
            body = b"<html><head><title>502 Bad Gateway</title></head></html>"
        self.send_response(502 if down else 200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer  # noqa: N815 (http.server's names)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def html_site() -> Iterator[str]:
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HtmlEverywhere)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()


def test_a_url_that_answers_html_and_no_api_nearby_says_what_to_set(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, html_site: str, sdk_env: Path
) -> None:
    monkeypatch.setenv("TORA_BASE_URL", html_site + "/api")
    with pytest.raises(tora.ToraConfigurationError) as raised:
        tora.setup("wrong-site")
    assert str(raised.value) == (
        f"{html_site}/api does not answer as the Tora API (POST /experiments answered an HTML page (HTTP 200)). "
        "Set TORA_BASE_URL (or server_url=) to the API root that `tora serve` prints: it ends in /api, "
        "e.g. http://127.0.0.1:8080/api."
    )
    assert "<!doctype" not in str(raised.value)
    assert spool_files(sdk_env) == []


def test_a_proxy_error_page_is_an_outage_not_a_wrong_url(
    server: ToraServer,
    monkeypatch: pytest.MonkeyPatch,
    html_site: str,
    everything_logged: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TORA_BASE_URL", html_site + "/down/api")
    tora.setup("behind-a-proxy")
    assert tora.shutdown(timeout=0.2) == 0
    assert "answered HTTP 502" not in everything_logged.text
    assert f"tora: cannot reach the Tora server at {html_site}/down/api" in everything_logged.text


def test_an_unreachable_server_is_an_outage_not_an_error(
    server: ToraServer, monkeypatch: pytest.MonkeyPatch, everything_logged: pytest.LogCaptureFixture
) -> None:
    """Distinct from a wrong setting: nothing answers, so the run goes on and its points wait."""
    nowhere = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("TORA_BASE_URL", nowhere)
    tora.setup("server-down")
    tora.tmetric("loss", 0.5, 0)
    assert tora.shutdown(timeout=0.5) == 1
    [said] = [r for r in everything_logged.records if "cannot reach" in r.getMessage()]
    assert said.getMessage().startswith(
        f"tora: cannot reach the Tora server at {nowhere} to create run server-down (POST {nowhere}/experiments "
        "failed: connection refused). The run goes on"
    )


def test_the_issue_12_quickstart_mistake_fails_loudly_without_the_key(server: ToraServer, tmp_path: Path) -> None:
    """A script run with the two-line key exits non-zero, names the problem, and prints no key."""
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, tora
            os.environ["TORA_API_KEY"] = "created API key 'cli' (id 1) for me@lab.org\\n" + os.environ["TORA_API_KEY"]
            tora.setup("quickstart")
            for step in range(522):
                tora.tmetric("loss", 1.0 / (step + 1), step)
            """
        )
    )
    done = run_python([str(script)])
    assert done.returncode == 1
    assert "tora._exceptions.ToraConfigurationError: TORA_API_KEY holds 2 lines" in done.stderr
    assert_key_nowhere(server.key, done.stdout, done.stderr)


def test_the_run_url_is_a_line_of_its_own_and_logging_is_the_users_to_configure(
    server: ToraServer, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import logging, sys, tora
            if sys.argv[1] == "configured":
                logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s %(message)s")
            elif sys.argv[1] == "quiet":
                logging.getLogger("tora").setLevel(logging.ERROR)
            print("before", flush=True)
            tora.setup("url-line")
            print("after", tora.get_experiment_url(), flush=True)
            tora.tmetric("bad name", 1.0, 0)
            tora.finish()
            """
        )
    )
    plain = run_python([str(script), "plain"])
    assert plain.returncode == 0, plain.stderr
    url = plain.stdout.split()[-1]
    assert plain.stdout.splitlines()[0] == "before", "nothing on stdout: it is the program's"
    assert plain.stderr.splitlines() == [
        f"tora: run url-line: {url}",
        "tora: metric name 'bad name' is logged as 'bad_name' (names are 1-100 letters, digits, _ - . /)",
    ]
    configured = run_python([str(script), "configured"])
    assert f"[tora] INFO tora: run url-line: {configured.stdout.split()[-1]}" in configured.stderr.splitlines()
    quiet = run_python([str(script), "quiet"])
    assert quiet.returncode == 0
    assert quiet.stderr == ""


def test_sync_names_a_malformed_key_too(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORA_API_KEY", f"created API key 'cli'\n{server.key}")
    done = sync()
    assert done.returncode == 2
    assert done.stderr.startswith("python -m tora sync: TORA_API_KEY holds 2 lines")
    assert_key_nowhere(server.key, done.stdout, done.stderr)
