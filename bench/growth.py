#!/usr/bin/env python3
"""Ingest as one database grows to tens of millions of points: does the rate fall off?

    TORA_BIN=target/release/tora python3 bench/growth.py                    # 20M points, 1-3 min
    TORA_BIN=target/release/tora python3 bench/growth.py --points 2000000   # smaller

Stdlib only. One server on 127.0.0.1 with a fresh temp database, stopped by PID at the end.
One client on one keep-alive connection fills experiments one after another (default 20 of
1,000,000 points: 10 metrics x 100,000 steps) through POST /api/experiments/{id}/points in
5,000-point batches (500 steps x 10 metrics, one batch_id each), and records every slice of
1,000,000 points: points/s, server CPU per point, database size and server RSS. The bodies are
in the "packed" format of ingest.py: each metric's values as `values_f64` (base64 little-endian
doubles, what Tora's SDK is to send); `--format columns` sends them as JSON numbers instead.
They are joined from pre-encoded pieces (steps per batch position; 1,009 fragments of 500
random floats, so no series repeats a run of values), which costs microseconds per request:
the clock measures the server. The chart query (every metric of an experiment to at most 1,000 buckets) runs on the
first experiment once it is full (database at 1M points) and on the last and the first at the
end (database full); then SIGTERM and bytes per point on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from ingest import (
    LABELS,
    N_METRICS,
    PATHS,
    Conn,
    cpu_seconds,
    environment,
    new_experiment,
    pack_f64,
    post,
    proc_status,
)
from query import check_series, timed
from toraserver import REPO, ToraServer, new_user

POOL = 1009  # value fragments; prime, so metric k's fragments (10 * batch + k) never repeat
# within 1,009 batches of one experiment
FALL_OFF_MIN = (
    0.8  # "no fall-off": the last quarter's rate is at least 80% of the first's
)
CHART_RUNS = 10


class Bodies:
    """Request bodies for batch b of an experiment, joined from pre-encoded pieces.

    fmt "packed": each metric's values as "values_f64" (base64 doubles); "columns": as JSON
    numbers under "values".
    """

    def __init__(
        self, batch: int, batches_per_exp: int, fmt: str, seed: int = 1
    ) -> None:
        self.steps_per_batch = batch // N_METRICS
        n = self.steps_per_batch
        self.steps = [
            "[" + ",".join(map(str, range(b * n, (b + 1) * n))) + "]"
            for b in range(batches_per_exp)
        ]
        rng = random.Random(seed)
        frags = [[rng.random() for _ in range(n)] for _ in range(POOL)]
        if fmt == "packed":
            self.key = "values_f64"
            self.values = [f'"{pack_f64(v)}"' for v in frags]
        else:
            self.key = "values"
            self.values = [json.dumps(v) for v in frags]
        self.token = uuid.uuid4().hex[:12]

    def body(self, seq: int, b: int) -> bytes:
        """seq counts every request of the run (batch_id, value fragments); b is the batch's
        position in its experiment (steps)."""
        steps = self.steps[b]
        metrics = ",".join(
            f'{{"name":"m{k}","steps":{steps},'
            f'"{self.key}":{self.values[(seq * N_METRICS + k) % POOL]}}}'
            for k in range(N_METRICS)
        )
        return f'{{"batch_id":"{self.token}.{seq:07d}","metrics":[{metrics}]}}'.encode()


def db_bytes(srv: ToraServer) -> int:
    return sum(p.stat().st_size for p in srv.dir.glob("tora.db*"))


def chart(conn: Conn, exp_id: str, steps: int) -> dict[str, Any]:
    """Every metric of one experiment (N_METRICS x steps points) to at most 1,000 buckets."""

    def check(env: dict[str, Any]) -> None:
        series = env["data"]["series"]
        if len(series) != N_METRICS:
            raise RuntimeError(f"series: {len(series)} metrics, expected {N_METRICS}")
        for s in series:
            check_series(s, steps, 1000)

    return timed(
        conn, f"/api/experiments/{exp_id}/series?points=1000", CHART_RUNS, check
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    n_exps = args.points // args.per_experiment
    batches_per_exp = args.per_experiment // args.batch
    steps = args.per_experiment // N_METRICS
    bodies = Bodies(args.batch, batches_per_exp, args.format)
    res: dict[str, Any] = {
        "format": args.format,
        "format_label": LABELS[args.format],
        "experiments": n_exps,
        "metrics": N_METRICS,
        "steps": steps,
        "batch": args.batch,
        "slice": args.slice,
    }
    with ToraServer() as srv:
        user = new_user(srv.api)
        exps = [new_experiment(srv.api, user, f"growth-{i}") for i in range(n_exps)]
        conn = Conn(srv.url, user.api_key)
        slices: list[dict[str, Any]] = []
        done = 0

        def mark() -> tuple[float, float]:
            return time.perf_counter(), cpu_seconds(srv.pid)

        t0, cpu0 = mark()
        for seq in range(n_exps * batches_per_exp):
            e, b = divmod(seq, batches_per_exp)
            post(
                conn,
                PATHS[args.format].format(exps[e]),
                bodies.body(seq, b),
                args.batch,
            )
            done += args.batch
            if done % args.slice:
                continue
            t1, cpu1 = mark()
            slices.append(
                {
                    "points_before": done - args.slice,
                    "points_after": done,
                    "wall_s": t1 - t0,
                    "points_per_s": args.slice / (t1 - t0),
                    "server_cpu_us_per_point": (cpu1 - cpu0) / args.slice * 1e6,
                    "db_bytes": db_bytes(srv),
                    "rss_mib": proc_status(srv.pid, "VmRSS") / 1024,
                }
            )
            print(
                f"  {done:>12,} points: {slices[-1]['points_per_s']:,.0f} pts/s",
                file=sys.stderr,
            )
            if done == args.per_experiment:
                # The database holds one experiment: the chart query before the growth.
                res["chart_first_at_start"] = chart(conn, exps[0], steps)
                res["chart_first_at_start"]["db_points"] = done
            t0, cpu0 = mark()
        res["chart_last_at_end"] = chart(conn, exps[-1], steps) | {"db_points": done}
        res["chart_first_at_end"] = chart(conn, exps[0], steps) | {"db_points": done}
        res["server_peak_rss_mib"] = proc_status(srv.pid, "VmHWM") / 1024
        conn.close()
        # SIGTERM lets the server checkpoint the WAL, so the main file holds everything.
        res["exit_code"] = srv.stop()
        res["files"] = {p.name: p.stat().st_size for p in srv.dir.glob("tora.db*")}
    res["points"] = done
    res["slices"] = slices
    res["bytes_per_point"] = sum(res["files"].values()) / done
    q = max(1, len(slices) // 4)
    first = statistics.median(s["points_per_s"] for s in slices[:q])
    last = statistics.median(s["points_per_s"] for s in slices[-q:])
    cpu_first = statistics.median(s["server_cpu_us_per_point"] for s in slices[:q])
    cpu_last = statistics.median(s["server_cpu_us_per_point"] for s in slices[-q:])
    res["falloff"] = {
        "quarter_slices": q,
        "first_quarter_points_per_s": first,
        "last_quarter_points_per_s": last,
        "ratio": last / first,
        "slowest_slice_points_per_s": min(s["points_per_s"] for s in slices),
        "first_quarter_cpu_us_per_point": cpu_first,
        "last_quarter_cpu_us_per_point": cpu_last,
        "no_falloff": last / first >= FALL_OFF_MIN,
        "threshold": FALL_OFF_MIN,
    }
    # The slices' clocks leave out the chart query made when the first experiment was full.
    res["ingest_wall_s"] = sum(s["wall_s"] for s in slices)
    res["points_per_s"] = done / res["ingest_wall_s"]
    return res


def table(res: dict[str, Any]) -> str:
    env, f = res["env"], res["falloff"]
    load = f"{env['loadavg_at_start'][0]:.2f} / {env['loadavg_at_end'][0]:.2f}"
    workload = (
        f"{res['experiments']} experiments x {res['metrics']} metrics x {res['steps']:,} steps"
        f" = {res['points']:,} points, filled one experiment after another, POST points in"
        f" {res['batch']:,}-point batches, {res['format_label']}"
    )
    rows = [
        ("Binary", f"{env['binary']} ({env['tora_version']})"),
        ("Machine (1-min load average at start / end)", f"{env['cpus']} CPUs ({load})"),
        ("Workload", workload),
        (
            "Whole run",
            f"{res['points_per_s']:,.0f} pts/s ({res['ingest_wall_s']:.1f} s)",
        ),
    ]
    for s in res["slices"]:
        cell = (
            f"{s['points_per_s']:,.0f} pts/s; server CPU {s['server_cpu_us_per_point']:.2f}"
            f" µs/point; database {s['db_bytes'] / 2**20:,.0f} MiB; server RSS"
            f" {s['rss_mib']:.0f} MiB"
        )
        rows.append((f"points {s['points_before']:,} → {s['points_after']:,}", cell))
    trend = (
        f"{f['first_quarter_points_per_s']:,.0f} → {f['last_quarter_points_per_s']:,.0f} pts/s"
        f" (x{f['ratio']:.2f}; slowest slice {f['slowest_slice_points_per_s']:,.0f}); server"
        f" CPU {f['first_quarter_cpu_us_per_point']:.2f} →"
        f" {f['last_quarter_cpu_us_per_point']:.2f} µs/point"
    )
    files = ", ".join(f"{k} {v:,} B" for k, v in res["files"].items())
    peak = res["server_peak_rss_mib"]
    rows += [
        (f"first / last {f['quarter_slices']} slices, median", trend),
        (
            f"no fall-off (last quarter ≥ {f['threshold']:.0%} of the first)",
            "yes" if f["no_falloff"] else "**no**",
        ),
        (
            "bytes/point on disk after SIGTERM",
            f"{res['bytes_per_point']:.1f} ({files}); server peak RSS {peak:.0f} MiB",
        ),
    ]
    n = res["metrics"] * res["steps"]
    for key, what in (
        ("chart_first_at_start", "first experiment"),
        ("chart_last_at_end", "last experiment"),
        ("chart_first_at_end", "first experiment"),
    ):
        c = res.get(key)
        if c:
            label = (
                f"chart query, {what} ({n:,} points, {res['metrics']} metrics) to ≤ 1,000"
                f" buckets each, database at {c['db_points']:,} points"
            )
            cell = (
                f"{c['median_http_ms']:.1f} ms median of {c['runs']}"
                f" (cold {c['cold_http_ms']:.1f})"
            )
            rows.append((label, cell))
    return "\n".join(
        ["| Measure | Value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--points", type=int, default=20_000_000, help="points in all")
    ap.add_argument(
        "--per-experiment",
        type=int,
        default=1_000_000,
        help=f"points per experiment ({N_METRICS} metrics x steps)",
    )
    ap.add_argument("--batch", type=int, default=5000, help="points per request")
    ap.add_argument(
        "--format",
        choices=["packed", "columns"],
        default="packed",
        help="values as base64 doubles (values_f64) or as JSON numbers",
    )
    ap.add_argument(
        "--slice", type=int, default=1_000_000, help="points per reported slice"
    )
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "growth.json"
    )
    args = ap.parse_args()
    if args.batch <= 0 or args.batch % N_METRICS:
        ap.error(f"--batch must be a positive multiple of {N_METRICS}")
    if args.per_experiment <= 0 or args.per_experiment % args.batch:
        ap.error("--per-experiment must be a positive multiple of --batch")
    if args.points <= 0 or args.points % args.per_experiment:
        ap.error("--points must be a positive multiple of --per-experiment")
    if args.slice <= 0 or args.slice % args.batch or args.points % args.slice:
        ap.error("--slice must divide --points and be a multiple of --batch")

    env = environment()
    print(f"binary: {env['binary']} ({env['tora_version']})", file=sys.stderr)
    res = {"env": env, "args": {k: v for k, v in vars(args).items() if k != "out"}}
    res |= run(args)
    res["env"]["loadavg_at_end"] = os.getloadavg()
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    if res["exit_code"] != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
