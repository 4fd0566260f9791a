"""Background workers (the point sender, the artifact uploader) closed together at exit and
disarmed in a forked child: one registry each, so the two never drift apart."""

from __future__ import annotations

import atexit
import logging
import os
import time
import weakref
from typing import Callable, Generic, Protocol, TypeVar

logger = logging.getLogger("tora")


class Worker(Protocol):
    def close(self, timeout: float) -> object: ...

    def after_fork_in_child(self) -> None: ...


W = TypeVar("W", bound=Worker)


class Registry(Generic[W]):
    """The live workers of one kind. At exit every one gets a share of one deadline
    (``exit_timeout`` of the first, in seconds) to finish; in a forked child each is told it
    lives in a copy of the parent (its thread did not come along)."""

    def __init__(self, what: str, exit_timeout: Callable[[W], float], forget_in_child: bool) -> None:
        self._live: weakref.WeakSet[W] = weakref.WeakSet()
        self._what = what
        self._exit_timeout = exit_timeout
        self._forget_in_child = forget_in_child
        # Registered at import of the module that makes the registry: exit hooks run last in,
        # first out, and the modules' import order sets who closes first.
        atexit.register(self._close_all)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)

    def add(self, worker: W) -> None:
        self._live.add(worker)

    def discard(self, worker: W) -> None:
        self._live.discard(worker)

    def _close_all(self) -> None:
        workers = list(self._live)
        if not workers:
            return
        deadline = time.monotonic() + self._exit_timeout(workers[0])
        for worker in workers:
            try:
                worker.close(max(0.0, deadline - time.monotonic()))
            except Exception:
                logger.exception("tora: error while closing the %s at exit", self._what)

    def _after_fork_in_child(self) -> None:
        for worker in list(self._live):
            worker.after_fork_in_child()
            if self._forget_in_child:
                self._live.discard(worker)
