"""Start the real `tora` binary for tests and benchmarks, and talk JSON to it.

Stdlib only, so the published-SDK venv, the SDK tests and the benches can all import it.

    with ToraServer() as srv:
        user = new_user(srv.api)
        status, body = call("GET", srv.api + "/workspaces", api_key=user.api_key)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # typing.Self is 3.11+; the SDK still supports 3.10
    from typing import Self

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_LISTENING = re.compile(r"^listening on (http://\S+:\d+)\s*$")


def postgres_database() -> str | None:
    """A fresh PostgreSQL database's URL when $TORA_TEST_POSTGRES names a cluster (its
    `postgres` database, as tests/postgres/cluster.sh prints it), else None (a SQLite file).

    Made with psql's `CREATE DATABASE`, one per server, so tests never share data.
    """
    cluster = os.environ.get("TORA_TEST_POSTGRES")
    if not cluster:
        return None
    name = f"t_{os.getpid()}_{secrets.token_hex(6)}"
    subprocess.run(
        [
            "psql",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            cluster,
            "-c",
            f"CREATE DATABASE {name}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return cluster.rsplit("/", 1)[0] + "/" + name


def tora_bin() -> Path:
    """The binary under test: $TORA_BIN, else the debug build of this checkout."""
    return Path(os.environ.get("TORA_BIN") or REPO / "target" / "debug" / "tora")


class ToraServer:
    """`tora serve` on 127.0.0.1:0 with its own database in a temp dir, or with
    $TORA_TEST_POSTGRES set, its own database in that PostgreSQL cluster (see
    `postgres_database`).

    The temp dir (database + server.log) is removed on exit unless `keep=True`.
    """

    def __init__(
        self, *extra_args: str, binary: Path | None = None, keep: bool = False
    ) -> None:
        self.binary = binary or tora_bin()
        self.extra_args = extra_args
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix="tora-srv-"))
        # A file path, or a postgres:// URL; a restart keeps the same database.
        self.db: Path | str = postgres_database() or self.dir / "tora.db"
        self.log_path = self.dir / "server.log"
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    @property
    def api(self) -> str:
        return self.url + "/api"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def start(self) -> Self:
        if not self.binary.is_file():
            raise FileNotFoundError(
                f"tora binary not found at {self.binary} (set TORA_BIN)"
            )
        args = [
            str(self.binary),
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--db",
            str(self.db),
        ]
        # stderr goes straight to the log file; stdout is a pipe because the first line
        # is the readiness signal, and is then drained into the same file (O_APPEND).
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*args, *self.extra_args],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        line = self._first_line()
        match = _LISTENING.match(line)
        if not match:
            self.kill()
            raise RuntimeError(
                f"unexpected first stdout line {line!r}; log:\n{self.logs()}"
            )
        self.url = match.group(1)
        threading.Thread(
            target=self._drain_stdout, args=(self.proc,), daemon=True
        ).start()
        return self

    def _first_line(self) -> str:
        """Wait (bounded) for the first stdout line; "" if the process exits first."""
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT_S)
        if not ready:
            self.kill()
            raise TimeoutError(
                f"no 'listening on' line within {READY_TIMEOUT_S}s; log:\n{self.logs()}"
            )
        return self.proc.stdout.readline()

    def _drain_stdout(self, proc: subprocess.Popen[str]) -> None:
        # Without a reader, a chatty server would block once the pipe buffer fills.
        assert proc.stdout is not None
        with open(self.log_path, "a") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()

    def logs(self) -> str:
        return (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )

    def stop(self) -> int | None:
        """SIGTERM and wait; a server that ignores SIGTERM is killed and reported."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"server ignored SIGTERM for {STOP_TIMEOUT_S}s; killed it"
            ) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> Self:
        """Stop and start again on the same database (the port may change)."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)


def call(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
) -> tuple[int, Any]:
    """One HTTP request; returns (status, parsed JSON body, or text if not JSON). Never raises on 4xx/5xx."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if api_key:
        headers["x-api-key"] = api_key
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, _parse(
                resp.headers.get("Content-Type", ""), resp.read()
            )
    except urllib.error.HTTPError as err:
        return err.code, _parse(err.headers.get("Content-Type", ""), err.read())


def _parse(content_type: str, raw: bytes) -> Any:
    # Trust the content type: a JSON-labelled body that does not parse is a server bug.
    if content_type.startswith("application/json"):
        return json.loads(raw)
    return raw.decode(errors="replace")


def call_ok(
    method: str, url: str, body: Any = None, *, expect: int = 200, **auth: str
) -> Any:
    """`call` that asserts the status and returns the envelope's `data`."""
    status, resp = call(method, url, body, **auth)
    assert status == expect, f"{method} {url} -> {status} (expected {expect}): {resp}"
    assert isinstance(resp, dict) and resp.get("status") == expect, (
        f"bad envelope: {resp}"
    )
    return resp["data"]


class User(NamedTuple):
    email: str
    password: str
    access_token: str
    api_key: str


def new_user(api: str) -> User:
    """Sign up a random user, log in, and create an API key, all over HTTP."""
    email = f"user-{secrets.token_hex(6)}@example.com"
    password = secrets.token_urlsafe(12)
    call_ok("POST", f"{api}/signup", {"email": email, "password": password}, expect=201)
    login = call_ok("POST", f"{api}/login", {"email": email, "password": password})
    token = login["access_token"]
    key = call_ok("POST", f"{api}/api-keys", {"name": "test"}, expect=201, token=token)
    return User(email, password, token, key["key"])
