"""Fixtures for the framework tests: a real `tora serve` (the SDK tests' server fixtures, loaded
from python/tests/conftest.py), the environment the frameworks need on a CPU box with no Hub,
and helpers that read what a run stored over the HTTP API."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "python" / "examples"
_spec = importlib.util.spec_from_file_location(
    "tora_sdk_fixtures", REPO / "python" / "tests" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
sdk_fixtures = importlib.util.module_from_spec(_spec)
sys.modules["tora_sdk_fixtures"] = sdk_fixtures
_spec.loader.exec_module(sdk_fixtures)

# The SDK tests' fixtures, registered here by name: a server per session (`server`), the SDK's
# environment pointed at it, spool files in the test's own directory.
from tora_sdk_fixtures import ToraServer, sdk_env, server, shared_server

__all__ = ["ToraServer", "framework_env", "sdk_env", "server", "shared_server"]

EXPERIMENT_URL = re.compile(r"/experiments/([0-9a-f-]{36})")


@pytest.fixture(autouse=True)
def framework_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No system metrics (their sys/ names would join every metric list) and no run left current."""
    monkeypatch.setenv("TORA_SYSTEM_METRICS", "0")
    yield
    import tora

    if tora.run is not None:
        tora.run.finish()


def run_example(
    name: str, *args: str, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run python/examples/<name> as a user would, with the test's environment; returns the
    process and the ids of the runs it announced (in order, each once)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (
        f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    ids = list(dict.fromkeys(EXPERIMENT_URL.findall(done.stdout + done.stderr)))
    return done, ids


def experiment(server: ToraServer, experiment_id: str) -> dict[str, Any]:
    data: dict[str, Any] = server.get(f"/experiments/{experiment_id}")
    return data


def hyperparams(server: ToraServer, experiment_id: str) -> dict[str, Any]:
    return {
        h["key"]: h["value"] for h in experiment(server, experiment_id)["hyperparams"]
    }


def series(
    server: ToraServer, experiment_id: str
) -> dict[str, list[tuple[int, float]]]:
    """Each metric's (step, value) points, in step order; results (no step) left out."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in server.metrics(experiment_id):
        if row["step"] is not None:
            out.setdefault(row["name"], []).append((row["step"], row["value"]))
    return {name: sorted(points) for name, points in out.items()}


def results(server: ToraServer, experiment_id: str) -> dict[str, float]:
    return {r["name"]: r["value"] for r in server.results(experiment_id)}
