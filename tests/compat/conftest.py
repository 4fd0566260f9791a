"""Fixtures for the compatibility tests: one fresh server and user per test."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/helpers is not a package (the helper is shared with the benches), and this dir is
# listed too so that `import script_0012` works under pytest's importlib import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from toraserver import ToraServer, User, new_user


@pytest.fixture
def server() -> Iterator[ToraServer]:
    with ToraServer() as srv:
        yield srv
        # Stop here, before the temp dir goes, so a crash or unclean exit shows its log.
        code = srv.stop()
        assert code == 0, f"server exited with {code} after SIGTERM; log:\n{srv.logs()}"


@pytest.fixture
def user(server: ToraServer) -> User:
    return new_user(server.api)
