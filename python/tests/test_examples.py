"""The numpy and scikit-learn examples run against a real server and store what they say."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ToraServer, run_python

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXPERIMENT_URL = re.compile(r"/experiments/([0-9a-f-]{36})")


def test_numpy_example(server: ToraServer) -> None:
    done = run_python([str(EXAMPLES / "numpy_training.py")])
    assert done.returncode == 0, done.stderr
    assert "all points delivered" in done.stdout
    # setup() logs the run's URL; with logging not configured, it reaches stderr
    (experiment_id,) = EXPERIMENT_URL.findall(done.stderr)
    metrics = server.metrics(experiment_id)
    losses = [m["value"] for m in metrics if m["name"] == "train/loss"]
    assert len(losses) == 20 * 25
    assert losses[-1] < losses[0]
    accs = [m["value"] for m in metrics if m["name"] == "val/acc"]
    assert len(accs) == 20
    assert {r["name"] for r in server.results(experiment_id)} == {"val_acc", "weight_norm"}


def test_sklearn_example_logs_one_experiment_per_configuration(server: ToraServer) -> None:
    done = run_python([str(EXAMPLES / "sklearn_search.py")])
    assert done.returncode == 0, done.stderr
    ids = EXPERIMENT_URL.findall(done.stdout)
    assert len(ids) == len(set(ids)) == 6
    configs = set()
    for experiment_id in ids:
        experiment = server.get(f"/experiments/{experiment_id}")
        configs.add(tuple(sorted((h["key"], h["value"]) for h in experiment["hyperparams"])))
        assert [m["step"] for m in server.metrics(experiment_id)] == [0, 1, 2, 3, 4]
        results = {r["name"]: r["value"] for r in server.results(experiment_id)}
        assert set(results) == {"cv_mean_accuracy", "test_accuracy"}
        assert 0.5 < results["test_accuracy"] <= 1.0
    assert len(configs) == 6


def test_wandb_quickstart_example(server: ToraServer) -> None:
    done = run_python([str(EXAMPLES / "wandb_quickstart.py")])
    assert done.returncode == 0, done.stderr
    (experiment_id,) = set(EXPERIMENT_URL.findall(done.stdout))
    experiment = server.get(f"/experiments/{experiment_id}")
    assert experiment["state"] == "finished"
    workspace = server.get(f"/workspaces/{experiment['workspace_id']}")
    assert workspace["name"] == "my-awesome-project"
    assert {h["key"]: h["value"] for h in experiment["hyperparams"]}["learning_rate"] == 0.02
    metrics = server.metrics(experiment_id)
    for name in ("acc", "loss"):
        assert sorted(m["step"] for m in metrics if m["name"] == name) == list(range(8))
    (result,) = server.results(experiment_id)
    assert result["name"] == "final_acc"
    assert result["value"] == next(m["value"] for m in metrics if m["name"] == "acc" and m["step"] == 7)
