"""Import speed per source: runs/s and points/s of `python -m tora import`'s work (read + upload),
median of 3, each into a fresh `tora serve`; and the same import again (everything already there).

Run with a Python that has the writing packages (test.sh's target/venv-importers):

    TORA_BIN=target/release/tora target/venv-importers/bin/python bench/import_speed.py
    ... --runs 4 --steps 500      # small sizes: checks that it runs

The files are written once by the real packages (mlflow file store and SQLite store, trackio's
SQLite, tensorboardX event files, wandb offline runs, a long CSV); the clock covers the reader and
the uploader in this process (the same code the command runs), not the interpreter's start. "read" is the reader alone (a dry run).
Writes bench/results/import_speed.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "helpers"))
sys.path.insert(0, str(REPO / "python" / "src"))

from tora._import import reader
from tora._import.upload import Api, Summary, import_runs, resolve_workspace
from toraserver import ToraServer, new_user

METRICS = 5
REPEATS = 3


def value(run: int, metric: int, step: int) -> float:
    return math.nan if step == 13 else 1.0 / (1 + step + run + metric)


def write_mlflow(uri: str, runs: int, steps: int, env: dict[str, str]) -> None:
    code = f"""
import mlflow, math
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
mlflow.set_tracking_uri({uri!r})
client = MlflowClient()
exp = client.create_experiment("bench")
for r in range({runs}):
    run = client.create_run(exp, run_name=f"run-{{r}}")
    rid = run.info.run_id
    client.log_batch(rid, params=[Param("lr", str(0.1 / (r + 1))), Param("seed", str(r))])
    points = [Metric(f"m{{m}}", math.nan if s == 13 else 1.0 / (1 + s + r + m), 1_700_000_000_000 + s, s)
              for m in range({METRICS}) for s in range({steps})]
    for i in range(0, len(points), 1000):
        client.log_batch(rid, metrics=points[i:i + 1000])
    client.set_terminated(rid)
"""
    subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


def write_trackio(store: Path, runs: int, steps: int, tmp: Path) -> None:
    code = f"""
import math, trackio
for r in range({runs}):
    trackio.init(project="bench", name=f"run-{{r}}", config={{"lr": 0.1 / (r + 1), "seed": r}}, embed=False)
    for s in range({steps}):
        trackio.log({{f"m{{m}}": math.nan if s == 13 else 1.0 / (1 + s + r + m) for m in range({METRICS})}}, step=s)
    trackio.finish()
"""
    env = {
        **os.environ,
        "TRACKIO_DIR": str(store),
        "HF_HOME": str(tmp / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TRACKIO_STORAGE_MODE": "sqlite",
    }
    subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True
    )


def write_tensorboard(logdir: Path, runs: int, steps: int) -> None:
    code = f"""
import math
from tensorboardX import SummaryWriter
for r in range({runs}):
    with SummaryWriter({str(logdir)!r} + f"/run-{{r}}", flush_secs=3600, max_queue=100000) as w:
        for s in range({steps}):
            for m in range({METRICS}):
                w.add_scalar(f"m{{m}}", math.nan if s == 13 else 1.0 / (1 + s + r + m), s, walltime=1.7e9 + s)
"""
    subprocess.run(
        [sys.executable, "-c", code], env=os.environ, check=True, capture_output=True
    )


def write_wandb(root: Path, runs: int, steps: int) -> None:
    code = f"""
import math, wandb
for r in range({runs}):
    run = wandb.init(project="bench", name=f"run-{{r}}", config={{"lr": 0.1 / (r + 1), "seed": r}})
    for s in range({steps}):
        run.log({{f"m{{m}}": math.nan if s == 13 else 1.0 / (1 + s + r + m) for m in range({METRICS})}}, step=s)
    run.finish()
"""
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(root),
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
    }
    subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True
    )


def write_csv(path: Path, runs: int, steps: int) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["run", "step", "metric", "value", "time"])
        for r in range(runs):
            for m in range(METRICS):
                for s in range(steps):
                    out.writerow(
                        [f"run-{r}", s, f"m{m}", value(r, m, s), 1_700_000_000 + s]
                    )


def measure(source: str, arg: str) -> dict[str, Any]:
    read = reader(source)
    reads = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        dry = Summary()
        import_runs(read(arg), None, "", dry)
        reads.append(time.perf_counter() - start)
    firsts, agains = [], []
    for _ in range(REPEATS):
        with ToraServer() as server:
            user = new_user(server.api)
            api = Api(server.api, user.api_key, 60)
            workspace, _ = resolve_workspace(api, None)
            for times, expect_new in ((firsts, True), (agains, False)):
                summary = Summary()
                start = time.perf_counter()
                import_runs(read(arg), api, workspace, summary)
                times.append(time.perf_counter() - start)
                assert not summary.problems, summary.problems
                if expect_new:
                    assert summary.runs_imported == dry.runs_imported, summary.lines()
                    assert summary.points_added == dry.points_added, summary.lines()
                else:
                    assert (
                        summary.runs_present == dry.runs_imported
                        and summary.points_added == 0
                    ), summary.lines()
            api.close()

    def rates(seconds: list[float]) -> dict[str, float]:
        median = statistics.median(seconds)
        return {
            "seconds": round(median, 3),
            "runs_per_s": round(dry.runs_imported / median, 1),
            "points_per_s": round(dry.points_added / median),
        }

    return {
        "runs": dry.runs_imported,
        "points": dry.points_added,
        "read": rates(reads),
        "import": rates(firsts),
        "again": rates(agains),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--steps", type=int, default=2000, help="steps per metric (5 metrics a run)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="sources whose label starts with this (repeatable; default all)",
    )
    args = parser.parse_args()
    results: dict[str, Any] = {
        "binary": os.environ.get("TORA_BIN") or "target/debug/tora",
        "runs": args.runs,
        "metrics_per_run": METRICS,
        "steps": args.steps,
        "repeats": REPEATS,
    }
    with tempfile.TemporaryDirectory(prefix="tora-import-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        sources: dict[str, tuple[str, str, Callable[[], None]]] = {
            "mlflow (file store)": (
                "mlflow",
                str(tmp / "mlruns"),
                lambda: write_mlflow(
                    f"file:{tmp / 'mlruns'}",
                    args.runs,
                    args.steps,
                    {"MLFLOW_ALLOW_FILE_STORE": "true"},
                ),
            ),
            "mlflow (sqlite)": (
                "mlflow",
                f"sqlite:///{tmp / 'mlflow.db'}",
                lambda: write_mlflow(
                    f"sqlite:///{tmp / 'mlflow.db'}", args.runs, args.steps, {}
                ),
            ),
            "trackio": (
                "trackio",
                str(tmp / "trackio"),
                lambda: write_trackio(tmp / "trackio", args.runs, args.steps, tmp),
            ),
            "tensorboard": (
                "tensorboard",
                str(tmp / "tb"),
                lambda: write_tensorboard(tmp / "tb", args.runs, args.steps),
            ),
            "wandb (offline)": (
                "wandb",
                str(tmp / "wb"),
                lambda: write_wandb(tmp / "wb", args.runs, args.steps),
            ),
            "csv (long)": (
                "csv",
                str(tmp / "runs.csv"),
                lambda: write_csv(tmp / "runs.csv", args.runs, args.steps),
            ),
        }
        for label, (source, arg, make) in sources.items():
            if args.only and not label.startswith(tuple(args.only)):
                continue
            start = time.perf_counter()
            make()
            print(
                f"{label}: written in {time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
            results[label] = measure(source, arg)
            r = results[label]
            print(
                f"{label:22} {r['runs']} runs, {r['points']:,} points | read {r['read']['points_per_s']:,} pt/s"
                f" | import {r['import']['runs_per_s']} runs/s, {r['import']['points_per_s']:,} pt/s"
                f" | again {r['again']['runs_per_s']} runs/s"
            )
    out = REPO / "bench" / "results" / "import_speed.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
