"""Exactly once, batch by batch.

The SDK sends points in batches to POST /experiments/{id}/points, each with a batch_id, and the
server stores a batch_id once. That is only safe if a batch, once formed, never changes: every
resend (after a lost answer, from the spool file, by a second ``python -m tora sync``) must carry
the same batch_id and the same points. These are the stories where a resend happens.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ToraServer, assert_exactly_once, expect, log, points, spool_files, sync
from proxy import SAFETY, Proxy

from tora import Tora

DATA = Path(__file__).with_name("data")


def batch_id(body: bytes) -> str:
    value: str = json.loads(body)["batch_id"]
    return value


@pytest.fixture
def closing() -> Iterator[list[Proxy]]:
    """Proxies a test makes; closed when it ends, whatever happened."""
    made: list[Proxy] = []
    yield made
    for proxy in made:
        proxy.close()


def test_a_batch_whose_answer_is_lost_is_resent_with_the_same_batch_id_and_stored_once(
    server: ToraServer, closing: list[Proxy]
) -> None:
    proxy = Proxy(server.port, drop=1)  # the server stores the first batch; its answer never arrives
    closing.append(proxy)
    t = Tora.create_experiment("lost-answer", server_url=proxy.api)
    log(t, range(1000))
    t.result("final", 0.5)
    assert proxy.stored.wait(SAFETY)
    assert t.shutdown(timeout=SAFETY) == 0

    first, resent = proxy.batches[0], proxy.batches[1]
    assert resent == first, "the resend must be the same batch: same batch_id, same points, same bytes"
    stored = proxy.answers[0]["data"]["inserted"]
    assert stored > 0, "the server stored the first batch although the client never heard so"
    assert proxy.answers[1]["data"] == {"inserted": 0, "skipped": stored}
    ids = [batch_id(body) for body in proxy.batches]
    assert len(set(ids)) == len(ids) - 1, "every other batch has an id of its own"
    assert_exactly_once(server, t.experiment_id, 1000)
    assert [r["name"] for r in server.results(t.experiment_id)] == ["final"]


def test_a_sync_killed_after_the_server_stored_a_batch_can_run_again_without_duplicates(
    lone_server: ToraServer, sdk_env: Path, monkeypatch: pytest.MonkeyPatch, closing: list[Proxy]
) -> None:
    """Points kept on disk during an outage. The first ``python -m tora sync`` is killed (Ctrl-C, a
    closed laptop) after the server stored a batch but before sync wrote down that it had; the
    user runs sync again, which sends that batch again."""
    monkeypatch.setenv("TORA_BATCH_SIZE", "1000")
    t = Tora.create_experiment("sync-twice")
    log(t, range(100))
    assert t.flush() == 0
    lone_server.kill()
    log(t, range(100, 3000))
    assert t.shutdown(timeout=5) == 2 * 2900
    [spool] = spool_files(sdk_env)
    lone_server.start()

    slow = Proxy(lone_server.port, hold=True)  # the server's answer to sync's first batch stays here
    closing.append(slow)
    killed = subprocess.Popen(
        [sys.executable, "-m", "tora", "sync", "--server-url", slow.api],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert slow.stored.wait(SAFETY), "sync must send a batch"
    finally:
        killed.kill()
        killed.wait()
    stored = slow.answers[0]["data"]["inserted"]
    assert stored > 0
    assert spool.exists(), "the killed sync must leave the file for the next one"

    watch = Proxy(lone_server.port)
    closing.append(watch)
    again = sync("--server-url", watch.api)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"uploaded {2 * 2900} points; 0 left" in again.stdout
    assert watch.batches[0] == slow.batches[0], "the second sync resends the very batch the first one sent"
    assert watch.answers[0]["data"] == {"inserted": 0, "skipped": stored}
    assert_exactly_once(lone_server, t.experiment_id, 3000)
    assert spool_files(sdk_env) == []


def test_an_old_format_spool_file_from_the_previous_sdk_version_still_syncs(server: ToraServer, sdk_env: Path) -> None:
    """tests/data holds a spool file written by the SDK before /points (format 1: logs with msg_ids),
    by an offline run of this script with TORA_BATCH_SIZE=8:

        tora.setup("before-points", description=..., hyperparams={"lr": 0.01}, mode="offline")
        for step in range(20):
            tora.tmetric("loss", 1.0 / (step + 1), step)
            tora.tmetric("acc", step / 20, step)
        tora.tmetric("loss", float("nan"), 20)
        tora.tresult("best_acc", 0.95)
    """
    [fixture] = DATA.glob("*.spool")
    header = json.loads(fixture.read_text().split("\n", 1)[0])
    assert header["tora_spool"] == 1
    experiment_id = header["experiment_id"]
    (sdk_env / "spool").mkdir(parents=True)
    shutil.copy(fixture, sdk_env / "spool")

    done = sync()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uploaded 42 points; 0 left" in done.stdout
    experiment = server.get(f"/experiments/{experiment_id}")
    assert experiment["name"] == "before-points"
    assert experiment["hyperparams"] == [{"key": "lr", "value": 0.01}]
    logged = [("loss", 1.0 / (s + 1), s) for s in range(20)] + [("acc", s / 20, s) for s in range(20)]
    metrics = server.metrics(experiment_id)
    assert points([m for m in metrics if m["step"] != 20]) == expect(logged)
    assert [m["value"] for m in metrics if m["step"] == 20] == ["NaN"]
    assert [(r["name"], r["value"]) for r in server.results(experiment_id)] == [("best_acc", 0.95)]
    session = fixture.name.split(".")[1]
    assert all(m["msg_id"].startswith(session + ".") for m in metrics), "old points keep the msg_ids they were given"
    assert spool_files(sdk_env) == []

    shutil.copy(fixture, sdk_env / "spool")  # a backup copy of the same file, synced again
    again = sync()
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(server.metrics(experiment_id)) == 41
    assert len(server.results(experiment_id)) == 1


def test_points_kept_on_disk_are_sent_in_the_batches_they_were_first_tried_in(
    lone_server: ToraServer, sdk_env: Path, closing: list[Proxy]
) -> None:
    """The server vanishes while the run logs. A batch that failed is written to the spool file as it
    was tried, and once the server is back each line is sent as it was written: the sender never
    regroups points into new batches (which the server could not tell from new points)."""
    proxy = Proxy(lone_server.port)
    closing.append(proxy)
    t = Tora.create_experiment("frozen", server_url=proxy.api)
    log(t, range(50))
    assert t.flush() == 0
    lone_server.kill()
    log(t, range(50, 2000))
    assert t.flush(timeout=SAFETY) > 0
    [spool] = spool_files(sdk_env)
    kept = spool.read_bytes().split(b"\n")[1:-1]
    failed = [body for body, answer in zip(proxy.batches, proxy.answers) if answer is None]
    assert kept[0] == failed[0], "the first batch that failed is the first line, byte for byte"
    lone_server.start()
    assert t.shutdown(timeout=SAFETY) == 0

    accepted = [body for body, answer in zip(proxy.batches, proxy.answers) if answer is not None]
    assert all(line in accepted for line in kept), "each spooled batch is sent as it was written"
    ids = [batch_id(body) for body in accepted]
    assert len(set(ids)) == len(ids)
    assert_exactly_once(lone_server, t.experiment_id, 2000)
