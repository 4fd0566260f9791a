"""The shape every reader produces and the uploader consumes.

A reader is a module with ``def read(arg: str) -> Iterator[ImportedRun]``; it raises
``ToraImportError(message)`` when its input cannot be read at all (a missing path, a file that is
not what it should be). What it reads but cannot carry over goes into ``ImportedRun.skipped``,
one line each saying what and why, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, Union

from .._exceptions import ToraError

ParamValue = Union[str, int, float, bool, None]  # Union, not |: the SDK still runs on 3.9


class ToraImportError(ToraError):
    """An import source cannot be read (missing path, unreadable file, refused request)."""


@dataclass
class Point:
    """One logged value of a metric: its step and, when the source has it, its time."""

    step: int
    value: float
    time_ms: int | None = None


@dataclass
class ImportedRun:
    """One run of a source tracker, ready to become a Tora experiment."""

    source: str  # "mlflow" | "tensorboard" | "wandb" | "trackio" | "csv"
    source_id: str  # stable id of the run in its source (for exactly-once)
    name: str
    created_at_ms: int | None = None
    params: dict[str, ParamValue] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    description: str | None = None
    metrics: dict[str, list[Point]] = field(default_factory=dict)
    results: dict[str, float] = field(default_factory=dict)
    state: str = "finished"  # "finished" | "failed"
    skipped: list[str] = field(default_factory=list)  # what was not imported and why


class Reader(Protocol):
    """What a reader module provides."""

    def __call__(self, arg: str) -> Iterator[ImportedRun]: ...
