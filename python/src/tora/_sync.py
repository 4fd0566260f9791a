"""``python -m tora sync``: upload spool files left by offline runs and by outages.

Each line is sent as it was written, so a line sent twice (a sync that was stopped before it
recorded its progress, an answer lost on the way) is stored once: the server keeps a batch_id
once (format 2) and a msg_id once (format 1). After a file's points, the run's end recorded
beside it (``.end``: "finished" or "failed") goes to ``/experiments/{id}/finish``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import _init, _transport
from ._artifacts import artifacts_dir, sync_dir
from ._exceptions import ToraError, ToraNetworkError
from ._spool import (
    END_SUFFIX,
    ENDPOINTS,
    SENT_SUFFIX,
    SUFFIX,
    read_end,
    read_sent,
    remove,
    spool_dir,
    try_lock,
    write_sent,
)

_ATTEMPTS = 3
_TORN, _DAMAGED = "torn", "damaged"


@dataclass
class Report:
    uploaded: int = 0
    """Points the server took (or already had)."""
    left: int = 0
    """Points still on disk after this run."""
    files_done: int = 0
    busy: int = 0
    """Files skipped because a running process still writes them."""
    artifacts: int = 0
    """Artifacts uploaded."""
    artifacts_left: int = 0
    """Artifacts still on disk after this run."""
    problems: list[str] = field(default_factory=list)


class _RefusedError(Exception):
    pass


def sync(
    cache_dir: Path,
    *,
    server_url: str | None,
    api_key: str | None,
    timeout: float,
    say: Callable[[str], None] = print,
) -> Report:
    """Upload every spool file that no running process holds. server_url, when given, wins over
    the URL recorded in each file."""
    report = Report()
    directory = spool_dir(cache_dir)
    paths = sorted(directory.glob("*" + SUFFIX)) if directory.is_dir() else []
    for suffix in (SENT_SUFFIX, END_SUFFIX):
        for orphan in directory.glob("*" + suffix) if directory.is_dir() else []:
            if not orphan.with_suffix(SUFFIX).exists():
                orphan.unlink(missing_ok=True)
    if not paths:
        say(f"nothing to upload in {directory}")
    for path in paths:
        _sync_file(path, server_url, api_key, timeout, report, say)
    _sync_artifacts(cache_dir, server_url, api_key, timeout, report, say)
    return report


def _sync_artifacts(
    cache_dir: Path,
    server_url: str | None,
    api_key: str | None,
    timeout: float,
    report: Report,
    say: Callable[[str], None],
) -> None:
    """After the points (which create their experiments), the artifacts left by runs that ended."""
    root = artifacts_dir(cache_dir)
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if not directory.is_dir():
            continue
        try:
            uploaded, left, problem = sync_dir(
                directory,
                server_url,
                api_key,
                timeout,
                lambda url, body: _post(url, body, api_key, timeout),
                say,
            )
        except _RefusedError as e:
            uploaded, left, problem = 0, 0, f"{directory.name}: cannot create its experiment: {e}; kept"
        report.artifacts += uploaded
        report.artifacts_left += left
        if problem:
            report.problems.append(problem)
            say(problem)


def _sync_file(
    path: Path,
    server_url: str | None,
    api_key: str | None,
    timeout: float,
    report: Report,
    say: Callable[[str], None],
) -> None:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return  # its writer finished it meanwhile
    try:
        if not try_lock(fd):
            say(f"{path.name}: in use by a running process, skipped")
            report.busy += 1
            return
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
        end_of_header = data.find(b"\n")
        try:
            header = json.loads(data[:end_of_header]) if end_of_header > 0 else None
        except ValueError:
            header = None
        version = header.get("tora_spool") if isinstance(header, dict) else None
        if version not in ENDPOINTS:
            report.problems.append(f"{path.name}: not a tora spool file this version can read, left alone")
            say(report.problems[-1])
            return
        assert isinstance(header, dict)
        experiment_id = header["experiment_id"]
        url = (server_url or header.get("server_url") or "").rstrip("/")
        batches = f"{url}/experiments/{experiment_id}/{ENDPOINTS[version]}"
        lines, stop = _unsent_lines(data, max(read_sent(path), end_of_header + 1), version)
        pending = sum(points for _, _, points in lines)
        try:
            if header.get("create"):
                _post(
                    f"{url}/experiments",
                    _transport.encode(_placed(header["create"], url, api_key, timeout)),
                    api_key,
                    timeout,
                )
            for start, end, points in lines:
                _post(batches, data[start:end], api_key, timeout)
                write_sent(path, end + 1)
                report.uploaded += points
                pending -= points
            ended = read_end(path) if stop != _DAMAGED else None
            if ended is not None:
                finish = _transport.encode({"state": ended})
                _post(f"{url}/experiments/{experiment_id}/finish", finish, api_key, timeout)
        except _RefusedError as e:
            report.left += pending
            report.problems.append(f"{path.name}: experiment {experiment_id}: {e}; {pending} points kept")
            say(report.problems[-1])
            return
        if stop == _DAMAGED:
            report.problems.append(f"{path.name}: a line after the uploaded ones is not a batch; the file is kept")
            say(report.problems[-1])
            return
        if stop == _TORN:
            say(f"{path.name}: ignored an incomplete last line (the writing process stopped mid-write)")
        remove(path)
        report.files_done += 1
        say(f"{path.name}: experiment {experiment_id} is up to date on {url}")
    finally:
        os.close(fd)


def _unsent_lines(data: bytes, start: int, version: int) -> tuple[list[tuple[int, int, int]], str]:
    """(start, end, points) of each line from `start` up to the end of the file, or up to a line that
    is not a batch; and what stopped the walk: "" (the end), _TORN (a last line without its newline,
    as a process killed mid-write leaves it) or _DAMAGED (a complete line that is not a batch)."""
    lines: list[tuple[int, int, int]] = []
    while start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            return lines, _TORN
        if end > start:
            try:
                points = _points(json.loads(data[start:end]), version)
            except (ValueError, KeyError, TypeError, AttributeError):
                return lines, _DAMAGED
            lines.append((start, end, points))
        start = end + 1
    return lines, ""


def _points(body: Any, version: int) -> int:
    if version == 1:
        return len(body["logs"])
    return sum(len(metric["steps"]) for metric in body.get("metrics", ())) + len(body.get("results", ()))


_OLD_SERVER = (404, 405)
"""What a server without run state answers to .../finish: nothing to mark there."""


def _placed(create: dict[str, Any], url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    """The create body with its workspace: an offline ``tora.init(project=...)`` names the
    workspace (it could not be looked up offline), found now among the caller's, or made."""
    name = create.get("workspaceName")
    placed = {k: v for k, v in create.items() if k != "workspaceName"}
    if not isinstance(name, str) or create.get("workspaceId") or not api_key:
        return placed
    try:
        placed["workspaceId"] = _init.workspace_id(name, url, api_key, timeout)
    except ToraError as e:
        raise _RefusedError(f"cannot find or make the workspace {name!r}: {e}") from e
    return placed


def _post(url: str, body: bytes, api_key: str | None, timeout: float) -> None:
    reason = ""
    for attempt in range(_ATTEMPTS):
        if attempt:
            time.sleep(0.5 * 2**attempt)
        try:
            answer = _transport.request("POST", url, body=body, api_key=api_key, timeout=timeout)
        except ToraNetworkError as e:
            reason = str(e)
            continue
        if answer.status in (200, 201) or (url.endswith("/finish") and answer.status in _OLD_SERVER):
            return
        reason = f"HTTP {answer.status} {answer.message}"
        if answer.status < 500 and answer.status not in (408, 429):
            break
    raise _RefusedError(reason)
