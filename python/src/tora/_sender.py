"""The background sender: the only place where logged points leave the process.

The caller appends ``(name, value, step)`` tuples to ``Sender.queue`` (a deque: appends need no
lock) and calls ``poke()`` when the queue reaches ``wake_at``. Two daemon threads do the rest:

* the *sender* takes up to ``batch_size`` points and freezes them into a *batch*: one body for
  POST /experiments/{id}/points, with a ``batch_id`` (``<session>.<seq of its first point>``),
  encoded once. It sends when poked, when ``flush_interval`` has passed, or straight away while
  points keep arriving. A batch that fails for want of an answer (network error, timeout, 5xx,
  408, 429) is appended to the spool file, byte for byte, and retried from there after a backoff
  (exponential, with jitter). Every retry sends the same bytes, and the server stores a batch_id
  once, so a batch that was in fact stored before its answer was lost is not stored twice. While
  the spool has lines, the sender alternates between spooled and fresh batches. Any other answer
  (401, 403, 404, 400, ...) stops sending for good: every point then goes to the spool, for
  ``python -m tora sync``.
* the *spiller* bounds memory: every ``flush_interval``, or when poked past ``max_pending``, it
  freezes queued points into batches and moves them to the spool if the queue is too long, the
  server is failing, sending has stopped, or the client is offline (then it is the only thread).

Points are never regrouped once frozen: regrouping after a failure would give points that the
server already has a new batch_id, and store them twice.

``flush`` waits on a condition that both threads notify. After ``os.fork`` the child starts with
an empty queue, a new batch_id session, a spool file of its own and no threads; its first point
starts its own threads. A child never touches the parent's sender or spool.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import sys
import threading
import time
import uuid
from array import array
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from . import _transport
from ._closing import Registry
from ._config import Settings
from ._exceptions import ToraNetworkError
from ._spool import Spool, spool_dir

logger = logging.getLogger("tora")

Value = Union[int, float]
Point = tuple[str, Value, Optional[int]]
"""name, value, step; a point without a step is a result."""

MAX_BATCH = 100_000
"""The most points the server takes in one request."""
_NEVER = sys.maxsize
_OK, _RETRY, _STOP = "ok", "retry", "stop"

_JSON = json.JSONEncoder(separators=(",", ":"))
_NON_FINITE = frozenset(("NaN", "Infinity", "-Infinity"))
_SWAP = sys.byteorder == "big"


def _f64(values: list[Value]) -> str:
    """Values as base64 of little-endian IEEE-754 doubles: every bit kept (NaN, +-Infinity, -0.0),
    at a fraction of the cost of decimal text. Ints become doubles, as the server stores them."""
    doubles = array("d", values)
    if _SWAP:
        doubles.byteswap()
    return base64.b64encode(doubles.tobytes()).decode("ascii")


def _number(value: Value) -> str:
    """One value as JSON: a number, or the string "NaN", "Infinity" or "-Infinity"."""
    text = _JSON.encode(value)
    return f'"{text}"' if text in _NON_FINITE else text


def encode(points: list[Point], batch_id: str) -> bytes:
    """The body of POST /experiments/{id}/points: metric points as one column of steps and one of
    values per name (``values_f64``), names in order of first appearance, each name's points in
    logged order; then the results. A pure function, so a batch encoded twice gives the same bytes."""
    columns: dict[str, tuple[list[int], list[Value]]] = {}
    results: list[str] = []
    for name, value, step in points:
        if step is None:
            results.append(f'{{"name":{_JSON.encode(name)},"value":{_number(value)}}}')
            continue
        column = columns.get(name)
        if column is None:
            column = columns[name] = ([], [])
        column[0].append(step)
        column[1].append(value)
    metrics = ",".join(
        f'{{"name":{_JSON.encode(name)},"steps":{_JSON.encode(steps)},"values_f64":"{_f64(values)}"}}'
        for name, (steps, values) in columns.items()
    )
    return f'{{"batch_id":{_JSON.encode(batch_id)},"metrics":[{metrics}],"results":[{",".join(results)}]}}'.encode()


@dataclass(frozen=True)
class _Job:
    kind: str  # "create" | "spool" | "fresh"
    body: bytes
    """Sent as is on every attempt: a batch never changes once formed."""
    points: int
    number: int
    """Attempts are numbered, so flush() can tell the ones that started after it was called."""


class Sender:
    def __init__(
        self,
        settings: Settings,
        *,
        experiment_id: str,
        server_url: str,
        api_key: str | None,
        create: dict[str, Any] | None,
        threshold: int,
    ) -> None:
        self.queue: deque[Point] = deque()
        self.wake_at = 0
        """The caller pokes when len(queue) reaches this; 0 until the threads run, so the first point starts them."""
        self.experiment_id = experiment_id
        self._settings = settings
        self._offline = settings.mode == "offline"
        self._threshold = settings.batch_size if self._offline else max(1, threshold)
        self._api_key = api_key
        self._points_url = f"{server_url}/experiments/{experiment_id}/points"
        self._experiments_url = f"{server_url}/experiments"
        self._create = None if self._offline else create
        self._header = {"experiment_id": experiment_id, "server_url": server_url, "create": create}
        self._closed = False
        self.outage_told = False
        """The caller already said the server cannot be reached: the first failure goes unsaid."""
        self.end_path: Path | None = None
        """The spool file whose ``.end`` record holds the run's end, when close() wrote one."""
        self._fresh_state()
        _LIVE.add(self)

    def _fresh_state(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._spill_wake = threading.Event()
        self._session = uuid.uuid4().hex[:16]
        # The sender thread's keep-alive connection (only that thread uses it).
        self._http = _transport.Session()
        self._seq = 0
        self._inflight: _Job | None = None
        """The fresh batch being sent, not in the spool file yet."""
        name = f"{self.experiment_id}.{self._session}"
        self._spool = Spool(spool_dir(self._settings.cache_dir), name, self._header, offline=self._offline)
        self.created = threading.Event()
        """Set once the server has the experiment (at once when it was created before the sender)."""
        if self._create is None:
            self.created.set()
        self._failures = 0
        self._attempts = 0
        self._last_failed = 0
        self._stopped: str | None = None
        self._replay_turn = False
        self._running = False
        self.delivered = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def create_payload(self) -> dict[str, Any] | None:
        """The body that creates the experiment (None when it existed before): what sync sends first."""
        create = self._header["create"]
        return create if isinstance(create, dict) else None

    @property
    def spool_path(self) -> str:
        return str(self._spool.path)

    def set_threshold(self, threshold: int) -> None:
        if not self._offline:
            self._threshold = max(1, threshold)
            if self.wake_at:
                self.wake_at = self._threshold

    @property
    def in_memory(self) -> int:
        return len(self.queue) + self._inflight_points

    def start(self) -> None:
        with self._lock:
            if self._running or self._closed:
                return
            targets = [self._spill_loop] if self._offline else [self._spill_loop, self._send_loop]
            threads = [threading.Thread(target=t, name=f"tora-{t.__name__[1:]}", daemon=True) for t in targets]
            try:
                for thread in threads:
                    thread.start()
            except RuntimeError:  # interpreter shutting down: close() spools what is queued
                return
            self._running = True
            self.wake_at = self._threshold

    def poke(self) -> None:
        """The caller's only call into the sender, when the queue reached wake_at."""
        if not self._running:
            self.start()
        if len(self.queue) >= self._settings.max_pending:
            self.wake_at = _NEVER
            self._spill_wake.set()
        else:
            self.wake_at = self._settings.max_pending
            (self._spill_wake if self._offline else self._wake).set()

    def flush(self, timeout: float) -> int:
        """Wait until every point is delivered (offline: written), or the timeout passes, or an
        attempt that started after this call fails. Returns the points not delivered yet."""
        deadline = time.monotonic() + max(0.0, timeout)
        if not self._running and (self.queue or self._create is not None):
            self.start()
        with self._lock:
            first = self._attempts + 1
        self._wake.set()
        self._urgent.set()
        self._spill_wake.set()
        with self._lock:
            while self._running and not self._settled() and self._last_failed < first:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return len(self.queue) + self._inflight_points + self._spool.unsent

    def close(self, timeout: float, *, end_state: str | None = None, finish: Callable[[], bool] | None = None) -> int:
        """flush(timeout), then keep whatever is left in the spool file. Returns the points kept.

        With an end_state, the run's end is marked: by ``finish()`` (which tells the server) once
        the points are delivered or given up on, else beside the spool file, for sync.
        """
        if self._closed:
            return 0
        self.flush(timeout)
        marked = False
        if finish is not None and not self._offline and self.created.is_set() and self._stopped is None:
            marked = finish()
        with self._lock:
            self._spill_locked()
            if self._inflight is not None:
                self._spool.append(self._inflight.body, self._inflight.points)
                self._inflight = None
            if end_state is not None and not marked:
                self.end_path = self._spool.path if self._spool.mark_end(end_state) else None
            self._closed = True
            left = self._spool.close()
            self._changed.notify_all()
        for event in (self._wake, self._urgent, self._spill_wake):
            event.set()
        _LIVE.discard(self)
        if left:
            (logger.info if self._offline else logger.warning)(
                "tora: %d points of experiment %s are kept in %s; upload them with: python -m tora sync",
                left,
                self.experiment_id,
                self._spool.path,
            )
        return left

    def after_fork_in_child(self) -> None:
        self._spool.forget_after_fork()
        self._http.forget()
        self.queue.clear()
        self._fresh_state()
        self.wake_at = 0

    def _settled(self) -> bool:
        if self._offline or self._stopped is not None:
            return not self.queue
        return not self.queue and self._inflight is None and not self._spool.unsent and self._create is None

    @property
    def _inflight_points(self) -> int:
        inflight = self._inflight
        return 0 if inflight is None else inflight.points

    def _batch(self) -> tuple[bytes, int]:
        """Freeze up to batch_size queued points into a batch: its body, and its number of points."""
        queue = self.queue
        take = queue.popleft
        points = [take() for _ in range(min(self._settings.batch_size, MAX_BATCH, len(queue)))]
        batch_id = f"{self._session}.{self._seq}"
        self._seq += len(points)
        return encode(points, batch_id), len(points)

    def _spill_locked(self) -> None:
        while self.queue:
            self._spool.append(*self._batch())
        self.wake_at = self._threshold

    def _spill_loop(self) -> None:
        while not self._closed:
            self._spill_wake.wait(self._settings.flush_interval)
            self._spill_wake.clear()
            try:
                with self._lock:
                    if self._closed:
                        return
                    if (
                        self._offline
                        or self._stopped is not None
                        or self._failures
                        or len(self.queue) >= self._settings.max_pending
                    ):
                        self._spill_locked()
                    self._changed.notify_all()
            except Exception:  # a bug must not end the thread and strand the queue
                logger.exception("tora: unexpected error while spooling; retrying")

    def _send_loop(self) -> None:
        while True:
            try:
                if not self._send_once():
                    self._http.close()
                    return
            except Exception:  # a bug must not end the thread and strand the queue
                logger.exception("tora: unexpected error while sending; retrying")
                self._urgent.wait(self._settings.retry_max)
                self._urgent.clear()

    def _send_once(self) -> bool:
        """One job, or one idle wait; False once sending is over."""
        with self._lock:
            if self._closed or self._stopped is not None:
                return False
            job = self._next_job()
        if job is None:
            self._wake.wait(self._settings.flush_interval)
            self._wake.clear()
            return True
        url = self._experiments_url if job.kind == "create" else self._points_url
        outcome, reason, retry_after = self._post(url, job.body)
        delay = self._settle(job, outcome, reason, retry_after)
        if delay:
            self._spill_wake.set()
            self._urgent.wait(delay)
            self._urgent.clear()
        return True

    def _next_job(self) -> _Job | None:
        number = self._attempts + 1
        job = None
        if self._create is not None:
            job = _Job("create", _transport.encode(self._create), 0, number)
        elif self._spool.unsent and (self._failures or self._replay_turn or not self.queue):
            line = self._spool.peek()
            if line is not None:
                self._replay_turn = False
                job = _Job("spool", line[0], line[1], number)
        if job is None and self.queue:
            body, points = self._batch()
            job = self._inflight = _Job("fresh", body, points, number)
            self._replay_turn = True
            self.wake_at = self._threshold
        if job is not None:
            self._attempts = number
        return job

    def _post(self, url: str, body: bytes) -> tuple[str, str, float | None]:
        try:
            answer = self._http.request("POST", url, body=body, api_key=self._api_key, timeout=self._settings.timeout)
        except ToraNetworkError as e:
            return _RETRY, str(e), None
        if answer.status in (200, 201):
            return _OK, "", None
        reason = f"HTTP {answer.status} {answer.message}"
        if answer.status >= 500 or answer.status in (408, 429):
            return _RETRY, reason, answer.retry_after
        return _STOP, reason, None

    def _settle(self, job: _Job, outcome: str, reason: str, retry_after: float | None) -> float:
        """Record what happened to a job; returns how long to back off (0: go on)."""
        delay = 0.0
        with self._lock:
            mine = job is self._inflight
            if mine:
                self._inflight = None
            if outcome == _OK:
                if self._failures:
                    logger.warning("tora: the server answers again; sending the points kept meanwhile")
                self._failures = 0
                self.outage_told = False
                if job.kind == "create":
                    self._create = None
                    self.created.set()
                elif job.kind == "spool" and not self._closed:
                    self._spool.mark_sent()
                self.delivered += job.points
            else:
                self._last_failed = job.number
                if mine and not self._closed:
                    self._spool.append(job.body, job.points)
                if outcome == _STOP:
                    self._stopped = reason
                    logger.error(
                        "tora: the server refused %s for experiment %s (%s); sending stops, points are kept in %s",
                        "to create the experiment" if job.kind == "create" else "a batch",
                        self.experiment_id,
                        reason,
                        self._spool.path,
                    )
                    if not self._closed:
                        self._spill_locked()
                else:
                    self._failures += 1
                    if self._failures == 1 and not self.outage_told:
                        logger.warning("tora: cannot reach the server (%s); logging goes on, points are kept", reason)
                    delay = self._backoff(retry_after)
            self._changed.notify_all()
        return delay

    def _backoff(self, retry_after: float | None) -> float:
        ceiling = min(self._settings.retry_max, self._settings.retry_base * 2 ** min(self._failures - 1, 30))
        delay: float = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not security)
        if retry_after:
            delay = max(delay, min(retry_after, self._settings.retry_max))
        return delay


# Every open sender gets a share of one deadline to deliver at exit, then keeps the rest on disk.
_LIVE: Registry[Sender] = Registry("sender", lambda s: s._settings.exit_timeout, forget_in_child=False)
