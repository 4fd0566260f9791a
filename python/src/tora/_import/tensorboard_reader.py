"""TensorBoard event files (``events.out.tfevents.*``) as Tora runs, read with the standard library.

An event file is a sequence of TFRecords (uint64 length, masked CRC-32C of the length, the data,
masked CRC-32C of the data), each holding one ``Event`` protobuf. Only the fields needed are
decoded (field numbers from tensorboard/compat/proto/{event,summary,tensor,tensor_shape}.proto and
plugins/hparams/plugin_data.proto):

- ``Event``: wall_time=1 (double), step=2 (int64), summary=5; graphs and run metadata are counted.
- ``Summary.Value``: tag=1, simple_value=2 (float), tensor=8, metadata=9 (plugin_data=1 →
  plugin_name=1, content=2); image=4, histo=5, audio=6 are counted as skipped.
- ``TensorProto``: dtype=1, tensor_shape=2 (dim=2 → size=1), tensor_content=4, float_val=5,
  double_val=6, int_val=7, int64_val=10, bool_val=11, half_val=13, uint32_val=16, uint64_val=17.
- hparams plugin data: session_start_info=3 (hparams=1 map<string, google.protobuf.Value>,
  group_name=4, start_time_secs=5), session_end_info=4 (status=1).

Scalars (``simple_value``, and one-element tensors of a numeric type written by the ``scalars``
plugin or with no plugin, as TF2 and Keras write them) become metric points with the event's step
and ``time_ms = wall_time * 1000``. NaN and infinities are kept. Images, histograms, audio, text
and other plugins' data are counted in ``skipped``.

Which directories form a run (TensorBoard calls every directory with event files a run; a
training job usually writes several, such as Keras's ``train/`` and ``validation/``):

- If LOGDIR itself holds event files, or only has subdirectories named like the splits of one
  training (``train``, ``validation``, ``val``, ``eval``, ``test``, as Keras writes), LOGDIR is
  one run (named after it); otherwise each top-level subdirectory holding event files (at any
  depth) is one run, named after the subdirectory.
- Event files in nested directories are merged into their run, their tags prefixed with the path
  below the run: ``run1/eval/…`` logging ``loss`` gives the metric ``eval/loss``. A directory path
  that already starts with the tag is not repeated (``add_scalars("loss", {"train": …})`` writes
  tag ``loss`` under ``loss/train/`` or ``loss_train/``: the metric is ``loss/train`` or
  ``loss_train``).
- hparams sessions (``add_hparams`` writes each into a subdirectory of its own): one session in a
  run's subdirectory gives the run its params, and the session's metrics keep their own names;
  several sessions under one run (a sweep logged through one writer) are each a run of their own,
  named ``RUN/SUBDIR``.
- A run with neither metrics nor params (the empty file a writer leaves) is not imported.

A record with a bad CRC or a file cut short (a writer killed mid-record) ends that file: what came
before is imported and a line in ``skipped`` says where and why. Files are read one record at a
time, so memory holds the points, never a whole file.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import _protowire as pw
from .model import ImportedRun, ParamValue, Point, ToraImportError

SOURCE = "tensorboard"

# --- CRC-32C (Castagnoli), table-driven, and TFRecord's mask -------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- TFRecord framing ----------------------------------------------------------------------------

_LENGTH = struct.Struct("<QI")
_CRC = struct.Struct("<I")


class _CorruptError(Exception):
    """Where a file stops being readable, and why; the records before it were good."""


def records(f: BinaryIO, size: int) -> Iterator[bytes]:
    """Each record's data, in order; raises _CorruptError at a bad CRC or a cut-short record."""
    offset = 0
    length_crcs: dict[bytes, int] = {}  # a stream of scalars has few distinct record lengths
    while True:
        head = f.read(12)
        if not head:
            return
        if len(head) < 12:
            raise _CorruptError(f"the file ends inside a record header at byte {offset}")
        length, length_crc = _LENGTH.unpack(head)
        length_bytes = head[:8]
        expected = length_crcs.get(length_bytes)
        if expected is None:
            if len(length_crcs) > 4096:
                length_crcs.clear()
            expected = length_crcs[length_bytes] = masked_crc32c(length_bytes)
        if expected != length_crc:
            raise _CorruptError(f"bad length CRC at byte {offset}")
        if offset + 16 + length > size:
            raise _CorruptError(f"the file ends inside a record at byte {offset} (a writer stopped mid-record)")
        data = f.read(length)
        tail = f.read(4)
        if len(data) < length or len(tail) < 4:
            raise _CorruptError(f"the file ends inside a record at byte {offset} (a writer stopped mid-record)")
        if masked_crc32c(data) != _CRC.unpack(tail)[0]:
            raise _CorruptError(f"bad data CRC in the record at byte {offset}")
        offset += 16 + length
        yield data


# --- Event, Summary, TensorProto -----------------------------------------------------------------

_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_UINT8, _DT_INT16, _DT_INT8 = 1, 2, 3, 4, 5, 6
_DT_INT64, _DT_BOOL, _DT_BFLOAT16, _DT_UINT16, _DT_HALF, _DT_UINT32, _DT_UINT64 = 9, 10, 14, 17, 19, 22, 23

# dtype -> (struct format of one element in tensor_content, the repeated *_val field holding it)
_SCALAR_DTYPES: dict[int, tuple[str, int]] = {
    _DT_FLOAT: ("<f", 5),
    _DT_DOUBLE: ("<d", 6),
    _DT_HALF: ("<e", 13),
    _DT_BFLOAT16: ("<H", 13),
    _DT_INT32: ("<i", 7),
    _DT_INT16: ("<h", 7),
    _DT_INT8: ("<b", 7),
    _DT_UINT8: ("<B", 7),
    _DT_UINT16: ("<H", 7),
    _DT_INT64: ("<q", 10),
    _DT_BOOL: ("<?", 11),
    _DT_UINT32: ("<I", 16),
    _DT_UINT64: ("<Q", 17),
}


def _bfloat16(bits: int) -> float:
    value: float = struct.unpack("<f", struct.pack("<I", (bits & 0xFFFF) << 16))[0]
    return value


def _tensor_scalar(buf: bytes) -> float | str:
    """The value of a one-element numeric tensor, or why it is not one (a short description)."""
    dtype = 0
    dims: list[int] = []
    content = b""
    vals: dict[int, list[pw.Payload]] = {}
    for number, payload in pw.fields(buf):
        if number == 1:
            dtype = pw.uint(payload)
        elif number == 2:
            for n, dim in pw.fields(pw.message(payload)):
                if n == 2:
                    size = next((pw.int64(v) for k, v in pw.fields(pw.message(dim)) if k == 1), 0)
                    dims.append(size)
        elif number == 4:
            content = pw.message(payload)
        else:
            vals.setdefault(number, []).append(payload)
    if dtype not in _SCALAR_DTYPES:
        return f"tensors of dtype {dtype}"
    if math.prod(dims) != 1:
        return "tensors of shape [" + ",".join(map(str, dims)) + "]"
    fmt, val_field = _SCALAR_DTYPES[dtype]
    if content:
        if len(content) < struct.calcsize(fmt):
            return "empty tensors"
        (raw,) = struct.unpack_from(fmt, content)
        return _bfloat16(raw) if dtype == _DT_BFLOAT16 else float(raw)
    payloads = vals.get(val_field)
    if not payloads:
        return 0.0  # proto3: a scalar holding zero may be written with no value at all
    first = payloads[0]
    if dtype in (_DT_FLOAT, _DT_DOUBLE):
        data = pw.message(first)
        if dtype == _DT_FLOAT:
            return pw.float32(data[:4]) if len(data) >= 4 else "empty tensors"
        return pw.double(data[:8]) if len(data) >= 8 else "empty tensors"
    ints = pw.packed_varints(first)
    if not ints:
        return 0.0
    raw_int = ints[0]
    if dtype == _DT_HALF:
        half: float = struct.unpack("<e", struct.pack("<H", raw_int & 0xFFFF))[0]
        return half
    if dtype == _DT_BFLOAT16:
        return _bfloat16(raw_int)
    if dtype in (_DT_INT32, _DT_INT16, _DT_INT8, _DT_INT64):
        return float(pw.int64(raw_int))
    return float(raw_int)


def _protobuf_value(buf: bytes) -> tuple[bool, ParamValue]:
    """A google.protobuf.Value as a param: (True, value), or (False, None) for a struct or list."""
    for number, payload in pw.fields(buf):
        if number == 1:
            return True, None
        if number == 2:
            value = pw.double(payload)
            return True, int(value) if value.is_integer() and abs(value) < 2**53 else value
        if number == 3:
            return True, pw.string(payload)
        if number == 4:
            return True, bool(pw.uint(payload))
        if number in (5, 6):
            return False, None
    return True, None


_STATUS_FAILURE = 2


@dataclass
class _Part:
    """What the event files of one directory hold."""

    rel: str  # the directory below its run's root, "" for the root itself (posix separators)
    metrics: dict[str, list[Point]] = field(default_factory=dict)
    params: dict[str, ParamValue] = field(default_factory=dict)
    has_session: bool = False
    group: str | None = None
    failed: bool = False
    start_ms: int | None = None
    first_file: str = ""
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> tag -> values
    notes: list[str] = field(default_factory=list)

    def skip(self, kind: str, tag: str) -> None:
        tags = self.skipped.setdefault(kind, {})
        tags[tag] = tags.get(tag, 0) + 1

    def metric_name(self, tag: str) -> str:
        rel = self.rel
        if not rel or self.has_session:
            return tag
        if rel == tag or rel.startswith((tag + "/", tag + "_")):
            return rel
        return f"{rel}/{tag}"


def _hparams(part: _Part, content: bytes) -> None:
    for number, payload in pw.fields(content):
        if number == 3:  # session_start_info
            part.has_session = True
            for n, p in pw.fields(pw.message(payload)):
                if n == 1:  # map entry: key=1, value=2
                    key = ""
                    ok, value = True, None
                    for k, v in pw.fields(pw.message(p)):
                        if k == 1:
                            key = pw.string(v)
                        elif k == 2:
                            ok, value = _protobuf_value(pw.message(v))
                    if ok:
                        part.params[key] = value
                    else:
                        part.skip("hparams with a struct or list value", key)
                elif n == 4:
                    part.group = pw.string(p) or None
        elif number == 4:  # session_end_info
            for n, p in pw.fields(pw.message(payload)):
                if n == 1 and pw.uint(p) == _STATUS_FAILURE:
                    part.failed = True


_VALUE_KINDS = {3: "histograms", 4: "images", 5: "histograms", 6: "audio"}
_RUN_METADATA = "graphs and run metadata"


def _event(part: _Part, data: bytes) -> None:
    wall = 0.0
    step = 0
    summary = b""
    for number, payload in pw.fields(data):
        if number == 1:
            wall = pw.double(payload)
        elif number == 2:
            step = pw.int64(payload)
        elif number == 5:
            summary = pw.message(payload)
        elif number in (4, 8, 9):
            part.skip(_RUN_METADATA, "(graph)" if number != 8 else "(run metadata)")
    time_ms = round(wall * 1000)
    if wall and (part.start_ms is None or time_ms < part.start_ms):
        part.start_ms = time_ms
    if summary:
        for number, value_buf in pw.fields(summary):
            if number == 1:
                _summary_value(part, pw.message(value_buf), step, time_ms)


def _summary_value(part: _Part, buf: bytes, step: int, time_ms: int) -> None:
    tag = ""
    simple: float | None = None
    tensor: bytes | None = None
    plugin = ""
    content = b""
    kind = ""
    for n, p in pw.fields(buf):
        if n == 1:
            tag = pw.string(p)
        elif n == 2:
            simple = pw.float32(p)
        elif n == 8:
            tensor = pw.message(p)
        elif n == 9:
            for m, q in pw.fields(pw.message(p)):
                if m == 1:  # plugin_data
                    for k, v in pw.fields(pw.message(q)):
                        if k == 1:
                            plugin = pw.string(v)
                        elif k == 2:
                            content = pw.message(v)
        elif n in _VALUE_KINDS:
            kind = _VALUE_KINDS[n]
    if plugin == "hparams":
        _hparams(part, content)
        return
    if simple is None and tensor is not None and plugin in ("scalars", ""):
        scalar = _tensor_scalar(tensor)
        if isinstance(scalar, str):
            part.skip(scalar, tag)
            return
        simple = scalar
    if simple is None:
        part.skip(kind or plugin or "values with no data", tag)
        return
    name = part.metric_name(tag)
    points = part.metrics.get(name)
    if points is None:
        points = part.metrics[name] = []
    points.append(Point(step, simple, time_ms))


_WALL_STEP = struct.Struct("<d")
_F32 = struct.Struct("<f")


def _simple_scalar(part: _Part, data: bytes) -> bool:
    """The shape most events have, decoded without the general walk: wall_time, a step below
    2**28, and a summary of one value holding a tag (< 128 bytes) and a simple_value. False
    (nothing done) for any other shape."""
    size = len(data)
    if size < 20 or data[0] != 0x09 or data[9] != 0x10:
        return False
    step = 0
    pos = 10
    for shift in (0, 7, 14, 21):
        b = data[pos]
        pos += 1
        step |= (b & 0x7F) << shift
        if b < 0x80:
            break
    else:
        return False
    # summary=5 (size), value=1 (size), tag=1 (size, text), simple_value=2 (4 bytes), and no more
    tag_size = data[pos + 5] if size > pos + 5 else 0x80
    end = pos + 6 + tag_size
    if (
        tag_size >= 0x80
        or end + 5 != size
        or data[pos] != 0x2A
        or data[pos + 1] != size - pos - 2
        or data[pos + 2] != 0x0A
        or data[pos + 3] != size - pos - 4
        or data[pos + 4] != 0x0A
        or data[end] != 0x15
    ):
        return False
    wall: float = _WALL_STEP.unpack_from(data, 1)[0]
    value: float = _F32.unpack_from(data, end + 1)[0]
    time_ms = round(wall * 1000)
    if part.start_ms is None or time_ms < part.start_ms:
        part.start_ms = time_ms
    name = part.metric_name(data[pos + 6 : end].decode("utf-8", errors="replace"))
    points = part.metrics.get(name)
    if points is None:
        points = part.metrics[name] = []
    points.append(Point(step, value, time_ms))
    return True


def _read_dir(directory: Path, rel: str, files: list[str]) -> _Part:
    part = _Part(rel=rel, first_file=files[0])
    for name in files:
        path = directory / name
        where = f"{rel}/{name}" if rel else name
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                offset = 0
                try:
                    for data in records(f, size):
                        try:
                            if not _simple_scalar(part, data):
                                _event(part, data)
                        except pw.DecodeError as e:
                            part.notes.append(f"{where}: a record at byte {offset} is not a valid Event ({e}); skipped")
                        offset += 16 + len(data)
                except _CorruptError as e:
                    part.notes.append(f"{where}: {e}; the rest of the file ({size - offset} bytes) was not read")
        except OSError as e:
            part.notes.append(f"{where}: could not be read ({e.strerror or e})")
    return part


# --- which directories form a run ----------------------------------------------------------------


def _is_event_file(name: str) -> bool:
    return "tfevents" in name


def _event_dirs(root: Path) -> dict[str, list[str]]:
    """Every directory under ``root`` holding event files: posix path relative to root -> names."""
    found: dict[str, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        names = sorted(n for n in filenames if _is_event_file(n))
        if names:
            rel = Path(dirpath).relative_to(root).as_posix()
            found["" if rel == "." else rel] = names
    return found


def _run(name: str, source_id: str, parts: list[_Part]) -> ImportedRun | None:
    run = ImportedRun(source=SOURCE, source_id=source_id, name=name)
    skipped: dict[str, dict[str, int]] = {}
    starts = [p.start_ms for p in parts if p.start_ms is not None]
    run.created_at_ms = min(starts) if starts else None
    for part in parts:
        for metric, points in part.metrics.items():
            run.metrics.setdefault(metric, []).extend(points)
        run.params.update(part.params)
        run.group = run.group or part.group
        if part.failed:
            run.state = "failed"
        for kind, tags in part.skipped.items():
            into = skipped.setdefault(kind, {})
            for tag, count in tags.items():
                tag_name = part.metric_name(tag) if tag and not tag.startswith("(") else tag
                into[tag_name] = into.get(tag_name, 0) + count
        run.skipped.extend(part.notes)
    for kind, tags in sorted(skipped.items()):  # no counts: equal notes add up across runs
        shown = [t for t in sorted(tags) if t and not t.startswith("(")]
        where = f" ({', '.join(shown[:5])}{', ...' if len(shown) > 5 else ''})" if shown else ""
        run.skipped.append(f"{kind}{where}: not imported, Tora imports scalars and hparams")
    if not run.metrics and not run.params:
        return None
    return run


# Subdirectories that are parts of one run, never runs of their own (Keras writes train/ and
# validation/ below the run's logdir).
_SPLITS = {"train", "training", "validation", "valid", "val", "eval", "evaluation", "test"}


def read(logdir: str) -> Iterator[ImportedRun]:
    """The runs in a TensorBoard log directory (or one event file); see the module doc."""
    root = Path(logdir).expanduser()
    if root.is_file():
        if not _is_event_file(root.name):
            raise ToraImportError(f"{logdir} is not a TensorBoard event file (events.out.tfevents.*)")
        part = _read_dir(root.parent, "", [root.name])
        run = _run(root.resolve().parent.name, f"{root.resolve().parent.name}/{root.name}", [part])
        if run is not None:
            yield run
        return
    if not root.is_dir():
        raise ToraImportError(f"{logdir}: no such file or directory")
    dirs = _event_dirs(root)
    if not dirs:
        raise ToraImportError(f"{logdir} holds no TensorBoard event files (events.out.tfevents.*)")
    runs: dict[str, dict[str, list[str]]] = {}  # run dir (relative to root) -> dir below it -> files
    tops = {rel.split("/", 1)[0] for rel in dirs}
    one_run = "" in dirs or tops <= _SPLITS
    for rel, files in dirs.items():
        top = "" if one_run else rel.split("/", 1)[0]
        below = rel if top == "" else rel[len(top) + 1 :]
        runs.setdefault(top, {})[below] = files
    for top, below_dirs in runs.items():
        run_root = root / top if top else root
        run_name = top or root.resolve().name
        parts = [_read_dir(run_root / below, below, files) for below, files in below_dirs.items()]
        sessions = [p for p in parts if p.has_session and p.rel]
        own_session = any(p.has_session and not p.rel for p in parts)
        separate = sessions if own_session or len(sessions) > 1 else []
        main = [p for p in parts if all(p is not s for s in separate)]
        first = parts[0]  # the shallowest directory: os.walk goes top-down
        run = _run(run_name, f"{run_name}/{first.rel}/{first.first_file}".replace("//", "/"), main)
        if run is not None:
            yield run
        for p in separate:  # each session's metrics keep their own names (has_session is set)
            name = f"{run_name}/{p.rel}"
            run = _run(name, f"{name}/{p.first_file}", [p])
            if run is not None:
                yield run
