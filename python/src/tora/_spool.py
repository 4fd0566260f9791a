"""Append-only spool files: points that could not be delivered yet, kept on disk.

One file per sender (one process, one experiment), ``<cache>/spool/<experiment>.<session>.spool``:

    line 1    {"tora_spool": 2, "experiment_id": ..., "server_url": ..., "create": {...} | null}
    line 2..  {"batch_id": ..., "metrics": [...], "results": [...]}
              one frozen batch: the exact body of one POST /experiments/{id}/points

A line is written once and never rewritten; sending it again sends the same batch_id, which the
server stores once. Files of format 1 (tora 0.1.0 before /points) hold ``{"logs": [...]}`` lines,
bodies of POST /experiments/{id}/logs/batch whose logs carry msg_ids; ``python -m tora sync``
still sends those where they belong. Beside the file, ``<name>.sent`` holds the byte offset up
to which lines were delivered; sending resumes there. A process killed mid-write leaves a torn
last line (no newline), which is skipped. A writer holds an exclusive flock on its file, so
``python -m tora sync`` leaves live files alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import deque
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; sync may race a live writer there
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("tora")

SUFFIX = ".spool"
SENT_SUFFIX = ".sent"
END_SUFFIX = ".end"
"""Beside a spool file: how the run ended ("finished" or "failed"), for sync to mark it after
its points, when the run could not say so to the server itself (offline, or the server away)."""
FORMAT = 2
"""The format this version writes; see ENDPOINTS for the ones it reads."""
ENDPOINTS = {1: "logs/batch", 2: "points"}
"""Where the lines of each format go: ``<server>/experiments/<id>/<endpoint>``."""


def spool_dir(cache_dir: Path) -> Path:
    return cache_dir / "spool"


def try_lock(fd: int) -> bool:
    """Take the file's exclusive lock without waiting; False when another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def read_sent(path: Path) -> int:
    try:
        return int(path.with_suffix(SENT_SUFFIX).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def write_sent(path: Path, offset: int) -> None:
    sent = path.with_suffix(SENT_SUFFIX)
    tmp = sent.with_name(sent.name + ".tmp")
    tmp.write_text(str(offset))
    os.replace(tmp, sent)


def read_end(path: Path) -> str | None:
    try:
        state = path.with_suffix(END_SUFFIX).read_text().strip()
    except OSError:
        return None
    return state if state in ("finished", "failed") else None


def write_end(path: Path, state: str) -> None:
    end = path.with_suffix(END_SUFFIX)
    tmp = end.with_name(end.name + ".tmp")
    tmp.write_text(state)
    os.replace(tmp, end)


def remove(path: Path) -> None:
    for p in (path, path.with_suffix(SENT_SUFFIX), path.with_suffix(END_SUFFIX)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


class Spool:
    """The spool of one sender. Not thread-safe: the sender calls it under its lock.

    If the disk refuses a write (full, read-only), lines wait in memory instead and an error
    is logged; they are still sent, but would not survive the process.
    """

    def __init__(self, directory: Path, name: str, header: dict[str, Any], *, offline: bool = False) -> None:
        self.path = directory / (name + SUFFIX)
        self._offline = offline
        self._header = header
        self._fd: int | None = None
        # Lines not yet sent: (offset, length, points, body); body only for a line kept in memory.
        self._lines: deque[tuple[int, int, int, bytes | None]] = deque()
        self._on_disk = 0
        self._end = 0
        self._disk_failed = False
        self.unsent = 0

    def append(self, body: bytes, points: int) -> None:
        self.unsent += points
        if not self._disk_failed:
            try:
                if self._fd is None:
                    self._open()
                assert self._fd is not None
                line = body + b"\n"
                if os.write(self._fd, line) != len(line):  # a full disk: undo the torn line
                    os.ftruncate(self._fd, self._end)
                    raise OSError("short write")
            except OSError as e:
                self._disk_failed = True
                logger.error("tora: cannot write the spool file %s (%s); keeping points in memory", self.path, e)
            else:
                self._lines.append((self._end, len(body), points, None))
                self._on_disk += 1
                self._end += len(body) + 1
                return
        self._lines.append((0, len(body), points, body))

    def peek(self) -> tuple[bytes, int] | None:
        """The oldest line not yet sent, with its number of points."""
        if not self._lines:
            return None
        offset, length, points, body = self._lines[0]
        if body is not None:
            return body, points
        if self._fd is None:
            return None
        try:
            return _pread(self._fd, length, offset), points
        except OSError as e:
            logger.error("tora: cannot read the spool file %s: %s", self.path, e)
            return None

    def mark_sent(self) -> None:
        """The line that peek() returned was delivered; the file goes once all of its lines are."""
        offset, length, points, body = self._lines.popleft()
        self.unsent -= points
        if body is not None:
            return
        self._on_disk -= 1
        if self._on_disk == 0:
            self._discard()
            return
        try:
            write_sent(self.path, offset + length + 1)
        except OSError as e:
            logger.error("tora: cannot record progress in %s: %s", self.path, e)

    def mark_end(self, state: str) -> bool:
        """Record how the run ended beside the file, while it is still locked; False when there is
        no file (nothing left to sync) or the record cannot be written."""
        if self._fd is None or self._on_disk == 0:
            return False
        try:
            write_end(self.path, state)
        except OSError as e:
            logger.error("tora: cannot write %s: %s", self.path.with_suffix(END_SUFFIX), e)
            return False
        return True

    def close(self) -> int:
        """Make the file durable and let it go; returns the points not yet sent."""
        if self._fd is not None:
            if self._on_disk == 0:
                self._discard()
            else:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None
        lost = sum(points for _, _, points, body in self._lines if body is not None)
        if lost:
            logger.error("tora: %d points could not be written to disk and are lost at exit", lost)
        return self.unsent

    def forget_after_fork(self) -> None:
        """In a forked child: the file belongs to the parent. Closing our copy keeps its lock."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._lines.clear()
        self._on_disk = 0
        self._end = 0
        self.unsent = 0

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            try_lock(fd)
            header = json.dumps({"tora_spool": FORMAT, **self._header}, separators=(",", ":")).encode() + b"\n"
            os.ftruncate(fd, 0)
            os.write(fd, header)
            write_sent(self.path, len(header))
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._end = len(header)
        if not self._offline:  # offline, the disk is where points go; setup() said so
            logger.warning("tora: keeping points on disk in %s until the server takes them", self.path)

    def _discard(self) -> None:
        # Unlink while still holding the lock, so sync never picks up a finished file.
        with contextlib.suppress(OSError):  # Windows cannot unlink an open file
            remove(self.path)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            remove(self.path)
        except OSError as e:
            logger.error("tora: cannot remove the finished spool file %s: %s", self.path, e)
        self._end = 0


def _pread(fd: int, length: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, length, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, length)
