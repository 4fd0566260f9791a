"""MLflow runs written by the real mlflow package (file store, SQLite store, and a real
`mlflow server`) imported into tora, then imported again."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Tora

TRIAL = "trial: 0 'lr' #1"  # as mlflow_writer.py names it: meta.yaml quotes it

WRITER = Path(__file__).with_name("mlflow_writer.py")


def ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def write(uri: str, **env: str) -> list[dict[str, Any]]:
    """Runs written by mlflow to `uri`; what MLflow reads back of them."""
    done = subprocess.run(
        [sys.executable, str(WRITER), uri],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return runs


def same(stored: Any, logged: float) -> bool:
    return stored == "NaN" if math.isnan(logged) else stored == logged


def check(tora: Tora, written: list[dict[str, Any]]) -> None:
    """Everything MLflow reads back is in tora, each point once, with its step and time."""
    runs = tora.experiments()
    assert (
        sorted(runs)
        == sorted(r["name"] for r in written)
        == sorted(["bert", "crashed", "sweep", TRIAL])
    )
    for r in written:
        exp = runs[r["name"]]
        assert ms(exp["created_at"]) <= r["start_time"]
        stored = sorted(tora.metrics(exp["id"]), key=lambda m: m["id"])
        for key, points in r["metrics"].items():
            mine = [m for m in stored if m["name"] == key]
            assert [m["step"] for m in mine] == [p[0] for p in points], key
            assert all(
                same(m["value"], p[1]) for m, p in zip(mine, points, strict=True)
            ), key
            assert [ms(m["created_at"]) for m in mine] == [p[2] for p in points], key
        assert len(stored) == sum(len(p) for p in r["metrics"].values())
    sweep = runs["sweep"]
    assert tora.params(sweep) == {
        "lr": 0.01,
        "layers": 3,
        "optimizer": "adam",
        "augment": True,
    }
    assert set(sweep["tags"]) == {"team=vision", "baseline", "mlflow.experiment=vision"}
    assert sweep["description"] == "a small sweep"
    assert sweep["group"] == runs[TRIAL]["group"] == "sweep"
    assert runs["bert"]["group"] is None
    assert "mlflow.experiment=nlp" in runs["bert"]["tags"]
    assert sweep["state"] == "finished"
    assert runs["crashed"]["state"] == "failed"
    loss = tora.series(sweep["id"])["loss"]
    assert loss[7] == (7, "NaN")
    assert (
        loss.count((3, 0.5)) == 1 and (3, 0.25) in loss
    )  # a re-logged step keeps both points
    assert ms(sweep["created_at"]) == next(
        r["start_time"] for r in written if r["name"] == "sweep"
    )


def import_twice(tora: Tora, arg: str, written: list[dict[str, Any]]) -> None:
    points = sum(len(p) for r in written for p in r["metrics"].values())
    first = tora.imported("mlflow", arg)
    assert "runs: 4 imported, 0 already present" in first, first
    assert f"points: {points:,} added, 0 already present" in first, first
    assert "MLflow system tags" in first, first
    assert "mlflow: 1 deleted runs are not imported" in first, first
    check(tora, written)
    before = tora.counts()
    second = tora.imported("mlflow", arg)
    assert "runs: 0 imported, 4 already present" in second, second
    assert f"points: 0 added, {points:,} already present" in second, second
    assert tora.counts() == before == (4, points)


def test_file_store(tora: Tora, tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    written = write(f"file:{store}", MLFLOW_ALLOW_FILE_STORE="true")
    assert (store / ".trash").is_dir()
    import_twice(tora, str(store), written)


def test_sqlite_store(tora: Tora, tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    written = write(f"sqlite:///{db}")
    import_twice(tora, f"sqlite:///{db}", written)


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port, over a SQLite backend."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = Path(sys.executable).with_name("mlflow")
    log = (tmp_path / "mlflow-server.log").open("wb")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port)]
        + ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
        + ["--default-artifact-root", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, (tmp_path / "mlflow-server.log").read_text()
        assert time.monotonic() < deadline, (
            "mlflow server did not answer /health in 120 s"
        )
        time.sleep(0.3)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def test_tracking_server(tora: Tora, mlflow_server: str) -> None:
    written = write(mlflow_server)
    import_twice(tora, mlflow_server, written)


def test_missing_store_and_unreachable_server(tora: Tora, tmp_path: Path) -> None:
    missing = tora.run_import("mlflow", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr, (
        missing.stderr
    )
    (tmp_path / "empty").mkdir()
    empty = tora.run_import("mlflow", str(tmp_path / "empty"))
    assert empty.returncode == 1 and "not an MLflow file store" in empty.stderr, (
        empty.stderr
    )
    (tmp_path / "notes.txt").write_text("hello")
    text = tora.run_import("mlflow", str(tmp_path / "notes.txt"))
    assert text.returncode == 1 and "not an MLflow store" in text.stderr, text.stderr
    down = tora.run_import("mlflow", "http://127.0.0.1:9")
    assert down.returncode == 1 and "cannot reach the MLflow server" in down.stderr, (
        down.stderr
    )
    assert tora.experiments() == {}
