#!/usr/bin/env python3
"""Tora beside MLflow and trackio, measured in the same run, each through its own server.

    bash bench/run_all.sh     # makes the venv if needed, runs every bench, this one last
    /tmp/tora-peers-venv/bin/python bench/peers.py --repeats 3 --mlflow-repeats 2   # ~5 min

Needs a venv with `mlflow==3.17.2 trackio==0.43.0 psutil` (run_all.sh makes it outside the
repository). Every server listens on 127.0.0.1 on a free port, on a fresh data directory, and is
stopped by PID (SIGTERM, then SIGKILL for leftover children) at the end of its section.
The workload and the peers' drivers follow ../shared/bench/peers/ (common.py, bench_mlflow.py,
bench_trackio.py):

* ingest: one run, 10 metrics x 10,000 steps = 100,000 points, values from
  `random.Random(repeat)`; MLflow: 100 x `MlflowClient.log_batch` of 1,000 `Metric`s; trackio:
  the self-hosted server (`trackio.show` + write token), 10,000 x `trackio.log({10 keys})` +
  `finish()` from a client process; Tora over `http.client` on one keep-alive connection, in
  each of its formats: 100 x POST logs/batch of 1,000 point dicts with msg_ids (what the
  published tora==0.0.12 SDK sends), 100 x POST points of 100 steps x 10 metrics as columns
  with one batch_id (what Tora's SDK sends when its 1,000-point buffer fills), values as JSON
  numbers, and the same columns with `values_f64` (the values as base64 little-endian doubles,
  the format Tora's SDK is to send); points built before the clock as floats, encoding
  (`json.dumps`, and the base64 packing for values_f64) inside it, as MLflow's `Metric`s are
  built before. And the same through Tora's Python SDK (`log_metrics`, 1,000-point batches,
  time includes `shutdown()`), in a client process like trackio's. The ratios to MLflow and
  trackio use the fastest of the four Tora paths, named beside them.
* chart query: one metric of `--chart-points` points to at most 1,000 points: Tora
  `GET .../series?points=1000` (min/max/last buckets), MLflow's
  `get-history-bulk-interval?max_results=1000` (what its UI charts with; sampled steps), trackio's
  `POST /api/get_metric_values` with `max_points=1000` (even subsampling).
* 32 writers (MLflow; Tora's figure is bench/writers.py's): a thread and connection each,
  its own run, 25-point batches over the REST API (`runs/log-batch`), started on a barrier,
  stopped after `--writer-deadline` seconds; accepted points/s, latency, errors.
* read-back: one metric's 10,000 points over each server's HTTP API, first call, then the
  median of 3: MLflow `get_metric_history`, trackio `POST /api/get_metric_values`, Tora
  `GET /api/experiments/{id}/series?names=m3&points=10000` (raw points). Values are checked.
* start-up: `Popen` until the health URL answers (Tora `/api/health` 200, MLflow `/health` 200,
  trackio `/` below 500), polled every 20 ms. Idle memory: RSS and PSS of the whole server
  process tree once it has stopped growing (no new process for 5 s; MLflow starts its job
  consumers late) and `--idle-wait` seconds more.
* bytes per point: the server's data files after it stopped, over the points it stored.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "helpers"))
from ingest import FORMATS, Conn, new_experiment, peer_payloads, send_payloads
from toraserver import ToraServer, new_user, tora_bin

HOST = "127.0.0.1"
N_METRICS, N_STEPS = 10, 10_000
N_POINTS = N_METRICS * N_STEPS
READ_METRIC = 3  # m3, as the peers' scripts read
# Where bench_tora keeps the http.client runs of each ingest.py format, and their names in
# the table (the ratios to the peers name the fastest Tora path).
HTTP_RUNS = {"rows": "http", "columns": "http_columns", "packed": "http_packed"}
HTTP_PATHS = {
    "rows": "http.client, rows (logs/batch)",
    "columns": "http.client, columns (points, values as JSON numbers)",
    "packed": "http.client, columns (points, values_f64 base64 doubles)",
}
SDK_PATH = "Tora SDK"


def values(seed: int = 0) -> list[list[float]]:
    """../shared/bench/peers/common.py values(): the floats every peer logged."""
    rng = random.Random(seed)
    return [[rng.random() for _ in range(N_METRICS)] for _ in range(N_STEPS)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def memory(pid: int) -> dict[str, Any]:
    """RSS and PSS (MiB) summed over a process and its descendants."""
    rss = pss = 0.0
    n = 0
    for p in tree(pid):
        try:
            rss += p.memory_info().rss / 2**20
            pss += p.memory_full_info().pss / 2**20
            n += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return {"rss_mib": round(rss, 1), "pss_mib": round(pss, 1), "procs": n}


def cpu(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def stop_tree(pid: int, grace: float = 20.0) -> list[int]:
    """SIGTERM the root, wait; then SIGTERM/SIGKILL leftover descendants by PID."""
    procs = tree(pid)
    if not procs:
        return []
    with contextlib.suppress(psutil.NoSuchProcess):
        procs[0].terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, still = psutil.wait_procs(alive, timeout=5)
    for p in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return [p.pid for p in alive]


def wait_http(
    url: str, proc: subprocess.Popen, ok: int = 200, timeout: float = 120
) -> float:
    """perf_counter when url first answers with a status < ok + 1 (200) or < 500 (ok=499)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited ({proc.returncode}) before {url} answered"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status <= ok:
                    return time.perf_counter()
        except urllib.error.HTTPError as e:
            if e.code <= ok:
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def settle(pid: int, quiet_s: float = 5.0, limit_s: float = 60.0) -> int:
    """Wait until the server's process tree stops growing (MLflow starts its job consumers
    seconds after /health answers), at most limit_s; returns the process count."""
    n, since, deadline = (
        len(tree(pid)),
        time.perf_counter(),
        time.perf_counter() + limit_s,
    )
    while time.perf_counter() < deadline and time.perf_counter() - since < quiet_s:
        time.sleep(0.5)
        m = len(tree(pid))
        if m != n:
            n, since = m, time.perf_counter()
    return n


def dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] if len(xs) >= 2 else xs[0]


def concurrent_writers(
    port: int,
    jobs: list[tuple[str, list[bytes]]],
    headers: dict[str, str],
    deadline_s: float,
) -> dict[str, Any]:
    """One thread and keep-alive connection per (path, bodies), started together on a barrier;
    every body is POSTed once, unless deadline_s has passed: then the writer stops early.
    Returns the requests that succeeded, per-request latency and the errors."""
    barrier = threading.Barrier(len(jobs))
    ok = [0] * len(jobs)
    lat: list[list[float]] = [[] for _ in jobs]
    errors: list[str] = []
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(jobs)

    def work(i: int) -> None:
        path, bodies = jobs[i]
        conn = http.client.HTTPConnection(HOST, port, timeout=120)
        barrier.wait()
        t_start = time.perf_counter()
        for body in bodies:
            t0 = time.perf_counter()
            if t0 - t_start > deadline_s:
                break
            try:
                conn.request("POST", path, body, headers)
                r = conn.getresponse()
                raw = r.read()
                if r.status in (200, 201):
                    ok[i] += 1
                else:
                    errors.append(f"{r.status}: {raw[:200]!r}")
            except (OSError, http.client.HTTPException) as err:
                errors.append(repr(err))
                conn.close()
            lat[i].append(time.perf_counter() - t0)
        spans[i] = (t_start, time.perf_counter())
        conn.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    flat = [x for xs in lat for x in xs]
    return {
        "writers": len(jobs),
        "requests": len(flat),
        "ok_requests": sum(ok),
        "wall_s": wall,
        "errors": len(errors),
        "error_samples": errors[:3],
        "latency_ms": {f"p{q}": pct(flat, q) * 1000 for q in (50, 95, 99)},
        "latency_ms_max": max(flat) * 1000,
    }


def chart_points(n: int) -> list[tuple[int, float]]:
    """One metric of n points for the chart query: a noisy decaying curve."""
    rng = random.Random(7)
    return [(s, 2.0 / (1 + s / 1000) + 0.1 * rng.random()) for s in range(n)]


# ---------------------------------------------------------------- Tora


VALUES = r"""
import random
N_METRICS, N_STEPS = 10, 10_000
rng = random.Random({seed})
vals = [[rng.random() for _ in range(N_METRICS)] for _ in range(N_STEPS)]
"""

SDK_CLIENT = (
    VALUES
    + r"""
import json, sys, time
from tora import Tora
t = Tora.create_experiment("peer-100k-sdk", max_buffer_len=1000)
t0 = time.perf_counter()
for s in range(N_STEPS):
    row = vals[s]
    t.log_metrics({{f"m{{k}}": row[k] for k in range(N_METRICS)}}, step=s)
t1 = time.perf_counter()
left = t.shutdown()
t2 = time.perf_counter()
print(json.dumps({{"id": t.experiment_id, "log_s": t1 - t0, "shutdown_s": t2 - t1, "left": left}}))
"""
)


def tora_read(conn: Conn, exp: str, vals: list[list[float]]) -> tuple[float, int]:
    """One metric's 10k points over HTTP incl. json.loads; raises unless every value matches."""
    t0 = time.perf_counter()
    status, raw = conn.request(
        "GET", f"/api/experiments/{exp}/series?names=m{READ_METRIC}&points={N_STEPS}"
    )
    data = json.loads(raw)["data"]
    dt = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"series -> {status}: {raw[:200]!r}")
    (s,) = data["series"]
    want = [vals[i][READ_METRIC] for i in range(N_STEPS)]
    if not s["raw"] or s["x"] != list(range(N_STEPS)) or s["last"] != want:
        raise RuntimeError("Tora read-back differs from what was sent")
    return dt, len(raw)


def bench_tora(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"binary": str(tora_bin()), "loadavg_before": os.getloadavg()}
    starts = []
    for _ in range(
        args.starts - 1
    ):  # start-up only; the last start is the measured server
        srv = ToraServer()
        t0 = time.perf_counter()
        with srv:
            wait_http(f"{srv.api}/health", srv.proc)
            starts.append(time.perf_counter() - t0)
    srv = ToraServer()
    t0 = time.perf_counter()
    with srv:
        wait_http(f"{srv.api}/health", srv.proc)
        starts.append(time.perf_counter() - t0)
        res["startup_s"] = starts
        settle(srv.pid)
        time.sleep(args.idle_wait)
        res["idle_mem"] = memory(srv.pid)
        user = new_user(srv.api)
        conn = Conn(srv.url, user.api_key)
        stored = 0

        # http.client, every format: points built before the clock, encoding inside it.
        for fmt in FORMATS:
            runs = []
            for rep in range(args.repeats):
                vals = values(seed=rep)
                exp = new_experiment(srv.api, user, f"peer-100k-{fmt}-{rep}")
                payloads = peer_payloads(fmt, vals)
                cpu0 = cpu(srv.pid)
                wall = send_payloads(conn, exp, fmt, payloads)
                run = {
                    "wall_s": wall,
                    "pts_per_s": N_POINTS / wall,
                    "server_cpu_s": cpu(srv.pid) - cpu0,
                }
                reads = [tora_read(conn, exp, vals) for _ in range(4)]
                run["read_first_s"] = reads[0][0]
                run["read_median3_s"] = med([r[0] for r in reads[1:]])
                run["read_bytes"] = reads[0][1]
                runs.append(run)
                stored += N_POINTS
            res[HTTP_RUNS[fmt]] = runs

        sdk_runs = []
        env = dict(
            os.environ,
            PYTHONPATH=str(REPO / "python" / "src"),
            TORA_BASE_URL=srv.api,
            TORA_API_KEY=user.api_key,
            TORA_BATCH_SIZE="1000",
            TORA_CACHE_DIR=str(srv.dir / "sdk-cache"),
        )
        for rep in range(args.repeats):
            code = SDK_CLIENT.format(seed=rep)
            cpu0 = cpu(srv.pid)
            out = subprocess.run(
                [sys.executable, "-c", code],
                check=False,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if out.returncode != 0:
                raise RuntimeError(f"SDK client failed: {out.stderr[-1500:]}")
            d = json.loads(out.stdout.strip().splitlines()[-1])
            wall = d["log_s"] + d["shutdown_s"]
            if d["left"]:
                raise RuntimeError(f"SDK left {d['left']} points undelivered")
            read_s, _ = tora_read(conn, d["id"], values(seed=rep))
            sdk_runs.append(
                d
                | {
                    "wall_s": wall,
                    "pts_per_s": N_POINTS / wall,
                    "server_cpu_s": cpu(srv.pid) - cpu0,
                    "read_first_s": read_s,
                }
            )
            stored += N_POINTS
        res["sdk"] = sdk_runs

        # The chart query beside MLflow's: one metric of --chart-points to at most 1,000 points.
        exp = new_experiment(srv.api, user, "chart")
        pts = chart_points(args.chart_points)
        for i in range(0, len(pts), 10_000):
            logs = [
                {"name": "m", "value": v, "step": st} for st, v in pts[i : i + 10_000]
            ]
            status, raw = conn.request(
                "POST",
                f"/api/experiments/{exp}/logs/batch",
                json.dumps({"logs": logs}).encode(),
            )
            if status != 201:
                raise RuntimeError(f"logs/batch -> {status}: {raw[:200]!r}")
        stored += len(pts)
        times = []
        for _ in range(6):
            t0 = time.perf_counter()
            status, raw = conn.request(
                "GET", f"/api/experiments/{exp}/series?names=m&points=1000"
            )
            (series,) = json.loads(raw)["data"]["series"]
            times.append(time.perf_counter() - t0)
            if status != 200 or series["total"] != len(pts) or len(series["x"]) > 1000:
                raise RuntimeError(f"series -> {status}: {raw[:200]!r}")
        res["chart"] = {
            "points": len(pts),
            "first_s": times[0],
            "median5_s": med(times[1:]),
            "returned": len(series["x"]),
        }
        res["after_mem"] = memory(srv.pid)
        conn.close()
        res["exit_code"] = srv.stop()
        res["db_bytes"] = dir_bytes(srv.dir, "tora.db*")
        res["points_stored"] = stored
        res["bytes_per_point"] = res["db_bytes"] / stored
    res["loadavg_after"] = os.getloadavg()
    return res


# ---------------------------------------------------------------- MLflow


def mlflow_server(
    root: Path,
    port: int,
    extra_env: dict[str, str],
    artifact_args: list[str] | None = None,
) -> tuple[subprocess.Popen, float, float]:
    """`mlflow server` on a SQLite store in root. Artifacts go to root/artifacts, written by the
    client itself (a local path as the default artifact root) unless artifact_args say
    otherwise (mlflow_client.py: the server's artifact proxy)."""
    root.mkdir(parents=True, exist_ok=True)
    if artifact_args is None:
        artifact_args = ["--default-artifact-root", str(root / "artifacts")]
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        *artifact_args,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = open(root / "server.log", "w")  # noqa: SIM115 (the server holds it)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ | extra_env, cwd=root
    )
    base = f"http://{HOST}:{port}"
    t_health = wait_http(base + "/health", proc) - t0
    t_api = (
        wait_http(
            base + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
            proc,
        )
        - t0
    )
    return proc, t_health, t_api


def bench_mlflow(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import logging

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    res: dict[str, Any] = {"loadavg_before": os.getloadavg()}
    if args.mlflow_nojobs:
        port = free_port()
        proc, t_health, t_api = mlflow_server(
            root / "nojobs", port, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        )
        try:
            settle(proc.pid)
            time.sleep(args.idle_wait)
            res["nojobs"] = {
                "startup_s": t_health,
                "startup_api_s": t_api,
                "idle_mem": memory(proc.pid),
            }
        finally:
            stop_tree(proc.pid)

    port = free_port()
    data = root / "main"
    proc, t_health, t_api = mlflow_server(data, port, {})
    res["startup_s"] = [t_health]
    res["startup_api_s"] = t_api
    try:
        settle(proc.pid)
        time.sleep(args.idle_wait)
        res["idle_mem"] = memory(proc.pid)
        client = MlflowClient(tracking_uri=f"http://{HOST}:{port}")
        exp_id = client.create_experiment(f"bench-{int(time.time())}")
        runs = []
        for rep in range(args.mlflow_repeats):
            vals = values(seed=rep)
            run_id = client.create_run(exp_id, run_name=f"ingest-{rep}").info.run_id
            ts = int(time.time() * 1000)
            metrics = [
                Metric(f"m{k}", vals[s][k], ts + s, s)
                for s in range(N_STEPS)
                for k in range(N_METRICS)
            ]
            cpu0 = cpu(proc.pid)
            t0 = time.perf_counter()
            for i in range(0, N_POINTS, 1000):
                client.log_batch(run_id, metrics=metrics[i : i + 1000])
            wall = time.perf_counter() - t0
            run = {
                "wall_s": wall,
                "pts_per_s": N_POINTS / wall,
                "server_cpu_s": cpu(proc.pid) - cpu0,
            }
            client.set_terminated(run_id)
            reads = []
            for _ in range(4):
                t0 = time.perf_counter()
                hist = client.get_metric_history(run_id, f"m{READ_METRIC}")
                reads.append(time.perf_counter() - t0)
            got = sorted((m.step, m.value) for m in hist)
            if got != [(s, vals[s][READ_METRIC]) for s in range(N_STEPS)]:
                raise RuntimeError("MLflow read-back differs from what was sent")
            run["read_first_s"] = reads[0]
            run["read_median3_s"] = med(reads[1:])
            runs.append(run)
        res["runs"] = runs
        stored = N_POINTS * args.mlflow_repeats

        # The chart query MLflow's UI makes: get-history-bulk-interval, at most 1,000 points.
        run_id = client.create_run(exp_id, run_name="chart").info.run_id
        ts = int(time.time() * 1000)
        pts = [Metric("m", v, ts + st, st) for st, v in chart_points(args.chart_points)]
        t0 = time.perf_counter()
        for i in range(0, len(pts), 1000):
            client.log_batch(run_id, metrics=pts[i : i + 1000])
        load_s = time.perf_counter() - t0
        stored += len(pts)
        url = (
            f"http://{HOST}:{port}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
            f"?run_ids={run_id}&metric_key=m&max_results=1000"
        )
        times = []
        for _ in range(6):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url, timeout=120) as r:
                got = json.loads(r.read()).get("metrics", [])
            times.append(time.perf_counter() - t0)
        if not 0 < len(got) <= 1000:
            raise RuntimeError(f"bulk-interval returned {len(got)} points")
        res["chart"] = {
            "points": len(pts),
            "load_s": load_s,
            "first_s": times[0],
            "median5_s": med(times[1:]),
            "returned": len(got),
        }

        # 32 writers x 25-point batches over the REST API, as bench/writers.py does for Tora.
        jobs = []
        for w in range(args.writers):
            rid = client.create_run(exp_id, run_name=f"conc-{w}").info.run_id
            bodies = []
            for b in range(args.writer_batches):
                metrics = [
                    {
                        "key": f"m{i % 5}",
                        "value": w + i * 1e-3,
                        "timestamp": ts,
                        "step": (b * 25 + i) // 5,
                    }
                    for i in range(25)
                ]
                bodies.append(json.dumps({"run_id": rid, "metrics": metrics}).encode())
            jobs.append(("/api/2.0/mlflow/runs/log-batch", bodies))
        cpu0 = cpu(proc.pid)
        conc = concurrent_writers(
            port, jobs, {"Content-Type": "application/json"}, args.writer_deadline
        )
        conc["server_cpu_s"] = cpu(proc.pid) - cpu0
        conc["points_sent"] = args.writers * args.writer_batches * 25
        conc["points"] = conc["ok_requests"] * 25  # accepted
        conc["pts_per_s"] = conc["points"] / conc["wall_s"]
        stored += conc["points"]
        res["concurrent"] = conc
        res["after_mem"] = memory(proc.pid)
    finally:
        res["leftover_pids"] = stop_tree(proc.pid)
    res["db_bytes"] = dir_bytes(data, "mlflow.db*")
    res["points_stored"] = stored
    res["bytes_per_point"] = res["db_bytes"] / res["points_stored"]
    res["loadavg_after"] = os.getloadavg()
    return res


# ---------------------------------------------------------------- trackio

TRACKIO_SERVER = r"""
import trackio
trackio.show(host={host!r}, server_port={port}, open_browser=False, block_thread=True)
"""

TRACKIO_CLIENT = (
    VALUES
    + r"""
import json, sys, time
import trackio
t0 = time.perf_counter()
trackio.init(project="remote", name={run!r}, server_url={url!r})
t1 = time.perf_counter()
for s in range(N_STEPS):
    row = vals[s]
    trackio.log({{f"m{{k}}": row[k] for k in range(N_METRICS)}}, step=s)
t2 = time.perf_counter()
trackio.finish()
t3 = time.perf_counter()
print(json.dumps({{"init_s": t1 - t0, "log_s": t2 - t1, "finish_s": t3 - t2}}))
"""
)


TRACKIO_CHART = r"""
import random, trackio
rng = random.Random(7)  # chart_points()
trackio.init(project="chart", name="chart", server_url={url!r})
for s in range({n}):
    trackio.log({{"m": 2.0 / (1 + s / 1000) + 0.1 * rng.random()}}, step=s)
trackio.finish()
"""


def trackio_env(data: Path) -> dict[str, str]:
    # trackio reads TRACKIO_DIR at import time; no hub access from here.
    return dict(
        os.environ,
        TRACKIO_DIR=str(data),
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_DISABLE_TELEMETRY="1",
    )


def trackio_read(
    port: int,
    run: str,
    metric: str = f"m{READ_METRIC}",
    kwargs: dict[str, Any] | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    project = "chart" if run == "chart" else "remote"
    body = json.dumps({"args": [project, run, metric], "kwargs": kwargs or {}}).encode()
    req = urllib.request.Request(
        f"http://{HOST}:{port}/api/get_metric_values",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        rows = json.loads(r.read())["data"]
    return time.perf_counter() - t0, rows


def bench_trackio(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"loadavg_before": os.getloadavg()}
    token = "bench" + uuid.uuid4().hex[:12]
    root.mkdir(parents=True, exist_ok=True)
    starts = []
    for i in range(args.starts):
        data = root / f"server{i}"
        port = free_port()
        env = trackio_env(data) | {"TRACKIO_WRITE_TOKEN": token}
        log = open(root / f"server{i}.log", "w")  # noqa: SIM115
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", TRACKIO_SERVER.format(host=HOST, port=port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            starts.append(wait_http(f"http://{HOST}:{port}/", proc, ok=499) - t0)
            if i < args.starts - 1:
                continue  # start-up only
            res["startup_s"] = starts
            settle(proc.pid)
            time.sleep(args.idle_wait)
            res["idle_mem"] = memory(proc.pid)
            runs = []
            for rep in range(args.repeats):
                name = f"ingest-{rep}"
                code = TRACKIO_CLIENT.format(
                    seed=rep, run=name, url=f"http://{HOST}:{port}?write_token={token}"
                )
                cpu0 = cpu(proc.pid)
                out = subprocess.run(
                    [sys.executable, "-c", code],
                    check=False,
                    env=trackio_env(root / f"client{rep}"),
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if out.returncode != 0:
                    raise RuntimeError(f"trackio client failed: {out.stderr[-1500:]}")
                d = json.loads(out.stdout.strip().splitlines()[-1])
                wall = d["log_s"] + d["finish_s"]
                run = d | {
                    "wall_s": wall,
                    "pts_per_s": N_POINTS / wall,
                    "server_cpu_s": cpu(proc.pid) - cpu0,
                }
                vals = values(seed=rep)
                reads = [trackio_read(port, name) for _ in range(4)]
                got = sorted((r["step"], r["value"]) for r in reads[0][1])
                if got != [(s, vals[s][READ_METRIC]) for s in range(N_STEPS)]:
                    raise RuntimeError(f"trackio read-back differs: {len(got)} points")
                run["read_first_s"] = reads[0][0]
                run["read_median3_s"] = med([r[0] for r in reads[1:]])
                runs.append(run)
            res["runs"] = runs

            # The chart query: get_metric_values with max_points (even subsampling, as its UI).
            code = TRACKIO_CHART.format(
                url=f"http://{HOST}:{port}?write_token={token}", n=args.chart_points
            )
            out = subprocess.run(
                [sys.executable, "-c", code],
                check=False,
                env=trackio_env(root / "client-chart"),
                capture_output=True,
                text=True,
                timeout=600,
            )
            if out.returncode != 0:
                raise RuntimeError(f"trackio chart client failed: {out.stderr[-1500:]}")
            times = []
            for _ in range(6):
                dt, got = trackio_read(port, "chart", "m", {"max_points": 1000})
                times.append(dt)
            if not 0 < len(got) <= 1000:
                raise RuntimeError(
                    f"trackio get_metric_values(max_points=1000) returned {len(got)} points"
                )
            res["chart"] = {
                "points": args.chart_points,
                "first_s": times[0],
                "median5_s": med(times[1:]),
                "returned": len(got),
            }
            res["after_mem"] = memory(proc.pid)
        finally:
            res.setdefault("leftover_pids", []).extend(stop_tree(proc.pid))
    # Only the workload's project: trackio keeps a file per project, and its one-metric chart
    # run (a row per point) would misstate the cost of the 10-metric workload (a row per step).
    res["db_bytes"] = dir_bytes(root / f"server{args.starts - 1}", "remote.db*")
    res["points_stored"] = N_POINTS * args.repeats
    res["bytes_per_point"] = res["db_bytes"] / res["points_stored"]
    res["loadavg_after"] = os.getloadavg()
    return res


# ---------------------------------------------------------------- report


def summary(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The figures the combined table shows, one dict per tracker."""
    t, m, k = res.get("tora"), res.get("mlflow"), res.get("trackio")
    out: dict[str, dict[str, Any]] = {}
    if t:
        by_fmt = {
            fmt: med([r["pts_per_s"] for r in t[HTTP_RUNS[fmt]]])
            for fmt in FORMATS
            if t.get(HTTP_RUNS[fmt])
        }
        paths = {HTTP_PATHS[fmt]: v for fmt, v in by_fmt.items()}
        paths[SDK_PATH] = med([r["pts_per_s"] for r in t["sdk"]])
        best = max(paths, key=paths.__getitem__)
        out["tora"] = {
            "startup_s": med(t["startup_s"]),
            "idle_rss_mib": t["idle_mem"]["rss_mib"],
            # The ratios to the peers use the fastest Tora client path, named here.
            "ingest_pts_per_s": paths[best],
            "ingest_path": best,
            "ingest_paths_pts_per_s": paths,
            **{f"ingest_{fmt}_pts_per_s": v for fmt, v in by_fmt.items()},
            "ingest_sdk_pts_per_s": paths[SDK_PATH],
            "chart_s": t["chart"]["median5_s"],
            "chart_points": t["chart"]["points"],
            "read_10k_s": med([r["read_first_s"] for r in t["http"]]),
            "bytes_per_point": t["bytes_per_point"],
        }
    if m:
        out["mlflow"] = {
            "startup_s": med(m["startup_s"]),
            "startup_api_s": m["startup_api_s"],
            "idle_rss_mib": m["idle_mem"]["rss_mib"],
            "idle_procs": m["idle_mem"]["procs"],
            "idle_rss_nojobs_mib": m.get("nojobs", {})
            .get("idle_mem", {})
            .get("rss_mib"),
            "ingest_pts_per_s": med([r["pts_per_s"] for r in m["runs"]]),
            "read_10k_s": med([r["read_first_s"] for r in m["runs"]]),
            "chart_s": m["chart"]["median5_s"],
            "chart_points": m["chart"]["points"],
            "concurrent_pts_per_s": m["concurrent"]["pts_per_s"],
            "concurrent_writers": m["concurrent"]["writers"],
            "concurrent_points": m["concurrent"]["points"],
            "concurrent_latency_ms": m["concurrent"]["latency_ms"],
            "concurrent_errors": m["concurrent"]["errors"],
            "bytes_per_point": m["bytes_per_point"],
        }
    if k:
        out["trackio"] = {
            "startup_s": med(k["startup_s"]),
            "idle_rss_mib": k["idle_mem"]["rss_mib"],
            "ingest_pts_per_s": med([r["pts_per_s"] for r in k["runs"]]),
            "read_10k_s": med([r["read_first_s"] for r in k["runs"]]),
            "chart_s": k["chart"]["median5_s"],
            "chart_points": k["chart"]["points"],
            "bytes_per_point": k["bytes_per_point"],
        }
    return out


def table(res: dict[str, Any]) -> str:
    s = summary(res)
    t, m, k = s.get("tora", {}), s.get("mlflow", {}), s.get("trackio", {})

    def cell(d: dict[str, Any], key: str, fmt: str) -> str:
        return fmt.format(d[key]) if d.get(key) is not None else "n/a"

    def ms(d: dict[str, Any], fmt: str) -> str:
        return fmt.format(d["read_10k_s"] * 1000) if d else "n/a"

    def ratio(key: str, peer: dict[str, Any]) -> str:
        if t.get(key) and peer.get(key):
            return f" (Tora {t[key] / peer[key]:.1f}x)"
        return ""

    rows = [
        (
            "start-up to health (s)",
            cell(t, "startup_s", "{:.3f}"),
            cell(m, "startup_s", "{:.2f}"),
            cell(k, "startup_s", "{:.2f}"),
        ),
        (
            "idle RSS, whole process tree (MiB)",
            cell(t, "idle_rss_mib", "{:.0f}"),
            cell(m, "idle_rss_mib", "{:.0f}")
            + (
                f" ({m['idle_procs']} procs; {m['idle_rss_nojobs_mib']:.0f} without the job runner)"
                if m.get("idle_rss_nojobs_mib")
                else ""
            ),
            cell(k, "idle_rss_mib", "{:.0f}"),
        ),
        (
            "100k points ingest (pts/s)",
            (
                f"{t['ingest_pts_per_s']:,.0f} ({t['ingest_path']}; "
                + ", ".join(
                    f"{k} {v:,.0f}"
                    for k, v in t["ingest_paths_pts_per_s"].items()
                    if k != t["ingest_path"]
                )
                + ")"
            )
            if t
            else "n/a",
            cell(m, "ingest_pts_per_s", "{:,.0f}") + ratio("ingest_pts_per_s", m),
            cell(k, "ingest_pts_per_s", "{:,.0f}") + ratio("ingest_pts_per_s", k),
        ),
        (
            "read back one 10k-point metric over HTTP (ms)",
            ms(t, "{:.1f}"),
            ms(m, "{:.0f}"),
            ms(k, "{:.0f}"),
        ),
        (
            f"chart query, one {(t or m or k).get('chart_points', 0):,}-point metric to <= 1,000 points (ms)",
            f"{t['chart_s'] * 1000:.1f}" if t else "n/a",
            f"{m['chart_s'] * 1000:.0f}" if m else "n/a",
            f"{k['chart_s'] * 1000:.0f}" if k else "n/a",
        ),
        (
            "bytes per point on disk",
            cell(t, "bytes_per_point", "{:.1f}"),
            cell(m, "bytes_per_point", "{:.0f}"),
            cell(k, "bytes_per_point", "{:.0f}"),
        ),
    ]
    return "\n".join(
        [
            "| Measure | Tora | MLflow 3.17.2 | trackio 0.43.0 |",
            "|---|---|---|---|",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
    )


def installed_version(package: str) -> str | None:
    """The package's version, or None when it is not installed (``--only tora`` needs neither
    peer)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="100k ingests for Tora and trackio"
    )
    ap.add_argument(
        "--mlflow-repeats",
        type=int,
        default=2,
        help="100k ingests for MLflow (~12 s each)",
    )
    ap.add_argument(
        "--starts",
        type=int,
        default=3,
        help="fresh starts of Tora and trackio (MLflow: 1)",
    )
    ap.add_argument(
        "--idle-wait",
        type=float,
        default=10.0,
        help="seconds after start before idle memory",
    )
    ap.add_argument(
        "--mlflow-nojobs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also start MLflow with MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false for its idle memory",
    )
    ap.add_argument(
        "--chart-points",
        type=int,
        default=100_000,
        help="points of the metric the chart query reads",
    )
    ap.add_argument("--writers", type=int, default=32, help="concurrent MLflow writers")
    ap.add_argument(
        "--writer-batches",
        type=int,
        default=5,
        help="25-point batches per MLflow writer",
    )
    ap.add_argument(
        "--writer-deadline",
        type=float,
        default=90.0,
        help="seconds after which MLflow writers stop",
    )
    ap.add_argument("--only", choices=["tora", "mlflow", "trackio"], action="append")
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "peers.json"
    )
    args = ap.parse_args()

    res: dict[str, Any] = {
        "args": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        },
        "versions": {p: installed_version(p) for p in ("mlflow", "trackio", "psutil")},
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_at_start": os.getloadavg(),
    }
    which = args.only or ["tora", "mlflow", "trackio"]
    scratch = Path(tempfile.mkdtemp(prefix="tora-peers-"))
    try:
        for name, fn in (
            ("tora", bench_tora),
            ("mlflow", bench_mlflow),
            ("trackio", bench_trackio),
        ):
            if name not in which:
                continue
            print(f"{name} ...", file=sys.stderr, flush=True)
            res[name] = fn(args) if name == "tora" else fn(args, scratch / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    res["loadavg_at_end"] = os.getloadavg()
    res["summary"] = summary(res)
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
