"""Every setting of the SDK, read from the environment in this one place.

Settings are read when a client is made (not at import), so a script or a test can set
``TORA_*`` variables before it calls ``setup()``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

VERSION = "0.1.0"
"""The SDK's version (pyproject.toml says the same)."""
DEFAULT_BASE_URL = "http://127.0.0.1:8080/api"
_OFF = ("0", "false", "no", "off")

logger = logging.getLogger("tora")
_warned: set[str] = set()


@dataclass(frozen=True)
class Settings:
    base_url: str
    """TORA_BASE_URL: the server's API root."""
    api_key: str | None = field(repr=False)
    """TORA_API_KEY: an API key (``tora_sk_...``) sent as ``x-api-key``. Never in a repr or a message."""
    mode: str
    """TORA_MODE: ``online`` (default) or ``offline`` (spool everything, upload later with ``python -m tora sync``)."""
    cache_dir: Path
    """TORA_CACHE_DIR: where spool files live (default: the user's cache directory + ``/tora``)."""
    flush_interval: float
    """TORA_FLUSH_INTERVAL: seconds the sender waits before sending a batch that is not full (default 1)."""
    batch_size: int
    """TORA_BATCH_SIZE: most points in one request (default 10,000; the server takes 100,000 at most)."""
    max_pending: int
    """TORA_MAX_PENDING: points held in memory before new ones go to the spool file (default 100,000)."""
    timeout: float
    """TORA_TIMEOUT: seconds one HTTP request may take (default 10)."""
    retry_base: float
    """TORA_RETRY_BASE: first retry delay in seconds; doubles per failure, with full jitter (default 0.5)."""
    retry_max: float
    """TORA_RETRY_MAX: longest retry delay in seconds (default 30)."""
    exit_timeout: float
    """TORA_EXIT_TIMEOUT: seconds the atexit hook waits for delivery before spooling the rest (default 10)."""
    heartbeat_interval: float
    """TORA_HEARTBEAT_INTERVAL: seconds between two heartbeats of a running run (default 30)."""
    metadata: bool
    """TORA_METADATA: ``0`` keeps the run's metadata (git, command line, host, versions) from being sent."""
    artifact_copy_max: int = 64 * 1024 * 1024
    """TORA_ARTIFACT_COPY_MAX: files up to this many bytes are copied when logged as artifacts;
    larger ones are read when uploaded (default 64 MiB; 0: never copy)."""
    system_metrics: bool = True
    """TORA_SYSTEM_METRICS: ``0`` (or false, no, off) keeps runs from logging ``sys/`` metrics (CPU,
    memory, disk, network, GPUs); the ``system_metrics=`` argument overrides it."""
    system_metrics_interval: float = 10.0
    """TORA_SYSTEM_METRICS_INTERVAL: seconds between two system samples (default 10, at least 1)."""


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value >= 0 else default


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if value >= 1 else default


def _bytes(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if value >= 0 else default


def _flag(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in _OFF


def _seconds(name: str, default: float, minimum: float) -> float:
    """A number of seconds; a value that is not one, or is below ``minimum``, is named in one warning."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    chosen = default if not math.isfinite(value) or value <= 0 else max(minimum, value)
    if chosen != value and f"{name}={raw}" not in _warned:
        _warned.add(f"{name}={raw}")
        logger.warning("tora: %s=%r is not a number of seconds >= %g; using %g", name, raw[:50], minimum, chosen)
    return chosen


def default_cache_dir() -> Path:
    override = os.environ.get("TORA_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        root = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(root) / "tora" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "tora"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tora"


def load() -> Settings:
    mode = os.environ.get("TORA_MODE", "online").strip().lower() or "online"
    return Settings(
        base_url=os.environ.get("TORA_BASE_URL") or DEFAULT_BASE_URL,
        api_key=os.environ.get("TORA_API_KEY") or None,
        mode=mode,
        cache_dir=default_cache_dir(),
        flush_interval=_float("TORA_FLUSH_INTERVAL", 1.0),
        batch_size=_int("TORA_BATCH_SIZE", 10_000),
        max_pending=_int("TORA_MAX_PENDING", 100_000),
        timeout=_float("TORA_TIMEOUT", 10.0),
        retry_base=_float("TORA_RETRY_BASE", 0.5),
        retry_max=_float("TORA_RETRY_MAX", 30.0),
        exit_timeout=_float("TORA_EXIT_TIMEOUT", 10.0),
        heartbeat_interval=_float("TORA_HEARTBEAT_INTERVAL", 30.0) or 30.0,
        metadata=_flag("TORA_METADATA"),
        artifact_copy_max=_bytes("TORA_ARTIFACT_COPY_MAX", 64 * 1024 * 1024),
        system_metrics=_flag("TORA_SYSTEM_METRICS"),
        system_metrics_interval=_seconds("TORA_SYSTEM_METRICS_INTERVAL", 10.0, 1.0),
    )
