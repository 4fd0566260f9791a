"""W&B offline runs written by the real wandb package, read by tora's standard-library reader
(checked against wandb's own protobuf classes) and imported into tora serve (then again)."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Tora
from tora._import import wandb_reader
from tora._import.model import ImportedRun, ToraImportError

WIDE = 3000  # keys in one logged row: a record longer than a 32 KiB block


def write(wandb_dir: Path, script: str) -> None:
    """Run a writer script with the real wandb, offline, in a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(wandb_dir),
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        cwd=wandb_dir,
    )
    assert done.returncode == 0, done.stderr


def write_runs(root: Path) -> None:
    """Three runs: "baseline" (config, tags, group, notes, nested keys, a string, NaN, media,
    a summary value), "failing" (exit code 3) and "resumable" (finished, then resumed offline
    with the same id, re-logging steps 3 and 4, and one row of WIDE keys)."""
    write(
        root,
        f"""
        import wandb

        run = wandb.init(
            project="vision",
            name="baseline",
            config={{"lr": 0.1, "layers": [64, 32], "optimizer": {{"name": "adam", "beta1": 0.9}}}},
            tags=["resnet", "cifar"],
            group="sweep-1",
            notes="first try",
        )
        for step in range(20):
            run.log({{"train/loss": 1 / (step + 1), "val": {{"acc": step / 20}}, "phase": "warmup"}})
        run.log({{"train/loss": float("nan")}})
        run.log({{"weights": wandb.Histogram([1, 2, 3]), "done": True}})
        run.summary["best_acc"] = 0.95
        run.finish()

        run = wandb.init(project="vision", name="failing")
        run.log({{"x": 1}})
        run.finish(exit_code=3)

        run = wandb.init(project="vision", id="resume-me", name="resumable", config={{"lr": 0.5}})
        for step in range(5):
            run.log({{"loss": 10.0 - step}}, step=step)
        run.finish()
        run = wandb.init(project="vision", id="resume-me", resume="allow")
        for step in range(3, 7):
            run.log({{"loss": 100.0 - step}}, step=step)
        run.log({{f"w{{i:04d}}": i / 7 for i in range({WIDE})}}, step=7)
        run.finish()
        """,
    )


@pytest.fixture(scope="module")
def wandb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wb")
    write_runs(root)
    return root


def logs(wandb_dir: Path) -> list[Path]:
    return sorted((wandb_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def oracle(path: Path) -> Iterator[Any]:
    """The log's Record messages decoded by wandb's own protobuf classes, with a framing loop
    written from the LevelDB log spec apart from the reader's."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def oracle_history(paths: list[Path]) -> dict[str, list[tuple[int, float, int]]]:
    """metric -> [(step, value, time_ms)] for the numeric top-level and nested keys."""
    out: dict[str, list[tuple[int, float, int]]] = {}
    for path in paths:
        for record in oracle(path):
            if record.WhichOneof("record_type") != "history":
                continue
            row = {
                tuple(i.nested_key) or (i.key,): json.loads(i.value_json)
                for i in record.history.item
            }
            step = row.pop(("_step",))
            time_ms = round(row.pop(("_timestamp",)) * 1000)
            for key, value in row.items():
                if key[0].startswith("_") or key[0] == "weights":
                    continue
                if isinstance(value, (int, float)):
                    out.setdefault(".".join(key), []).append(
                        (step, float(value), time_ms)
                    )
    return out


def oracle_stats(
    paths: list[Path], start_ms: int
) -> dict[str, list[tuple[int, float, int]]]:
    """sys/KEY -> [(whole seconds since start_ms, value, time_ms)] from the stats records."""
    out: dict[str, list[tuple[int, float, int]]] = {}
    for path in paths:
        for record in oracle(path):
            if record.WhichOneof("record_type") != "stats":
                continue
            stamp = record.stats.timestamp
            time_ms = stamp.seconds * 1000 + stamp.nanos // 1_000_000
            for item in record.stats.item:
                out.setdefault(f"sys/{item.key}", []).append(
                    (
                        (time_ms - start_ms) // 1000,
                        float(json.loads(item.value_json)),
                        time_ms,
                    )
                )
    return out


def split(
    metrics: dict[str, list[Any]],
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """(logged metrics, system metrics)."""
    logged = {k: v for k, v in metrics.items() if not k.startswith("sys/")}
    system = {k: v for k, v in metrics.items() if k.startswith("sys/")}
    return logged, system


def series(run: ImportedRun) -> dict[str, list[tuple[int, float, int | None]]]:
    return {
        name: [(p.step, p.value, p.time_ms) for p in points]
        for name, points in run.metrics.items()
    }


def same(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> bool:
    """Equal, NaN equal to NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_reader_matches_wandb_own_decoding(wandb_dir: Path) -> None:
    runs = {r.name: r for r in wandb_reader.read(str(wandb_dir))}
    assert set(runs) == {"baseline", "failing", "resumable"}

    base = runs["baseline"]
    (base_log,) = [p for p in logs(wandb_dir) if base.source_id.endswith(p.stem[4:])]
    assert base.source == "wandb"
    assert base.source_id == f"vision/{base_log.stem[4:]}"
    assert base.params == {
        "lr": 0.1,
        "layers": "[64,32]",
        "optimizer.name": "adam",
        "optimizer.beta1": 0.9,
    }
    assert base.tags == ["resnet", "cifar"]
    assert base.group == "sweep-1"
    assert base.description == "first try"
    assert base.state == "finished"
    expected = oracle_history([base_log])
    assert set(expected) == {"train/loss", "val.acc", "done"}
    logged, system = split(series(base))
    assert same(logged, expected)
    assert base.created_at_ms is not None
    assert same(system, oracle_stats([base_log], base.created_at_ms))
    loss = base.metrics["train/loss"]
    assert [p.step for p in loss] == list(range(21))
    assert loss[3].value == 1 / 4 and math.isnan(loss[20].value)
    assert [(p.step, p.value) for p in base.metrics["done"]] == [(21, 1.0)]
    times = [p.time_ms for p in loss]
    assert times == sorted(times)
    start = next(r.run.start_time for r in oracle(base_log) if r.HasField("run"))
    assert base.created_at_ms == start.seconds * 1000 + start.nanos // 1_000_000
    assert base.created_at_ms is not None and base.created_at_ms <= (times[0] or 0)
    assert base.results["best_acc"] == 0.95
    assert base.results["val.acc"] == 19 / 20
    assert math.isnan(base.results["train/loss"])
    assert set(base.skipped) == {
        "histogram objects (weights): not imported, Tora metrics are numbers",
        "strings (phase): not imported, Tora metrics are numbers",
        (
            "summary values that are not numbers (phase, weights): not imported,"
            " Tora results are numbers"
        ),
    }

    assert runs["failing"].state == "failed"
    assert [(p.step, p.value) for p in runs["failing"].metrics["x"]] == [(0, 1.0)]

    resumed = runs["resumable"]
    assert resumed.source_id == "vision/resume-me"
    assert resumed.params == {"lr": 0.5}
    assert resumed.state == "finished"
    assert [(p.step, p.value) for p in resumed.metrics["loss"]] == [
        (0, 10.0),
        (1, 9.0),
        (2, 8.0),
        (3, 7.0),
        (4, 6.0),
        (3, 97.0),
        (4, 96.0),
        (5, 95.0),
        (6, 94.0),
    ]
    wide = [k for k in resumed.metrics if k.startswith("w")]
    assert len(wide) == WIDE
    assert [(p.step, p.value) for p in resumed.metrics["w2999"]] == [(7, 2999 / 7)]
    resumed_logs = [p for p in logs(wandb_dir) if "resume-me" in p.name]
    assert len(resumed_logs) == 2
    logged, system = split(series(resumed))
    assert same(logged, oracle_history(resumed_logs))
    assert resumed.created_at_ms is not None
    assert same(system, oracle_stats(resumed_logs, resumed.created_at_ms))
    # every run has at least the sample wandb takes as it starts
    assert "sys/memory_percent" in system


def test_reader_accepts_a_run_dir_a_log_or_the_project_dir(wandb_dir: Path) -> None:
    log = next(p for p in logs(wandb_dir) if "resume-me" not in p.name)
    assert len(list(wandb_reader.read(str(log)))) == 1
    assert len(list(wandb_reader.read(str(log.parent)))) == 1
    assert len(list(wandb_reader.read(str(wandb_dir / "wandb")))) == 3
    assert len(list(wandb_reader.read(str(wandb_dir)))) == 3


def inside_a_chunk(data: bytes, near: int) -> int:
    """An offset at or after `near` strictly inside some chunk's data in a .wandb log (LevelDB
    framing: 32 KiB blocks of chunks, each a 7-byte header then its bytes; 7 bytes of W&B
    header first)."""
    block, pos = 0, 7
    while block < len(data):
        end_of_block = min(block + 32 * 1024, len(data))
        if block + pos + 7 > end_of_block:
            block, pos = block + 32 * 1024, 0
            continue
        checksum, length, kind = struct.unpack_from("<IHB", data, block + pos)
        if (checksum, length, kind) == (
            0,
            0,
            0,
        ):  # zeroed: the rest of the block is unused
            block, pos = block + 32 * 1024, 0
            continue
        start = block + pos + 7
        end = start + length
        if length >= 2 and end - 1 > near:
            return max(start + 1, near)
        pos += 7 + length
    raise AssertionError(f"no chunk of the log reaches past byte {near}")


def test_reader_cut_short_or_corrupt_log_keeps_what_came_before(
    wandb_dir: Path, tmp_path: Path
) -> None:
    log = next(
        p
        for p in logs(wandb_dir)
        if any(r.run.display_name == "baseline" for r in oracle(p) if r.HasField("run"))
    )
    data = log.read_bytes()

    cut_dir = tmp_path / "cut" / log.parent.name
    shutil.copytree(log.parent, cut_dir)
    # The process killed mid-record: cut inside a chunk's bytes, found at or after two thirds of
    # the log (a cut at a fixed fraction may land between records, where nothing is cut off).
    (cut_dir / log.name).write_bytes(data[: inside_a_chunk(data, len(data) * 2 // 3)])
    (run,) = wandb_reader.read(str(cut_dir))
    assert run.name == "baseline"
    assert run.state == "failed"
    assert (
        "no exit record: the run crashed or was still running; imported as failed"
        in run.skipped
    )
    assert any(
        "the log ends inside a record at byte" in n
        and "the rest of the log was not read" in n
        for n in run.skipped
    ), run.skipped
    kept = [p.step for p in run.metrics["train/loss"]]
    assert kept and kept == list(range(len(kept)))

    bad_dir = tmp_path / "bad" / log.parent.name
    shutil.copytree(log.parent, bad_dir)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (bad_dir / log.name).write_bytes(bytes(flipped))
    (run,) = wandb_reader.read(str(bad_dir))
    assert any("bad checksum in the chunk at byte" in n for n in run.skipped), (
        run.skipped
    )
    assert run.metrics["train/loss"][0].step == 0


def test_reader_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ToraImportError, match="no such file or directory"):
        list(wandb_reader.read(str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToraImportError, match="holds no W&B run logs"):
        list(wandb_reader.read(str(tmp_path / "empty")))
    fake = tmp_path / "run-abc.wandb"
    fake.write_bytes(b"not a log at all")
    with pytest.raises(ToraImportError, match="is not a W&B transaction log"):
        list(wandb_reader.read(str(fake)))


def ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def test_import_into_tora_then_again_adds_nothing(
    tora: Tora, wandb_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "project"
    shutil.copytree(wandb_dir / "wandb", copy / "wandb", symlinks=True)
    runs_read = {r.name: r for r in wandb_reader.read(str(copy))}
    points = sum(len(p) for r in runs_read.values() for p in r.metrics.values()) + sum(
        len(r.results) for r in runs_read.values()
    )

    first = tora.imported("wandb", str(copy))
    assert "runs: 3 imported, 0 already present" in first, first
    assert f"points: {points:,} added, 0 already present" in first, first
    assert "strings (phase): not imported, Tora metrics are numbers" in first, first

    runs = tora.experiments()
    assert set(runs) == {"baseline", "failing", "resumable"}
    base = runs["baseline"]
    assert tora.params(base) == {
        "lr": 0.1,
        "layers": "[64,32]",
        "optimizer.name": "adam",
        "optimizer.beta1": 0.9,
    }
    assert sorted(base["tags"]) == ["cifar", "resnet"]
    assert base["description"] == "first try"
    assert base["state"] == "finished"
    assert runs["failing"]["state"] == "failed"
    loss = tora.series(base["id"])["train/loss"]
    assert loss[:20] == [(s, 1 / (s + 1)) for s in range(20)]
    assert loss[20] == (20, "NaN")
    results = {r["name"]: r["value"] for r in tora.results(base["id"])}
    assert results["best_acc"] == 0.95
    resumed = tora.series(runs["resumable"]["id"])["loss"]
    assert [s for s, _ in resumed] == [0, 1, 2, 3, 4, 3, 4, 5, 6]
    # times and group: the server's import fields (created_at, times, group)
    assert ms(base["created_at"]) == runs_read["baseline"].created_at_ms
    times = {
        (m["name"], m["step"]): ms(m["created_at"]) for m in tora.metrics(base["id"])
    }
    assert (
        times[("train/loss", 5)]
        == runs_read["baseline"].metrics["train/loss"][5].time_ms
    )
    assert base["group"] == "sweep-1"

    before = tora.counts()
    second = tora.imported("wandb", str(copy))
    assert "runs: 0 imported, 3 already present" in second, second
    assert f"points: 0 added, {points:,} already present" in second, second
    assert tora.counts() == before


def test_reader_a_well_framed_record_that_is_not_a_record_is_noted(
    wandb_dir: Path, tmp_path: Path
) -> None:
    import zlib

    log = next(p for p in logs(wandb_dir) if "resume-me" not in p.name)
    data = log.read_bytes()
    garbage = b"\x12\xff\xff"  # history=2 whose length runs past the end
    chunk = struct.pack("<IHB", zlib.crc32(b"\x01" + garbage), len(garbage), 1)
    first = 7 + 7 + struct.unpack_from("<H", data, 7 + 4)[0]  # after the header record
    broken = tmp_path / log.name
    broken.write_bytes(data[:first] + chunk + garbage + data[first:])
    (run,) = wandb_reader.read(str(broken))
    assert any(
        n.startswith(f"{tmp_path.name}/{log.name}: a record that is not a valid Record")
        for n in run.skipped
    ), run.skipped
    (intact,) = wandb_reader.read(str(log))
    assert same(series(run), series(intact))
