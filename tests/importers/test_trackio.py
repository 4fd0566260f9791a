"""trackio runs written by the real trackio package imported into tora, then imported again."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from conftest import Tora

WRITER = Path(__file__).with_name("trackio_writer.py")


def ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def write(tmp_path: Path) -> Path:
    store = tmp_path / "trackio"
    env = {
        **os.environ,
        "TRACKIO_DIR": str(store),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TRACKIO_STORAGE_MODE": "sqlite",
    }
    done = subprocess.run(
        [sys.executable, str(WRITER)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return store


def logged_times(db: Path, run: str) -> list[int]:
    """The time trackio recorded for each `log` call of a run, in order."""
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT timestamp, metrics FROM metrics WHERE run_name = ? ORDER BY id",
            (run,),
        ).fetchall()
    return [ms(t) for t, m in rows if "loss" in json.loads(m)]


def test_trackio_projects_runs_configs_metrics_once(tora: Tora, tmp_path: Path) -> None:
    store = write(tmp_path)
    assert sorted(p.name for p in store.glob("*.db")) == ["speech.db", "vision.db"]

    first = tora.imported("trackio", str(store))
    assert "runs: 3 imported, 0 already present" in first, first
    points = 2 * 80 + 1 + 3 + 1
    assert f"points: {points:,} added, 0 already present" in first, first
    assert "values that are not numbers (media, text, tables) in note" in first, first

    runs = tora.experiments()
    assert sorted(runs) == ["baseline", "conformer", "vit"]
    conformer = runs["conformer"]
    assert tora.params(conformer) == {
        "lr": 3e-4,
        "layers": 12,
        "optimizer": "adamw",
        "amp": True,
        "data.set": "libri",
        "data.hours": 100,
    }
    assert conformer["group"] == "ablation"
    assert conformer["tags"] == ["trackio.project=speech"]
    assert runs["vit"]["tags"] == ["trackio.project=vision"]
    assert conformer["state"] == "finished"
    series = tora.series(conformer["id"])
    loss = series["loss"]
    assert [s for s, _ in loss] == [*range(80), 2]
    assert loss[5] == (5, "NaN") and loss[-1] == (2, 0.9) and loss[3] == (3, 0.25)
    assert series["wer"] == [(s, 0.5 - s / 1000) for s in range(80)]
    assert tora.series(runs["baseline"]["id"]) == {
        "loss": [(0, 2.0), (1, 2.0), (2, 2.0)]
    }
    stored = sorted(
        (m for m in tora.metrics(conformer["id"]) if m["name"] == "loss"),
        key=lambda m: m["id"],
    )
    assert [ms(m["created_at"]) for m in stored] == logged_times(
        store / "speech.db", "conformer"
    )

    before = tora.counts()
    second = tora.imported("trackio", str(store / "speech.db"))
    assert "runs: 0 imported, 2 already present" in second, second
    third = tora.imported("trackio", str(store))
    assert "runs: 0 imported, 3 already present" in third, third
    assert f"points: 0 added, {points:,} already present" in third, third
    assert tora.counts() == before == (3, points)


def test_not_a_trackio_database(tora: Tora, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    empty = tora.run_import("trackio", str(tmp_path / "empty"))
    assert empty.returncode == 1 and "no trackio project databases" in empty.stderr, (
        empty.stderr
    )
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE t (x)")
    refused = tora.run_import("trackio", str(other))
    assert refused.returncode == 1 and "not trackio's" in refused.stderr, refused.stderr
    assert tora.experiments() == {}
