"""trackio projects: its local SQLite databases (``$TRACKIO_DIR/<project>.db``, by default under
``~/.cache/huggingface/trackio``), read with the standard library.

Give one ``.db`` file or the directory holding them. Tables read: ``configs`` (a run's config as
JSON; trackio's own keys ``_Group`` and ``_Created`` become the group and start time) and
``metrics`` (one row per ``trackio.log`` call: step, timestamp, the logged dict as JSON; "NaN"
and "Infinity" as strings). Each numeric value becomes a point with that step and time; nested
config values become ``parent.child`` parameters. A run is known by its trackio run id (by
project and name in databases from before run ids), so importing it again adds nothing. Each run
is tagged ``trackio.project=NAME``. Not imported (the summary says so): values that are not
numbers (text, images, tables), system metrics, alerts, traces and artifacts.
"""

from __future__ import annotations

import json
import math
import sqlite3
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .model import ImportedRun, ParamValue, Point, ToraImportError

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "inf": math.inf, "-inf": -math.inf}


def read(arg: str) -> Iterator[ImportedRun]:
    path = Path(arg).expanduser()
    if not path.exists():
        raise ToraImportError(f"{arg}: no such file or directory (a trackio project .db, or the directory of them)")
    if path.is_dir():
        files = sorted(p for p in path.glob("*.db") if p.is_file())
        if not files:
            raise ToraImportError(f"{arg}: no trackio project databases (*.db) in this directory")
    else:
        files = [path]
    for file in files:
        yield from _project(file, arg)


def _connect(path: Path, arg: str) -> sqlite3.Connection:
    try:
        with path.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise ToraImportError(f"{path}: not a trackio database (not SQLite)")
        db = sqlite3.connect(f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro", uri=True)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except (OSError, sqlite3.Error) as e:
        raise ToraImportError(f"{path}: cannot open it: {e}") from None
    if "metrics" not in tables:
        db.close()
        raise ToraImportError(f"{path}: a SQLite database, but not trackio's (no metrics table)")
    return db


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _project(path: Path, arg: str) -> Iterator[ImportedRun]:
    project = path.stem
    db = _connect(path, arg)
    try:
        has_ids = "run_id" in _columns(db, "metrics")
        key = "run_id" if has_ids else "run_name"
        configs: dict[str, tuple[str, dict[str, Any], str | None]] = {}
        if "configs" in {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
            config_key = "run_id" if "run_id" in _columns(db, "configs") else "run_name"
            for run_key, name, config, created in db.execute(
                f"SELECT {config_key}, run_name, config, created_at FROM configs ORDER BY id"  # noqa: S608 (a column name of ours)
            ):
                configs[str(run_key)] = (str(name), _json_object(config), created)
        runs = [
            (str(r[0]), str(r[1]))
            for r in db.execute(
                f"SELECT {key}, min(run_name) FROM metrics GROUP BY {key} ORDER BY min(id)"  # noqa: S608 (ours)
            )
        ]
        for run_key, name in runs + [(k, c[0]) for k, c in configs.items() if k not in {r for r, _ in runs}]:
            yield _run(db, project, key, run_key, name, configs.get(run_key))
    except sqlite3.Error as e:
        raise ToraImportError(f"{path}: cannot read it: {e}") from None
    finally:
        db.close()


def _run(
    db: sqlite3.Connection,
    project: str,
    key: str,
    run_key: str,
    name: str,
    config: tuple[str, dict[str, Any], str | None] | None,
) -> ImportedRun:
    settings = config[1] if config else {}
    run = ImportedRun(
        source="trackio",
        source_id=run_key if key == "run_id" else f"{project}/{run_key}",
        name=name,
        tags=[f"trackio.project={project}"],
        group=settings.get("_Group") if isinstance(settings.get("_Group"), str) else None,
        created_at_ms=_ms(settings.get("_Created")) or _ms(config[2] if config else None),
    )
    run.params = dict(_flat(settings))
    not_numbers: set[str] = set()
    for step, stamp, logged in db.execute(
        f"SELECT step, timestamp, metrics FROM metrics WHERE {key} = ? ORDER BY id",  # noqa: S608 (ours)
        (run_key,),
    ):
        when = _ms(stamp)
        for metric, value in _json_object(logged).items():
            number = _number(value)
            if number is None:
                not_numbers.add(metric)
                continue
            run.metrics.setdefault(metric, []).append(Point(int(step), number, when))
    if not_numbers:
        shown = ", ".join(sorted(not_numbers)[:5]) + (", ..." if len(not_numbers) > 5 else "")
        run.skipped.append(f"trackio: values that are not numbers (media, text, tables) in {shown}")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "system_metrics" in tables and key in _columns(db, "system_metrics"):
        query = f"SELECT count(*) FROM system_metrics WHERE {key} = ?"  # noqa: S608 (a column name of ours)
        count = db.execute(query, (run_key,)).fetchone()[0]
        if count:
            run.skipped.append("trackio: system metrics are not imported")
    if run.created_at_ms is None:
        run.created_at_ms = min((p.time_ms for ps in run.metrics.values() for p in ps if p.time_ms), default=None)
    return run


def _json_object(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw is not None else {}
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in _SPECIAL:
        return _SPECIAL[value]
    return None


def _flat(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, ParamValue]]:
    """Config entries as parameters: nested objects flattened with dots, lists as JSON text;
    trackio's own keys (``_Username``, ``_Created``, ``_Group``) left out."""
    for k, v in config.items():
        if not prefix and k.startswith("_"):
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flat(v, name + ".")
        elif v is None or isinstance(v, (str, int, float, bool)):
            yield name, v
        else:
            yield name, json.dumps(v)


def _ms(stamp: Any) -> int | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)
