"""CSV files, in one of two shapes told apart by the header (column names are case-insensitive).

Long, one point per row::

    run,step,metric,value,time
    baseline,0,loss,0.93,2024-05-01T12:00:00Z
    baseline,0,acc,0.12,1714564800.5

``metric``, ``step`` and ``value`` are required; ``run`` names the run (without it the file is one
run named after the file); ``time`` is optional.

Wide, one step per row: a ``step`` column and one column per metric, plus optional ``run`` and
``time`` columns::

    step,loss,acc
    0,0.93,0.12
    1,0.71,0.35

An empty cell is no point. Values are numbers, or ``nan``/``inf``/``-inf``. A time is Unix time in
seconds (fractions allowed) or an ISO 8601 date-time (UTC unless it says otherwise). A run is
known by the file's absolute path and its name, so importing the same file again adds nothing.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from .model import ImportedRun, Point, ToraImportError

_MAX_SKIP_EXAMPLES = 3
_NOT_A_TIME = -1


class _Runs:
    """The runs of one file, by name, and the lines that could not be read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source = str(path.resolve())
        self.runs: dict[str, ImportedRun] = {}
        self.bad: dict[str, list[int]] = {}

    def get(self, name: str) -> ImportedRun:
        name = name.strip() or self.path.stem
        if name not in self.runs:
            self.runs[name] = ImportedRun(source="csv", source_id=f"{self.source}#{name}", name=name)
        return self.runs[name]

    def unreadable(self, run: ImportedRun, line: int) -> None:
        self.bad.setdefault(run.name, []).append(line)

    def done(self) -> Iterator[ImportedRun]:
        for run in self.runs.values():
            lines = self.bad.get(run.name)
            if lines:
                shown = ", ".join(map(str, lines[:_MAX_SKIP_EXAMPLES])) + (", ..." if len(lines) > 3 else "")
                run.skipped.append(
                    f"csv: {len(lines)} rows with a missing or unreadable step, value or time (line {shown})"
                )
            times = [p.time_ms for points in run.metrics.values() for p in points if p.time_ms is not None]
            run.created_at_ms = min(times, default=None)
            yield run


def read(arg: str) -> Iterator[ImportedRun]:
    path = Path(arg).expanduser()
    if not path.exists():
        raise ToraImportError(f"{arg}: no such file")
    if not path.is_file():
        raise ToraImportError(f"{arg}: not a file (give the CSV file itself)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ToraImportError(f"{arg}: cannot read it as a CSV file: {e}") from None
    if not rows:
        raise ToraImportError(f"{arg}: empty file")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    runs = _Runs(path)
    if {"metric", "step", "value"} <= set(lower):
        _long(rows, lower, runs)
    elif "step" in lower:
        _wide(arg, rows, header, runs)
    else:
        raise ToraImportError(
            f"{arg}: the header names neither run,step,metric,value (long form) nor a step column "
            f"(wide form); it is {','.join(header)[:200]!r}"
        )
    yield from runs.done()


def _cell(row: list[str], i: int | None) -> str:
    return row[i].strip() if i is not None and i < len(row) else ""


def _long(rows: list[list[str]], lower: list[str], runs: _Runs) -> None:
    at = {k: lower.index(k) if k in lower else None for k in ("run", "step", "metric", "value", "time")}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        run = runs.get(_cell(row, at["run"]))
        metric = _cell(row, at["metric"])
        step, value = _step(_cell(row, at["step"])), _value(_cell(row, at["value"]))
        when = _time(_cell(row, at["time"]))
        if not metric or step is None or value is None or when == _NOT_A_TIME:
            runs.unreadable(run, line)
            continue
        run.metrics.setdefault(metric, []).append(Point(step, value, when))


def _wide(arg: str, rows: list[list[str]], header: list[str], runs: _Runs) -> None:
    lower = [h.lower() for h in header]
    step_at = lower.index("step")
    run_at = lower.index("run") if "run" in lower else None
    time_at = lower.index("time") if "time" in lower else None
    metrics = [(i, h) for i, h in enumerate(header) if i not in (step_at, run_at, time_at) and h]
    if not metrics:
        raise ToraImportError(f"{arg}: a step column but no metric columns beside it")
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        run = runs.get(_cell(row, run_at))
        step, when = _step(_cell(row, step_at)), _time(_cell(row, time_at))
        if step is None or when == _NOT_A_TIME:
            runs.unreadable(run, line)
            continue
        for i, name in metrics:
            text = _cell(row, i)
            if not text:
                continue
            value = _value(text)
            if value is None:
                runs.unreadable(run, line)
                continue
            run.metrics.setdefault(name, []).append(Point(step, value, when))


def _step(text: str) -> int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _value(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _time(text: str) -> int | None:
    """Milliseconds since the epoch; None for an empty cell; _NOT_A_TIME for one that is not a time."""
    if not text:
        return None
    try:
        seconds = float(text)
        return round(seconds * 1000) if math.isfinite(seconds) and seconds >= 0 else _NOT_A_TIME
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return _NOT_A_TIME
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    ms = round(moment.timestamp() * 1000)
    return ms if ms >= 0 else _NOT_A_TIME
