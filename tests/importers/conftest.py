"""Fixtures for the importer tests: a fresh `tora serve` and user per test, files written by the
real packages (mlflow, trackio, tensorboardX, wandb) in target/venv-importers, and
`python -m tora import` run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# tests/helpers is not a package (the helper is shared with the benches).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from toraserver import ToraServer, User, call_ok, new_user


@pytest.fixture
def server() -> Iterator[ToraServer]:
    with ToraServer() as srv:
        yield srv
        code = srv.stop()
        assert code == 0, f"server exited with {code} after SIGTERM; log:\n{srv.logs()}"


@pytest.fixture
def user(server: ToraServer) -> User:
    return new_user(server.api)


@dataclass
class Tora:
    """The server and user an import goes to, with the reads a test checks it by."""

    server: ToraServer
    user: User

    def run_import(
        self, *args: str, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """`python -m tora import ARGS` with the user's key; stdout is the summary."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TORA_", "WANDB_", "MLFLOW_"))
        }
        env.update(TORA_BASE_URL=self.server.api, TORA_API_KEY=self.user.api_key)
        return subprocess.run(
            [sys.executable, "-m", "tora", "import", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def imported(self, *args: str) -> str:
        """An import that must succeed; its summary."""
        done = self.run_import(*args)
        assert done.returncode == 0, (
            f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        return done.stdout

    def get(self, path: str) -> Any:
        return call_ok("GET", self.server.api + path, api_key=self.user.api_key)

    def workspaces(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.get("/workspaces")
        return data

    def personal(self) -> str:
        return next(str(w["id"]) for w in self.workspaces() if w["name"] == "Personal")

    def experiments(self, workspace_id: str | None = None) -> dict[str, dict[str, Any]]:
        """The workspace's experiments (default: Personal) by name."""
        ws = workspace_id or self.personal()
        items: list[dict[str, Any]] = self.get(f"/workspaces/{ws}/experiments")
        return {e["name"]: e for e in items}

    def metrics(self, experiment_id: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.get(f"/experiments/{experiment_id}/metrics")
        return data

    def results(self, experiment_id: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.get(f"/experiments/{experiment_id}/results")
        return data

    def params(self, experiment: dict[str, Any]) -> dict[str, Any]:
        return {p["key"]: p["value"] for p in experiment["hyperparams"]}

    def series(self, experiment_id: str) -> dict[str, list[tuple[int, Any]]]:
        """metric name -> [(step, value)] in logged order (NaN as the string "NaN")."""
        out: dict[str, list[tuple[int, Any]]] = {}
        for m in sorted(self.metrics(experiment_id), key=lambda m: m["id"]):
            out.setdefault(m["name"], []).append((m["step"], m["value"]))
        return out

    def counts(self) -> tuple[int, int]:
        """(experiments, metric points) over all the user's workspaces: what a second import must not change."""
        runs = points = 0
        for ws in self.workspaces():
            for e in self.experiments(ws["id"]).values():
                runs += 1
                points += len(self.metrics(e["id"])) + len(self.results(e["id"]))
        return runs, points


@pytest.fixture
def tora(server: ToraServer, user: User) -> Tora:
    return Tora(server, user)
