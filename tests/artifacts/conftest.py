"""Fixtures for the MLflow artifact tests: a fresh `tora serve` and user per test."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/helpers is not a package (the helper is shared with the benches).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from toraserver import ToraServer, User, new_user


@pytest.fixture
def server() -> Iterator[ToraServer]:
    with ToraServer() as srv:
        yield srv
        code = srv.stop()
        assert code == 0, f"server exited with {code} after SIGTERM; log:\n{srv.logs()}"


@pytest.fixture
def user(server: ToraServer) -> User:
    return new_user(server.api)
