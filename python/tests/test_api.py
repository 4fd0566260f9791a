"""The whole public API against a real server, in both styles: the Tora class and the module functions."""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ToraServer, expect, points, run_python

import tora
from tora import Tora


@pytest.fixture(autouse=True)
def no_global_client() -> Iterator[None]:
    yield
    tora.shutdown()


def test_class_style_stores_everything_once(server: ToraServer) -> None:
    t = Tora.create_experiment(
        "class-style",
        description="all verbs",
        hyperparams={"lr": 0.01, "layers": 3, "opt": "adam"},
        tags=["sdk", "test"],
    )
    assert not t.is_closed
    assert t.max_buffer_len == 25
    assert t.url.endswith(f"/experiments/{t.experiment_id}")
    for step in range(100):
        t.metric("train/loss", 1.0 / (step + 1), step)
    t.metric("acc", np.float32(0.5), np.int64(3))
    t.log_metrics({"lr": 0.1, "mom": 0.9}, step=7)
    t.log_metrics({"auto": 1.0})
    t.log_metrics({"auto": 2.0})
    t.result("best", 0.875)
    t.result("flag", True)
    assert t.flush() == 0
    assert t.buffer_size == 0
    assert t.shutdown() == 0
    assert t.is_closed

    experiment = server.get(f"/experiments/{t.experiment_id}")
    assert experiment["name"] == "class-style"
    assert experiment["description"] == "all verbs"
    assert {h["key"]: h["value"] for h in experiment["hyperparams"]} == {"lr": 0.01, "layers": 3, "opt": "adam"}
    assert experiment["tags"] == ["sdk", "test"]
    assert experiment["url"] == t.url

    metrics = server.metrics(t.experiment_id)
    expected = [("train/loss", 1.0 / (s + 1), s) for s in range(100)]
    expected += [("acc", 0.5, 3), ("lr", 0.1, 7), ("mom", 0.9, 7), ("auto", 1.0, 0), ("auto", 2.0, 1)]
    assert points(metrics) == expect(expected)
    assert all(m["metadata"] == {"type": "metric"} for m in metrics)
    results = server.results(t.experiment_id)
    assert points(results) == [("best", 0.875, None), ("flag", 1, None)]


def test_context_manager_flushes_and_closes(server: ToraServer) -> None:
    with Tora.create_experiment("ctx", max_buffer_len=1000) as t:
        for step in range(10):
            t.metric("loss", float(step), step)
        assert t.buffer_size <= 10
    assert t.is_closed
    assert len(server.metrics(t.experiment_id)) == 10


def test_nan_and_infinity_round_trip(server: ToraServer) -> None:
    with Tora.create_experiment("nan-inf") as t:
        t.metric("x", float("nan"), 0)
        t.metric("x", float("inf"), 1)
        t.metric("x", float("-inf"), 2)
        t.metric("x", np.float32("nan"), 3)
        t.metric("x", 1e308, 4)
        t.result("r", float("-inf"))
    values = {m["step"]: m["value"] for m in server.metrics(t.experiment_id)}
    assert values == {0: "NaN", 1: "Infinity", 2: "-Infinity", 3: "NaN", 4: 1e308}
    assert [r["value"] for r in server.results(t.experiment_id)] == ["-Infinity"]


def test_floats_round_trip_exactly(server: ToraServer) -> None:
    """What the caller logs is what the server returns, to the last bit."""
    values = [1 / 11, 0.1, 1 / 3, 2 / 3, 1e-300, 5e-324, 1.7976931348623157e308, 123.456789012345678]
    with Tora.create_experiment("exact-floats") as t:
        for step, value in enumerate(values):
            t.metric("x", value, step)
    stored = [m["value"] for m in sorted(server.metrics(t.experiment_id), key=lambda m: m["step"])]
    assert stored == values


def test_load_experiment_appends_to_it(server: ToraServer) -> None:
    with Tora.create_experiment("to-load", hyperparams={"seed": 1}, tags=["a"]) as first:
        first.metric("loss", 1.0, 0)
    loaded = Tora.load_experiment(first.experiment_id)
    assert loaded.experiment_id == first.experiment_id
    assert loaded.url == first.url
    assert loaded._hyperparams == {"seed": 1}
    loaded.metric("loss", 0.5, 1)
    assert loaded.shutdown() == 0
    assert points(server.metrics(first.experiment_id)) == [("loss", 1.0, 0), ("loss", 0.5, 1)]


def test_load_unknown_experiment_raises(server: ToraServer) -> None:
    with pytest.raises(tora.ToraExperimentError):
        Tora.load_experiment("00000000-0000-4000-8000-000000000000")


def test_bad_api_key_raises_at_create(server: ToraServer) -> None:
    with pytest.raises(tora.ToraAuthenticationError):
        Tora.create_experiment("bad-key", api_key="tora_sk_not_a_real_key")
    with pytest.raises(tora.ToraAuthenticationError):
        Tora.load_experiment("00000000-0000-4000-8000-000000000000", api_key="tora_sk_not_a_real_key")
    with pytest.raises(tora.ToraAuthenticationError):
        tora.create_workspace("ws", api_key="tora_sk_not_a_real_key")


def test_unknown_workspace_raises(server: ToraServer) -> None:
    with pytest.raises(tora.ToraError):
        Tora.create_experiment("no-ws", workspace_id="00000000-0000-4000-8000-000000000000")


def test_create_workspace_then_experiment_in_it(server: ToraServer) -> None:
    workspace = tora.create_workspace("sdk-ws", description="made by the SDK")
    assert workspace["name"] == "sdk-ws"
    with Tora.create_experiment("in-ws", workspace_id=workspace["id"]) as t:
        t.metric("m", 1, 0)
    assert server.get(f"/experiments/{t.experiment_id}")["workspace_id"] == workspace["id"]
    listed = server.get(f"/workspaces/{workspace['id']}/experiments")
    assert [e["id"] for e in listed] == [t.experiment_id]


def test_explicit_arguments_beat_the_environment(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORA_BASE_URL", "http://127.0.0.1:9/api")
    monkeypatch.delenv("TORA_API_KEY")
    with Tora.create_experiment("explicit", api_key=server.key, server_url=server.api) as t:
        t.metric("m", 1, 0)
    assert len(server.metrics(t.experiment_id)) == 1


def test_global_style(server: ToraServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tora")
    experiment_id = tora.setup("global-style", hyperparams={"lr": 0.1}, tags=["g"])
    assert [r.getMessage() for r in caplog.records] == [f"tora: run global-style: {tora.get_experiment_url()}"]
    assert tora.is_initialized()
    assert tora.get_experiment_id() == experiment_id
    url = tora.get_experiment_url()
    assert url is not None
    assert url.endswith(experiment_id)
    with pytest.raises(tora.ToraError):
        tora.setup("second")
    for step in range(50):
        tora.tmetric("loss", 0.5 * step, step)
    tora.tresult("final", 42)
    assert tora.flush() == 0
    assert tora.shutdown() == 0
    assert not tora.is_initialized()
    assert tora.get_experiment_id() is None
    assert len(server.metrics(experiment_id)) == 50
    assert points(server.results(experiment_id)) == [("final", 42, None)]
    second = tora.setup("after-shutdown")
    assert second != experiment_id


def test_exit_without_shutdown_delivers_everything(server: ToraServer, tmp_path: Path) -> None:
    script = tmp_path / "no_shutdown.py"
    script.write_text(
        textwrap.dedent(
            """
            import tora
            print(tora.setup("atexit", max_buffer_len=100000), flush=True)
            for step in range(5000):
                tora.tmetric("loss", step * 0.5, step)
            tora.tresult("done", 1)
            """
        )
    )
    done = run_python([str(script)])
    assert done.returncode == 0, done.stderr
    experiment_id = done.stdout.splitlines()[-1]
    assert len(server.metrics(experiment_id)) == 5000
    assert len(server.results(experiment_id)) == 1


def test_forked_child_sends_its_own_points_only(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DataLoader-style fork: the child gets no copy of the parent's queue or sender."""
    monkeypatch.setenv("TORA_FLUSH_INTERVAL", "30")  # keep the parent's points queued across the fork
    t = Tora.create_experiment("fork", max_buffer_len=100000)
    for step in range(100):
        t.metric("parent", float(step), step)
    assert t.buffer_size == 100
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            assert t.buffer_size == 0
            for step in range(100):
                t.metric("child", float(step), step)
            code = 0 if t.flush(timeout=20) == 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for step in range(100, 200):
        t.metric("parent", float(step), step)
    assert t.shutdown() == 0
    metrics = server.metrics(t.experiment_id)
    assert sorted(m["step"] for m in metrics if m["name"] == "parent") == list(range(200))
    # Had the child kept the parent's batch ids, the server would have skipped one side's first batch.
    assert sorted(m["step"] for m in metrics if m["name"] == "child") == list(range(100))
