"""``python -m tora sync``: upload spool files left by offline runs and by outages."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import _transport
from ._exceptions import ToraNetworkError
from ._spool import SENT_SUFFIX, SUFFIX, read_sent, remove, spool_dir, try_lock, write_sent

_ATTEMPTS = 3


@dataclass
class Report:
    uploaded: int = 0
    """Points the server took (or already had)."""
    left: int = 0
    """Points still on disk after this run."""
    files_done: int = 0
    busy: int = 0
    """Files skipped because a running process still writes them."""
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
    for orphan in directory.glob("*" + SENT_SUFFIX) if directory.is_dir() else []:
        if not orphan.with_suffix(SUFFIX).exists():
            orphan.unlink(missing_ok=True)
    if not paths:
        say(f"nothing to upload in {directory}")
    for path in paths:
        _sync_file(path, server_url, api_key, timeout, report, say)
    return report


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
        header = json.loads(data[:end_of_header]) if end_of_header > 0 else None
        if not isinstance(header, dict) or header.get("tora_spool") != 1:
            report.problems.append(f"{path.name}: not a tora spool file, left alone")
            say(report.problems[-1])
            return
        experiment_id = header["experiment_id"]
        url = (server_url or header.get("server_url") or "").rstrip("/")
        lines, torn = _unsent_lines(data, max(read_sent(path), end_of_header + 1))
        pending = sum(points for _, _, points in lines)
        try:
            if header.get("create"):
                _post(f"{url}/experiments", _transport.encode(header["create"]), api_key, timeout)
            for start, end, points in lines:
                _post(f"{url}/experiments/{experiment_id}/logs/batch", data[start:end], api_key, timeout)
                write_sent(path, end + 1)
                report.uploaded += points
                pending -= points
        except _RefusedError as e:
            report.left += pending
            report.problems.append(f"{path.name}: experiment {experiment_id}: {e}; {pending} points kept")
            say(report.problems[-1])
            return
        if torn:
            say(f"{path.name}: ignored an incomplete last line (the writing process stopped mid-write)")
        remove(path)
        report.files_done += 1
        say(f"{path.name}: experiment {experiment_id} is up to date on {url}")
    finally:
        os.close(fd)


def _unsent_lines(data: bytes, start: int) -> tuple[list[tuple[int, int, int]], bool]:
    """(start, end, points) of each complete line from `start`; and whether a torn last line was seen."""
    lines: list[tuple[int, int, int]] = []
    while start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            return lines, True
        if end > start:
            try:
                points = len(json.loads(data[start:end])["logs"])
            except (ValueError, KeyError, TypeError):
                return lines, True
            lines.append((start, end, points))
        start = end + 1
    return lines, False


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
        if answer.status in (200, 201):
            return
        reason = f"HTTP {answer.status} {answer.message}"
        if answer.status < 500 and answer.status not in (408, 429):
            break
    raise _RefusedError(reason)
