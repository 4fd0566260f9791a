"""The server goes away: logging goes on without an exception or a stall, and every point
arrives exactly once, either when the server is back or through ``python -m tora sync``.

No test here times anything (speed is the benchmark's business): "no stall" is shown by
ordering, as logging that completes while the sender's request sits unanswered."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
from pathlib import Path
from types import TracebackType

import pytest
from conftest import ToraServer, assert_exactly_once, log, run_python, spool_files, sync

import tora
from tora import Tora

SAFETY = 60
"""Seconds before a wait gives up, so a bug fails the test instead of hanging it; never reached."""


class DeadHost:
    """Takes the killed server's port and never answers, as a network failure does.

    ``hang=True`` holds the first connection open (a host that vanished: the request waits for an
    answer that never comes) and drops later ones, so that a caller stuck waiting on the network
    fails the test instead of hanging it. ``hang=False`` drops every connection at once (a server
    that dies on each request).
    """

    def __init__(self, port: int, *, hang: bool) -> None:
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.05)
        self.hang = hang
        self.connections = 0
        self.connected = threading.Event()
        self._held: socket.socket | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            self.connected.set()
            if self.hang and self._held is None:
                self._held = conn
            else:
                conn.close()

    def __enter__(self) -> DeadHost:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        """Frees the port: the held request fails, and the server may bind the port again."""
        self._closing.set()
        self._thread.join()
        self.listener.close()
        if self._held is not None:
            self._held.close()


def test_server_killed_mid_run_then_back(
    lone_server: ToraServer, sdk_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORA_MAX_PENDING", "500")
    monkeypatch.setenv("TORA_TIMEOUT", str(SAFETY))  # a request to the vanished host waits until the test ends it
    t = Tora.create_experiment("killed-mid-run", max_buffer_len=50)
    log(t, range(3000))
    lone_server.kill()
    log(t, range(3000, 5000))  # nothing listens: each request is refused
    with DeadHost(lone_server.port, hang=True) as host:  # now a request gets no answer at all
        assert host.connected.wait(SAFETY), "the sender must keep trying"
        log(t, range(5000, 8000))
        # These 6000 calls returned while the sender waited on a request that was never answered.
        assert host.connections == 1, "the sender is still in its one unanswered request"
    assert t.flush(timeout=SAFETY) > 0, "the server is down: flush must report undelivered points"
    assert spool_files(sdk_env), "during the outage points must go to the spool file"
    log(t, range(8000, 9000))
    lone_server.start()
    log(t, range(9000, 10000))
    assert t.shutdown(timeout=SAFETY) == 0
    assert t._sender._last_failed > 0
    assert_exactly_once(lone_server, t.experiment_id, 10000)
    assert spool_files(sdk_env) == []


def test_server_down_for_the_rest_of_the_run_then_sync(lone_server: ToraServer, sdk_env: Path) -> None:
    t = Tora.create_experiment("down-then-sync")
    log(t, range(200))
    assert t.flush() == 0
    lone_server.kill()
    log(t, range(200, 5000))
    with DeadHost(lone_server.port, hang=False) as host:  # every request fails, and is counted
        assert t.flush(timeout=SAFETY) == 2 * 4800
        tries = host.connections
    # The sender retries at least every 0.3 s (TORA_RETRY_MAX): a flush that waited out its timeout
    # instead of giving up would have seen 200 tries or more.
    assert 1 <= tries <= 3, f"flush must give up once a fresh attempt failed, not after {tries} tries"
    busy = sync()
    assert "in use by a running process" in busy.stdout, busy.stdout + busy.stderr
    assert "uploaded 0 points; 0 left on disk; 1 files in use, skipped" in busy.stdout
    assert t.shutdown(timeout=SAFETY) == 2 * 4800
    assert len(spool_files(sdk_env)) == 1

    lone_server.start()
    assert len(lone_server.metrics(t.experiment_id)) == 2 * 200
    first = sync()
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"uploaded {2 * 4800} points; 0 left" in first.stdout
    assert_exactly_once(lone_server, t.experiment_id, 5000)
    assert spool_files(sdk_env) == []
    second = sync()
    assert second.returncode == 0
    assert "nothing to upload" in second.stdout
    assert_exactly_once(lone_server, t.experiment_id, 5000)


def test_server_unreachable_from_the_start(
    own_server: ToraServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """setup() does not fail when the server is down: the experiment is created by sync later, with its id."""
    own_server.kill()
    monkeypatch.setenv("TORA_BASE_URL", own_server.api)
    monkeypatch.setenv("TORA_API_KEY", own_server.key)
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            """
            import tora
            experiment_id = tora.setup("never-online", hyperparams={"lr": 0.5}, tags=["outage"])
            for step in range(3000):
                tora.tmetric("loss", 1.0 / (step + 1), step)
                tora.tmetric("acc", step * 0.001, step)
            tora.tresult("final", 0.5)
            print(experiment_id, tora.shutdown(timeout=5))
            """
        )
    )
    done = run_python([str(script)])
    assert done.returncode == 0, done.stderr
    experiment_id, kept = done.stdout.split()[-2:]
    assert int(kept) == 6001

    own_server.start()
    assert own_server.call("GET", f"/experiments/{experiment_id}")[0] == 404
    uploaded = sync()
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    experiment = own_server.get(f"/experiments/{experiment_id}")
    assert experiment["name"] == "never-online"
    assert experiment["hyperparams"] == [{"key": "lr", "value": 0.5}]
    assert experiment["tags"] == ["outage"]
    assert_exactly_once(own_server, experiment_id, 3000)
    assert [r["name"] for r in own_server.results(experiment_id)] == ["final"]


def test_offline_run_uploads_once_with_sync(lone_server: ToraServer, sdk_env: Path, tmp_path: Path) -> None:
    script = tmp_path / "offline.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, tora
            os.environ["TORA_MODE"] = "offline"
            experiment_id = tora.setup("offline-run", description="no server", hyperparams={"bs": 32})
            for step in range(4000):
                tora.tmetric("loss", 1.0 / (step + 1), step)
                tora.tmetric("acc", step * 0.001, step)
            tora.tmetric("acc", float("nan"), 4000)
            tora.tresult("best", float("inf"))
            print(experiment_id, tora.shutdown())
            """
        )
    )
    done = run_python([str(script)])
    assert done.returncode == 0, done.stderr
    experiment_id, kept = done.stdout.split()[-2:]
    assert int(kept) == 8002
    assert f"tora: run offline-run is offline (id {experiment_id}); upload it later with: python -m tora sync" in (
        done.stderr.splitlines()
    )
    assert lone_server.call("GET", f"/experiments/{experiment_id}")[0] == 404, "offline must not contact the server"
    assert len(spool_files(sdk_env)) == 1

    first = sync()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "uploaded 8002 points" in first.stdout
    experiment = lone_server.get(f"/experiments/{experiment_id}")
    assert experiment["name"] == "offline-run"
    assert experiment["description"] == "no server"
    metrics = lone_server.metrics(experiment_id)
    assert len(metrics) == 8001
    assert [m["value"] for m in metrics if m["step"] == 4000] == ["NaN"]
    assert [(r["name"], r["value"]) for r in lone_server.results(experiment_id)] == [("best", "Infinity")]
    again = sync()
    assert "nothing to upload" in again.stdout
    assert len(lone_server.metrics(experiment_id)) == 8001


def test_offline_mode_as_an_argument(lone_server: ToraServer, sdk_env: Path) -> None:
    experiment_id = tora.setup("offline-arg", mode="offline")
    for step in range(10):
        tora.tmetric("loss", float(step), step)
    assert tora.flush() == 10
    assert tora.shutdown() == 10
    assert lone_server.call("GET", f"/experiments/{experiment_id}")[0] == 404
    assert sync().returncode == 0
    assert len(lone_server.metrics(experiment_id)) == 10


def test_revoked_key_stops_sending_and_keeps_points(lone_server: ToraServer, sdk_env: Path) -> None:
    t = Tora.create_experiment("revoked")
    log(t, range(100))
    assert t.flush() == 0
    status, _ = lone_server.call("DELETE", f"/api-keys/{lone_server.key_id}", auth="token")
    assert status in (200, 204)
    log(t, range(100, 1000))
    assert t.flush(timeout=SAFETY) == 1800
    assert t.shutdown(timeout=SAFETY) == 1800

    refused = sync()
    assert "401" in refused.stdout, "sync with the revoked key must say why it failed"
    assert refused.returncode == 1
    status, body = lone_server.call("POST", "/api-keys", {"name": "new"}, auth="token")
    assert status == 201
    uploaded = sync("--api-key", body["data"]["key"])
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    lone_server.key = body["data"]["key"]
    assert_exactly_once(lone_server, t.experiment_id, 1000)


def test_memory_stays_bounded_while_the_server_is_away(sdk_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens at TORA_BASE_URL: past TORA_MAX_PENDING, points go to disk, not to memory.

    500 points per 2 ms training step is 250,000 points/s, far more than training logs.
    """
    monkeypatch.setenv("TORA_MAX_PENDING", "2000")
    t = Tora.create_experiment("bounded", api_key="tora_sk_unused")
    most = 0
    for step in range(200):
        time.sleep(0.002)  # the step's compute, which releases the GIL as numpy and torch do
        for i in range(500):
            t.metric("loss", 0.5, step * 500 + i)
        most = max(most, t.buffer_size)
    assert most < 5000, f"{most} points were held in memory"
    assert t.shutdown(timeout=5) == 100_000
    assert len(spool_files(sdk_env)) == 1


@pytest.mark.parametrize("version", [1, 2])
def test_sync_resumes_after_the_last_sent_line_and_ignores_a_torn_one(
    server: ToraServer, sdk_env: Path, version: int
) -> None:
    """A spool file as a killed process leaves it: some lines sent, the last one half written.

    Format 2 is this SDK's (batches for /points); format 1 the previous version's (logs with msg_ids)."""
    status, body = server.call("POST", "/experiments", {"name": "torn"})
    assert status == 201
    experiment_id = body["data"]["id"]
    spool = sdk_env / "spool" / f"{experiment_id}.0123456789abcdef.spool"
    spool.parent.mkdir(parents=True)
    header = json.dumps(
        {"tora_spool": version, "experiment_id": experiment_id, "server_url": server.api, "create": None}
    )

    def line(first: int) -> str:
        steps = list(range(first, first + 10))
        if version == 1:
            return json.dumps({"logs": [{"msg_id": f"t.{s}", "name": "m", "value": s, "step": s} for s in steps]})
        return json.dumps({"batch_id": f"t.{first}", "metrics": [{"name": "m", "steps": steps, "values": steps}]})

    text = f"{header}\n{line(0)}\n{line(10)}\n{line(20)[:25]}"
    spool.write_text(text)
    spool.with_suffix(".sent").write_text(str(len(f"{header}\n{line(0)}\n")))
    done = sync()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uploaded 10 points; 0 left" in done.stdout
    assert "incomplete last line" in done.stdout
    assert sorted(m["step"] for m in server.metrics(experiment_id)) == list(range(10, 20))
    assert not spool.exists()
    assert not spool.with_suffix(".sent").exists()


def test_sync_keeps_a_file_whose_line_it_cannot_read(server: ToraServer, sdk_env: Path) -> None:
    """A complete line that is not a batch (a disk error, an edit by hand) is not taken for a torn
    one: sync uploads the lines before it and keeps the file, rather than delete what follows."""
    status, body = server.call("POST", "/experiments", {"name": "damaged"})
    assert status == 201
    experiment_id = body["data"]["id"]
    spool = sdk_env / "spool" / f"{experiment_id}.0123456789abcdef.spool"
    spool.parent.mkdir(parents=True)
    header = json.dumps({"tora_spool": 2, "experiment_id": experiment_id, "server_url": server.api, "create": None})
    good = json.dumps({"batch_id": "d.0", "metrics": [{"name": "m", "steps": [0, 1], "values": [0.5, 0.25]}]})
    later = json.dumps({"batch_id": "d.2", "metrics": [{"name": "m", "steps": [2], "values": [0.125]}]})
    spool.write_text(f"{header}\n{good}\n{good[:20]}#?\n{later}\n")
    done = sync()
    assert done.returncode == 1
    assert "not a batch; the file is kept" in done.stdout
    assert sorted(m["step"] for m in server.metrics(experiment_id)) == [0, 1]
    assert spool.exists()
