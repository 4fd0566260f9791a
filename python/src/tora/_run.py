"""A run's state on the server: heartbeats while it runs, and how it ended.

While a run is open, a daemon thread POSTs ``/experiments/{id}/heartbeat`` every
``heartbeat_interval`` seconds (the first at once, so a run killed in its first seconds reads
"crashed", not "finished"). Ending a run stops the beats, delivers its points and POSTs
``/experiments/{id}/finish`` with "finished" or "failed". How a run ends:

* ``finish(state)`` says it explicitly; ``shutdown()``, leaving a ``with`` block and the atexit
  hook say "finished", unless an uncaught exception was seen (then "failed");
* an exception that reaches ``sys.excepthook`` (the main thread) or ``threading.excepthook``
  (any other thread but tora's own) makes the run end "failed"; if the run had already been
  ended "finished" implicitly (``shutdown()`` in a ``finally`` block), it is marked again, failed.
  The interactive interpreter's errors do not count.

A server without these endpoints (404, 405) is left alone, silently. An offline run, or one
whose points are left on disk, records its end beside its spool file; ``python -m tora sync``
marks it after uploading the points. In a forked child, nothing here runs: the parent owns the run.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import types
import weakref
from collections import deque
from typing import Any

from . import _transport
from ._config import Settings
from ._exceptions import ToraNetworkError, ToraValidationError
from ._sender import Sender
from ._spool import write_end

logger = logging.getLogger("tora")

FINISHED, FAILED = "finished", "failed"
_OLD_SERVER = (404, 405)


def end_state(raw: object) -> str:
    if raw not in (FINISHED, FAILED):
        raise ToraValidationError(f"state must be 'finished' or 'failed', got {raw!r:.50}")
    return str(raw)


class Run:
    def __init__(self, settings: Settings, sender: Sender, server_url: str, api_key: str | None) -> None:
        self._settings = settings
        self._sender = sender
        self._api_key = api_key
        base = f"{server_url}/experiments/{sender.experiment_id}"
        self._heartbeat_url = f"{base}/heartbeat"
        self._finish_url = f"{base}/finish"
        self._pid = os.getpid()
        self._offline = settings.mode == "offline"
        self._stop = threading.Event()
        self._beat_lock = threading.Lock()
        self._ended: str | None = None
        self._explicit = False
        self.failed = False
        """An uncaught exception was seen while the run was open: it ends "failed"."""
        _install_hooks()
        _OPEN.add(self)

    def start(self) -> None:
        if self._offline:
            return
        try:
            threading.Thread(target=self._beat_loop, name="tora-heartbeat", daemon=True).start()
        except RuntimeError:  # interpreter shutting down
            return

    def end(self, timeout: float, state: str | None = None) -> int:
        """Stop the beats, deliver the points (as Sender.close does), and mark the end: ``state``,
        else "failed" if an uncaught exception was seen, else "finished". Returns the points kept
        on disk. Ends once; a forked child ends nothing."""
        if self._ended is not None or os.getpid() != self._pid:
            return self._sender.close(timeout)
        self._explicit = state is not None
        chosen = state or (FAILED if self.failed else FINISHED)
        self._ended = chosen
        self._stop.set()
        _OPEN.discard(self)
        left = self._sender.close(timeout, end_state=chosen, finish=lambda: self._finish(chosen))
        if not self._explicit and chosen == FINISHED:
            _IMPLICITLY_FINISHED.append(self)
        return left

    def mark_failed_after_end(self) -> None:
        """An uncaught exception after shutdown() ended the run "finished": it failed after all."""
        if self._ended != FINISHED or self._explicit or os.getpid() != self._pid:
            return
        self._ended = FAILED
        path = self._sender.end_path
        if path is not None:
            try:
                write_end(path, FAILED)
            except OSError as e:
                logger.error("tora: cannot record the run's end beside %s: %s", path, e)
        elif not self._offline and self._sender.created.is_set():
            self._finish(FAILED)

    def _finish(self, state: str) -> bool:
        """Tell the server how the run ended; True when there is nothing left to tell it."""
        with self._beat_lock:  # no heartbeat in flight: one landing after this would reopen the run
            try:
                answer = _transport.request(
                    "POST",
                    self._finish_url,
                    body=_transport.encode({"state": state}),
                    api_key=self._api_key,
                    timeout=min(self._settings.timeout, 5.0),
                )
            except ToraNetworkError:
                return False
        if answer.status in (200, 201) or answer.status in _OLD_SERVER:
            return True
        logger.debug("tora: marking the run %s answered HTTP %s", state, answer.status)
        return False

    def _beat_loop(self) -> None:
        http = _transport.Session()
        try:
            while not self._stop.is_set():
                if self._sender.created.wait(min(1.0, self._settings.heartbeat_interval)):
                    if not self._beat(http):
                        return
                    self._stop.wait(self._settings.heartbeat_interval)
        except Exception:  # a bug must not be noisier than a missed heartbeat
            logger.debug("tora: heartbeat thread stopped", exc_info=True)
        finally:
            http.close()

    def _beat(self, http: _transport.Session) -> bool:
        """One heartbeat; False when beating is pointless (an older server, a refused key)."""
        with self._beat_lock:
            if self._stop.is_set():
                return False
            try:
                answer = http.request(
                    "POST", self._heartbeat_url, api_key=self._api_key, timeout=self._settings.timeout
                )
            except ToraNetworkError:
                return True
        return answer.status < 400 or answer.status >= 500 or answer.status in (408, 429)


_OPEN: weakref.WeakSet[Run] = weakref.WeakSet()
_IMPLICITLY_FINISHED: deque[Run] = deque(maxlen=100)
_hooks_installed = False
_previous_excepthook = sys.excepthook
_previous_threading_excepthook = threading.excepthook


def _failure_seen() -> None:
    for run in list(_OPEN):
        run.failed = True


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None) -> None:
    try:
        if not hasattr(sys, "ps1") and not sys.flags.interactive:
            _failure_seen()
            while _IMPLICITLY_FINISHED:
                _IMPLICITLY_FINISHED.popleft().mark_failed_after_end()
    except Exception:  # the user's traceback matters more than ours
        logger.debug("tora: could not mark the run failed", exc_info=True)
    _previous_excepthook(exc_type, exc, tb)


def _threading_excepthook(args: Any) -> None:
    thread = args.thread
    if args.exc_type is not SystemExit and not (thread is not None and thread.name.startswith("tora-")):
        _failure_seen()
    _previous_threading_excepthook(args)


def _install_hooks() -> None:
    """Chain onto whatever hooks are in place when the first run starts (not at import)."""
    global _hooks_installed, _previous_excepthook, _previous_threading_excepthook
    if _hooks_installed:
        return
    _hooks_installed = True
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
    _previous_threading_excepthook = threading.excepthook
    threading.excepthook = _threading_excepthook


def _end_all_at_exit() -> None:
    """End every open run with one shared deadline to deliver its points."""
    runs = list(_OPEN)
    if not runs:
        return
    deadline = time.monotonic() + runs[0]._settings.exit_timeout
    for run in runs:
        try:
            run.end(max(0.0, deadline - time.monotonic()))
        except Exception:
            logger.exception("tora: error while ending the run at exit")


atexit.register(_end_all_at_exit)  # after _sender's, so it runs first (atexit is last in, first out)
