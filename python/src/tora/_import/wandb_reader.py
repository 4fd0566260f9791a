"""W&B run directories (``wandb/offline-run-*/``, and online ``run-*/`` ones) as Tora runs, read
with the standard library.

A run's data is its transaction log ``run-<id>.wandb``: a 7-byte header (``:W&B``, magic 0xBEE1,
version 0), then LevelDB log blocks of 32 KiB holding chunks (uint32 checksum, uint16 length,
uint8 type FULL/FIRST/MIDDLE/LAST, data). The checksum is zlib's CRC-32 (IEEE) over the type byte
and the data (wandb-core writes ``CRCAlgoIEEE``: core/internal/transactionlog/writer.go). Each
record is a ``Record`` protobuf (wandb/proto/wandb_internal.proto), of which these fields are read:

- ``Record``: history=2, summary=3, config=5, stats=7 (timestamp=2, item=3), artifact=8,
  tbrecord=9, run=17, exit=18.
- ``RunRecord``: run_id=1, project=3, config=4, summary=5, run_group=6, job_type=7,
  display_name=8, notes=9, tags=10, start_time=17 (Timestamp: seconds=1, nanos=2).
- ``HistoryRecord``: item=1, step=2 (num=1); ``ConfigRecord``/``SummaryRecord``: update=1,
  remove=2; their items: key=1, nested_key=2 (repeated), value_json=16.
- ``RunExitRecord``: exit_code=1.

What becomes what:

- History: ``_step`` is the step, ``_timestamp`` (seconds) the time. Numbers (and booleans, as
  0/1) become metric points; NaN and infinities are kept. Nested keys are joined with ``.``, as W&B
  shows them (``{"val": {"acc": 1}}`` → ``val.acc``). Media and other objects (a value with a
  ``_type``: images, tables, histograms, ...) and strings are counted in ``skipped``. Keys starting
  with ``_`` are W&B's own bookkeeping.
- System metrics samples (W&B's ``stats`` records, every 15 s or so) become metrics
  ``sys/<W&B's key>`` (``sys/cpu``, ``sys/gpu.0.gpu``, ...), stepped by whole seconds since the
  run started, as Tora's own system metrics are.
- Config → params (nested dicts flattened with ``.``, lists as JSON text; ``_wandb`` left out);
  the final summary's numbers → results; display name, tags, group, notes; ``start_time`` →
  created_at; exit code ≠ 0 → ``failed``; no exit record (a crash, or a run still going) →
  ``failed`` with a note.
- A run resumed offline writes a second directory with the same run id: directories of one id are
  merged, in the order they were started, into one run.
- When the log has no summary or no start time, ``files/wandb-summary.json`` and
  ``files/wandb-metadata.json`` fill in.

A chunk with a bad checksum or a log cut short (the process killed) ends the file: the records
before it are imported and ``skipped`` says where. Records are read one block at a time.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from . import _protowire as pw
from .model import ImportedRun, ParamValue, Point, ToraImportError

SOURCE = "wandb"

# --- the LevelDB log framing --------------------------------------------------------------------

_BLOCK = 32 * 1024
_CHUNK_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_WANDB_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)


class _CorruptError(Exception):
    """Where a log stops being readable, and why; the records before it were good."""


def _check_header(block: bytes, name: str) -> None:
    if block[:4] != _WANDB_HEADER[:4]:
        raise ToraImportError(f"{name} is not a W&B transaction log (no :W&B header)")
    if block[:7] != _WANDB_HEADER:
        raise ToraImportError(f"{name} is a W&B log of an unknown version (header {block[:7]!r})")


def records(f: BinaryIO, name: str) -> Iterator[bytes]:
    """Each record of a .wandb log, in order; raises _CorruptError where the log goes bad."""
    block = f.read(_BLOCK)
    _check_header(block, name)
    block_start = 0
    pos = 7
    pending: list[bytes] | None = None
    pending_at = 0
    while True:
        if pos + 7 > len(block):
            if len(block) < _BLOCK:  # the last block
                if pending is not None:
                    raise _CorruptError(f"the log ends inside a record at byte {pending_at}")
                if pos < len(block):
                    raise _CorruptError(f"the log ends inside a record at byte {block_start + pos} (a cut header)")
                return
            block_start += _BLOCK
            block = f.read(_BLOCK)
            pos = 0
            continue
        checksum, length, kind = _CHUNK_HEADER.unpack_from(block, pos)
        at = block_start + pos
        if checksum == 0 and length == 0 and kind == 0:
            # A zeroed chunk header: unused space up to the end of a block (the reader skips it).
            if pending is not None:
                raise _CorruptError(f"a record is cut off by zeroes at byte {at}")
            pos = len(block)
            continue
        start = pos + 7
        end = start + length
        if end > len(block):
            if len(block) < _BLOCK:
                raise _CorruptError(f"the log ends inside a record at byte {at} (the writer stopped mid-record)")
            raise _CorruptError(f"a chunk at byte {at} claims more bytes than its block holds")
        if zlib.crc32(block[pos + 6 : end]) != checksum:
            raise _CorruptError(f"bad checksum in the chunk at byte {at}")
        data = block[start:end]
        pos = end
        if kind == _FULL and pending is None:
            yield data
        elif kind == _FIRST and pending is None:
            pending = [data]
            pending_at = at
        elif kind == _MIDDLE and pending is not None:
            pending.append(data)
        elif kind == _LAST and pending is not None:
            pending.append(data)
            yield b"".join(pending)
            pending = None
        else:
            raise _CorruptError(f"a chunk of type {kind} out of order at byte {at}")


# --- records ------------------------------------------------------------------------------------

Path_ = tuple[str, ...]


def _item(buf: bytes) -> tuple[Path_, str]:
    """A History/Config/Summary item: its key path and its value as JSON text.

    The loop is the general field walk specialised to this message's three fields, because a
    run's log holds one item per logged value (and again per summary update)."""
    key = ""
    nested: list[str] = []
    value = "null"
    pos = 0
    end = len(buf)
    while pos < end:
        tag = buf[pos]
        if tag == 0x82 and pos + 1 < end and buf[pos + 1] == 0x01:  # value_json=16, length-delimited
            pos += 2
            number = 16
        elif tag in (0x0A, 0x12):  # key=1, nested_key=2, length-delimited
            pos += 1
            number = tag >> 3
        else:
            return _item_general(buf)
        size = buf[pos] if pos < end else 0x80
        if size < 0x80:
            pos += 1
        else:
            size, pos = pw.varint(buf, pos)
        if pos + size > end:
            raise pw.DecodeError(f"field {number} runs past the end of the message")
        text = buf[pos : pos + size].decode("utf-8", errors="replace")
        pos += size
        if number == 16:
            value = text
        elif number == 1:
            key = text
        else:
            nested.append(text)
    return (tuple(nested) if nested else (key,)), value


def _item_general(buf: bytes) -> tuple[Path_, str]:
    key = ""
    nested: list[str] = []
    value = "null"
    for number, payload in pw.fields(buf):
        if number == 1:
            key = pw.string(payload)
        elif number == 2:
            nested.append(pw.string(payload))
        elif number == 16:
            value = pw.string(payload)
    return (tuple(nested) if nested else (key,)), value


def _updates(buf: bytes, into: dict[Path_, str]) -> None:
    """A ConfigRecord or SummaryRecord applied to the values so far."""
    for number, payload in pw.fields(buf):
        if number == 1:
            path, value = _item(pw.message(payload))
            into[path] = value
        elif number == 2:
            path, _ = _item(pw.message(payload))
            into.pop(path, None)


def _number(text: str) -> float | None:
    """A JSON number (or boolean, as 0/1) as a float; None for anything else."""
    try:
        return float(text)  # JSON numbers, NaN and Infinity, without json.loads for each point
    except ValueError:
        pass
    if text == "true":
        return 1.0
    if text == "false":
        return 0.0
    return None


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("_type")
        return f"{kind} objects" if isinstance(kind, str) else "objects"
    if isinstance(value, str):
        return "strings"
    if isinstance(value, list):
        return "lists"
    return "nulls" if value is None else f"{type(value).__name__} values"


def _leaves(path: Path_, value: Any) -> Iterator[tuple[Path_, Any]]:
    """A decoded value flattened: nested dicts become longer paths; objects with a _type stay whole."""
    if isinstance(value, dict) and value and "_type" not in value:
        for k, v in value.items():
            yield from _leaves((*path, str(k)), v)
    else:
        yield path, value


_NOT_A_NUMBER = "Tora metrics are numbers"


@dataclass
class _Run:
    """One run's state while its log (or logs, when resumed) is read."""

    run_id: str
    project: str = ""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    group: str = ""
    job_type: str = ""
    notes: str = ""
    start_ms: int | None = None
    config: dict[Path_, str] = field(default_factory=dict)
    summary: dict[Path_, str] = field(default_factory=dict)
    saw_summary: bool = False
    exit_code: int | None = None
    metrics: dict[str, list[Point]] = field(default_factory=dict)
    # (what, why) -> key -> how many values
    skipped: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    notes_out: list[str] = field(default_factory=list)

    def skip(self, what: str, key: str, why: str = _NOT_A_NUMBER) -> None:
        keys = self.skipped.setdefault((what, why), {})
        keys[key] = keys.get(key, 0) + 1

    def point(self, name: str, point: Point) -> None:
        points = self.metrics.get(name)
        if points is None:
            points = self.metrics[name] = []
        points.append(point)


def _run_record(run: _Run, buf: bytes) -> None:
    tags: list[str] = []
    for number, payload in pw.fields(buf):
        if number == 1:
            run.run_id = pw.string(payload) or run.run_id
        elif number == 3:
            run.project = pw.string(payload) or run.project
        elif number == 4:
            _updates(pw.message(payload), run.config)
        elif number == 5:
            run.saw_summary = True
            _updates(pw.message(payload), run.summary)
        elif number == 6:
            run.group = pw.string(payload) or run.group
        elif number == 7:
            run.job_type = pw.string(payload) or run.job_type
        elif number == 8:
            run.name = pw.string(payload) or run.name
        elif number == 9:
            run.notes = pw.string(payload) or run.notes
        elif number == 10:
            tags.append(pw.string(payload))
        elif number == 17 and run.start_ms is None:
            seconds = nanos = 0
            for n, p in pw.fields(pw.message(payload)):
                if n == 1:
                    seconds = pw.int64(p)
                elif n == 2:
                    nanos = pw.int64(p)
            if seconds or nanos:
                run.start_ms = seconds * 1000 + nanos // 1_000_000
    if tags:
        run.tags = tags


def _history(run: _Run, buf: bytes) -> None:
    items: list[tuple[Path_, str]] = []
    step_num = 0
    for number, payload in pw.fields(buf):
        if number == 1:
            items.append(_item(pw.message(payload)))
        elif number == 2:
            for n, p in pw.fields(pw.message(payload)):
                if n == 1:
                    step_num = pw.int64(p)
    step = step_num
    time_ms: int | None = None
    for path, text in items:
        if path == ("_step",):
            value = _number(text)
            if value is not None and math.isfinite(value):
                step = int(value)
        elif path == ("_timestamp",):
            value = _number(text)
            if value is not None and math.isfinite(value):
                time_ms = round(value * 1000)
    for name, leaf in _values(items):
        if isinstance(leaf, float):
            run.point(name, Point(step, leaf, time_ms))
        else:
            run.skip(_describe(leaf), name)


def _values(items: Iterable[tuple[Path_, str]]) -> Iterator[tuple[str, Any]]:
    """Each logged value by its dotted name: a number as a float, anything else decoded from JSON.

    W&B writes an object (an image, a histogram, ...) as several items under one path, one of
    them ``_type``; such an object comes out once, as a dict holding its ``_type``. Keys starting
    with ``_`` (W&B's ``_step``, ``_runtime``, ``_timestamp``, ``_wandb``) are left out.
    """
    objects: dict[Path_, Any] = {}
    for path, text in items:
        if len(path) > 1 and path[-1] == "_type":
            objects[path[:-1]] = _json(text)
    for path, text in items:
        if path[0].startswith("_"):
            continue
        if objects and any(path[:i] in objects for i in range(1, len(path))):
            if path[-1] == "_type" and path[:-1] in objects:
                yield ".".join(path[:-1]), {"_type": objects[path[:-1]]}
            continue
        num = _number(text)
        if num is not None:
            yield ".".join(path), num
            continue
        for leaf_path, leaf in _leaves(path, _json(text)):
            if isinstance(leaf, (int, float)):  # bool is an int: True -> 1.0
                yield ".".join(leaf_path), float(leaf)
            else:
                yield ".".join(leaf_path), leaf


def _stats(run: _Run, buf: bytes) -> None:
    """A system metrics sample: each number as ``sys/<W&B's key>``, at whole seconds since the
    run started (Tora's step for system metrics), on the sample's own time."""
    time_ms: int | None = None
    items: list[tuple[str, str]] = []
    for number, payload in pw.fields(buf):
        if number == 2:
            seconds = nanos = 0
            for n, p in pw.fields(pw.message(payload)):
                if n == 1:
                    seconds = pw.int64(p)
                elif n == 2:
                    nanos = pw.int64(p)
            time_ms = seconds * 1000 + nanos // 1_000_000
        elif number == 3:
            path, raw = _item(pw.message(payload))
            items.append((".".join(path), raw))
    if time_ms is None:
        return
    if run.start_ms is None:
        run.start_ms = time_ms
    step = max(0, (time_ms - run.start_ms) // 1000)
    for key, text in items:
        sample = _number(text)
        if sample is None:
            run.skip("system metrics that are not numbers", key)
        else:
            run.point(f"sys/{key}", Point(step, sample, time_ms))


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _read_log(run: _Run, path: Path) -> None:
    where = f"{path.parent.name}/{path.name}"
    offset_note = ""
    try:
        with path.open("rb") as f:
            try:
                for data in records(f, str(path)):
                    try:
                        _record(run, data)
                    except pw.DecodeError as e:
                        run.notes_out.append(f"{where}: a record that is not a valid Record ({e}); skipped")
            except _CorruptError as e:
                offset_note = str(e)
    except OSError as e:
        raise ToraImportError(f"{path}: cannot be read ({e.strerror or e})") from e
    if offset_note:
        run.notes_out.append(f"{where}: {offset_note}; the rest of the log was not read")


def _record(run: _Run, data: bytes) -> None:
    for number, payload in pw.fields(data):
        if number == 2:
            _history(run, pw.message(payload))
        elif number == 3:
            run.saw_summary = True
            _updates(pw.message(payload), run.summary)
        elif number == 5:
            _updates(pw.message(payload), run.config)
        elif number == 7:
            _stats(run, pw.message(payload))
        elif number == 8:
            run.skip("artifacts", "", "the importer brings metrics, params and results")
        elif number == 9:
            run.skip("TensorBoard sync records", "", "import the TensorBoard logdir with `tora import tensorboard`")
        elif number == 17:
            _run_record(run, pw.message(payload))
        elif number == 18:
            code = 0
            for n, p in pw.fields(pw.message(payload)):
                if n == 1:
                    code = pw.int64(p)
            run.exit_code = code


# --- the files/ fallbacks -----------------------------------------------------------------------


def _fallbacks(run: _Run, run_dir: Path) -> None:
    files = run_dir / "files"
    if not run.saw_summary:
        summary = _load_json(files / "wandb-summary.json")
        if isinstance(summary, dict):
            for key, value in summary.items():
                run.summary[(str(key),)] = json.dumps(value)
    if run.start_ms is None:
        meta = _load_json(files / "wandb-metadata.json")
        started = meta.get("startedAt") if isinstance(meta, dict) else None
        if isinstance(started, str):
            try:
                when = datetime.fromisoformat(started.replace("Z", "+00:00"))
                run.start_ms = round(when.timestamp() * 1000)
            except ValueError:
                pass
    if not run.config and (files / "config.yaml").is_file():
        run.notes_out.append(
            f"{run_dir.name}/files/config.yaml: not read (YAML needs a parser outside the standard library); "
            "the log held no config"
        )


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- from the state to an ImportedRun -----------------------------------------------------------


def _param(value: Any) -> ParamValue:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _finish(run: _Run) -> ImportedRun:
    source_id = f"{run.project}/{run.run_id}" if run.project else run.run_id
    out = ImportedRun(
        source=SOURCE,
        source_id=source_id,
        name=run.name or run.run_id,
        created_at_ms=run.start_ms,
        tags=list(run.tags),
        group=run.group or None,
        description=run.notes or None,
        metrics=run.metrics,
    )
    for path, text in run.config.items():
        if path[0] == "_wandb":
            continue
        for leaf_path, leaf in _leaves(path, _json(text)):
            out.params[".".join(leaf_path)] = _param(leaf)
    if run.job_type:
        out.params.setdefault("job_type", run.job_type)
    not_numbers: dict[str, int] = {}
    for name, leaf in _values(run.summary.items()):
        if isinstance(leaf, float):
            out.results[name] = leaf
        else:
            not_numbers[name] = 1
    if not_numbers:
        run.skipped[("summary values that are not numbers", "Tora results are numbers")] = not_numbers
    if run.exit_code is None:
        out.state = "failed"
        out.skipped.append("no exit record: the run crashed or was still running; imported as failed")
    elif run.exit_code != 0:
        out.state = "failed"
    out.skipped.extend(run.notes_out)
    for (what, why), keys in sorted(run.skipped.items()):  # no counts: equal notes add up across runs
        shown = sorted(k for k in keys if k)
        where = f" ({', '.join(shown[:5])}{', ...' if len(shown) > 5 else ''})" if shown else ""
        out.skipped.append(f"{what}{where}: not imported, {why}")
    return out


# --- finding the logs ---------------------------------------------------------------------------

_LOG_NAME = re.compile(r"run-(.+)\.wandb$")


def _logs_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("run-*.wandb") if p.is_file())


def _find_logs(root: Path) -> list[Path]:
    """The .wandb logs that ``root`` names: a log, a run directory, a directory of run
    directories, or a directory holding ``wandb/``."""
    if root.is_file():
        return [root]
    own = _logs_in(root)
    if own:
        return own
    for base in (root, root / "wandb"):
        if not base.is_dir():
            continue
        found: list[Path] = []
        for child in sorted(base.iterdir()):
            if child.is_dir() and not child.is_symlink():  # latest-run is a link to one of them
                found.extend(_logs_in(child))
        if found:
            return found
    return []


def _run_id(log: Path) -> str:
    match = _LOG_NAME.search(log.name)
    return match.group(1) if match else log.stem


def _started_order(log: Path) -> str:
    # offline-run-YYYYMMDD_HHMMSS-ID: the directory name sorts by start time
    name = log.parent.name
    return name.split("-", 2)[-1] if name.startswith(("offline-run-", "run-")) else name


def read(path: str) -> Iterator[ImportedRun]:
    """The runs under a W&B run directory, a directory of them, or a ``wandb/`` parent; see the
    module doc."""
    root = Path(path).expanduser()
    if not root.exists():
        raise ToraImportError(f"{path}: no such file or directory")
    logs = _find_logs(root)
    if not logs:
        raise ToraImportError(
            f"{path} holds no W&B run logs (run-<id>.wandb in wandb/offline-run-*/ or wandb/run-*/ directories)"
        )
    by_id: dict[str, list[Path]] = {}
    for log in logs:
        by_id.setdefault(_run_id(log), []).append(log)
    for run_id, group in by_id.items():
        yield _read_run(run_id, sorted(group, key=_started_order))


def _read_run(run_id: str, logs: Iterable[Path]) -> ImportedRun:
    run = _Run(run_id=run_id)
    for log in logs:
        run.exit_code = None  # a resumed run's own exit record decides
        _read_log(run, log)
        _fallbacks(run, log.parent)
    return _finish(run)
