"""A run's state on the server follows the process: running while it beats, then finished or failed
as it ended; and the run records where it ran (metadata), unless told not to."""

from __future__ import annotations

import json
import logging
import platform
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ToraServer, run_python, spool_files, sync
from proxy import Proxy

import tora
from tora import Tora


@pytest.fixture(autouse=True)
def fast_heartbeats(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TORA_HEARTBEAT_INTERVAL", "0.2")
    yield
    tora.shutdown()


def run_of(server: ToraServer, experiment_id: str) -> dict[str, Any]:
    found: dict[str, Any] = server.get(f"/experiments/{experiment_id}")
    return found


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_heartbeats_keep_an_open_run_running_and_shutdown_finishes_it(server: ToraServer) -> None:
    t = Tora.create_experiment("beating")
    first = run_of(server, t.experiment_id)
    assert first["state"] == "running"
    assert first["ended_at"] is None
    time.sleep(2.5)  # no point logged meanwhile: only heartbeats move the run's last activity
    later = run_of(server, t.experiment_id)
    assert later["state"] == "running"
    assert later["active_at"] > first["active_at"], "heartbeats arrived"
    t.metric("loss", 0.5, 0)
    assert t.shutdown() == 0
    ended = run_of(server, t.experiment_id)
    assert ended["state"] == "finished"
    assert ended["ended_at"] is not None
    time.sleep(0.6)
    assert run_of(server, t.experiment_id)["state"] == "finished", "no heartbeat after the end reopens it"


def test_the_first_heartbeat_is_sent_at_once(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """So a run killed in its first seconds reads "crashed" later, not "finished" like a run of a
    client that never beats."""
    monkeypatch.setenv("TORA_HEARTBEAT_INTERVAL", "30")
    t = Tora.create_experiment("first-beat")
    deadline = time.monotonic() + 10
    while (run := run_of(server, t.experiment_id))["active_at"] == run["started_at"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run["active_at"] > run["started_at"]
    t.shutdown()


def test_a_server_without_run_state_is_left_alone_silently(
    server: ToraServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A server older than heartbeats answers them 404: the SDK stops beating and says nothing."""
    caplog.set_level(logging.DEBUG, logger="tora")
    old = Proxy(server.port, old_server=True)
    try:
        t = Tora.create_experiment("on-an-old-server", server_url=old.api)
        for step in range(10):
            t.metric("loss", 1.0, step)
        time.sleep(1)
        assert t.finish("failed") == 0
    finally:
        old.close()
    heartbeat = f"POST /api/experiments/{t.experiment_id}/heartbeat HTTP/1.1".encode()
    finish = f"POST /api/experiments/{t.experiment_id}/finish HTTP/1.1".encode()
    assert old.not_found == [heartbeat, finish], "one heartbeat, then no more"
    assert len(server.metrics(t.experiment_id)) == 10
    assert [r.getMessage() for r in caplog.records] == [f"tora: run on-an-old-server: {t.url}"]


def test_finish_says_how_the_run_ended(server: ToraServer) -> None:
    t = Tora.create_experiment("explicit-failure")
    assert t.finish("failed") == 0
    assert run_of(server, t.experiment_id)["state"] == "failed"
    assert t.is_closed

    experiment_id = tora.setup("module-level")
    tora.tmetric("loss", 1.0, 0)
    with pytest.raises(tora.ToraValidationError):
        tora.finish("crashed")
    assert tora.is_initialized(), "a wrong state ends nothing"
    assert tora.finish() == 0
    assert not tora.is_initialized()
    assert run_of(server, experiment_id)["state"] == "finished"
    assert len(server.metrics(experiment_id)) == 1


def test_leaving_a_with_block_by_an_exception_fails_the_run(server: ToraServer) -> None:
    t = Tora.create_experiment("with-error")

    def train() -> None:
        with t:
            t.metric("loss", 1.0, 0)
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        train()
    assert run_of(server, t.experiment_id)["state"] == "failed"
    with Tora.create_experiment("with-ok") as ok:
        ok.metric("loss", 1.0, 0)
    assert run_of(server, ok.experiment_id)["state"] == "finished"


def test_loading_a_finished_run_resumes_it_until_it_ends_again(server: ToraServer) -> None:
    t = Tora.create_experiment("resumed")
    t.shutdown()
    assert run_of(server, t.experiment_id)["state"] == "finished"
    again = Tora.load_experiment(t.experiment_id)
    deadline = time.monotonic() + 10
    while run_of(server, t.experiment_id)["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_of(server, t.experiment_id)["state"] == "running"
    again.metric("loss", 0.25, 1)
    again.shutdown()
    assert run_of(server, t.experiment_id)["state"] == "finished"


ENDINGS = {
    "uncaught exception": ("raise RuntimeError('diverged')", 1, "failed"),
    "exception in a thread": (
        "import threading\nt = threading.Thread(target=lambda: 1 / 0)\nt.start(); t.join()",
        0,
        "failed",
    ),
    "shutdown in finally, then the exception": (
        "try:\n    raise RuntimeError('diverged')\nfinally:\n    tora.shutdown()",
        1,
        "failed",
    ),
    "exception handled by the script": ("try:\n    1 / 0\nexcept ZeroDivisionError:\n    pass", 0, "finished"),
    "exit without shutdown": ("", 0, "finished"),
    "sys.exit(3)": ("import sys; sys.exit(3)", 3, "finished"),
}


@pytest.mark.parametrize(("ending", "expected_code", "state"), ENDINGS.values(), ids=list(ENDINGS))
def test_how_the_process_ends_is_how_the_run_ends(
    server: ToraServer, tmp_path: Path, ending: str, expected_code: int, state: str
) -> None:
    """The heartbeat thread never keeps the process alive: each script exits by itself."""
    path = script(
        tmp_path,
        """
        import tora
        print(tora.setup("ending"), flush=True)
        for step in range(100):
            tora.tmetric("loss", 1.0 / (step + 1), step)
        """,
    )
    path.write_text(path.read_text() + ending + "\n")
    started = time.monotonic()
    done = run_python([str(path)], timeout=60)
    assert done.returncode == expected_code, done.stderr
    assert time.monotonic() - started < 30
    experiment_id = done.stdout.split()[0]
    assert run_of(server, experiment_id)["state"] == state
    assert len(server.metrics(experiment_id)) == 100, "the points arrive before the end"


def test_an_offline_run_is_ended_when_it_syncs(server: ToraServer, tmp_path: Path, sdk_env: Path) -> None:
    path = script(
        tmp_path,
        """
        import sys, tora
        print(tora.setup(sys.argv[1], mode="offline"), flush=True)
        tora.tmetric("loss", 0.5, 0)
        if sys.argv[1] == "offline-failed":
            raise RuntimeError("diverged")
        """,
    )
    finished = run_python([str(path), "offline-finished"])
    failed = run_python([str(path), "offline-failed"])
    assert failed.returncode == 1
    assert len(spool_files(sdk_env)) == 2
    assert sorted(p.read_text() for p in (sdk_env / "spool").glob("*.end")) == ["failed", "finished"]
    done = sync()
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_of(server, finished.stdout.split()[0])["state"] == "finished"
    assert run_of(server, failed.stdout.split()[0])["state"] == "failed"
    assert list((sdk_env / "spool").iterdir()) == []


def git_repo(at: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(at), *args],  # noqa: S607 (git from PATH, as the SDK runs it)
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    at.mkdir()
    git("init", "-q", "-b", "exp/lr-sweep")
    git("config", "user.email", "me@lab.org")
    git("config", "user.name", "Me")
    (at / "train.py").write_text("print('v1')\n")
    git("add", "train.py")
    git("commit", "-qm", "v1")
    (at / "train.py").write_text("print('v2, not committed')\n")
    return git("rev-parse", "HEAD")


def test_metadata_records_where_the_run_ran_and_no_secrets(
    server: ToraServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    commit = git_repo(repo)
    path = script(
        repo,
        """
        import sys, numpy, tora
        print(tora.setup("with-metadata"))
        """,
    )
    monkeypatch.setenv("WANDB_API_KEY", "a-secret-in-the-environment")
    done = run_python(
        [str(path), "--lr", "0.1", "--api-key", server.key, "--db-password=hunter2", f"--key={server.key}"], cwd=repo
    )
    assert done.returncode == 0, done.stderr
    metadata = run_of(server, done.stdout.split()[-1])["metadata"]
    assert metadata["git"] == {"commit": commit, "branch": "exp/lr-sweep", "dirty": True}
    assert metadata["command"] == f"{path} --lr 0.1 --api-key REDACTED --db-password=REDACTED --key=REDACTED"
    assert metadata["host"] == socket.gethostname()
    assert metadata["python"] == platform.python_version()
    assert metadata["platform"] == platform.platform(terse=True)
    assert metadata["sdk"] == f"tora {tora.__version__}"
    assert metadata["packages"] == {"numpy": np.__version__}, "imported packages only"
    text = json.dumps(metadata)
    assert server.key not in text
    assert "hunter2" not in text
    assert "a-secret-in-the-environment" not in text


def test_metadata_outside_a_repository_has_no_git(server: ToraServer, tmp_path: Path) -> None:
    path = script(tmp_path, "import tora\nprint(tora.setup('no-repo'))\n")
    done = run_python([str(path)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    metadata = run_of(server, done.stdout.split()[-1])["metadata"]
    assert "git" not in metadata
    assert metadata["command"] == str(path)


def test_metadata_can_be_turned_off(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    off = Tora.create_experiment("no-metadata", metadata=False)
    off.shutdown()
    assert run_of(server, off.experiment_id)["metadata"] == {}
    monkeypatch.setenv("TORA_METADATA", "0")
    experiment_id = tora.setup("no-metadata-env")
    tora.shutdown()
    assert run_of(server, experiment_id)["metadata"] == {}
    on = Tora.create_experiment("metadata-argument-wins", metadata=True)
    on.shutdown()
    assert run_of(server, on.experiment_id)["metadata"]["sdk"].startswith("tora ")


def test_a_run_made_while_the_server_was_down_beats_and_ends_once_it_is_back(
    lone_server: ToraServer, sdk_env: Path
) -> None:
    lone_server.kill()
    t = Tora.create_experiment("made-during-an-outage")
    t.metric("loss", 1.0, 0)
    lone_server.start()
    deadline = time.monotonic() + 20
    while lone_server.call("GET", f"/experiments/{t.experiment_id}")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_of(lone_server, t.experiment_id)["state"] == "running"
    assert t.finish("failed", timeout=20) == 0
    assert run_of(lone_server, t.experiment_id)["state"] == "failed"
    assert len(lone_server.metrics(t.experiment_id)) == 1
    assert spool_files(sdk_env) == []


def test_a_forked_child_that_exits_does_not_end_its_parents_run(server: ToraServer, tmp_path: Path) -> None:
    path = script(
        tmp_path,
        """
        import json, os, sys, urllib.request, tora
        experiment_id = tora.setup("forking")
        if os.fork() == 0:
            tora.tmetric("child", 1.0, 0)
            sys.exit(0)  # a normal exit: the child's atexit hooks run
        os.wait()
        request = urllib.request.Request(
            f"{os.environ['TORA_BASE_URL']}/experiments/{experiment_id}",
            headers={"x-api-key": os.environ["TORA_API_KEY"]},
        )
        with urllib.request.urlopen(request) as answer:
            state = json.load(answer)["data"]["state"]
        print(experiment_id, state)
        raise SystemExit(tora.finish())
        """,
    )
    done = run_python([str(path)])
    assert done.returncode == 0, done.stderr
    experiment_id, state_after_child = done.stdout.split()
    assert state_after_child == "running"
    assert run_of(server, experiment_id)["state"] == "finished"
    assert [m["name"] for m in server.metrics(experiment_id)] == ["child"]
