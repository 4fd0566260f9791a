"""MLflow runs, from any of the three places MLflow keeps them, read with the standard library:

- a file store directory (``mlruns/``: ``<experiment>/<run>/meta.yaml``, ``params/``, ``tags/``,
  ``metrics/<key>`` lines of ``timestamp value step``), given as a path or ``file:`` URI;
- a SQLite database (MLflow's default store since 3.x: ``mlflow.db``), as a path or ``sqlite:///``;
- a tracking server, ``http(s)://host:port``, through its REST API 2.0 (experiments/search,
  runs/search, metrics/get-history, each paged); ``MLFLOW_TRACKING_TOKEN`` or
  ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` authenticate as with MLflow itself.

A run maps to: name (run name), start time, params (numbers and booleans written as text become
numbers and booleans again), tags (``key=value``, plus ``mlflow.experiment=NAME``), description
(``mlflow.note.content``), group (the parent run's name for nested runs and their parent), every
metric point with its step and time, and state (FINISHED, FAILED/KILLED; a RUNNING run is left
without an end). A run's MLflow id is its identity, so importing it again adds nothing.
Not imported (the summary says so): artifacts, models, traces, MLflow's own system tags, and
deleted runs and experiments.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import ImportedRun, ParamValue, Point, ToraImportError

_STATES = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "failed"}
_FILE_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_MAPPED_TAGS = {"mlflow.runName", "mlflow.note.content", "mlflow.parentRunId"}
_SYSTEM_TAGS = "MLflow system tags (mlflow.user, mlflow.source.*, ...) are not imported"
_PAGE = 1000
_HISTORY_PAGE = 25_000
_TIMEOUT = 60.0


@dataclass
class _Run:
    """One MLflow run as any store gives it, before it becomes an ImportedRun."""

    run_id: str
    experiment: str
    name: str
    status: str
    start_time: int | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[Point]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    fill: Callable[[_Run], None] | None = None
    """Reads the run's metrics: called just before the run is handed on, so only one run's
    points are in memory at a time while every run's name is known (for parents)."""


def read(arg: str) -> Iterator[ImportedRun]:
    if arg.startswith(("http://", "https://")):
        return _convert(_rest_runs(arg.rstrip("/")))
    if arg.startswith("sqlite:"):
        return _convert(_sqlite_runs(Path(arg.removeprefix("sqlite:").removeprefix("///")), arg))
    path = Path(urllib.parse.urlsplit(arg).path if arg.startswith("file:") else arg).expanduser()
    if not path.exists():
        raise ToraImportError(f"{arg}: no such file or directory (an mlruns/ directory, mlflow.db or http URI)")
    if path.is_file():
        return _convert(_sqlite_runs(path, arg))
    if not any((d / "meta.yaml").is_file() for d in path.iterdir() if d.is_dir()) and (path / "mlflow.db").is_file():
        return _convert(_sqlite_runs(path / "mlflow.db", arg))
    return _convert(_file_runs(path, arg))


def _convert(runs: Iterable[_Run]) -> Iterator[ImportedRun]:
    """ImportedRuns; a parent's name is looked up among runs read earlier (MLflow lists parents
    first in time) or, failing that, left as the parent's id."""
    names: dict[str, str] = {}
    parents: set[str] = set()
    pending = list(runs)
    for run in pending:
        names[run.run_id] = run.name
        if run.tags.get("mlflow.parentRunId"):
            parents.add(run.tags["mlflow.parentRunId"])
    for run in pending:
        if run.fill is not None:
            run.fill(run)
        parent = run.tags.get("mlflow.parentRunId")
        group = names.get(parent, parent) if parent else (run.name if run.run_id in parents else None)
        tags = [f"{k}={v}" if v else k for k, v in run.tags.items() if not k.startswith("mlflow.")]
        tags.append(f"mlflow.experiment={run.experiment}")
        skipped = list(run.skipped)
        if any(k.startswith("mlflow.") and k not in _MAPPED_TAGS for k in run.tags):
            skipped.append(_SYSTEM_TAGS)
        state = _STATES.get(run.status, "running")
        if state == "running":
            skipped.append(f"mlflow: runs still {run.status} are imported without an end")
        yield ImportedRun(
            source="mlflow",
            source_id=run.run_id,
            name=run.name or run.tags.get("mlflow.runName") or run.run_id,
            created_at_ms=run.start_time,
            params={k: _param(v) for k, v in sorted(run.params.items())},
            tags=tags,
            group=group,
            description=run.tags.get("mlflow.note.content") or None,
            metrics=run.metrics,
            state=state,
            skipped=skipped,
        )
        run.metrics = {}


_INT = re.compile(r"[-+]?\d+")


def _param(text: str) -> ParamValue:
    """MLflow keeps params as text: give numbers and booleans back their type."""
    if _INT.fullmatch(text) and len(text) < 19 and str(int(text)) == text.lstrip("+"):
        return int(text)  # not "007" or "1_000": those stay text
    if text in ("True", "true", "False", "false"):
        return text.lower() == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


# --- the file store -------------------------------------------------------------------------


def _yaml(path: Path) -> dict[str, Any]:
    """The top-level ``key: value`` pairs of one of MLflow's meta.yaml files (the subset it writes:
    plain, single- and double-quoted scalars, null, integers, ``[]``); nested blocks are ignored."""
    out: dict[str, Any] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ToraImportError(f"{path}: cannot read it: {e}") from None
    for line in lines:
        if not line or line[0] in " \t-#" or ":" not in line:
            continue
        key, _, rest = line.partition(":")
        out[key.strip()] = _scalar(rest.strip())
    return out


def _scalar(text: str) -> Any:
    if text in ("", "null", "~"):
        return None
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except ValueError:
            return text[1:-1]
    if _INT.fullmatch(text):
        return int(text)
    if text == "[]":
        return []
    return text


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ToraImportError(f"{path}: cannot read it: {e}") from None


def _key_files(directory: Path) -> dict[str, Path]:
    """Files under params/, tags/ or metrics/ by key (a key with '/' is a nested path)."""
    if not directory.is_dir():
        return {}
    return {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*")) if p.is_file()}


def _file_runs(root: Path, arg: str) -> list[_Run]:
    """Every active run's metadata (its metrics are read later, by ``fill``)."""
    experiments = sorted(d for d in root.iterdir() if d.is_dir() and (d / "meta.yaml").is_file())
    if not experiments:
        raise ToraImportError(f"{arg}: not an MLflow file store (no <experiment>/meta.yaml inside)")
    trash = root / ".trash"
    deleted_experiments = sum(1 for d in trash.iterdir() if d.is_dir()) if trash.is_dir() else 0
    deleted_runs = 0
    runs: list[_Run] = []
    for exp_dir in experiments:
        exp = _yaml(exp_dir / "meta.yaml")
        if exp.get("lifecycle_stage") == "deleted":
            deleted_experiments += 1
            continue
        for run_dir in sorted(d for d in exp_dir.iterdir() if d.is_dir() and (d / "meta.yaml").is_file()):
            meta = _yaml(run_dir / "meta.yaml")
            run_id = meta.get("run_id") or meta.get("run_uuid")
            if not run_id:
                continue  # traces/, models/, datasets/: not runs
            if meta.get("lifecycle_stage") == "deleted":
                deleted_runs += 1
                continue
            run = _Run(
                run_id=str(run_id),
                experiment=str(exp.get("name") or exp_dir.name),
                name=str(meta.get("run_name") or ""),
                status=_FILE_STATUS.get(meta.get("status") or 0, "RUNNING"),
                start_time=meta.get("start_time") if isinstance(meta.get("start_time"), int) else None,
            )
            run.params = {k: _read_text(p) for k, p in _key_files(run_dir / "params").items()}
            run.tags = {k: _read_text(p) for k, p in _key_files(run_dir / "tags").items()}
            run.fill = lambda r, d=run_dir: r.metrics.update(
                {key: _metric_file(p, r) for key, p in _key_files(d / "metrics").items()}
            )
            artifacts = run_dir / "artifacts"
            if artifacts.is_dir() and any(artifacts.iterdir()):
                run.skipped.append("mlflow: artifacts are not imported")
            runs.append(run)
    if runs and deleted_experiments:
        runs[0].skipped.append(f"mlflow: {deleted_experiments} deleted experiments are not imported")
    if runs and deleted_runs:
        runs[0].skipped.append(f"mlflow: {deleted_runs} deleted runs are not imported")
    return runs


def _metric_file(path: Path, run: _Run) -> list[Point]:
    points: list[Point] = []
    bad = 0
    for line in _read_text(path).splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            timestamp, value = int(parts[0]), float(parts[1])
            step = int(parts[2]) if len(parts) > 2 else 0
        except (ValueError, IndexError):
            bad += 1
            continue
        points.append(Point(step, value, timestamp))
    if bad:
        run.skipped.append(f"mlflow: {bad} unreadable lines in metric file {path.name}")
    return points


# --- the SQLite store -----------------------------------------------------------------------


def _ro(path: Path) -> str:
    return f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"


def _sqlite_runs(path: Path, arg: str) -> Iterator[_Run]:
    if not path.is_file():
        raise ToraImportError(f"{arg}: no such file")
    try:
        with path.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise ToraImportError(f"{arg}: not an MLflow store (neither a directory nor a SQLite database)")
        db = sqlite3.connect(_ro(path), uri=True)
    except (OSError, sqlite3.Error) as e:
        raise ToraImportError(f"{arg}: cannot open it: {e}") from None
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"experiments", "runs", "metrics", "params", "tags"} <= tables:
            raise ToraImportError(f"{arg}: a SQLite database, but not MLflow's (no runs/metrics tables)")
        deleted = db.execute(
            "SELECT count(*) FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
            "WHERE r.lifecycle_stage = 'deleted' OR e.lifecycle_stage = 'deleted'"
        ).fetchone()[0]
        note = [f"mlflow: {deleted} deleted runs are not imported"] if deleted else []
        rows = db.execute(
            "SELECT r.run_uuid, e.name, r.name, r.status, r.start_time FROM runs r "
            "JOIN experiments e ON e.experiment_id = r.experiment_id "
            "WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active' "
            "ORDER BY r.start_time, r.run_uuid"
        ).fetchall()
        for run_id, experiment, name, status, start in rows:
            run = _Run(str(run_id), str(experiment), str(name or ""), str(status), start, skipped=note)
            note = []
            run.params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)).fetchall())
            run.tags = {k: v or "" for k, v in db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,))}
            run.fill = lambda r: _sqlite_metrics(path, arg, r)
            yield run
    except sqlite3.Error as e:
        raise ToraImportError(f"{arg}: cannot read it: {e}") from None
    finally:
        db.close()


def _sqlite_metrics(path: Path, arg: str, run: _Run) -> None:
    try:
        db = sqlite3.connect(_ro(path), uri=True)
        try:
            for key, value, timestamp, step, is_nan in db.execute(
                "SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ? ORDER BY rowid",
                (run.run_id,),
            ):
                point = Point(int(step), math.nan if is_nan else float(value), int(timestamp))
                run.metrics.setdefault(str(key), []).append(point)
        finally:
            db.close()
    except sqlite3.Error as e:
        raise ToraImportError(f"{arg}: cannot read the metrics of run {run.run_id}: {e}") from None


# --- a tracking server --------------------------------------------------------------------


class _Rest:
    def __init__(self, base: str) -> None:
        self.base = base
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif user and password:
            pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {pair}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base}/api/2.0/mlflow/{path}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self.headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as answer:  # noqa: S310
                parsed = json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            if e.code in (401, 403):
                raise ToraImportError(
                    f"{self.base} refused the request (HTTP {e.code}): set MLFLOW_TRACKING_TOKEN or "
                    "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD"
                ) from None
            raise ToraImportError(f"{method} {url}: HTTP {e.code} {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ToraImportError(f"cannot reach the MLflow server at {self.base}: {reason}") from None
        if not isinstance(parsed, dict):
            raise ToraImportError(f"{method} {url}: not an MLflow answer")
        return parsed


def _pages(rest: _Rest, path: str, body: dict[str, Any], items: str) -> Iterator[dict[str, Any]]:
    """Every item of a paged search."""
    token = None
    while True:
        page = rest.call("POST", path, {**body, "page_token": token} if token else body)
        yield from page.get(items) or []
        token = page.get("next_page_token")
        if not token:
            return


def _rest_runs(base: str) -> list[_Run]:
    """Every active run's metadata (its metrics are read later, by ``fill``)."""
    rest = _Rest(base)
    experiments = list(
        _pages(rest, "experiments/search", {"max_results": _PAGE, "view_type": "ACTIVE_ONLY"}, "experiments")
    )
    runs: list[_Run] = []
    deleted = 0
    for exp in experiments:
        search = {"experiment_ids": [exp["experiment_id"]], "max_results": _PAGE}
        for found in _pages(rest, "runs/search", {**search, "run_view_type": "ACTIVE_ONLY"}, "runs"):
            run = _rest_run(str(exp.get("name") or exp["experiment_id"]), found)
            run.fill = functools.partial(_rest_metrics, rest, _metric_keys(found))
            runs.append(run)
        deleted += sum(1 for _ in _pages(rest, "runs/search", {**search, "run_view_type": "DELETED_ONLY"}, "runs"))
    if runs and deleted:
        runs[0].skipped.append(f"mlflow: {deleted} deleted runs are not imported")
    return runs


def _metric_keys(found: dict[str, Any]) -> list[str]:
    return sorted({m["key"] for m in (found.get("data") or {}).get("metrics") or []})


def _rest_run(experiment: str, found: dict[str, Any]) -> _Run:
    info, data = found.get("info") or {}, found.get("data") or {}
    run_id = str(info.get("run_id") or info.get("run_uuid"))
    start = info.get("start_time")
    return _Run(
        run_id=run_id,
        experiment=experiment,
        name=str(info.get("run_name") or ""),
        status=str(info.get("status") or "RUNNING"),
        start_time=int(start) if start is not None else None,
        params={p["key"]: str(p.get("value", "")) for p in data.get("params") or []},
        tags={t["key"]: str(t.get("value", "")) for t in data.get("tags") or []},
    )


def _rest_metrics(rest: _Rest, keys: list[str], run: _Run) -> None:
    run_id = run.run_id
    for key in keys:
        points: list[Point] = []
        token = None
        while True:
            query = {"run_id": run_id, "metric_key": key, "max_results": str(_HISTORY_PAGE)}
            if token:
                query["page_token"] = token
            page = rest.call("GET", "metrics/get-history?" + urllib.parse.urlencode(query))
            for m in page.get("metrics") or []:
                stamp = m.get("timestamp")
                points.append(Point(int(m.get("step") or 0), float(m["value"]), int(stamp) if stamp else None))
            token = page.get("next_page_token")
            if not token:
                break
        run.metrics[key] = points
