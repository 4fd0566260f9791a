"""Artifacts: files kept with a run (plots, configs, checkpoints), uploaded in the background.

``log_artifact(path, name)`` checks the file and records it in the caller, then returns; a
daemon thread (``tora-artifacts``, beside the sender's, so a multi-GB checkpoint never holds
metric batches back) PUTs it to ``/experiments/{id}/artifacts/{name}``, streamed from disk with
a Content-Length, never whole in memory. It shares the sender's settings (timeout, backoff),
waits for the sender to have created the experiment, and retries with the same exponential
backoff with jitter while the server is away (network error, timeout, 5xx, 408, 429).

What is kept, and when it is read (the decision): a file of up to ``TORA_ARTIFACT_COPY_MAX``
bytes (default 64 MiB) is copied at call time, so what is uploaded is the file as it was when
logged, even if the script then overwrites or deletes it (a plot saved in a temporary
directory). A larger file is recorded by reference and read at upload time: copying a
multi-GB checkpoint would stall the training loop and double its disk use. Such a file must
stay in place until it is uploaded; if it changed meanwhile, its content at upload time is
sent (with a warning), and if it is gone the artifact is dropped with an error.

Every artifact is recorded on disk at call time, in a directory of the spool:

    <cache>/spool/artifacts/<experiment>.<session>/
        header.json   {"tora_artifacts": 1, "experiment_id", "server_url", "create"}
        lock          flock'ed while the process runs, so sync leaves it alone
        <n>.json      {"name", "source", "size", "mtime_ns", "copy": "<n>.data" | null}
        <n>.data      the copy, for a small file

An uploaded artifact's files are removed; what is left when the process ends (an outage, a
refusal, offline mode, a crash) is uploaded by ``python -m tora sync``. A PUT of the same name
replaces the artifact, so an artifact sent twice is stored once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import threading
import time
import unicodedata
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from . import _transport
from ._closing import Registry
from ._config import Settings
from ._exceptions import ToraNetworkError, ToraValidationError
from ._spool import spool_dir, try_lock

logger = logging.getLogger("tora")

FORMAT = 1
MAX_NAME = 1024
"""Longest artifact name, in bytes of UTF-8 (the server's bound)."""
_OK, _RETRY, _STOP, _DROP = "ok", "retry", "stop", "drop"


def artifacts_dir(cache_dir: Path) -> Path:
    return spool_dir(cache_dir) / "artifacts"


def artifact_name(name: object) -> str:
    """A relative path of "/"-separated segments, as the server takes it: no empty, "." or ".."
    segment, no control character, at most MAX_NAME bytes; and no backslash (a Windows path
    pasted as a name would otherwise become one odd file name)."""
    if not isinstance(name, str) or not name.strip():
        raise ToraValidationError("An artifact name must be a non-empty string")
    name = name.strip()
    if len(name.encode("utf-8", errors="replace")) > MAX_NAME:
        raise ToraValidationError(f"An artifact name cannot exceed {MAX_NAME} bytes")
    if "\\" in name or any(unicodedata.category(c) == "Cc" for c in name):
        raise ToraValidationError(f"Artifact name {name[:100]!r} holds a backslash or a control character")
    if any(segment in ("", ".", "..") for segment in name.split("/")):
        raise ToraValidationError(
            f"Artifact name {name[:100]!r} must be a relative path without empty, '.' or '..' parts"
        )
    return name


def artifact_url(server_url: str, experiment_id: str, name: str) -> str:
    return f"{server_url}/experiments/{quote(experiment_id, safe='')}/artifacts/{quote(name, safe='/')}"


@dataclass
class _Item:
    name: str
    source: str
    """The file to read: the copy, or the caller's file when it was too large to copy."""
    size: int
    mtime_ns: int
    copied: bool
    record: Path | None
    """The item's .json in the spool directory; None when the disk refused it (kept in memory)."""


def upload_item(
    url: str, item_source: str, size: int, mtime_ns: int, copied: bool, api_key: str | None, timeout: float
) -> tuple[str, str, float | None]:
    """One PUT of an artifact; returns (outcome, reason, retry_after)."""
    try:
        with open(item_source, "rb") as f:
            now = os.fstat(f.fileno())
            if not copied and (now.st_size != size or now.st_mtime_ns != mtime_ns):
                logger.warning("tora: %s changed after log_artifact(); uploading it as it is now", item_source)
            answer = _transport.upload(url, f, now.st_size, api_key=api_key, timeout=timeout)
            after = os.fstat(f.fileno())
        if answer.status in (200, 201, 204) and (after.st_size, after.st_mtime_ns) != (now.st_size, now.st_mtime_ns):
            # Written to while it was read: the server may hold a mix of two versions. Send it again.
            return _RETRY, f"{item_source} changed while it was uploaded", None
    except FileNotFoundError:
        return _DROP, f"{item_source} is gone; a file larger than TORA_ARTIFACT_COPY_MAX is read when uploaded", None
    except ToraNetworkError as e:
        return _RETRY, str(e), None
    except OSError as e:
        return _DROP, f"cannot read {item_source}: {e.strerror or e}", None
    if answer.status in (200, 201, 204):
        return _OK, "", None
    reason = f"HTTP {answer.status} {answer.message}"
    if answer.status >= 500 or answer.status in (408, 429):
        return _RETRY, reason, answer.retry_after
    if answer.status in (401, 403, 404, 405):
        return _STOP, reason, None  # kept for sync: another key, or a server with the endpoint
    return _DROP, reason, None  # 400, 413: this file will never be taken


class Uploader:
    """The artifacts of one client. ``add`` runs in the caller; one daemon thread uploads."""

    def __init__(
        self,
        settings: Settings,
        *,
        experiment_id: str,
        server_url: str,
        api_key: str | None,
        created: threading.Event,
        create: dict[str, Any] | None,
    ) -> None:
        self.experiment_id = experiment_id
        self._settings = settings
        self._offline = settings.mode == "offline"
        self._server_url = server_url
        self._api_key = api_key
        self._created = created
        self._header = {
            "tora_artifacts": FORMAT,
            "experiment_id": experiment_id,
            "server_url": server_url,
            "create": create,
        }
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._pending: deque[_Item] = deque()
        self._busy: _Item | None = None
        self._seq = 0
        self._dir: Path | None = None
        self._lock_fd: int | None = None
        self._disk_failed = False
        self._running = False
        self._closed = False
        self._stopped: str | None = None
        self._failures = 0
        self._attempts = 0
        self._last_failed = 0
        self.uploaded = 0
        _LIVE.add(self)

    @property
    def pending(self) -> int:
        """Artifacts logged and not uploaded yet."""
        with self._lock:
            return len(self._pending) + (self._busy is not None)

    @property
    def directory(self) -> Path | None:
        return self._dir

    def closed_in_child(self) -> bool:
        """True in a forked child: the parent's uploader is not the child's to use."""
        return os.getpid() != self._pid

    def add(self, source: Path, name: str) -> None:
        """Record one artifact (copying a small file) and wake the uploader. Raises only for the
        caller's mistakes: a path that is not a readable regular file."""
        try:
            stat = source.stat()
        except FileNotFoundError:
            raise ToraValidationError(f"log_artifact: no such file: {source}") from None
        except OSError as e:
            raise ToraValidationError(f"log_artifact: cannot read {source}: {e.strerror or e}") from None
        if not source.is_file():
            raise ToraValidationError(f"log_artifact: {source} is not a regular file")
        if not os.access(source, os.R_OK):
            raise ToraValidationError(f"log_artifact: {source} is not readable")
        with self._lock:
            if self._closed:
                raise ToraValidationError("Cannot log an artifact on a closed Tora client")
            self._seq += 1
            seq = self._seq
            directory = self._directory_locked()
        # The copy is made outside the lock: the upload thread goes on meanwhile.
        item = self._record(directory, source, name, stat.st_size, stat.st_mtime_ns, seq)
        with self._lock:
            self._pending.append(item)
        self._start()
        self._wake.set()

    def _directory_locked(self) -> Path | None:
        """The spool directory, made on first use; None once the disk refused it."""
        if self._dir is None and not self._disk_failed:
            try:
                self._open_dir()
            except OSError as e:
                self._disk_failed = True
                self._disk_error(e)
        return None if self._disk_failed else self._dir

    def _disk_error(self, e: OSError) -> None:
        logger.error(
            "tora: cannot record artifacts in %s (%s); they are uploaded from where they are, "
            "and lost if the process ends first",
            self._dir or artifacts_dir(self._settings.cache_dir),
            e,
        )

    def _record(self, directory: Path | None, source: Path, name: str, size: int, mtime_ns: int, seq: int) -> _Item:
        """The item, on disk when the disk allows (a copy of a small file; else the reference)."""
        small = size <= self._settings.artifact_copy_max
        if directory is not None:
            try:
                copy = directory / f"{seq}.data"
                if small:
                    shutil.copyfile(source, copy)
                record = directory / f"{seq}.json"
                body = {
                    "name": name,
                    "source": str(source.resolve()),
                    "size": size,
                    "mtime_ns": mtime_ns,
                    "copy": copy.name if small else None,
                }
                tmp = record.with_name(record.name + ".tmp")
                tmp.write_text(json.dumps(body))
                os.replace(tmp, record)
                return _Item(name, str(copy if small else source.resolve()), size, mtime_ns, small, record)
            except OSError as e:
                self._disk_failed = True
                self._disk_error(e)
        return _Item(name, str(source.resolve()), size, mtime_ns, False, None)

    def _open_dir(self) -> Path:
        if self._dir is not None:
            return self._dir
        directory = artifacts_dir(self._settings.cache_dir) / f"{self.experiment_id}.{uuid.uuid4().hex[:16]}"
        directory.mkdir(parents=True, exist_ok=False)
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try_lock(fd)
        (directory / "header.json").write_text(json.dumps(self._header))
        self._dir, self._lock_fd = directory, fd
        if not self._offline:
            logger.info("tora: artifacts wait in %s until the server has them", directory)
        return directory

    def _start(self) -> None:
        with self._lock:
            if self._running or self._offline or self._closed:
                return
            try:
                threading.Thread(target=self._loop, name="tora-artifacts", daemon=True).start()
            except RuntimeError:  # interpreter shutting down: sync uploads what is recorded
                return
            self._running = True

    def flush(self, timeout: float) -> int:
        """Wait until every artifact is uploaded, the timeout passes, uploading stopped, or an
        attempt that started after this call failed (as the sender's flush does); returns the
        artifacts not uploaded yet. Offline, nothing is uploaded: returns them at once."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            first = self._attempts + 1
        self._wake.set()
        with self._lock:
            while (
                self._running
                and self._stopped is None
                and (self._pending or self._busy is not None)
                and not self._closed
                and self._last_failed < first
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return len(self._pending) + (self._busy is not None)

    def close(self, timeout: float) -> int:
        """flush(timeout), then leave what is left on disk for ``python -m tora sync``."""
        if self._closed or os.getpid() != self._pid:
            return 0
        left = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        self._wake.set()
        _LIVE.discard(self)
        on_disk = self._release()
        if left:
            (logger.info if self._offline else logger.warning)(
                "tora: %d artifacts of experiment %s are kept in %s; upload them with: python -m tora sync",
                on_disk,
                self.experiment_id,
                self._dir,
            )
        return left

    def _release(self) -> int:
        """Unlock the spool directory (removed when empty); returns the artifacts left in it."""
        directory, fd = self._dir, self._lock_fd
        if directory is None:
            return 0
        left = len(list(directory.glob("*.json"))) - 1  # header.json
        if left <= 0:
            for path in directory.iterdir():
                with contextlib.suppress(OSError):
                    path.unlink()
            with contextlib.suppress(OSError):
                directory.rmdir()
        if fd is not None:
            os.close(fd)
            self._lock_fd = None
        return max(left, 0)

    def after_fork_in_child(self) -> None:
        """The parent's artifacts are the parent's: the child's copy forgets them."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self._lock_fd = None
        self._dir = None
        self._pending.clear()
        self._busy = None
        self._closed = True
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def _loop(self) -> None:
        while True:
            try:
                if not self._once():
                    return
            except Exception:  # a bug must not end the thread and strand the artifacts
                logger.exception("tora: unexpected error while uploading an artifact; retrying")
                time.sleep(self._settings.retry_max)

    def _once(self) -> bool:
        with self._lock:
            if self._closed or self._stopped is not None:
                self._running = False
                self._changed.notify_all()
                return False
            item = self._pending[0] if self._pending else None
        if item is None:
            self._wake.wait(self._settings.flush_interval)
            self._wake.clear()
            return True
        if not self._created.is_set():
            self._created.wait(self._settings.flush_interval)
            return True
        with self._lock:
            self._busy = self._pending.popleft()
            self._attempts += 1
            number = self._attempts
        url = artifact_url(self._server_url, self.experiment_id, item.name)
        outcome, reason, retry_after = upload_item(
            url, item.source, item.size, item.mtime_ns, item.copied, self._api_key, self._settings.timeout
        )
        delay = self._settle(item, outcome, reason, retry_after, number)
        if delay:
            self._wake.wait(delay)
            self._wake.clear()
        return True

    def _settle(self, item: _Item, outcome: str, reason: str, retry_after: float | None, number: int) -> float:
        delay = 0.0
        with self._lock:
            self._busy = None
            if outcome in (_RETRY, _STOP):
                self._last_failed = number
            if outcome in (_OK, _DROP):
                if outcome == _OK:
                    if self._failures:
                        logger.warning("tora: the server answers again; uploading the artifacts kept meanwhile")
                    self._failures = 0
                    self.uploaded += 1
                else:
                    logger.error(
                        "tora: artifact %r of experiment %s is dropped: %s", item.name, self.experiment_id, reason
                    )
                if item.record is not None:
                    for path in (item.record, item.record.with_suffix(".data")):
                        with contextlib.suppress(OSError):
                            path.unlink()
            else:
                self._pending.appendleft(item)
                if outcome == _STOP:
                    self._stopped = reason
                    logger.error(
                        "tora: the server refused artifact %r of experiment %s (%s); uploading stops, "
                        "artifacts are kept in %s for python -m tora sync",
                        item.name,
                        self.experiment_id,
                        reason,
                        self._dir,
                    )
                else:
                    self._failures += 1
                    if self._failures == 1:
                        logger.warning("tora: cannot upload artifact %r (%s); retrying", item.name, reason)
                    delay = self._backoff(retry_after)
            self._changed.notify_all()
        return delay

    def _backoff(self, retry_after: float | None) -> float:
        ceiling = min(self._settings.retry_max, self._settings.retry_base * 2 ** min(self._failures - 1, 30))
        delay: float = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not security)
        if retry_after:
            delay = max(delay, min(retry_after, self._settings.retry_max))
        return delay


def sync_dir(
    directory: Path,
    server_url: str | None,
    api_key: str | None,
    timeout: float,
    post: Callable[[str, bytes], None],
    say: Callable[[str], None],
) -> tuple[int, int, str | None]:
    """Upload one spool directory of artifacts no live process holds. Returns (uploaded, left,
    problem); ``post(url, body)`` creates the experiment (raising on refusal)."""
    try:
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        return 0, 0, f"{directory.name}: cannot open its lock ({e.strerror or e})"
    try:
        if not try_lock(fd):
            say(f"{directory.name}: in use by a running process, skipped")
            return 0, 0, None
        try:
            header = json.loads((directory / "header.json").read_text())
        except (OSError, ValueError):
            header = None
        if not isinstance(header, dict) or header.get("tora_artifacts") != FORMAT:
            return 0, 0, f"{directory.name}: not an artifact spool this version can read, left alone"
        experiment_id = str(header["experiment_id"])
        url = (server_url or header.get("server_url") or "").rstrip("/")
        records = sorted((p for p in directory.glob("*.json") if p.stem.isdigit()), key=lambda p: int(p.stem))
        if header.get("create") and records:
            post(f"{url}/experiments", _transport.encode(header["create"]))
        uploaded = 0
        for index, record in enumerate(records):
            outcome, name, reason = _sync_record(directory, record, url, experiment_id, api_key, timeout)
            if outcome in (_RETRY, _STOP):
                left = len(records) - index
                return uploaded, left, f"{directory.name}: artifact {name!r}: {reason}; {left} artifacts kept"
            if outcome == _DROP:
                say(f"{directory.name}: artifact {name!r} dropped: {reason}")
            else:
                uploaded += 1
            record.unlink(missing_ok=True)
            record.with_suffix(".data").unlink(missing_ok=True)
        for path in directory.iterdir():
            if path.name != "lock":
                path.unlink(missing_ok=True)
        say(f"{directory.name}: artifacts of experiment {experiment_id} are up to date on {url}")
        (directory / "lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            directory.rmdir()
        return uploaded, 0, None
    finally:
        os.close(fd)


def _sync_record(
    directory: Path, record: Path, url: str, experiment_id: str, api_key: str | None, timeout: float
) -> tuple[str, str, str]:
    """Upload one recorded artifact, three tries; returns (outcome, name, reason)."""
    try:
        body = json.loads(record.read_text())
        copy = body.get("copy")
        source = str(directory / copy) if copy else str(body["source"])
        name = artifact_name(body["name"])
        size, mtime_ns = int(body["size"]), int(body["mtime_ns"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ToraValidationError):
        return _DROP, record.name, "not an artifact record"
    outcome, reason = _RETRY, ""
    for attempt in range(3):
        if attempt:
            time.sleep(0.5 * 2**attempt)
        outcome, reason, _ = upload_item(
            artifact_url(url, experiment_id, name), source, size, mtime_ns, bool(copy), api_key, timeout
        )
        if outcome != _RETRY:
            break
    return outcome, name, reason


_LIVE: Registry[Uploader] = Registry("artifact uploader", lambda u: u._settings.exit_timeout, forget_in_child=True)
