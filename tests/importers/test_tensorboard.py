"""TensorBoard event files written by the real tensorboardX and tensorboard packages, read by
tora's standard-library reader and imported into tora serve (then imported again)."""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
from conftest import Tora
from tora._import import tensorboard_reader
from tora._import.model import ImportedRun, ToraImportError

T0 = 1_700_000_000.0  # walltime of the first logged point, seconds
F32 = struct.Struct("<f")


def f32(x: float) -> float:
    """x as a float32 holds it: what simple_value carries."""
    value: float = F32.unpack(F32.pack(x))[0]
    return value


def write(script: str) -> None:
    """Run a writer script with the real packages (in a process of its own, as a user would)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def write_logdir(logdir: Path) -> None:
    """Two runs: "baseline" by tensorboardX (scalars, NaN and inf, a histogram, an image, text,
    add_scalars, one hparams session) and "keras" by tensorboard's own writer with tensor
    scalars (float32, float64, float16) in train/ and validation/, as TF2 and Keras write them."""
    write(
        f"""
        import numpy as np
        from tensorboardX import SummaryWriter

        with SummaryWriter({str(logdir / "baseline")!r}) as w:
            for step in range(20):
                w.add_scalar("loss", 1 / (step + 1), step, walltime={T0} + step)
                w.add_scalar("train/acc", step / 20, step, walltime={T0} + step + 0.5)
            w.add_scalar("loss", float("nan"), 20, walltime={T0} + 20)
            w.add_scalar("loss", float("inf"), 21, walltime={T0} + 21)
            w.add_histogram("weights", np.arange(10), 0, walltime={T0})
            w.add_histogram("weights", np.arange(10), 1, walltime={T0})
            w.add_image("samples", np.zeros((3, 4, 4)), 0, walltime={T0})
            w.add_text("notes", "hello", 0, walltime={T0})
            w.add_scalars("lr", {{"head": 0.1, "body": 0.01}}, 0, walltime={T0})
            w.add_hparams(
                {{"lr": 0.1, "batch": 32, "opt": "adam", "nesterov": True}},
                {{"hparam/best_acc": 0.95}},
                name="hp",
            )

        import numpy as np
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.scalar import metadata
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        from tensorboard.util import tensor_util

        def scalar(tag, value):
            return summary_pb2.Summary.Value(
                tag=tag,
                metadata=metadata.create_summary_metadata("", ""),
                tensor=tensor_util.make_tensor_proto(value),
            )

        for split, scale in (("train", 1.0), ("validation", 2.0)):
            w = EventFileWriter({str(logdir / "keras")!r} + "/" + split)
            for epoch in range(3):
                values = [
                    scalar("epoch_loss", np.float32(scale / (epoch + 1))),
                    scalar("epoch_precise", np.float64(scale / 3 * epoch)),
                    scalar("epoch_half", np.float16(epoch + 0.5)),
                ]
                event = event_pb2.Event(
                    wall_time={T0} + 100 + epoch,
                    step=epoch,
                    summary=summary_pb2.Summary(value=values),
                )
                w.add_event(event)
            w.close()
        """
    )


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tb") / "logs"
    write_logdir(path)
    return path


def by_name(runs: list[ImportedRun]) -> dict[str, ImportedRun]:
    return {r.name: r for r in runs}


def series(run: ImportedRun, name: str) -> list[tuple[int, float, int | None]]:
    return [(p.step, p.value, p.time_ms) for p in run.metrics[name]]


def test_crc32c_known_answer() -> None:
    assert tensorboard_reader.crc32c(b"123456789") == 0xE3069283
    assert tensorboard_reader.crc32c(b"") == 0


def test_reader_scalars_tensor_scalars_hparams_and_skipped(logdir: Path) -> None:
    runs = by_name(list(tensorboard_reader.read(str(logdir))))
    assert set(runs) == {"baseline", "keras"}

    base = runs["baseline"]
    assert base.source == "tensorboard"
    assert base.source_id.startswith("baseline/events.out.tfevents.")
    assert set(base.metrics) == {
        "loss",
        "train/acc",
        "lr/head",
        "lr/body",
        "hparam/best_acc",
    }
    loss = series(base, "loss")
    assert loss[:20] == [
        (s, f32(1 / (s + 1)), round((T0 + s) * 1000)) for s in range(20)
    ]
    assert loss[20][0] == 20 and math.isnan(loss[20][1])
    assert loss[21] == (21, math.inf, round((T0 + 21) * 1000))
    assert series(base, "train/acc") == [
        (s, f32(s / 20), round((T0 + s + 0.5) * 1000)) for s in range(20)
    ]
    assert series(base, "lr/head") == [(0, f32(0.1), round(T0 * 1000))]
    assert series(base, "lr/body") == [(0, f32(0.01), round(T0 * 1000))]
    assert [(p.step, p.value) for p in base.metrics["hparam/best_acc"]] == [
        (0, f32(0.95))
    ]
    # hparams: numbers that are whole become ints; the one session in hp/ belongs to the run
    assert base.params == {"lr": 0.1, "batch": 32, "opt": "adam", "nesterov": True}
    assert base.created_at_ms == round(T0 * 1000)
    assert base.state == "finished"
    assert sorted(base.skipped) == [
        "histograms (weights): not imported, Tora imports scalars and hparams",
        "images (samples): not imported, Tora imports scalars and hparams",
        "text (notes/text_summary): not imported, Tora imports scalars and hparams",
    ]

    keras = runs["keras"]
    assert set(keras.metrics) == {
        f"{split}/{tag}"
        for split in ("train", "validation")
        for tag in ("epoch_loss", "epoch_precise", "epoch_half")
    }
    times = [round((T0 + 100 + e) * 1000) for e in range(3)]
    assert series(keras, "train/epoch_loss") == [
        (e, f32(1 / (e + 1)), times[e]) for e in range(3)
    ]
    assert series(keras, "validation/epoch_loss") == [
        (e, f32(2 / (e + 1)), times[e]) for e in range(3)
    ]
    assert series(keras, "validation/epoch_precise") == [
        (e, 2 / 3 * e, times[e]) for e in range(3)
    ]
    assert series(keras, "train/epoch_half") == [
        (e, e + 0.5, times[e]) for e in range(3)
    ]
    assert keras.params == {}
    assert keras.skipped == []


def test_reader_logdir_that_is_one_run_and_a_single_event_file(logdir: Path) -> None:
    (one,) = tensorboard_reader.read(str(logdir / "keras"))
    assert one.name == "keras"
    assert "validation/epoch_loss" in one.metrics
    # the same run whether its parent or its own directory is named: imported once either way
    runs = by_name(list(tensorboard_reader.read(str(logdir))))
    assert one.source_id == runs["keras"].source_id
    (base,) = tensorboard_reader.read(str(logdir / "baseline"))
    assert base.source_id == runs["baseline"].source_id
    event_file = next((logdir / "keras" / "train").iterdir())
    (single,) = tensorboard_reader.read(str(event_file))
    assert single.name == "train"
    assert set(single.metrics) == {"epoch_loss", "epoch_precise", "epoch_half"}


def test_reader_sweep_in_one_writer_gives_a_run_per_hparams_session(
    tmp_path: Path,
) -> None:
    write(
        f"""
        from tensorboardX import SummaryWriter

        with SummaryWriter({str(tmp_path / "sweep")!r}) as w:
            for i in range(3):
                w.add_hparams({{"lr": 0.1 * i, "depth": i}}, {{"hparam/acc": 10.0 * i}}, name=f"trial{{i}}")
        """
    )
    runs = by_name(list(tensorboard_reader.read(str(tmp_path))))
    # the writer's own file is empty: no run for it
    assert set(runs) == {"sweep/trial0", "sweep/trial1", "sweep/trial2"}
    for i in range(3):
        run = runs[f"sweep/trial{i}"]
        assert run.params == {"lr": 0.1 * i if i else 0, "depth": i}
        assert [(p.step, p.value) for p in run.metrics["hparam/acc"]] == [(0, 10.0 * i)]


def test_reader_cut_short_or_corrupt_file_keeps_what_came_before(
    logdir: Path, tmp_path: Path
) -> None:
    source = next((logdir / "keras" / "train").iterdir())
    data = source.read_bytes()

    cut = tmp_path / "cut" / "run" / source.name
    cut.parent.mkdir(parents=True)
    cut.write_bytes(data[:-10])  # a writer killed inside its last record
    (run,) = tensorboard_reader.read(str(tmp_path / "cut"))
    assert [p.step for p in run.metrics["epoch_loss"]] == [0, 1]
    (note,) = run.skipped
    assert note.startswith(f"{source.name}: the file ends inside a record at byte ")
    assert "the rest of the file" in note

    bad = tmp_path / "bad" / "run" / source.name
    bad.parent.mkdir(parents=True)
    flipped = bytearray(data)
    flipped[-8] ^= 0xFF  # inside the last record's data
    bad.write_bytes(bytes(flipped))
    (run,) = tensorboard_reader.read(str(tmp_path / "bad"))
    assert [p.step for p in run.metrics["epoch_loss"]] == [0, 1]
    (note,) = run.skipped
    assert "bad data CRC in the record at byte" in note


def test_reader_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ToraImportError, match="no such file or directory"):
        list(tensorboard_reader.read(str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an event file")
    with pytest.raises(ToraImportError, match=r"holds no TensorBoard event files"):
        list(tensorboard_reader.read(str(tmp_path / "empty")))


def ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def test_import_into_tora_then_again_adds_nothing(
    tora: Tora, logdir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "logs"
    shutil.copytree(logdir, copy)
    first = tora.imported("tensorboard", str(copy))
    points = 22 + 20 + 2 + 1 + 18
    assert "runs: 2 imported, 0 already present" in first, first
    assert f"points: {points} added, 0 already present" in first, first
    assert (
        "histograms (weights): not imported, Tora imports scalars and hparams" in first
    ), first

    runs = tora.experiments()
    assert set(runs) == {"baseline", "keras"}
    base = runs["baseline"]
    assert tora.params(base) == {
        "lr": 0.1,
        "batch": 32,
        "opt": "adam",
        "nesterov": True,
    }
    assert ms(base["created_at"]) == round(T0 * 1000)
    loss = tora.series(base["id"])["loss"]
    assert loss[:20] == [(s, f32(1 / (s + 1))) for s in range(20)]
    assert loss[20] == (20, "NaN")
    assert loss[21][0] == 21 and loss[21][1] in ("Infinity", "inf", math.inf)
    times = {
        (m["name"], m["step"]): ms(m["created_at"]) for m in tora.metrics(base["id"])
    }
    assert times[("train/acc", 7)] == round((T0 + 7.5) * 1000)
    keras = tora.series(runs["keras"]["id"])
    assert keras["validation/epoch_precise"] == [(e, 2 / 3 * e) for e in range(3)]

    before = tora.counts()
    second = tora.imported("tensorboard", str(copy))
    assert "runs: 0 imported, 2 already present" in second, second
    assert f"points: 0 added, {points} already present" in second, second
    assert tora.counts() == before


def test_import_of_a_missing_logdir_fails_with_its_name(
    tora: Tora, tmp_path: Path
) -> None:
    done = tora.run_import("tensorboard", str(tmp_path / "nowhere"))
    assert done.returncode != 0
    assert "nowhere" in done.stderr and "no such file or directory" in done.stderr, (
        done.stderr
    )


def frame(record: bytes) -> bytes:
    """One TFRecord with correct CRCs."""
    length = struct.pack("<Q", len(record))
    crc = tensorboard_reader.masked_crc32c
    return (
        length
        + struct.pack("<I", crc(length))
        + record
        + struct.pack("<I", crc(record))
    )


def test_reader_a_well_framed_record_that_is_not_an_event_is_noted(
    logdir: Path, tmp_path: Path
) -> None:
    source = next((logdir / "keras" / "train").iterdir())
    data = source.read_bytes()
    first_len = struct.unpack_from("<Q", data)[0] + 16  # the file_version event
    broken = tmp_path / "run" / source.name
    broken.parent.mkdir()
    broken.write_bytes(data[:first_len] + frame(b"\x2a\xff\xff") + data[first_len:])
    (run,) = tensorboard_reader.read(str(tmp_path))
    assert [p.step for p in run.metrics["epoch_loss"]] == [0, 1, 2]
    (note,) = run.skipped
    assert note.startswith(
        f"{source.name}: a record at byte {first_len} is not a valid Event"
    )
