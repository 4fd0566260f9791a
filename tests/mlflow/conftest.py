"""Fixtures for the MLflow tests: the real `mlflow` client against a fresh `tora serve`."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def tracking(
    server: ToraServer, user: User, monkeypatch: pytest.MonkeyPatch
) -> Iterator[User]:
    """The MLflow client pointed at Tora with the user's API key, as a lab would set it up."""
    import mlflow

    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", user.api_key)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    yield user
    while mlflow.active_run():
        mlflow.end_run()
