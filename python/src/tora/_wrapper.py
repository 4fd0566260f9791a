"""The current run, as module functions: ``tora.setup()`` then ``tora.tmetric()``, or
``tora.init()`` then ``tora.log()``. Both start the one current run (see _init)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _init
from ._client import DEFAULT_FLUSH_TIMEOUT, Tora
from ._exceptions import ToraError
from ._run import end_state
from ._validation import HPValue, Number

__all__ = [
    "download_artifact",
    "finish",
    "flush",
    "get_experiment_id",
    "get_experiment_url",
    "is_initialized",
    "list_artifacts",
    "log",
    "log_artifact",
    "setup",
    "shutdown",
    "tmetric",
    "tresult",
]

logger = logging.getLogger("tora")


def _get_client() -> Tora:
    run = _init.current()
    if run is None:
        raise ToraError("Tora client not initialized. Call tora.setup() (or tora.init()) first.")
    if run.client is None:
        raise ToraError("The current run is disabled (mode='disabled'): it has no client.")
    return run.client


def setup(
    name: str,
    workspace_id: str | None = None,
    description: str | None = None,
    hyperparams: dict[str, HPValue] | None = None,
    tags: list[str] | None = None,
    api_key: str | None = None,
    server_url: str | None = None,
    max_buffer_len: int = 1,
    mode: str | None = None,
    metadata: bool | None = None,
    system_metrics: bool | None = None,
) -> str:
    """Create an experiment and make it the one tmetric()/tresult() log to. Returns its id.

    ``mode="offline"`` (or ``TORA_MODE=offline``) logs the whole run to disk, with no server;
    ``python -m tora sync`` uploads it later. ``metadata=False`` (or ``TORA_METADATA=0``) keeps
    the run's git commit, command line, host and versions from being recorded.
    ``system_metrics=False`` (or ``TORA_SYSTEM_METRICS=0``) keeps the run from logging ``sys/``
    metrics (CPU, memory, disk, network, GPUs).
    """
    with _init._lock:
        if _init.current() is not None:
            raise ToraError("Tora client already initialized. Call shutdown() first to reinitialize.")
        client = _init.with_system_metrics(
            Tora.create_experiment,
            {
                "name": name,
                "workspace_id": workspace_id,
                "description": description,
                "hyperparams": hyperparams,
                "tags": tags,
                "api_key": api_key,
                "server_url": server_url,
                "max_buffer_len": max_buffer_len,
                "mode": mode,
                "metadata": metadata,
            },
            system_metrics,
        )
        _init._set_current(
            _init.Run(
                client,
                name=name,
                notes=description,
                tags=tags,
                config=hyperparams,
                mode=client.mode,
            )
        )
    return client.experiment_id


def tmetric(name: str, value: Number, step: int) -> None:
    """Log a metric with the client of setup()."""
    _get_client().metric(name, value, step)


def tresult(name: str, value: Number) -> None:
    """Log a result with the client of setup()."""
    _get_client().result(name, value)


def log_artifact(path: str | os.PathLike[str], name: str | None = None) -> None:
    """Keep a file with setup()'s run; returns at once, the upload runs in the background.
    See Tora.log_artifact."""
    _get_client().log_artifact(path, name)


def list_artifacts() -> list[dict[str, Any]]:
    """The artifacts of setup()'s run on the server. See Tora.list_artifacts."""
    return _get_client().list_artifacts()


def download_artifact(name: str, dest: str | os.PathLike[str]) -> Path:
    """Download an artifact of setup()'s run to ``dest``. See Tora.download_artifact."""
    return _get_client().download_artifact(name, dest)


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Log numbers to the current run at W&B's steps. See Run.log."""
    _init.require_current("tora.log()").log(data, step, commit)


def flush(timeout: float = DEFAULT_FLUSH_TIMEOUT) -> int:
    """Wait for the points of the current run to be delivered; returns how many are not yet."""
    run = _init.current()
    if run is None or run.client is None or run.client.is_closed:
        return 0
    return run.client.flush(timeout)


def shutdown(timeout: float = DEFAULT_FLUSH_TIMEOUT) -> int:
    """End the current run (failed if an uncaught exception was seen, else finished); returns the
    points kept on disk for ``python -m tora sync``."""
    run = _init.current()
    if run is None:
        return 0
    return run._end(None, timeout)


def finish(
    state: str | int | None = None,
    timeout: float = DEFAULT_FLUSH_TIMEOUT,
    *,
    exit_code: int | None = None,
    quiet: bool | None = None,
) -> int:
    """End the current run, marking it ``state`` ("finished" or "failed"; default "finished").

    W&B's ``finish(exit_code)`` works too: 0 is "finished", anything else "failed" (an int as the
    first argument is taken as the exit code). Returns the points kept on disk for
    ``python -m tora sync``. Without a current run, does nothing.
    """
    if isinstance(state, int) and not isinstance(state, bool):
        state, exit_code = None, state
    if exit_code is not None:
        chosen = "finished" if exit_code == 0 else "failed"
    else:
        chosen = end_state("finished" if state is None else state)
    run = _init.current()
    if run is None:
        return 0
    return run._end(chosen, timeout)


def is_initialized() -> bool:
    run = _init.current()
    return run is not None and run.client is not None and not run.client.is_closed


def get_experiment_id() -> str | None:
    return _get_client().experiment_id if is_initialized() else None


def get_experiment_url() -> str | None:
    return _get_client().url if is_initialized() else None
