#!/usr/bin/env python3
"""What system metrics cost a training process (issue 14, item 3).

    TORA_BIN=target/release/tora target/venv/bin/python bench/system_metrics.py   # ~2 min
    TORA_BIN=target/release/tora target/venv/bin/python bench/system_metrics.py --quick

Run it with the SDK's venv (the SDK under test, numpy). One `tora serve` on 127.0.0.1:0 with a
fresh database (tests/helpers/toraserver.py), stopped by PID at the end. Three measurements:

1. CPU time per sample, in this process: each source the sampling thread reads (the /proc and
   /sys files; nvidia-smi through a stand-in script on PATH that prints two GPUs' CSV, since this
   machine has no GPU: the figure is the parent's cost of starting a process and parsing, not
   NVIDIA's tool's own time), and the log_metrics call that enqueues a sample; `time.thread_time`
   over `--reads` calls each, microseconds per call.
2. The same in situ: the sampling thread's own CPU time per sample (SystemMetrics.cpu_seconds),
   read from inside the workers of 3.
3. Slowdown: two workloads, each a fresh interpreter per run, with system metrics off, on every
   10 s and on every 1 s (runs interleaved: off, 10, 1, off, ...), the median of `--runs`:
   * tmetric: a tight loop of `tora.tmetric("loss", v, step)` (`--calls` calls), the SDK's
     hottest path, in which the sampling thread competes for the GIL;
   * numpy: a 2-layer MLP trained by hand with numpy (batch 256, 512 -> 512 -> 10, `--steps`
     steps of forward, backward and SGD, one BLAS thread), logging its loss every step.
   Wall and process CPU time of the loop alone (setup and finish excluded), and the sampling
   thread's CPU time over the loop's wall time: the share of one core that sampling took.

Prints a markdown table and writes bench/results/system_metrics.json. On a 2-core machine with
other work the slowdown column is within noise; the per-sample CPU is the figure that carries.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "helpers"))
from toraserver import ToraServer, new_user, tora_bin

TWO_GPUS = "0, 97, 31457, 40960, 63, 312.45\n1, 0, 4, 40960, 31, 54.12\n"
CONFIGS = (("off", None), ("on, every 10 s", 10), ("on, every 1 s", 1))


def per_call_us(fn: Any, reads: int) -> float:
    fn()  # warm: first reads open files and build caches
    began = time.thread_time()
    for _ in range(reads):
        fn()
    return (time.thread_time() - began) / reads * 1e6


def sample_costs(reads: int, api: str, key: str) -> dict[str, float]:
    """Microseconds of this thread's CPU per read of each source, and per enqueued sample."""
    from tora import Tora, _system

    costs: dict[str, float] = {}
    values: dict[str, float] = {}
    for source in _system._host_sources(_system.PROC, _system.SYS):
        values.update(source.read())
        costs[source.name] = per_call_us(source.read, reads)
    costs["host sources, total"] = sum(costs.values())
    with tempfile.TemporaryDirectory() as tmp:
        smi = Path(tmp) / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\nprintf '{TWO_GPUS}'\n")
        smi.chmod(0o755)
        gpu = _system._NvidiaSmi(str(smi))
        values.update(gpu.read())
        costs["nvidia-smi (stand-in), 2 GPUs"] = per_call_us(
            gpu.read, max(10, reads // 20)
        )
        began = time.perf_counter()
        for _ in range(20):
            gpu.read()
        costs["nvidia-smi (stand-in) wall"] = (time.perf_counter() - began) / 20 * 1e6
    os.environ.update(TORA_BASE_URL=api, TORA_API_KEY=key, TORA_METADATA="0")
    client = Tora.create_experiment("bench-sample-cost", system_metrics=False)
    step = iter(range(10**9))
    costs[f"log_metrics of one sample ({len(values)} values)"] = per_call_us(
        lambda: client.log_metrics(values, next(step)), reads
    )
    client.finish()
    return costs


def worker(workload: str, interval: int | None, size: int) -> dict[str, Any]:
    """One run of a workload in this (fresh) interpreter; its figures as a dict."""
    import tora
    from tora import _wrapper

    tora.setup(f"bench-{workload}", system_metrics=interval is not None)
    client = _wrapper._INSTANCE
    assert client is not None
    if workload == "tmetric":
        began, cpu = time.perf_counter(), time.process_time()
        tmetric = tora.tmetric
        for step in range(size):
            tmetric("loss", 1.0 / (step + 1), step)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    else:
        import numpy as np

        rng = np.random.default_rng(0)
        x = rng.standard_normal((256, 512)).astype(np.float32)
        y = rng.integers(0, 10, 256)
        w1 = (rng.standard_normal((512, 512)) * 0.04).astype(np.float32)
        w2 = (rng.standard_normal((512, 10)) * 0.04).astype(np.float32)
        began, cpu = time.perf_counter(), time.process_time()
        for step in range(size):
            h = np.maximum(x @ w1, 0)
            logits = h @ w2
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            loss = float(-np.log(p[np.arange(256), y] + 1e-9).mean())
            p[np.arange(256), y] -= 1
            p /= 256
            gw2 = h.T @ p
            gh = (p @ w2.T) * (h > 0)
            gw1 = x.T @ gh
            w1 -= 0.1 * gw1
            w2 -= 0.1 * gw2
            tora.tmetric("loss", loss, step)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    monitor = client._system
    samples = monitor.samples if monitor else 0
    sample_cpu = monitor.cpu_seconds if monitor else 0.0
    tora.finish()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "samples": samples,
        "sample_cpu_s": sample_cpu,
    }


def run_worker(
    workload: str, interval: int | None, size: int, env: dict[str, str]
) -> dict[str, Any]:
    # One BLAS thread: on a shared 2-core box, BLAS threads that spin while waiting for a core
    # swamp everything else measured here.
    child_env = dict(
        env,
        TORA_SYSTEM_METRICS_INTERVAL=str(interval or 10),
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    done = subprocess.run(
        [sys.executable, __file__, "--worker", workload, str(interval or 0), str(size)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {workload} {interval} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--reads",
        type=int,
        default=2000,
        help="reads of each source for the per-sample cost",
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=3_000_000,
        help="tmetric calls in the tmetric workload",
    )
    parser.add_argument(
        "--steps", type=int, default=600, help="training steps in the numpy workload"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, to check that it runs"
    )
    parser.add_argument(
        "--only", choices=("tmetric", "numpy"), help="run one workload, not both"
    )
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        workload, interval, size = args.worker
        print(json.dumps(worker(workload, int(interval) or None, int(size))))
        return
    if args.quick:
        args.runs, args.reads, args.calls, args.steps = 1, 200, 300_000, 150

    load_before = os.getloadavg()
    with ToraServer() as server:
        user = new_user(server.api)
        env = dict(
            os.environ,
            TORA_BASE_URL=server.api,
            TORA_API_KEY=user.api_key,
            TORA_METADATA="0",
        )
        env.pop("TORA_SYSTEM_METRICS", None)
        costs = sample_costs(args.reads, server.api, user.api_key)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        workloads = (("tmetric", args.calls), ("numpy", args.steps))
        for workload, size in workloads:
            if args.only and workload != args.only:
                continue
            runs[workload] = {label: [] for label, _ in CONFIGS}
            for round_ in range(args.runs):
                # Rotated each round, so a trend in the machine's load favours no setting.
                order = CONFIGS[round_ % 3 :] + CONFIGS[: round_ % 3]
                for label, interval in order:
                    runs[workload][label].append(
                        run_worker(workload, interval, size, env)
                    )

    rows = []
    for workload, by_config in runs.items():
        base_wall = statistics.median(r["wall_s"] for r in by_config["off"])
        base_cpu = statistics.median(r["cpu_s"] for r in by_config["off"])
        for label, results in by_config.items():
            wall = statistics.median(r["wall_s"] for r in results)
            cpu = statistics.median(r["cpu_s"] for r in results)
            samples = sum(r["samples"] for r in results)
            sample_us = (
                sum(r["sample_cpu_s"] for r in results) / samples * 1e6
                if samples
                else None
            )
            rows.append(
                {
                    "workload": workload,
                    "config": label,
                    "wall_s": wall,
                    "wall_change_pct": 100 * (wall / base_wall - 1),
                    "cpu_s": cpu,
                    "cpu_change_pct": 100 * (cpu / base_cpu - 1),
                    "samples_per_run": samples / len(results),
                    "cpu_us_per_sample_in_situ": sample_us,
                    "sampling_share_pct": 100
                    * sum(r["sample_cpu_s"] for r in results)
                    / sum(r["wall_s"] for r in results),
                    "walls": [r["wall_s"] for r in results],
                    "cpus": [r["cpu_s"] for r in results],
                }
            )
    out = {
        "binary": str(tora_bin()),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_before_after": [load_before[0], os.getloadavg()[0]],
        "runs": args.runs,
        "per_call_us": costs,
        "slowdown": rows,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "system_metrics.json").write_text(
        json.dumps(out, indent=2) + "\n"
    )

    print(f"CPU time per call (this thread, µs; {args.reads} reads each):\n")
    print("| what | µs |\n|---|---:|")
    for name, us in costs.items():
        print(f"| {name} | {us:,.1f} |")
    print(
        f"\nSlowdown (median of {args.runs}; loadavg {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after):\n"
    )
    print(
        "| workload | system metrics | wall s | wall vs off | CPU s | CPU vs off | samples/run "
        "| µs CPU/sample | sampling CPU / wall |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        per = (
            ""
            if r["cpu_us_per_sample_in_situ"] is None
            else f"{r['cpu_us_per_sample_in_situ']:,.0f}"
        )
        print(
            f"| {r['workload']} | {r['config']} | {r['wall_s']:.2f} | {r['wall_change_pct']:+.1f}% | "
            f"{r['cpu_s']:.2f} | {r['cpu_change_pct']:+.1f}% | {r['samples_per_run']:.1f} | {per} "
            f"| {r['sampling_share_pct']:.3f}% |"
        )


if __name__ == "__main__":
    main()
