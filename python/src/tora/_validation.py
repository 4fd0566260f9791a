"""Checks that run in the caller. A bad argument raises ToraValidationError at once."""

from __future__ import annotations

import math
import operator
import re
import uuid
from collections.abc import Mapping
from typing import Any, Union

from ._exceptions import ToraConfigurationError, ToraValidationError

HPValue = Union[str, float, int]
Number = Union[int, float]

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_NAME_RE = re.compile(r"[a-zA-Z0-9_\-./]+")
_FORBIDDEN_RE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_TAG_FORBIDDEN_RE = re.compile(r'[<>:"/\\|?*\x00-\x1f,;]')
_WORKSPACE_RE = re.compile(r"[a-zA-Z0-9\-]+")


MAX_NAME = 100
_NAME_BAD_RE = re.compile(r"[^a-zA-Z0-9_\-./]")


def metric_name(name: object) -> str:
    """A metric or result name as it is sent: 1-100 of letters, digits, ``_ - . /``.

    Surrounding whitespace is stripped; any other character outside that set becomes ``_`` and a
    longer name is cut to 100 characters (the caller warns once per name). Only a name that is
    not a string, or is empty, raises: those fail on the first step, not days into a run.
    """
    if not isinstance(name, str):
        raise ToraValidationError(f"Metric name must be a string, got {type(name).__name__}")
    stripped = name.strip()
    if not stripped:
        raise ToraValidationError("Metric name cannot be empty")
    if len(stripped) <= MAX_NAME and _NAME_RE.fullmatch(stripped):
        return stripped
    return _NAME_BAD_RE.sub("_", stripped)[:MAX_NAME]


API_KEY_PREFIX = "tora_sk_"


def api_key(key: str, source: str) -> str:
    """Check the shape of an API key before it is sent; the message names the problem and where
    the key came from (``source``), and never quotes the key or any part of it."""
    lines = [line for line in key.splitlines() if line.strip()]
    if len(lines) > 1:
        raise ToraConfigurationError(
            f"{source} holds {len(lines)} lines; it must hold the API key alone, one line starting with "
            f"{API_KEY_PREFIX}. Set it to the key line only."
        )
    if key != key.strip():
        raise ToraConfigurationError(
            f"{source} has whitespace or a newline before or after the key; set it to the key alone."
        )
    if not key:
        raise ToraConfigurationError(f"{source} is empty.")
    if not key.startswith(API_KEY_PREFIX):
        raise ToraConfigurationError(
            f"{source} is not a Tora API key: keys start with {API_KEY_PREFIX}. "
            "Create one with `tora api-key create` or in the dashboard (API keys)."
        )
    if any(c.isspace() for c in key):
        raise ToraConfigurationError(f"{source} has whitespace inside the key; set it to the key alone.")
    if not (key.isascii() and key.isprintable()):
        raise ToraConfigurationError(
            f"{source} has characters a Tora API key never has (a key is {API_KEY_PREFIX} then letters and digits)."
        )
    return key


def value(raw: object) -> Number:
    """A number to log: int, float, bool, numpy scalar, 0-d tensor; NaN and +-Inf are allowed."""
    if type(raw) is float:
        return raw
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int):
        if _I64_MIN <= raw <= _I64_MAX:
            return int(raw)
        raise ToraValidationError(f"Metric value {raw} is out of the 64-bit integer range")
    if isinstance(raw, float):
        return float(raw)
    if raw is None or isinstance(raw, (str, bytes, bytearray)):
        raise ToraValidationError(f"Metric value must be a number, got {type(raw).__name__}: {raw!r:.50}")
    cls = type(raw)
    if hasattr(cls, "__float__"):
        if hasattr(cls, "__index__"):
            try:
                return value(operator.index(raw))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                pass
        try:
            return float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError) as e:
            raise ToraValidationError(f"Metric value must be a single number, got {cls.__name__}: {e}") from e
    item = getattr(raw, "item", None)
    if callable(item):
        try:
            inner = item()
        except (TypeError, ValueError) as e:
            raise ToraValidationError(f"Metric value must be a single number, got {cls.__name__}: {e}") from e
        if inner is raw or not isinstance(inner, (int, float)):
            raise ToraValidationError(f"Metric value must be a number, got {cls.__name__}")
        return value(inner)
    raise ToraValidationError(f"Metric value must be a number, got {cls.__name__}")


def step(raw: object) -> int:
    """A step: an integer >= 0 (numpy integers and integral floats are accepted)."""
    if type(raw) is int and 0 <= raw <= _I64_MAX:
        return raw
    if raw is None:
        raise ToraValidationError("step_or_epoch cannot be None")
    if isinstance(raw, (str, bytes, bytearray)):
        raise ToraValidationError(f"Step must be an integer, got {type(raw).__name__}")
    result: int | None = None
    if isinstance(raw, float):
        if raw.is_integer():
            result = int(raw)
    elif hasattr(type(raw), "__index__"):
        try:
            result = operator.index(raw)  # type: ignore[arg-type]
        except TypeError:
            result = None
    if result is None:
        item = getattr(raw, "item", None)
        if callable(item):
            inner = item()
            if inner is not raw and isinstance(inner, (int, float)):
                return step(inner)
        raise ToraValidationError(f"Step must be an integer, got {type(raw).__name__}: {raw!r:.50}")
    if result < 0:
        raise ToraValidationError("Step must be non-negative")
    if result > _I64_MAX:
        raise ToraValidationError("Step value too large")
    return result


def is_finite(number: Number) -> bool:
    return type(number) is int or math.isfinite(number)


def experiment_name(name: object) -> str:
    if not isinstance(name, str):
        raise ToraValidationError("Experiment name must be a string")
    name = name.strip()
    if not name:
        raise ToraValidationError("Experiment name cannot be empty")
    if len(name) > 255:
        raise ToraValidationError("Experiment name cannot exceed 255 characters")
    if _FORBIDDEN_RE.search(name):
        raise ToraValidationError(
            'Experiment name contains invalid characters. Avoid: < > : " / \\ | ? * and control characters'
        )
    return name


def workspace_id(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ToraValidationError("Workspace ID must be a string")
    raw = raw.strip()
    if not raw:
        raise ToraValidationError("Workspace ID cannot be empty")
    if not _WORKSPACE_RE.fullmatch(raw):
        raise ToraValidationError("Workspace ID must contain only letters, numbers, and hyphens")
    return raw


def hyperparams(raw: object) -> dict[str, HPValue] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ToraValidationError("Hyperparameters must be a mapping (dict-like)")
    checked: dict[str, HPValue] = {}
    for raw_key, hp in raw.items():
        if not isinstance(raw_key, str):
            raise ToraValidationError(f"Hyperparameter key must be string, got {type(raw_key)}")
        key = raw_key.strip()
        if not key:
            raise ToraValidationError("Hyperparameter key cannot be empty")
        if len(key) > 100:
            raise ToraValidationError(f"Hyperparameter key '{key}' exceeds 100 characters")
        checked[key] = _hyperparam(key, hp)
    return checked


def _hyperparam(key: str, raw: Any) -> HPValue:
    if isinstance(raw, str):
        if len(raw) > 1000:
            raise ToraValidationError(f"Hyperparameter '{key}' string value exceeds 1000 characters")
        return raw
    if isinstance(raw, (int, float)) or hasattr(type(raw), "__float__") or hasattr(raw, "item"):
        try:
            number = value(raw) if not isinstance(raw, bool) else raw
        except ToraValidationError as e:
            raise ToraValidationError(f"Hyperparameter '{key}': {e.message}") from e
        if not is_finite(number):
            raise ToraValidationError(f"Hyperparameter '{key}' cannot be NaN or infinite")
        return number
    raise ToraValidationError(f"Hyperparameter '{key}' has invalid type {type(raw)}. Must be str, int, or float")


def tags(raw: object) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ToraValidationError("Tags must be a list")
    if len(raw) > 50:
        raise ToraValidationError("Cannot have more than 50 tags")
    checked: list[str] = []
    seen: set[str] = set()
    for i, raw_tag in enumerate(raw):
        if not isinstance(raw_tag, str):
            raise ToraValidationError(f"Tag at index {i} must be a string, got {type(raw_tag)}")
        tag = raw_tag.strip()
        if not tag:
            raise ToraValidationError(f"Tag at index {i} cannot be empty")
        if len(tag) > 50:
            raise ToraValidationError(f"Tag '{tag}' exceeds 50 characters")
        if _TAG_FORBIDDEN_RE.search(tag):
            raise ToraValidationError(
                f"Tag '{tag}' contains invalid characters. Avoid: < > : \" / \\ | ? * , ; and control characters"
            )
        if tag.lower() not in seen:
            seen.add(tag.lower())
            checked.append(tag)
    return checked


def mode(raw: str | None, default: str) -> str:
    chosen = (raw or default).strip().lower()
    if chosen not in ("online", "offline"):
        raise ToraConfigurationError(f"mode must be 'online' or 'offline', got {chosen!r}")
    return chosen


MAX_GROUP = 128
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def group(raw: object) -> str | None:
    """A run's group: 1-128 characters without control characters, surrounding space trimmed."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ToraValidationError(f"group must be a string, got {type(raw).__name__}")
    cleaned = raw.strip()
    if not cleaned:
        return None
    if len(cleaned) > MAX_GROUP:
        raise ToraValidationError(f"group is longer than {MAX_GROUP} characters")
    if _CONTROL_RE.search(cleaned):
        raise ToraValidationError("group cannot contain control characters")
    return cleaned


def experiment_uuid(raw: object) -> str:
    """An experiment id chosen by the client: a UUID, in its canonical lower-case form."""
    if not isinstance(raw, str):
        raise ToraValidationError(f"experiment_id must be a string, got {type(raw).__name__}")
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise ToraValidationError(f"experiment_id must be a UUID, got {raw!r:.60}") from None
