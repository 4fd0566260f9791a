#!/usr/bin/env python3
"""One metric across many runs, charted: Tora beside MLflow and trackio (issue 15).

    /tmp/tora-peers-venv/bin/python bench/chart_peers.py [--runs 100] [--points 10000] [--reps 5]

The compare page's read: `--runs` runs, each with one metric `loss` of `--points` steps, asked
for at 300 points a run. Each tracker is filled through its own storage code (not timed: MLflow's
REST ingest alone would take minutes), then its server is started on that data and the chart
query its own UI makes is timed over HTTP, median and worst of `--reps` after one warm-up:

* Tora: one `GET /api/series?experiments=<all>&names=loss&points=300` (min/max/last buckets).
* MLflow 3.17.2: one `GET /ajax-api/2.0/mlflow/metrics/get-history-bulk-interval` with every
  run id and `max_results=300` (its UI's compare charts; sampled steps), on `mlflow server`
  over the SQLite store that `SqlAlchemyStore.log_batch` filled.
* trackio 0.43.0: `POST /api/get_metric_values` with `max_points=300` once per run (its
  dashboard asks run by run), on `trackio.show` over the project trackio's own `log` filled;
  the time is all of them, one after the other.

Needs a Python with mlflow and trackio (bench/run_all.sh's /tmp/tora-peers-venv).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "helpers"))
sys.path.insert(0, str(HERE))
from peers import HOST, free_port, stop_tree, trackio_env, wait_http
from toraserver import ToraServer, new_user, tora_bin

BUCKETS = 300


def curve(run: int, n: int) -> list[float]:
    """A noisy decaying loss, different per run."""
    return [
        2.0 / (1 + s / 1000) + 0.05 * ((s * 7919 + run * 104729) % 1000) / 1000
        for s in range(n)
    ]


def timed(fn, reps: int) -> dict[str, float]:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "median_ms": statistics.median(times),
        "best_ms": min(times),
        "worst_ms": max(times),
    }


def bench_tora(args: argparse.Namespace) -> dict[str, object]:
    with ToraServer(binary=tora_bin()) as server:
        user = new_user(server.api)
        headers = {"x-api-key": user.api_key, "content-type": "application/json"}
        base = server.api

        def call(method: str, path: str, body: object = None) -> dict:
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(
                base + path, data=data, method=method, headers=headers
            )
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read())

        ids = []
        for r in range(args.runs):
            exp = call("POST", "/experiments", {"name": f"r{r}"})["data"]["id"]
            vals = curve(r, args.points)
            for start in range(0, args.points, 100_000):
                chunk = vals[start : start + 100_000]
                packed = base64.b64encode(
                    struct.pack(f"<{len(chunk)}d", *chunk)
                ).decode()
                steps = list(range(start, start + len(chunk)))
                call(
                    "POST",
                    f"/experiments/{exp}/points",
                    {
                        "metrics": [
                            {"name": "loss", "steps": steps, "values_f64": packed}
                        ]
                    },
                )
            ids.append(exp)
        url = f"{base}/series?experiments={','.join(ids)}&names=loss&points={BUCKETS}"

        def read() -> None:
            req = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(req, timeout=120) as r:
                got = json.loads(r.read())["data"]
            assert len(got) == args.runs and all(e["series"][0]["x"] for e in got)

        return {"query": "1 x GET /api/series", **timed(read, args.reps)}


MLFLOW_FILL = r"""
import sys, time
from mlflow.entities import Metric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
sys.path.insert(0, {here!r})
from chart_peers import curve
store = SqlAlchemyStore({uri!r}, {art!r})
exp = store.create_experiment("chart")
ts = int(time.time() * 1000)
ids = []
for r in range({runs}):
    run = store.create_run(exp, user_id="bench", start_time=ts, tags=[], run_name=f"r{{r}}")
    vals = curve(r, {points})
    ms = [Metric("loss", v, ts + s, s) for s, v in enumerate(vals)]
    for i in range(0, len(ms), 1000):
        store.log_batch(run.info.run_id, metrics=ms[i : i + 1000], params=[], tags=[])
    ids.append(run.info.run_id)
print(",".join(ids))
"""


def bench_mlflow(args: argparse.Namespace, root: Path) -> dict[str, object]:
    root.mkdir(parents=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            MLFLOW_FILL.format(
                here=str(HERE),
                uri=uri,
                art=str(root / "art"),
                runs=args.runs,
                points=args.points,
            ),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    fill_s = time.perf_counter() - t0
    ids = out.stdout.strip().splitlines()[-1].split(",")
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 (the server holds it)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            uri,
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    try:
        wait_http(f"http://{HOST}:{port}/health", proc)
        query = "&".join(f"run_ids={i}" for i in ids)
        url = f"http://{HOST}:{port}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?{query}&metric_key=loss&max_results={BUCKETS}"

        def read() -> None:
            with urllib.request.urlopen(url, timeout=600) as r:
                got = json.loads(r.read()).get("metrics", [])
            assert got, "bulk-interval returned nothing"

        return {
            "query": "1 x get-history-bulk-interval",
            "fill_s": fill_s,
            **timed(read, args.reps),
        }
    finally:
        stop_tree(proc.pid)


TRACKIO_FILL = r"""
import sys
sys.path.insert(0, {here!r})
from chart_peers import curve
import trackio
for r in range({runs}):
    trackio.init(project="chart", name=f"r{{r}}")
    for s, v in enumerate(curve(r, {points})):
        trackio.log({{"loss": v}}, step=s)
    trackio.finish()
"""

TRACKIO_SERVER = r"""
import trackio
trackio.show(host={host!r}, server_port={port}, open_browser=False, block_thread=True)
"""


def bench_trackio(args: argparse.Namespace, root: Path) -> dict[str, object]:
    root.mkdir(parents=True)
    env = trackio_env(root)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            TRACKIO_FILL.format(here=str(HERE), runs=args.runs, points=args.points),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    fill_s = time.perf_counter() - t0
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 (the server holds it)
    proc = subprocess.Popen(
        [sys.executable, "-c", TRACKIO_SERVER.format(host=HOST, port=port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_http(f"http://{HOST}:{port}/", proc)

        def one(run: str) -> int:
            body = json.dumps(
                {"args": ["chart", run, "loss"], "kwargs": {"max_points": BUCKETS}}
            ).encode()
            req = urllib.request.Request(
                f"http://{HOST}:{port}/api/get_metric_values",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=120) as r:
                return len(json.loads(r.read())["data"])

        def read() -> None:
            for r in range(args.runs):
                assert one(f"r{r}") > 0

        return {
            "query": f"{args.runs} x get_metric_values",
            "fill_s": fill_s,
            **timed(read, args.reps),
        }
    finally:
        stop_tree(proc.pid)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--points", type=int, default=10_000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", choices=["tora", "mlflow", "trackio"])
    args = p.parse_args()
    res: dict[str, object] = {
        "runs": args.runs,
        "points": args.points,
        "buckets": BUCKETS,
        "loadavg": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "tora"):
            res["tora"] = bench_tora(args)
            print("tora", res["tora"], flush=True)
        if args.only in (None, "mlflow"):
            res["mlflow"] = bench_mlflow(args, Path(tmp) / "mlflow")
            print("mlflow", res["mlflow"], flush=True)
        if args.only in (None, "trackio"):
            res["trackio"] = bench_trackio(args, Path(tmp) / "trackio")
            print("trackio", res["trackio"], flush=True)
    out = HERE / "results" / "chart_peers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
