"""One experiment per process, as module functions: ``tora.setup()`` then ``tora.tmetric()``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

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
    "log_artifact",
    "setup",
    "shutdown",
    "tmetric",
    "tresult",
]

logger = logging.getLogger("tora")
_INSTANCE: Tora | None = None


def _get_client() -> Tora:
    if _INSTANCE is None:
        raise ToraError("Tora client not initialized. Call tora.setup() first.")
    return _INSTANCE


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
    global _INSTANCE
    if _INSTANCE is not None:
        raise ToraError("Tora client already initialized. Call shutdown() first to reinitialize.")
    client = Tora.create_experiment(
        name=name,
        workspace_id=workspace_id,
        description=description,
        hyperparams=hyperparams,
        tags=tags,
        api_key=api_key,
        server_url=server_url,
        max_buffer_len=max_buffer_len,
        mode=mode,
        metadata=metadata,
        system_metrics=system_metrics,
    )
    _INSTANCE = client
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


def flush(timeout: float = DEFAULT_FLUSH_TIMEOUT) -> int:
    """Wait for the points of setup()'s client to be delivered; returns how many are not yet."""
    if _INSTANCE is None or _INSTANCE.is_closed:
        return 0
    return _INSTANCE.flush(timeout)


def shutdown(timeout: float = DEFAULT_FLUSH_TIMEOUT) -> int:
    """Close setup()'s client; returns the points kept on disk for ``python -m tora sync``."""
    global _INSTANCE
    client, _INSTANCE = _INSTANCE, None
    if client is None:
        return 0
    try:
        return client.shutdown(timeout)
    except Exception:
        logger.exception("tora: error during shutdown")
        return 0


def finish(state: str = "finished", timeout: float = DEFAULT_FLUSH_TIMEOUT) -> int:
    """Close setup()'s client as shutdown() does, marking the run ``state`` ("finished" or "failed")."""
    global _INSTANCE
    checked = end_state(state)
    client, _INSTANCE = _INSTANCE, None
    if client is None:
        return 0
    try:
        return client.finish(checked, timeout)
    except Exception:
        logger.exception("tora: error during finish")
        return 0


def is_initialized() -> bool:
    return _INSTANCE is not None and not _INSTANCE.is_closed


def get_experiment_id() -> str | None:
    if _INSTANCE is not None and not _INSTANCE.is_closed:
        return _INSTANCE.experiment_id
    return None


def get_experiment_url() -> str | None:
    if _INSTANCE is not None and not _INSTANCE.is_closed:
        return _INSTANCE.url
    return None
