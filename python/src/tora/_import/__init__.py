"""Importers: read runs from another tracker's files (or server) and upload them to Tora.

Each source has a reader module (``<source>_reader.py``) with ``read(arg) -> Iterator[ImportedRun]``
(see ``model.py``); ``upload.py`` turns those runs into experiments, exactly once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator

from .model import ImportedRun, ToraImportError

SOURCES = {
    "mlflow": "an MLflow file store directory (mlruns/) or tracking server URI (http[s]://...)",
    "tensorboard": "a TensorBoard log directory (event files, searched recursively)",
    "wandb": "a W&B run directory (offline-run-*/run-*, or wandb/ holding several)",
    "trackio": "a trackio SQLite database file, or the directory holding them",
    "csv": "a CSV file (long: run,step,metric,value[,time]; or wide: step + one column per metric)",
}


def reader(source: str) -> Callable[[str], Iterator[ImportedRun]]:
    """The ``read`` function of a source's reader module."""
    if source not in SOURCES:
        raise ToraImportError(f"unknown source {source!r}; one of: {', '.join(SOURCES)}")
    try:
        module = importlib.import_module(f"{__name__}.{source}_reader")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{source}_reader":
            raise
        raise ToraImportError(f"importing from {source} is not available in this version of tora yet") from None
    read: Callable[[str], Iterator[ImportedRun]] = module.read
    return read
