"""Upload what a reader read: each run once, however often an import runs.

A run becomes the experiment ``uuid5(IMPORT_NAMESPACE, f"{workspace_id}/{source}/{source_id}")``,
created with that client id (the server answers 200 with the existing experiment when it has it),
and its points go in columnar batches with the ids ``import/0``, ``import/1``, ...: a batch the
server already holds is skipped whole. Batches are cut the same way from the same input (metrics
in name order, points in the order the source logged them), so a second import, or one resumed
after an interruption, stores only what is missing. For a run found present, the points the
server holds per metric (the workspace's run summaries, read once) say how many batches an
earlier import stored: the rest are sent, none when it finished; a run whose points match no
number of batches changed in its source since, and is left alone (resending would store a mix).
Last, the run is ended with its state.
"""

from __future__ import annotations

import base64
import math
import sys
import time
import urllib.parse
import uuid
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from .. import _transport
from .._exceptions import ToraNetworkError
from .model import ImportedRun, Point, ToraImportError

IMPORT_NAMESPACE = uuid.UUID("c06ae580-8b58-410b-a316-79c00f5c551b")
"""Never change it: experiment ids derived from it are what makes a second import add nothing."""

BATCH_POINTS = 50_000
"""Points per request (the server takes 100,000): about 2 MB of JSON with times."""

_ATTEMPTS = 5
_DAY_MS = 86_400_000
# What the server accepts (src/api/experiments.rs, src/api/logs.rs).
_MAX_NAME = 255
_MAX_HYPERPARAMS = 1000
_MAX_PARAM_TEXT = 10_000
_MAX_TAGS = 100
_MAX_DESCRIPTION = 10_000
_MAX_GROUP = 128


def experiment_id(workspace_id: str, source: str, source_id: str) -> str:
    """The Tora experiment id of a source's run in a workspace: the same on every import."""
    return str(uuid.uuid5(IMPORT_NAMESPACE, f"{workspace_id}/{source}/{source_id}"))


@dataclass
class Summary:
    """What an import did, for the closing report."""

    runs_imported: int = 0
    """Runs the server did not have before."""
    runs_present: int = 0
    """Runs it had already (from an earlier import); only their missing batches were sent."""
    runs_completed: int = 0
    """Runs an earlier import had stopped part-way through, whose missing points this one added."""
    runs_failed: int = 0
    points_added: int = 0
    points_present: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    """Reasons why something was not imported, with how many runs each concerns."""
    problems: list[str] = field(default_factory=list)
    """Runs that could not be uploaded, and why."""

    def lines(self, dry_run: bool = False) -> list[str]:
        if dry_run:
            out = [f"dry run: {self.runs_imported} runs, {self.points_added:,} points would be imported"]
        else:
            out = [
                f"runs: {self.runs_imported} imported, {self.runs_present} already present"
                + (f", {self.runs_completed} completed (left part-way before)" if self.runs_completed else "")
                + (f", {self.runs_failed} failed" if self.runs_failed else ""),
                f"points: {self.points_added:,} added, {self.points_present:,} already present",
            ]
        if self.skipped:
            out.append("skipped:")
            for reason, runs in sorted(self.skipped.items()):
                out.append(f"  {reason}" + (f" ({runs} runs)" if runs > 1 else ""))
        out.extend(f"failed: {p}" for p in self.problems)
        return out


class Progress:
    """A one-line bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._last = 0.0

    def show(self, runs: int, name: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and done < total):
            return
        self._last = now
        width = 24
        filled = width * done // total if total else width
        bar = "#" * filled + "." * (width - filled)
        label = name if len(name) <= 30 else name[:27] + "..."
        self.stream.write(f"\r\x1b[Krun {runs}: {label} [{bar}] {done:,}/{total:,} points")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


class ServerError(ToraImportError):
    """The server cannot be reached or refuses the API key: nothing more can be imported."""


class Api:
    """The few calls an import makes, on one keep-alive connection, retried on transient trouble."""

    def __init__(self, base_url: str, api_key: str, timeout: float) -> None:
        self.base = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.session = _transport.Session()
        self._held: dict[str, tuple[dict[str, int], set[str]]] | None = None
        # Runs whose list summary left series out (`partial`): read whole when first asked for.
        self._partial: set[str] = set()

    def call(self, method: str, path: str, body: Any = None) -> _transport.Response:
        """The answer (any status but a transient one); raises ToraImportError when none comes."""
        url = self.base + path
        data = None if body is None else _transport.encode(body)
        reason = ""
        for attempt in range(_ATTEMPTS):
            try:
                answer = self.session.request(method, url, body=data, api_key=self.api_key, timeout=self.timeout)
            except ToraNetworkError as e:
                reason = str(e)
                time.sleep(min(8.0, 0.25 * 2**attempt))
                continue
            if answer.status in (408, 429, 502, 503, 504):
                reason = f"HTTP {answer.status} {answer.message}"
                time.sleep(answer.retry_after if answer.retry_after is not None else min(8.0, 0.25 * 2**attempt))
                continue
            if answer.status == 401:
                raise ServerError(f"the server at {self.base} refused the API key (HTTP 401)")
            return answer
        raise ServerError(f"{method} {url}: no answer after {_ATTEMPTS} tries ({reason})")

    def held(self, workspace_id: str, exp_id: str) -> tuple[dict[str, int], set[str]]:
        """What the server holds of a run: points per metric and result names. Read once per
        import, on the first run found present, from the workspace's run list with summaries."""
        if self._held is None:
            self._held = {}
            cursor = ""
            while True:
                page = f"/workspaces/{workspace_id}/experiments?summary=1&limit=500"
                answer = self.call("GET", page + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else ""))
                if answer.status != 200 or not isinstance(answer.data, list):
                    raise ServerError(f"cannot read the runs of the workspace: HTTP {answer.status} {answer.message}")
                for e in answer.data:
                    brief = e.get("summary") if isinstance(e, dict) else None
                    if isinstance(brief, dict):
                        counts = {k: int(v.get("count", 0)) for k, v in (brief.get("metrics") or {}).items()}
                        self._held[str(e.get("id"))] = (counts, set(brief.get("results") or {}))
                        if brief.get("partial"):
                            # The list names a run's first 100 metrics and results: read the rest.
                            self._partial.add(str(e.get("id")))
                after = answer.body.get("next_cursor") if isinstance(answer.body, dict) else None
                if not after:
                    break
                cursor = str(after)
        if exp_id in self._partial:
            self._partial.discard(exp_id)
            self._held[exp_id] = self._whole(exp_id)
        return self._held.get(exp_id, ({}, set()))

    def _whole(self, exp_id: str) -> tuple[dict[str, int], set[str]]:
        """Every metric's count and every result name of one run, from its paged summary."""
        counts: dict[str, int] = {}
        results: set[str] = set()
        cursor = ""
        for _ in range(1_000):
            path = f"/experiments/{exp_id}/summary" + (f"?cursor={urllib.parse.quote(cursor)}" if cursor else "")
            answer = self.call("GET", path)
            if answer.status != 200 or not isinstance(answer.data, dict):
                raise ServerError(f"cannot read the summary of run {exp_id}: HTTP {answer.status} {answer.message}")
            for m in answer.data.get("metrics") or []:
                counts[str(m.get("name"))] = int(m.get("count", 0))
            results.update(str(r.get("name")) for r in answer.data.get("results") or [])
            after = answer.data.get("next")
            if not after:
                break
            cursor = str(after)
        return counts, results

    def close(self) -> None:
        self.session.close()


def resolve_workspace(api: Api, workspace: str | None) -> tuple[str, str]:
    """(id, name) of the workspace named by id or name, or of the caller's Personal workspace."""
    answer = api.call("GET", "/workspaces")
    if answer.status != 200 or not isinstance(answer.data, list):
        raise ToraImportError(f"cannot list your workspaces on {api.base}: HTTP {answer.status} {answer.message}")
    spaces: list[dict[str, Any]] = [w for w in answer.data if isinstance(w, dict)]
    if workspace is None:
        # The Personal workspace is made at the first login and cannot be renamed; the list is in
        # creation order, so it comes before any later workspace a user also called "Personal".
        mine = [w for w in spaces if w.get("name") == "Personal" and str(w.get("role")).lower() == "owner"]
        if not mine:
            raise ToraImportError("you have no Personal workspace yet: name one with --workspace NAME|ID")
        return str(mine[0]["id"]), "Personal"
    wanted = workspace.strip()
    found = [w for w in spaces if w.get("id") == wanted.lower()] or [w for w in spaces if w.get("name") == wanted]
    if not found:
        found = [w for w in spaces if str(w.get("name", "")).lower() == wanted.lower()]
    if len(found) > 1:
        raise ToraImportError(f"{len(found)} of your workspaces are named {wanted!r}: give its id with --workspace")
    if not found:
        names = ", ".join(repr(w.get("name")) for w in spaces) or "none"
        raise ToraImportError(f"no workspace {wanted!r} among yours ({names}); create it first")
    if str(found[0].get("role")).lower() == "viewer":
        raise ToraImportError(f"you are a viewer in workspace {found[0].get('name')!r}: importing needs editor")
    return str(found[0]["id"]), str(found[0].get("name"))


def import_runs(
    runs: Iterable[ImportedRun],
    api: Api | None,
    workspace_id: str,
    summary: Summary,
    progress: Progress | None = None,
) -> None:
    """Upload every run (``api`` None: a dry run that only counts). A run the server refuses is
    counted as failed and the import goes on; a server that cannot be reached, or that refuses
    the API key, stops it (ServerError)."""
    try:
        for count, run in enumerate(runs, start=1):
            columns = _columns(run)
            total = sum(len(points) for _, points in columns) + len(run.results)
            for reason in run.skipped:
                summary.skipped[reason] += 1
            if api is None:
                summary.runs_imported += 1
                summary.points_added += total
                continue
            try:
                _upload(api, run, columns, total, workspace_id, summary, progress, count)
            except ServerError:
                raise
            except ToraImportError as e:
                summary.runs_failed += 1
                summary.problems.append(f"run {run.name!r} ({run.source_id}): {e}")
    finally:
        if progress is not None:
            progress.clear()


def _upload(
    api: Api,
    run: ImportedRun,
    columns: list[tuple[str, list[Point]]],
    total: int,
    workspace_id: str,
    summary: Summary,
    progress: Progress | None,
    count: int,
) -> None:
    exp_id = experiment_id(workspace_id, run.source, run.source_id)
    answer = api.call("POST", "/experiments", _experiment(run, exp_id, workspace_id, columns, summary))
    if answer.status == 409:
        # Another member imported the same run into this workspace: theirs stands.
        summary.runs_present += 1
        summary.skipped["runs another member of the workspace imported before: left as they are"] += 1
        return
    if answer.status not in (200, 201):
        raise ToraImportError(f"creating its experiment: HTTP {answer.status} {answer.message}")
    new = answer.status == 201
    batches = list(_batches(columns, run.results))
    start = 0
    if not new:
        start_at = _resume_at(batches, *api.held(workspace_id, exp_id))
        if start_at is None:
            summary.runs_present += 1
            summary.skipped[
                "runs whose points changed in their source since an earlier import: left as they are "
                "(delete them in Tora and import again to replace them)"
            ] += 1
            return
        start = start_at
        summary.points_present += sum(_size(b) for b in batches[:start])
    added = 0
    done = sum(_size(b) for b in batches[:start])
    for n, body in enumerate(batches[start:], start=start):
        body["batch_id"] = f"import/{n}"
        stored = api.call("POST", f"/experiments/{exp_id}/points", body)
        if stored.status not in (200, 201):
            raise ToraImportError(f"batch import/{n}: HTTP {stored.status} {stored.message}")
        data = stored.data if isinstance(stored.data, dict) else {}
        added += int(data.get("inserted", 0))
        summary.points_added += int(data.get("inserted", 0))
        summary.points_present += int(data.get("skipped", 0))
        done += int(data.get("inserted", 0)) + int(data.get("skipped", 0))
        if progress is not None:
            progress.show(count, run.name, done, total)
    if run.state in ("finished", "failed"):
        ended = api.call("POST", f"/experiments/{exp_id}/finish", {"state": run.state})
        if ended.status != 200:
            raise ToraImportError(f"ending it as {run.state}: HTTP {ended.status} {ended.message}")
    if new:
        summary.runs_imported += 1
    elif added:
        summary.runs_completed += 1
    else:
        summary.runs_present += 1


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text).strip()


def _experiment(
    run: ImportedRun, exp_id: str, workspace_id: str, columns: list[tuple[str, list[Point]]], summary: Summary
) -> dict[str, Any]:
    """The create body, trimmed to what the server takes (and saying what was trimmed)."""

    def skip(reason: str) -> None:
        summary.skipped[reason] += 1

    name = _clip(_printable(run.name), _MAX_NAME) or run.source_id[:_MAX_NAME]
    params: list[dict[str, Any]] = []
    seen: set[str] = set()
    for key, raw in run.params.items():
        value = raw
        k = _clip(_printable(key), _MAX_NAME)
        if not k or k in seen:
            skip(f"parameter {key!r}: empty or the same as another once trimmed")
            continue
        if len(params) == _MAX_HYPERPARAMS:
            skip(f"parameters past the first {_MAX_HYPERPARAMS} (the server's limit)")
            break
        seen.add(k)
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        elif isinstance(value, str) and len(value) > _MAX_PARAM_TEXT:
            skip(f"parameter {k!r}: cut to {_MAX_PARAM_TEXT} characters")
            value = _clip(value, _MAX_PARAM_TEXT)
        params.append({"key": k, "value": value})
    tags: list[str] = []
    for tag in run.tags:
        t = _clip(_printable(tag), _MAX_NAME)
        if t and t not in tags:
            tags.append(t)
    if len(tags) > _MAX_TAGS:
        skip(f"tags past the first {_MAX_TAGS} (the server's limit)")
        tags = tags[:_MAX_TAGS]
    body: dict[str, Any] = {
        "id": exp_id,
        "name": name,
        "workspaceId": workspace_id,
        "hyperparams": params,
        "tags": tags,
        "metadata": {"imported_from": {"source": run.source, "id": _clip(run.source_id, 1000)}},
    }
    if run.description and run.description.strip():
        body["description"] = _clip(run.description.strip(), _MAX_DESCRIPTION)
    if run.group is not None and _printable(run.group):
        body["group"] = _clip(_printable(run.group), _MAX_GROUP)
    # Created at the run's start, or at its first point if one is older (the server stores a
    # point's time relative to its run's start, never before it).
    times = [p.time_ms for _, points in columns for p in points if p.time_ms is not None]
    created = min([t for t in (run.created_at_ms, min(times, default=None)) if t is not None], default=None)
    if created is not None:
        if 0 <= created <= time.time() * 1000 + _DAY_MS:
            body["created_at"] = int(created)
        else:
            skip("a start time outside 1970..tomorrow (the run is dated now instead)")
    return body


def _columns(run: ImportedRun) -> list[tuple[str, list[Point]]]:
    """Metrics in name order, each with the points the server can store (the others noted)."""
    out: list[tuple[str, list[Point]]] = []
    for name in sorted(run.metrics):
        points = run.metrics[name]
        clean = _clip(_printable(name), _MAX_NAME)
        if not clean:
            run.skipped.append(f"metric {name!r}: its name is empty once trimmed")
            continue
        kept = [p for p in points if p.step >= 0]
        if len(kept) < len(points):
            run.skipped.append(f"metric {clean!r}: {len(points) - len(kept)} points with a negative step")
        if kept:
            out.append((clean, kept))
    return out


def _batches(columns: list[tuple[str, list[Point]]], results: dict[str, float]) -> Iterator[dict[str, Any]]:
    """Columnar bodies of at most BATCH_POINTS points: metrics, then results in the last one."""
    metrics: list[dict[str, Any]] = []
    size = 0
    for name, points in columns:
        start = 0
        while start < len(points):
            take = points[start : start + BATCH_POINTS - size]
            start += len(take)
            metrics.append(_column(name, take))
            size += len(take)
            if size == BATCH_POINTS:
                yield {"metrics": metrics}
                metrics, size = [], 0
    out = [{"name": _clip(_printable(k), _MAX_NAME), "value": _json_value(v)} for k, v in sorted(results.items())]
    out = [r for r in out if r["name"]]
    if metrics or out:
        yield {"metrics": metrics, "results": out}


def _size(batch: dict[str, Any]) -> int:
    return sum(len(m["steps"]) for m in batch["metrics"]) + len(batch.get("results", ()))


def _resume_at(batches: list[dict[str, Any]], counts: dict[str, int], results: set[str]) -> int | None:
    """Where an earlier import of this run stopped: the number of batches k whose points are
    exactly what the server holds (every batch: it finished; 0: it stored nothing). None when no
    k fits: the source changed since, and resending would store a mix of old and new points."""
    have: dict[str, int] = {}
    names: set[str] = set()
    found = 0 if not counts and not results else None
    for k, batch in enumerate(batches, start=1):
        for m in batch["metrics"]:
            have[m["name"]] = have.get(m["name"], 0) + len(m["steps"])
        names.update(r["name"] for r in batch.get("results", ()))
        if have == counts and names <= results:
            found = k
    return found


def _column(name: str, points: list[Point]) -> dict[str, Any]:
    values = array("d", (p.value for p in points))
    if sys.byteorder == "big":
        values.byteswap()
    column: dict[str, Any] = {
        "name": name,
        "steps": [p.step for p in points],
        "values_f64": base64.b64encode(values.tobytes()).decode("ascii"),
    }
    if any(p.time_ms is not None for p in points):
        # A point without a time gets its neighbour's, so the column stays whole.
        times: list[int] = []
        last = next(p.time_ms for p in points if p.time_ms is not None)
        for p in points:
            last = p.time_ms if p.time_ms is not None else last
            times.append(max(0, int(last)))
        column["times"] = times
    return column


def _json_value(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
