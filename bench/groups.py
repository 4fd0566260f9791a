#!/usr/bin/env python3
"""Grouped charts: server time of GET /api/series/groups over many runs.

    cargo build --release
    TORA_BIN=target/release/tora python3 bench/groups.py              # 1,000 runs x 10k points
    TORA_BIN=target/release/tora python3 bench/groups.py --runs 100 --points 1000   # quick

Stdlib only. One server on 127.0.0.1 with a fresh temp database, stopped at the end. Loads
--runs runs in --groups groups (`group` and hyperparameter `lr` both tell them apart), each with
one metric `loss` of --points steps (a noisy decaying curve, one NaN in 1,000), sent as packed
columns. Then, --reps times after one cold call: the grouped chart of every run of the
workspace at 300 buckets, by `group` and by `hp.lr`, and zoomed on a tenth of the steps; and
the run table's group rows with four aggregate columns. Every answer is checked (groups, runs
per group, buckets, runs per bucket) before its time counts. Times are to the last byte of
the answer on a keep-alive connection: the server's time plus loopback. Median, best and worst
are printed; the issue's target is the whole draw under 1 s, so the server's share should be
well under it.
"""

from __future__ import annotations

import argparse
import array
import base64
import json
import math
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import Conn, cpu_seconds, environment, proc_status
from toraserver import ToraServer, call_ok, new_user


def packed(values: list[float]) -> str:
    a = array.array("d", values)
    if sys.byteorder == "big":
        a.byteswap()
    return base64.b64encode(a.tobytes()).decode("ascii")


def load(
    srv: ToraServer, key: str, ws: str, runs: int, groups: int, points: int
) -> tuple[list[str], float]:
    """Creates the runs and their points in 4 threads; (ids, seconds)."""
    steps = json.dumps(list(range(points)))
    ids: list[str] = [""] * runs
    errors: list[str] = []

    def work(k: int) -> None:
        conn = Conn(srv.url, key)
        rng = random.Random(k)
        try:
            for i in range(k, runs, 4):
                g = i % groups
                body = {
                    "name": f"run-{i:04d}",
                    "workspaceId": ws,
                    "group": f"config-{g}",
                    "hyperparams": [
                        {"key": "lr", "value": 10.0 ** -(1 + g / 3)},
                        {"key": "seed", "value": i},
                    ],
                }
                status, raw = conn.request(
                    "POST", "/api/experiments", json.dumps(body).encode()
                )
                if status != 201:
                    raise RuntimeError(f"create -> {status}: {raw[:200]!r}")
                exp = json.loads(raw)["data"]["id"]
                ids[i] = exp
                scale = points / (3 + g)
                values = [
                    math.nan
                    if rng.random() < 0.001
                    else math.exp(-s / scale) + 0.05 * rng.random()
                    for s in range(points)
                ]
                raw_body = (
                    '{"metrics":[{"name":"loss","steps":'
                    + steps
                    + ',"values_f64":"'
                    + packed(values)
                    + '"}]}'
                ).encode()
                status, raw = conn.request(
                    "POST", f"/api/experiments/{exp}/points", raw_body
                )
                if status != 201:
                    raise RuntimeError(f"points -> {status}: {raw[:200]!r}")
        except Exception as e:  # noqa: BLE001 - reported below, the bench fails
            errors.append(repr(e))
        finally:
            conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return ids, time.perf_counter() - t0


def timed(conn: Conn, pid: int, path: str, reps: int, check: Any) -> dict[str, Any]:
    """One cold call, then reps more; each answer checked. Beside the wall times, the server's
    CPU time per warm call (its whole process: on a busy machine the wall time waits for a
    core, the CPU time does not)."""
    times = []
    cpu = []
    size = 0
    for i in range(reps + 1):
        c0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        status, raw = conn.request("GET", path)
        dt = time.perf_counter() - t0
        cpu.append((cpu_seconds(pid) - c0) * 1000)
        if status != 200:
            raise RuntimeError(f"GET {path[:200]} -> {status}: {raw[:300]!r}")
        check(json.loads(raw)["data"])
        size = len(raw)
        times.append(dt * 1000)
    warm = times[1:]
    return {
        "path": path if len(path) < 200 else path[:200] + "...",
        "cold_ms": round(times[0], 1),
        "median_ms": round(statistics.median(warm), 1),
        "best_ms": round(min(warm), 1),
        "worst_ms": round(max(warm), 1),
        "server_cpu_median_ms": round(statistics.median(cpu[1:]), 1),
        "reps": reps,
        "bytes": size,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--buckets", type=int, default=300)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    runs, groups, points, buckets = args.runs, args.groups, args.points, args.buckets

    with ToraServer() as srv:
        user = new_user(srv.api)
        ws = call_ok(
            "POST",
            f"{srv.api}/workspaces",
            {"name": "sweep"},
            expect=201,
            api_key=user.api_key,
        )["id"]
        _ids, load_s = load(srv, user.api_key, ws, runs, groups, points)
        conn = Conn(srv.url, user.api_key)
        per_group = runs // groups
        width = -(-points // buckets)  # the grid: equal widths, at most `buckets`
        n_buckets = -(-points // width)

        def chart(zoomed: bool) -> Any:
            def check(data: dict[str, Any]) -> None:
                got = data["groups"]
                if len(got) != groups or any(g["runs"] != per_group for g in got):
                    raise RuntimeError(f"{len(got)} groups: {[g['runs'] for g in got]}")
                for g in got:
                    (s,) = g["series"]
                    if not zoomed and len(s["x"]) != n_buckets:
                        raise RuntimeError(f"{len(s['x'])} buckets, not {n_buckets}")
                    # Every run has a point in every bucket; a NaN may leave one out.
                    if min(s["runs"]) < per_group - 3 or max(s["runs"]) != per_group:
                        raise RuntimeError(
                            f"runs per bucket {min(s['runs'])}..{max(s['runs'])}"
                        )

            return check

        base = f"/api/series/groups?names=loss&points={buckets}&workspace={ws}"
        lo, hi = points // 2, points // 2 + points // 10
        results = {
            "by_group": timed(
                conn, srv.pid, base + "&by=group", args.reps, chart(False)
            ),
            "by_hp": timed(conn, srv.pid, base + "&by=hp.lr", args.reps, chart(False)),
            "zoom_tenth": timed(
                conn,
                srv.pid,
                base + f"&by=group&from={lo}&to={hi}",
                args.reps,
                chart(True),
            ),
        }

        def table_check(data: dict[str, Any]) -> None:
            if data["total"] != runs or len(data["groups"]) != groups:
                raise RuntimeError(
                    f"table: {data['total']} runs, {len(data['groups'])} groups"
                )
            for g in data["groups"]:
                # A run whose last loss is NaN has none.
                if (
                    not per_group - 3
                    <= g["columns"]["metric.loss"]["count"]
                    <= per_group
                ):
                    raise RuntimeError(f"table: {g['columns']}")

        results["table_groups"] = timed(
            conn,
            srv.pid,
            f"/api/workspaces/{ws}/experiments/groups?by=group&cols=hp.lr,hp.seed,metric.loss,result.acc",
            args.reps,
            table_check,
        )
        conn.close()
        rss = proc_status(srv.pid, "VmHWM") / 1024

    out = {
        "environment": environment(),
        "runs": runs,
        "groups": groups,
        "points_each": points,
        "buckets": buckets,
        "load_s": round(load_s, 1),
        "peak_rss_mib": round(rss, 1),
        "results": results,
    }
    print(
        f"{runs} runs x {points} points of one metric in {groups} groups, {buckets} buckets "
        f"(loaded in {load_s:.1f} s; peak RSS {rss:.0f} MiB)"
    )
    print(
        f"{'request':<14} {'cold ms':>9} {'median ms':>10} {'best ms':>9} {'worst ms':>9} {'cpu ms':>8} {'bytes':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:<14} {r['cold_ms']:>9} {r['median_ms']:>10} {r['best_ms']:>9} {r['worst_ms']:>9} {r['server_cpu_median_ms']:>8} {r['bytes']:>9}"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
