"""The official `mlflow` client, unmodified, logging to `tora serve`: a lab changes one
environment variable and its training scripts keep working, and what they log is in Tora."""

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from toraserver import ToraServer, User, call, call_ok, new_user

import mlflow
from mlflow import MlflowClient


def mlflow_call(
    server: ToraServer, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, Any]:
    """A raw request to the MLflow API, to see the exact error shape the client parses."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{server.url}/api/2.0/mlflow/{path}", data=data, method=method
    )
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_fluent_training_script_logs_a_run_that_tora_shows(
    server: ToraServer, tracking: User
) -> None:
    mlflow.set_experiment("mnist")
    with mlflow.start_run(run_name="baseline") as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"batch_size": 32, "optimizer": "adam"})
        for step in range(10):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.91, "f1": 0.88}, step=9)
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"dataset": "mnist-v2", "mlflow.note.content": "first try"})
        with mlflow.start_run(run_name="fold-1", nested=True) as child:
            mlflow.log_metric("fold_acc", 0.9, step=0)

    client = MlflowClient()
    got = client.get_run(run.info.run_id)
    assert got.info.run_name == "baseline"
    assert got.info.status == "FINISHED"
    assert got.info.end_time is not None and got.info.end_time >= got.info.start_time
    assert got.data.params == {"lr": "0.01", "batch_size": "32", "optimizer": "adam"}
    assert got.data.metrics == {"loss": 0.1, "acc": 0.91, "f1": 0.88}
    assert got.data.tags["team"] == "vision"
    assert got.data.tags["dataset"] == "mnist-v2"
    nested = client.get_run(child.info.run_id)
    assert nested.data.tags["mlflow.parentRunId"] == run.info.run_id
    assert nested.info.experiment_id == run.info.experiment_id

    # The same run through Tora's own API: a run of the workspace named after the experiment.
    key = tracking.api_key
    exp = call_ok("GET", f"{server.api}/experiments/{run.info.run_id}", api_key=key)
    assert exp["name"] == "baseline"
    assert exp["workspace_id"] == run.info.experiment_id
    assert exp["state"] == "finished"
    assert exp["description"] == "first try"
    assert {"key": "lr", "value": "0.01"} in exp["hyperparams"]
    assert exp["metadata"]["mlflow_tags"]["team"] == "vision"
    workspaces = call_ok("GET", f"{server.api}/workspaces", api_key=key)
    assert {"mnist"} <= {w["name"] for w in workspaces}
    metrics = call_ok(
        "GET", f"{server.api}/experiments/{run.info.run_id}/metrics", api_key=key
    )
    loss = [(m["step"], m["value"]) for m in metrics if m["name"] == "loss"]
    assert loss == [(s, 1.0 / (s + 1)) for s in range(10)]


def test_a_failing_script_leaves_a_failed_run(
    server: ToraServer, tracking: User
) -> None:
    mlflow.set_experiment("crashy")
    with pytest.raises(ZeroDivisionError), mlflow.start_run() as run:
        mlflow.log_metric("loss", 1.0, step=0)
        _ = 1 / 0
    assert MlflowClient().get_run(run.info.run_id).info.status == "FAILED"
    exp = call_ok(
        "GET",
        f"{server.api}/experiments/{run.info.run_id}",
        api_key=tracking.api_key,
    )
    assert exp["state"] == "failed"


def test_client_history_batches_and_search(server: ToraServer, tracking: User) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment("sweep")
    runs = []
    for i, lr in enumerate(["0.1", "0.01", "0.001"]):
        run = client.create_run(exp_id, run_name=f"lr-{lr}")
        client.log_batch(
            run.info.run_id,
            metrics=[
                Metric("acc", 0.5 + i * 0.2 + s / 1000, 0, s) for s in range(1_000)
            ],
            params=[Param("lr", lr), Param("depth", str(i + 2))],
            tags=[RunTag("family", "cnn" if i else "mlp")],
        )
        client.set_terminated(run.info.run_id)
        runs.append(run.info.run_id)

    history = client.get_metric_history(runs[0], "acc")
    assert [m.step for m in history] == list(range(1_000))
    assert history[-1].value == pytest.approx(0.5 + 0.999)
    # The REST paging the client uses for long histories, a page at a time.
    store = client._tracking_client.store
    page = store.get_metric_history(runs[0], "acc", max_results=400)
    steps = [m.step for m in page]
    while page.token:
        page = store.get_metric_history(
            runs[0], "acc", max_results=400, page_token=page.token
        )
        steps += [m.step for m in page]
    assert steps == list(range(1_000))

    found = client.search_runs(
        [exp_id],
        "params.lr != '0.1' and metrics.acc > 0.9",
        order_by=["metrics.acc DESC"],
    )
    assert [r.info.run_id for r in found] == [runs[2], runs[1]]
    found = client.search_runs([exp_id], "tags.family = 'mlp'")
    assert [r.info.run_id for r in found] == [runs[0]]
    found = client.search_runs(
        [exp_id], "attributes.run_name LIKE 'lr-0.0%'", order_by=["params.lr"]
    )
    assert [r.info.run_name for r in found] == ["lr-0.001", "lr-0.01"]
    found = client.search_runs([exp_id], "attributes.status = 'FINISHED'")
    assert len(found) == 3
    first = client.search_runs(
        [exp_id], order_by=["attributes.start_time"], max_results=2
    )
    assert [r.info.run_id for r in first] == runs[:2] and first.token
    rest = client.search_runs(
        [exp_id],
        order_by=["attributes.start_time"],
        max_results=2,
        page_token=first.token,
    )
    assert [r.info.run_id for r in rest] == runs[2:] and not rest.token
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE"):
        client.search_runs([exp_id], "params.lr > 'x'")

    # MLflow's params are immutable.
    with pytest.raises(MlflowException, match="Changing param values is not allowed"):
        client.log_param(runs[0], "lr", "0.5")


def test_basic_auth_with_email_and_password(
    server: ToraServer, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user.email)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user.password)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    mlflow.set_experiment("basic")
    with mlflow.start_run() as run:
        for step in range(20):
            mlflow.log_metric("loss", 1.0, step=step)
    assert MlflowClient().get_run(run.info.run_id).info.status == "FINISHED"

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user.password + "x")
    with pytest.raises(MlflowException, match="UNAUTHENTICATED|401"):
        MlflowClient().get_run(run.info.run_id)

    # A changed password stops the remembered one at once.
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user.password)
    call_ok(
        "PUT",
        f"{server.api}/me/password",
        {"current_password": user.password, "new_password": user.password + "-new"},
        token=user.access_token,
    )
    with pytest.raises(MlflowException, match="UNAUTHENTICATED|401"):
        MlflowClient().get_run(run.info.run_id)


def test_a_viewer_reads_but_cannot_log_and_an_outsider_sees_nothing(
    server: ToraServer, tracking: User
) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment("shared")
    run = client.create_run(exp_id)
    client.log_metric(run.info.run_id, "loss", 0.5, step=0)

    viewer = new_user(server.api)
    invite = call_ok(
        "POST",
        f"{server.api}/workspace-invitations",
        {"workspaceId": exp_id, "email": viewer.email, "roleId": 3},
        expect=201,
        api_key=tracking.api_key,
    )
    call_ok(
        "POST",
        f"{server.api}/invitations/accept",
        {"token": invite["token"]},
        api_key=viewer.api_key,
    )
    as_viewer = {"Authorization": f"Bearer {viewer.api_key}"}
    status, body = mlflow_call(
        server, "GET", f"runs/get?run_id={run.info.run_id}", **as_viewer
    )
    assert status == 200 and body["run"]["data"]["metrics"][0]["value"] == 0.5
    status, body = mlflow_call(
        server,
        "POST",
        "runs/log-metric",
        {
            "run_id": run.info.run_id,
            "key": "loss",
            "value": 0.1,
            "step": 1,
            "timestamp": 0,
        },
        **as_viewer,
    )
    assert status == 403 and body["error_code"] == "PERMISSION_DENIED", body

    outsider = new_user(server.api)
    as_outsider = {"Authorization": f"Bearer {outsider.api_key}"}
    status, body = mlflow_call(
        server, "GET", f"runs/get?run_id={run.info.run_id}", **as_outsider
    )
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST", body
    assert "loss" not in json.dumps(body)
    status, body = mlflow_call(
        server, "GET", f"experiments/get?experiment_id={exp_id}", **as_outsider
    )
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST", body

    # Only one point: the viewer's was refused.
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.5)]


def test_unsigned_and_unsupported_calls_answer_in_mlflows_error_shape(
    server: ToraServer, tracking: User
) -> None:
    status, body = mlflow_call(server, "GET", "experiments/get?experiment_id=0")
    assert status == 401 and body["error_code"] == "UNAUTHENTICATED", body
    auth = {"Authorization": f"Bearer {tracking.api_key}"}
    status, body = mlflow_call(
        server, "POST", "registered-models/create", {"name": "m"}, **auth
    )
    assert status == 404 and body["error_code"] == "ENDPOINT_NOT_FOUND", body
    with pytest.raises(MlflowException, match="ENDPOINT_NOT_FOUND"):
        MlflowClient().create_registered_model("m")
    status, body = mlflow_call(
        server,
        "POST",
        "runs/log-batch",
        {
            "run_id": "x",
            "metrics": [{"key": "a", "value": 1, "step": 0, "timestamp": 0}] * 1_001,
        },
        **auth,
    )
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
    assert "1000" in body["message"]
    # Tora's own API keeps its own shape.
    status, body = call("GET", f"{server.api}/nope", api_key=tracking.api_key)
    assert status == 404 and body["error"] == "NOT_FOUND"


def test_experiments_are_workspaces(server: ToraServer, tracking: User) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment("to-rename")
    with pytest.raises(MlflowException, match="RESOURCE_ALREADY_EXISTS"):
        client.create_experiment("to-rename")
    client.rename_experiment(exp_id, "renamed")
    assert client.get_experiment_by_name("renamed").experiment_id == exp_id
    assert client.get_experiment_by_name("to-rename") is None
    names = [e.name for e in client.search_experiments(filter_string="name LIKE 're%'")]
    assert names == ["renamed"]
    default = client.get_experiment("0")
    assert default.name == "Personal"
    client.delete_experiment(exp_id)
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_experiment(exp_id)
    with pytest.raises(MlflowException, match="nothing to restore"):
        client.restore_experiment(exp_id)


def test_logged_models_live_with_their_run(server: ToraServer, tracking: User) -> None:
    from mlflow.entities import LoggedModelStatus

    client = MlflowClient()
    exp_id = client.create_experiment("models")
    run = client.create_run(exp_id)
    model = client.create_logged_model(
        exp_id,
        name="clf",
        source_run_id=run.info.run_id,
        params={"C": "1.0"},
        tags={"framework": "sklearn"},
        model_type="classifier",
    )
    assert model.status == LoggedModelStatus.PENDING
    assert model.artifact_location.startswith(
        f"mlflow-artifacts:/{exp_id}/{run.info.run_id}/artifacts/models/"
    )
    client.log_model_params(model.model_id, {"max_iter": "100"})
    client.set_logged_model_tags(model.model_id, {"stage": "test"})
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    got = client.get_logged_model(model.model_id)
    assert got.status == LoggedModelStatus.READY
    assert got.name == "clf" and got.source_run_id == run.info.run_id
    assert got.params == {"C": "1.0", "max_iter": "100"}
    assert got.tags == {"framework": "sklearn", "stage": "test"}
    found = client.search_logged_models(experiment_ids=[exp_id])
    assert [m.model_id for m in found] == [model.model_id]

    outsider = new_user(server.api)
    status, body = mlflow_call(
        server,
        "GET",
        f"logged-models/{model.model_id}",
        Authorization=f"Bearer {outsider.api_key}",
    )
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST", body


def test_sklearn_autolog_logs_params_metrics_and_a_loadable_model(
    server: ToraServer, tracking: User
) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment("autolog")
    mlflow.sklearn.autolog()
    try:
        x, y = load_iris(return_X_y=True)
        with mlflow.start_run() as run:
            fitted = LogisticRegression(max_iter=300).fit(x, y)
    finally:
        mlflow.sklearn.autolog(disable=True)

    client = MlflowClient()
    got = client.get_run(run.info.run_id)
    assert got.data.params["max_iter"] == "300"
    assert got.data.metrics["training_accuracy_score"] > 0.9
    assert got.data.tags["estimator_name"] == "LogisticRegression"
    [model] = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert model.source_run_id == run.info.run_id
    assert model.status.to_int() == model.status.READY.to_int()
    loaded = mlflow.sklearn.load_model(f"models:/{model.model_id}")
    assert list(loaded.predict(x[:20])) == list(fitted.predict(x[:20]))

    # Tora's API sees the same run, its params and its metrics.
    exp = call_ok(
        "GET",
        f"{server.api}/experiments/{run.info.run_id}",
        api_key=tracking.api_key,
    )
    assert {"key": "solver", "value": "lbfgs"} in exp["hyperparams"]
    assert exp["state"] == "finished"
    metrics = call_ok(
        "GET",
        f"{server.api}/experiments/{run.info.run_id}/metrics",
        api_key=tracking.api_key,
    )
    assert "training_accuracy_score" in {m["name"] for m in metrics}


def test_a_points_timestamp_is_kept(server: ToraServer, tracking: User) -> None:
    client = MlflowClient()
    run = client.create_run(client.create_experiment("timing"))
    start = run.info.start_time
    time.sleep(0.05)
    client.log_metric(run.info.run_id, "loss", 0.5, timestamp=start + 20, step=0)
    client.log_batch(
        run.info.run_id, metrics=[Metric("loss", 0.4, start + 30, 1)], synchronous=True
    )
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.timestamp) for m in history] == [
        (0, start + 20),
        (1, start + 30),
    ]
