"""Write runs with the real mlflow package to the tracking URI in argv[1], then print what MLflow
itself reads back (run ids, names, start times, every metric point with its timestamp) as JSON."""

from __future__ import annotations

import json
import math
import sys

import mlflow
from mlflow.tracking import MlflowClient

STEPS = 120
TRIAL = "trial: 0 'lr' #1"  # quoted in meta.yaml


def write() -> None:
    mlflow.set_experiment("vision")
    with mlflow.start_run(run_name="sweep", description="a small sweep"):
        mlflow.log_params(
            {"lr": 0.01, "layers": 3, "optimizer": "adam", "augment": True}
        )
        mlflow.set_tags({"team": "vision", "baseline": ""})
        for step in range(STEPS):
            mlflow.log_metrics(
                {
                    "loss": math.nan if step == 7 else 1 / (step + 1),
                    "acc": step / STEPS,
                },
                step=step,
            )
        mlflow.log_metric("loss", 0.5, step=3)  # re-logged step: both points are kept
        with mlflow.start_run(run_name=TRIAL, nested=True):
            mlflow.log_param("lr", 0.1)
            for step in range(10):
                mlflow.log_metric("val/loss", 2.0 - step / 10, step=step * 10)
    with mlflow.start_run(run_name="crashed"):
        mlflow.log_param("seed", 7)
        mlflow.log_metric("loss", 3.0, step=0)
        mlflow.end_run(status="FAILED")
    with mlflow.start_run(run_name="scratch") as scratch:
        mlflow.log_metric("loss", 9.0, step=0)
    # A deleted run: not imported, and the summary says so.
    MlflowClient().delete_run(scratch.info.run_id)
    mlflow.set_experiment("nlp")
    with mlflow.start_run(run_name="bert"):
        mlflow.log_metric("f1", 0.8)


def readback() -> list[dict[str, object]]:
    client = MlflowClient()
    out: list[dict[str, object]] = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            metrics = {
                key: [
                    (m.step, m.value, m.timestamp)
                    for m in client.get_metric_history(run.info.run_id, key)
                ]
                for key in run.data.metrics
            }
            out.append(
                {
                    "id": run.info.run_id,
                    "name": run.info.run_name,
                    "experiment": exp.name,
                    "start_time": run.info.start_time,
                    "metrics": metrics,
                }
            )
    return out


if __name__ == "__main__":
    mlflow.set_tracking_uri(sys.argv[1])
    write()
    print(json.dumps(readback()))
