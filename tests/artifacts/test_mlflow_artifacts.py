"""MLflow's own client (mlflow-skinny, pinned) stores and reads a run's files through Tora's
`mlflow-artifacts` proxy, and Tora's API sees the same files.

The run is made through Tora's API (the tracking half of MLflow is another module's), so the
client is pointed at the run's artifact URI, `mlflow-artifacts:/<experiment_id>/<run_id>/artifacts`,
as a run's `artifact_uri` names it. Install: `pip install mlflow-skinny==3.17.2 pytest`.
"""

import filecmp
import hashlib
import json
import os
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from toraserver import ToraServer, User, call, call_ok, new_user


def make_run(server: ToraServer, user: User) -> tuple[str, str]:
    run = call_ok(
        "POST",
        server.api + "/experiments",
        {"name": "mlflow-artifacts"},
        expect=201,
        api_key=user.api_key,
    )
    return run["workspace_id"], run["id"]


@pytest.fixture
def as_user(server: ToraServer, user: User, monkeypatch: pytest.MonkeyPatch) -> User:
    """The client set up as a script would be: a tracking URI and a token (a Tora API key)."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", user.api_key)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    mlflow.set_tracking_uri(server.url)
    return user


def test_log_list_and_download_artifacts_with_the_mlflow_client(
    server: ToraServer, as_user: User, tmp_path: Path
) -> None:
    ws, run = make_run(server, as_user)
    uri = f"mlflow-artifacts:/{ws}/{run}/artifacts"
    repo = get_artifact_repository(uri)

    src = tmp_path / "src"
    (src / "plots").mkdir(parents=True)
    model = src / "model.bin"
    model.write_bytes(os.urandom(3 * 1024 * 1024 + 7))  # several of the server's chunks
    (src / "plots" / "loss.png").write_bytes(b"\x89PNG fake")
    (src / "config.json").write_text(json.dumps({"lr": 0.1, "layers": [64, 64]}))
    repo.log_artifact(str(model))
    repo.log_artifact(str(src / "config.json"))
    repo.log_artifacts(str(src / "plots"), "plots")

    top = repo.list_artifacts()
    assert [(f.path, f.is_dir) for f in top] == [
        ("config.json", False),
        ("model.bin", False),
        ("plots", True),
    ]
    assert top[1].file_size == model.stat().st_size
    inner = repo.list_artifacts("plots")
    assert [(f.path, f.file_size) for f in inner] == [("plots/loss.png", 9)]
    # The fluent helper lists the run's directory from its parent, as against MLflow's server.
    listed = mlflow.artifacts.list_artifacts(artifact_uri=uri)
    assert [f.path for f in listed] == [
        "artifacts/config.json",
        "artifacts/model.bin",
        "artifacts/plots",
    ]

    out = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(tmp_path / "out")
        )
    )
    assert filecmp.cmp(out / "model.bin", model, shallow=False)
    assert (out / "plots" / "loss.png").read_bytes() == b"\x89PNG fake"
    assert json.loads((out / "config.json").read_text()) == {
        "lr": 0.1,
        "layers": [64, 64],
    }

    # The same files through Tora's own API, with the digest of the bytes sent.
    files = call_ok(
        "GET", f"{server.api}/experiments/{run}/artifacts", api_key=as_user.api_key
    )
    by_path = {f["path"]: f for f in files}
    assert sorted(by_path) == ["config.json", "model.bin", "plots/loss.png"]
    assert (
        by_path["model.bin"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    )

    repo.delete_artifacts("plots/loss.png")
    names = [f.path for f in repo.list_artifacts()]
    assert names == ["config.json", "model.bin"]


def test_outsiders_and_anonymous_callers_get_mlflows_error_shape(
    server: ToraServer, as_user: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, run = make_run(server, as_user)
    uri = f"mlflow-artifacts:/{ws}/{run}/artifacts"
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    get_artifact_repository(uri).log_artifact(str(f))

    # Someone outside the workspace: the run does not exist for them.
    outsider = new_user(server.api)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", outsider.api_key)
    with pytest.raises(requests.HTTPError) as err:
        get_artifact_repository(uri).list_artifacts()
    assert "404" in str(err.value) and "RESOURCE_DOES_NOT_EXIST" in str(err.value)
    with pytest.raises(requests.HTTPError) as err:
        get_artifact_repository(uri).log_artifact(str(f))
    assert "404" in str(err.value)

    # The raw answer: MLflow's error shape, not Tora's.
    status, body = call(
        "GET",
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts?path={ws}/{run}/artifacts",
        token=outsider.api_key,
    )
    assert status == 404
    assert body["error_code"] == "RESOURCE_DOES_NOT_EXIST", body
    status, body = call(
        "GET",
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{ws}/{run}/artifacts/notes.txt",
    )
    assert status == 401
    assert body["error_code"] == "UNAUTHENTICATED", body


def test_a_training_script_logs_files_with_the_fluent_api(
    server: ToraServer, as_user: User, tmp_path: Path
) -> None:
    """What scripts write, unmodified: the run and its files both through MLflow's client."""
    mlflow.set_experiment("fluent-artifacts")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(600_000))
    with mlflow.start_run(run_name="with-files") as active:
        mlflow.log_param("lr", 0.1)
        mlflow.log_artifact(str(weights), "checkpoints")
        mlflow.log_dict({"layers": [64, 64], "act": "relu"}, "config/model.json")
        mlflow.log_text("# Notes\nconverged at step 90\n", "notes.md")
    run_id = active.info.run_id

    client = mlflow.MlflowClient()
    listed = sorted(f.path for f in client.list_artifacts(run_id))
    assert listed == ["checkpoints", "config", "notes.md"]
    out = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "o"))
    )
    assert filecmp.cmp(out / "checkpoints" / "weights.bin", weights, shallow=False)
    assert json.loads((out / "config" / "model.json").read_text()) == {
        "layers": [64, 64],
        "act": "relu",
    }
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.md").startswith("# Notes")

    # Tora's API sees the same run and the same files.
    files = call_ok(
        "GET", f"{server.api}/experiments/{run_id}/artifacts", api_key=as_user.api_key
    )
    assert sorted(f["path"] for f in files) == [
        "checkpoints/weights.bin",
        "config/model.json",
        "notes.md",
    ]
