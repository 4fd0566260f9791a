"""A real tora server for the SDK tests, started from the binary on port 0.

TORA_BIN names the binary (default: <repo>/target/debug/tora). The server prints
``listening on http://IP:PORT`` as its first stdout line; that line is the readiness signal.
A restart binds the same port again, because a client keeps the URL it was given.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tora import Tora

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("TORA_BIN") or REPO / "target" / "debug" / "tora")
# $TORA_TEST_POSTGRES (a cluster's URL) puts each server on a fresh PostgreSQL database.
sys.path.insert(0, str(REPO / "tests" / "helpers"))
from toraserver import postgres_database  # noqa: E402

PASSWORD = "correct horse battery"


class ToraServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.db: Path | str = postgres_database() or workdir / "tora.db"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""
        self.token = ""
        self.key_id = ""

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        assert BIN.exists(), f"tora binary not found at {BIN} (set TORA_BIN)"
        with (self.workdir / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN), "serve", "--bind", f"127.0.0.1:{self.port}", "--db", str(self.db)],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening on http://"):
            self.proc.kill()
            log_text = (self.workdir / "server.log").read_text(errors="replace")
            raise RuntimeError(f"tora serve did not start: first line {line!r}; log:\n{log_text}")
        self.port = int(line.strip().rsplit(":", 1)[1])
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # keep the pipe from filling

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as in a crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def call(self, method: str, path: str, body: Any = None, *, auth: str = "key") -> tuple[int, Any]:
        """One request; auth is "key" (the API key), "token" (the login's bearer token) or "none"."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if auth == "key":
            headers["x-api-key"] = self.key
        elif auth == "token":
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.api + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body["data"]

    def sign_up(self) -> str:
        """A fresh account and API key; the key is used for every later call."""
        email = f"u{uuid.uuid4().hex[:10]}@example.com"
        status, body = self.call("POST", "/signup", {"email": email, "password": PASSWORD}, auth="none")
        assert status == 201, body
        status, body = self.call("POST", "/login", {"email": email, "password": PASSWORD}, auth="none")
        assert status == 200, body
        self.token = body["data"]["access_token"]
        status, body = self.call("POST", "/api-keys", {"name": "sdk-tests"}, auth="token")
        assert status == 201, body
        self.key = body["data"]["key"]
        self.key_id = body["data"]["id"]
        return self.key

    def metrics(self, experiment_id: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.get(f"/experiments/{experiment_id}/metrics")
        return data

    def results(self, experiment_id: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.get(f"/experiments/{experiment_id}/results")
        return data


def _started(workdir: Path) -> ToraServer:
    workdir.mkdir(parents=True, exist_ok=True)
    server = ToraServer(workdir)
    server.start()
    server.sign_up()
    return server


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToraServer]:
    """One server for the tests that never stop it (argon2 in a debug build makes accounts slow)."""
    server = _started(tmp_path_factory.mktemp("shared-server"))
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ToraServer]:
    """A server of this test alone, which it may kill and restart."""
    server = _started(tmp_path / "server")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def sdk_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Spool files in the test's own directory; short intervals and backoff so tests run fast; no
    system metrics."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TORA_CACHE_DIR", str(cache))
    monkeypatch.setenv("TORA_FLUSH_INTERVAL", "0.05")
    monkeypatch.setenv("TORA_RETRY_BASE", "0.05")
    monkeypatch.setenv("TORA_RETRY_MAX", "0.3")
    monkeypatch.setenv("TORA_TIMEOUT", "5")
    monkeypatch.setenv("TORA_EXIT_TIMEOUT", "10")
    for name in ("TORA_MODE", "TORA_MAX_PENDING", "TORA_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)
    # Tests count the points they log; tests/test_system_metrics.py turns system metrics on.
    monkeypatch.setenv("TORA_SYSTEM_METRICS", "0")
    monkeypatch.delenv("TORA_SYSTEM_METRICS_INTERVAL", raising=False)
    monkeypatch.setenv("TORA_BASE_URL", f"http://127.0.0.1:{free_port()}/api")  # nothing listens there
    monkeypatch.delenv("TORA_API_KEY", raising=False)
    return cache


def use(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORA_BASE_URL", server.api)
    monkeypatch.setenv("TORA_API_KEY", server.key)


@pytest.fixture
def server(shared_server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> ToraServer:
    use(shared_server, monkeypatch)
    return shared_server


@pytest.fixture
def lone_server(own_server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> ToraServer:
    use(own_server, monkeypatch)
    return own_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_python(
    args: list[str], *, cwd: Path | None = None, python: str = sys.executable, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a Python script or module with the test's environment (TORA_* included)."""
    return subprocess.run(
        [python, *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=timeout, check=False
    )


def sync(*extra: str) -> subprocess.CompletedProcess[str]:
    return run_python(["-m", "tora", "sync", *extra])


def close_value(value: Any) -> Any:
    """A float to 14 significant digits: the last bits are checked by test_floats_round_trip_exactly alone."""
    return float(f"{value:.14g}") if isinstance(value, float) else value


def points(rows: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    """(name, value, step) of stored rows, sorted; what 'the same stored data' compares."""
    return sorted(
        ((r["name"], close_value(r["value"]), r["step"]) for r in rows), key=lambda p: (p[0], p[2] or 0, str(p[1]))
    )


def expect(triples: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    """The same order and rounding as points(), for expected (name, value, step) triples."""
    return points([{"name": n, "value": v, "step": s} for n, v, s in triples])


def log(client: Tora, steps: Iterable[int]) -> None:
    """A training loop's logging: two metrics per step."""
    for step in steps:
        client.metric("loss", 1.0 / (step + 1), step)
        client.metric("acc", step * 0.001, step)


def assert_exactly_once(server: ToraServer, experiment_id: str, steps: int) -> None:
    """What log(client, range(steps)) logged is stored, each point once."""
    metrics = server.metrics(experiment_id)
    for name in ("loss", "acc"):
        stored = sorted(m["step"] for m in metrics if m["name"] == name)
        assert stored == list(range(steps)), f"{name}: {len(stored)} stored for {steps} logged"
    assert len(metrics) == 2 * steps


def spool_files(cache: Path) -> list[Path]:
    return sorted((cache / "spool").glob("*.spool"))
