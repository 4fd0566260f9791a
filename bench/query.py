#!/usr/bin/env python3
"""Read-side benchmark for `tora serve`: downsampling, compare, experiment lists, latency under load.

    TORA_BIN=target/release/tora python3 bench/query.py            # ~3-5 min; 11M points
    TORA_BIN=target/release/tora python3 bench/query.py --scale 0.01   # quick check

Stdlib only. One server on 127.0.0.1 with a fresh temp database, stopped by PID at the end.
(a) one experiment with one 1M-point metric: GET .../series?points=1000, cold and median of 10,
    and a zoom on ~10% of the steps; (b) 100 experiments x 100k points of `loss`:
    GET /api/series?experiments=<100 ids>, median of 5; (c) 10,000 experiments with hyperparams,
    tags and a result `acc`: four list queries, median of 10 each; (d) latency of one writer's
    25-point batches while 8 other threads write 25-point batches. Every answer is checked
    (totals, bucket counts, sort order, match counts) before its time is counted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from ingest import Conn, cpu_seconds, environment, new_experiment, proc_status
from toraserver import REPO, ToraServer, User, call_ok, new_user

BATCH = 50_000  # points per request while loading data; the limit is 100,000


def metric_bodies(n_points: int, name: str, seed: int) -> list[bytes]:
    """Pre-encoded logs/batch bodies for one metric, steps 0..n-1: a noisy decaying curve.

    msg_ids are unique within the bodies, so the same bodies can load many experiments
    (exactly-once is per experiment).
    """
    rng = random.Random(seed)
    bodies = []
    for first in range(0, n_points, BATCH):
        logs = [
            {
                "msg_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                "name": name,
                "value": math.exp(-s / (n_points / 5)) + 0.05 * rng.random(),
                "step": s,
                "metadata": {"type": "metric"},
            }
            for s in range(first, min(first + BATCH, n_points))
        ]
        bodies.append(json.dumps({"logs": logs}).encode())
    return bodies


def percentile(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] if len(xs) >= 2 else xs[0]


def post_batch(conn: Conn, exp_id: str, body: bytes) -> int:
    status, raw = conn.request("POST", f"/api/experiments/{exp_id}/logs/batch", body)
    if status != 201:
        raise RuntimeError(f"logs/batch -> {status}: {raw[:300]!r}")
    data = json.loads(raw)["data"]
    if data["skipped"]:
        raise RuntimeError(f"logs/batch skipped points: {data}")
    return data["inserted"]


def get_json(conn: Conn, path: str) -> tuple[dict[str, Any], float, float, int]:
    """GET path: (envelope, seconds to the last byte, seconds incl. json.loads, body bytes)."""
    t0 = time.perf_counter()
    status, raw = conn.request("GET", path)
    t1 = time.perf_counter()
    if status != 200:
        raise RuntimeError(f"GET {path[:200]} -> {status}: {raw[:300]!r}")
    env = json.loads(raw)
    return env, t1 - t0, time.perf_counter() - t0, len(raw)


def timed(
    conn: Conn, path: str, n: int, check: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """The first (cold) call and the median of the next n; every answer goes through check."""
    first = None
    http_s, total_s = [], []
    size = 0
    for i in range(n + 1):
        env, h, t, size = get_json(conn, path)
        check(env)
        if i == 0:
            first = {"http_ms": h * 1000, "with_json_ms": t * 1000}
        else:
            http_s.append(h)
            total_s.append(t)
    return {
        "path": path if len(path) < 300 else path[:300] + "...",
        "cold_http_ms": first["http_ms"],
        "cold_with_json_ms": first["with_json_ms"],
        "runs": n,
        "median_http_ms": statistics.median(http_s) * 1000,
        "min_http_ms": min(http_s) * 1000,
        "max_http_ms": max(http_s) * 1000,
        "median_with_json_ms": statistics.median(total_s) * 1000,
        "response_bytes": size,
    }


def server_state(srv: ToraServer) -> dict[str, Any]:
    return {
        "rss_mib": proc_status(srv.pid, "VmRSS") / 1024,
        "peak_rss_mib": proc_status(srv.pid, "VmHWM") / 1024,
        "server_cpu_s": cpu_seconds(srv.pid),
        "db_bytes": sum(p.stat().st_size for p in srv.dir.glob("tora.db*")),
        "loadavg": os.getloadavg(),
    }


def load(
    conn: Conn, exp_ids: list[str], bodies: list[bytes], srv: ToraServer
) -> dict[str, Any]:
    """Send every body to every experiment on one connection; the bodies are built already."""
    cpu0 = cpu_seconds(srv.pid)
    t0 = time.perf_counter()
    points = sum(post_batch(conn, e, b) for e in exp_ids for b in bodies)
    wall = time.perf_counter() - t0
    return {
        "points": points,
        "requests": len(exp_ids) * len(bodies),
        "wall_s": wall,
        "points_per_s": points / wall,
        "server_cpu_s": cpu_seconds(srv.pid) - cpu0,
    }


def check_series(series: dict[str, Any], total: int, points: int) -> None:
    if series["total"] != total:
        raise RuntimeError(
            f"{series['name']}: total {series['total']}, expected {total}"
        )
    n = len(series["x"])
    if not 0 < n <= points or sum(series["count"]) != total:
        raise RuntimeError(
            f"{series['name']}: {n} buckets holding {sum(series['count'])} points;"
            f" expected at most {points} buckets holding {total}"
        )
    if any(len(series[k]) != n for k in ("min", "max", "last", "count", "nonfinite")):
        raise RuntimeError(f"{series['name']}: columns of unequal length")
    if series["x"] != sorted(series["x"]):
        raise RuntimeError(f"{series['name']}: x not ascending")


def phase_downsample(
    srv: ToraServer, user: User, conn: Conn, n: int, reps: int
) -> dict[str, Any]:
    """(a) one experiment, one metric `m` of n points; full range and a ~10% zoom."""
    exp = new_experiment(srv.api, user, "downsample-1m")
    t0 = time.perf_counter()
    bodies = metric_bodies(n, "m", seed=1)
    build_s = time.perf_counter() - t0
    ingest = load(conn, [exp], bodies, srv) | {"client_build_s": build_s}
    del bodies

    def full(env: dict[str, Any]) -> None:
        (s,) = env["data"]["series"]
        check_series(s, n, 1000)
        if s["raw"] or s["x"][-1] != n - 1:
            raise RuntimeError(f"full range: raw={s['raw']}, last x {s['x'][-1]}")

    lo, hi = int(n * 0.45), int(n * 0.55) - 1

    def zoom(env: dict[str, Any]) -> None:
        (s,) = env["data"]["series"]
        check_series(s, hi - lo + 1, 1000)
        if s["x"][0] < lo or s["x"][-1] != hi:
            raise RuntimeError(
                f"zoom: x from {s['x'][0]} to {s['x'][-1]}, asked {lo}..{hi}"
            )

    base = f"/api/experiments/{exp}/series?names=m&points=1000"
    return {
        "points": n,
        "ingest": ingest,
        "full": timed(conn, base, reps, full),
        "zoom": timed(conn, f"{base}&from={lo}&to={hi}", reps, zoom)
        | {"range": [lo, hi]},
        "server": server_state(srv),
    }


def phase_compare(
    srv: ToraServer, user: User, conn: Conn, n_exps: int, n: int, reps: int
) -> dict[str, Any]:
    """(b) n_exps experiments x one metric `loss` of n points; one compare query over all."""
    exps = [new_experiment(srv.api, user, f"compare-{i:03d}") for i in range(n_exps)]
    t0 = time.perf_counter()
    bodies = metric_bodies(n, "loss", seed=2)
    build_s = time.perf_counter() - t0
    ingest = load(conn, exps, bodies, srv) | {"client_build_s": build_s}
    del bodies

    def check(env: dict[str, Any]) -> None:
        got = [e["experiment_id"] for e in env["data"]]
        if got != exps:
            raise RuntimeError(
                f"compare: {len(got)} experiments back, in order: {got == exps}"
            )
        for e in env["data"]:
            (s,) = e["series"]
            check_series(s, n, 1000)

    path = f"/api/series?experiments={','.join(exps)}&names=loss&points=1000"
    return {
        "experiments": n_exps,
        "points_each": n,
        "ingest": ingest,
        "compare": timed(conn, path, reps, check),
        "server": server_state(srv),
    }


def experiment_spec(i: int, rng: random.Random) -> dict[str, Any]:
    lr = 10 ** rng.uniform(-4, -1)
    return {
        "name": f"run-{i:05d}",
        "lr": lr,
        "batch": rng.choice([16, 32, 64, 128, 256]),
        "opt": rng.choice(["adam", "sgd", "adamw"]),
        "baseline": rng.random() < 0.5,
        "acc": round(rng.uniform(0.5, 1.0), 6),
    }


def create_runs(
    srv: ToraServer, user: User, specs: list[dict[str, Any]], threads: int
) -> tuple[list[str], float]:
    """POST /api/experiments + one logs/batch (result acc, 10 loss points) per spec, in threads."""
    ids: list[str | None] = [None] * len(specs)
    errors: list[str] = []

    def work(k: int) -> None:
        conn = Conn(srv.url, user.api_key)
        try:
            for i in range(k, len(specs), threads):
                sp = specs[i]
                body = {
                    "name": sp["name"],
                    "hyperparams": [
                        {"key": "lr", "value": sp["lr"]},
                        {"key": "batch", "value": sp["batch"]},
                        {"key": "opt", "value": sp["opt"]},
                    ],
                    "tags": ["baseline"] if sp["baseline"] else ["sweep"],
                }
                status, raw = conn.request(
                    "POST", "/api/experiments", json.dumps(body).encode()
                )
                if status != 201:
                    raise RuntimeError(
                        f"POST /api/experiments -> {status}: {raw[:300]!r}"
                    )
                ids[i] = json.loads(raw)["data"]["id"]
                logs = [
                    {"name": "acc", "value": sp["acc"], "metadata": {"type": "result"}}
                ]
                logs += [
                    {"name": "loss", "value": 1.0 / (s + 1), "step": s}
                    for s in range(10)
                ]
                post_batch(conn, ids[i], json.dumps({"logs": logs}).encode())
        except Exception as err:  # noqa: BLE001 -- reported by the caller: a half-built workspace is no bench
            errors.append(f"{type(err).__name__}: {err}")
        finally:
            conn.close()

    t0 = time.perf_counter()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise RuntimeError(f"creating experiments: {errors[:3]}")
    return [i for i in ids if i], time.perf_counter() - t0


def phase_lists(
    srv: ToraServer, n_exps: int, reps: int, threads: int
) -> dict[str, Any]:
    """(c) n_exps experiments in one workspace (a second user's personal one), four list queries."""
    user = new_user(srv.api)
    rng = random.Random(3)
    specs = [experiment_spec(i, rng) for i in range(n_exps)]
    ids, create_s = create_runs(srv, user, specs, threads)
    ws = call_ok("GET", f"{srv.api}/experiments/{ids[0]}", api_key=user.api_key)[
        "workspace_id"
    ]
    conn = Conn(srv.url, user.api_key)
    base = f"/api/workspaces/{ws}/experiments"

    q = "lr < 0.01 and tag:baseline and acc >= 0.9"
    matches = sorted(
        (s for s in specs if s["lr"] < 0.01 and s["baseline"] and s["acc"] >= 0.9),
        key=lambda s: -s["acc"],
    )
    by_lr = sorted(specs, key=lambda s: s["lr"])

    def page(total: int, names: list[str] | None) -> Callable[[dict[str, Any]], None]:
        def check(env: dict[str, Any]) -> None:
            got = [e["name"] for e in env["data"]]
            if env["total"] != total or len(got) != min(50, total):
                raise RuntimeError(
                    f"page: total {env['total']} ({total} expected), {len(got)} rows"
                )
            if names is not None and got != names:
                raise RuntimeError(f"page: rows {got[:3]}..., expected {names[:3]}...")

        return check

    def with_summary(env: dict[str, Any]) -> None:
        page(n_exps, None)(env)
        s = env["data"][0].get("summary") or {}
        if (
            "acc" not in s.get("results", {})
            or s.get("metrics", {}).get("loss", {}).get("count") != 10
        ):
            raise RuntimeError(f"summary=1: {s}")

    env, *_ = get_json(conn, f"{base}?sort=hp.lr&limit=50")  # the cursor of page 2
    page(n_exps, [s["name"] for s in by_lr[:50]])(env)
    cursor = urllib.parse.quote(env["next_cursor"])
    queries = {
        "default_page": (
            f"{base}?limit=50",
            lambda env: page(n_exps, None)(env),
        ),
        "filter_sort": (
            f"{base}?q={urllib.parse.quote(q)}&sort=-result.acc&limit=50",
            page(len(matches), [s["name"] for s in matches[:50]]),
        ),
        "sort_hp_second_page": (
            f"{base}?sort=hp.lr&limit=50&cursor={cursor}",
            page(n_exps, [s["name"] for s in by_lr[50:100]]),
        ),
        "summary_page": (f"{base}?summary=1&limit=50", with_summary),
    }
    out: dict[str, Any] = {
        "experiments": n_exps,
        "create_threads": threads,
        "create_s": create_s,
        "create_per_s": n_exps / create_s,
        "query": q,
        "query_matches": len(matches),
    }
    for key, (path, check) in queries.items():
        out[key] = timed(conn, path, reps, check)
    conn.close()
    out["server"] = server_state(srv)
    return out


def phase_latency(
    srv: ToraServer, user: User, others: int, requests: int, batch: int
) -> dict[str, Any]:
    """(d) one writer's request latency while `others` threads write as fast as they can."""
    exps = [new_experiment(srv.api, user, f"load-{i}") for i in range(others + 1)]
    max_bg = (
        20 * requests
    )  # per background thread: bounded even if the measured one stalls

    def bodies(n: int, seed: int) -> list[bytes]:
        out = []
        for r in range(n):
            logs = [
                {
                    "msg_id": str(uuid.uuid4()),
                    "name": f"m{i % 5}",
                    "value": seed + i * 1e-3,
                    "step": (r * batch + i) // 5,
                }
                for i in range(batch)
            ]
            out.append(json.dumps({"logs": logs}).encode())
        return out

    stop = threading.Event()
    bg_done = [0] * others
    bg_errors: list[str] = []
    bg_bodies = [bodies(min(max_bg, 2000), seed=k) for k in range(others)]

    def background(k: int) -> None:
        conn = Conn(srv.url, user.api_key)
        exp, bs = exps[k + 1], bg_bodies[k]
        try:
            for r in range(max_bg):
                if stop.is_set():
                    break
                # Past the pre-built bodies, resend them: the server skips known msg_ids,
                # which is still a full write request.
                status, raw = conn.request(
                    "POST", f"/api/experiments/{exp}/logs/batch", bs[r % len(bs)]
                )
                if status != 201:
                    bg_errors.append(f"{status}: {raw[:200]!r}")
                bg_done[k] += 1
        finally:
            conn.close()

    measured = bodies(requests, seed=99)
    conn = Conn(srv.url, user.api_key)
    pool = [threading.Thread(target=background, args=(k,)) for k in range(others)]
    load0 = os.getloadavg()
    cpu0 = cpu_seconds(srv.pid)
    for t in pool:
        t.start()
    time.sleep(0.5)  # let the background writers get going
    bg0 = sum(bg_done)
    lat = []
    t_start = time.perf_counter()
    try:
        for body in measured:
            t0 = time.perf_counter()
            post_batch(conn, exps[0], body)
            lat.append(time.perf_counter() - t0)
    finally:
        wall = time.perf_counter() - t_start
        bg_in_window = sum(bg_done) - bg0
        stop.set()
        for t in pool:
            t.join()
        conn.close()
    server_cpu = cpu_seconds(srv.pid) - cpu0
    if bg_errors:
        raise RuntimeError(f"background writers: {bg_errors[:3]}")
    return {
        "background_threads": others,
        "batch": batch,
        "requests": requests,
        "latency_ms": {f"p{q}": percentile(lat, q) * 1000 for q in (50, 95, 99)},
        "latency_ms_max": max(lat) * 1000,
        "measured_wall_s": wall,
        "background_requests_in_window": bg_in_window,
        "background_points_per_s": bg_in_window * batch / wall,
        "all_points_per_s": (bg_in_window + requests) * batch / wall,
        "server_cpu_s": server_cpu,
        "loadavg_before": load0,
        "server": server_state(srv),
    }


def phase_sqlite(n1: int, n_exps: int, n_each: int) -> dict[str, Any]:
    """The floor: the same bucketing as plain GROUP BY queries in Python's sqlite3, on a clustered
    table (experiment_id, name, step) -> value holding the same number of points, no
    pre-aggregation. Min, max, count and last step per bucket (no last value)."""
    with tempfile.TemporaryDirectory(prefix="tora-bench-sqlite-") as tmp:
        con = sqlite3.connect(Path(tmp) / "floor.db")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(
            "CREATE TABLE logs (experiment_id INTEGER, name TEXT, step INTEGER, value REAL,"
            " PRIMARY KEY (experiment_id, name, step)) WITHOUT ROWID"
        )
        fill = (
            "INSERT INTO logs WITH RECURSIVE c(s) AS (SELECT 0 UNION ALL SELECT s + 1 FROM c WHERE s < ?3)"
            " SELECT ?1, ?2, s, (abs(random()) % 1000000) / 1e6 FROM c"
        )
        t0 = time.perf_counter()
        con.execute(fill, (0, "m", n1 - 1))
        for e in range(1, n_exps + 1):
            con.execute(fill, (e, "loss", n_each - 1))
        con.commit()
        build_s = time.perf_counter() - t0

        def bucketed(
            where: str, args: tuple, width: int, reps: int, group: str = ""
        ) -> dict[str, Any]:
            sql = (
                f"SELECT {group} max(step), min(value), max(value), count(*) FROM logs WHERE {where}"
                f" GROUP BY {group} step / {width} ORDER BY {group} 1"
            )
            times, rows = [], 0
            for _ in range(reps + 1):
                t = time.perf_counter()
                rows = len(con.execute(sql, args).fetchall())
                times.append(time.perf_counter() - t)
            return {
                "cold_ms": times[0] * 1000,
                "median_ms": statistics.median(times[1:]) * 1000,
                "rows": rows,
            }

        lo, hi = int(n1 * 0.45), int(n1 * 0.55) - 1
        ids = ",".join(str(e) for e in range(1, n_exps + 1))
        out = {
            "sqlite_version": sqlite3.sqlite_version,
            "build_s": build_s,
            "full": bucketed(
                "experiment_id = 0 AND name = 'm'", (), -(-n1 // 1000), 10
            ),
            "zoom": bucketed(
                "experiment_id = 0 AND name = 'm' AND step BETWEEN ? AND ?",
                (lo, hi),
                -(-(hi - lo + 1) // 1000),
                10,
            ),
            "compare": bucketed(
                f"experiment_id IN ({ids}) AND name = 'loss'",
                (),
                -(-n_each // 1000),
                5,
                group="experiment_id,",
            ),
        }
        con.close()
    return out


def table(res: dict[str, Any]) -> str:
    env = res["env"]
    rows = [
        ("Binary", f"{env['binary']} ({env['tora_version']})"),
        ("Scale", f"{res['args']['scale']}"),
    ]

    def q(r: dict[str, Any]) -> str:
        return (
            f"{r['median_http_ms']:.1f} ms median of {r['runs']} (cold {r['cold_http_ms']:.1f} ms;"
            f" {r['median_with_json_ms']:.1f} ms incl. json.loads; {r['response_bytes'] / 1024:.0f} KiB)"
        )

    def state(s: dict[str, Any]) -> str:
        return (
            f"RSS {s['rss_mib']:.0f} MiB (peak {s['peak_rss_mib']:.0f}), db {s['db_bytes'] / 2**20:.0f} MiB,"
            f" load {s['loadavg'][0]:.2f}"
        )

    def ingest(i: dict[str, Any]) -> str:
        return (
            f"{i['points_per_s']:,.0f} pts/s ({i['points']:,} points, {i['requests']} requests,"
            f" {i['wall_s']:.1f} s; server CPU {i['server_cpu_s']:.1f} s)"
        )

    a, b, c, d = res["downsample"], res["compare"], res["lists"], res["latency"]
    f = res.get("sqlite")

    def floor(key: str) -> str:
        if not f:
            return "not run"
        r = f[key]
        return f"{r['median_ms']:.1f} ms median (cold {r['cold_ms']:.1f} ms; {r['rows']:,} rows)"

    rows += [
        (
            f"(a) load {a['points']:,} points of one metric, batches of {BATCH:,}",
            ingest(a["ingest"]),
        ),
        ("(a) series, full range to 1,000 buckets", q(a["full"])),
        (
            f"(a) series, zoom on steps {a['zoom']['range'][0]:,}..{a['zoom']['range'][1]:,}",
            q(a["zoom"]),
        ),
        (
            "(a) floor: Python sqlite3 GROUP BY on a clustered table, full range",
            floor("full"),
        ),
        ("(a) floor: the same, zoom", floor("zoom")),
        ("(a) server after", state(a["server"])),
        (
            f"(b) load {b['experiments']} experiments x {b['points_each']:,} points, batches of {BATCH:,}",
            ingest(b["ingest"]),
        ),
        (
            f"(b) GET /api/series, {b['experiments']} experiments x 1,000 buckets",
            q(b["compare"]),
        ),
        ("(b) floor: Python sqlite3 GROUP BY experiment, bucket", floor("compare")),
        ("(b) server after", state(b["server"])),
        (
            f"(c) create {c['experiments']:,} experiments (+ acc, 10 loss points each), {c['create_threads']} threads",
            f"{c['create_per_s']:,.0f} experiments/s ({c['create_s']:.1f} s)",
        ),
        ("(c) list: limit=50", q(c["default_page"])),
        (
            f"(c) list: q=`{c['query']}`, sort=-result.acc, limit=50 ({c['query_matches']} matches)",
            q(c["filter_sort"]),
        ),
        (
            "(c) list: sort=hp.lr, limit=50, second page (cursor)",
            q(c["sort_hp_second_page"]),
        ),
        ("(c) list: summary=1, limit=50", q(c["summary_page"])),
        ("(c) server after", state(c["server"])),
        (
            f"(d) {d['batch']}-point batch latency p50 / p95 / p99 / max, {d['background_threads']} other writers",
            (
                f"{d['latency_ms']['p50']:.1f} / {d['latency_ms']['p95']:.1f} / {d['latency_ms']['p99']:.1f}"
                f" / {d['latency_ms_max']:.1f} ms ({d['requests']} requests;"
                f" all writers {d['all_points_per_s']:,.0f} pts/s)"
            ),
        ),
        ("(d) server after", state(d["server"])),
        (
            "1-min load average at start / end",
            f"{env['loadavg_at_start'][0]:.2f} / {env['loadavg_at_end'][0]:.2f} ({env['cpus']} CPUs)",
        ),
    ]
    return "\n".join(
        ["| Measure | Value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink every size, e.g. 0.01 for a quick check",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=4,
        help="client threads creating the experiments of (c)",
    )
    ap.add_argument(
        "--sqlite",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the bucketing as plain SQL in Python's sqlite3 (the floor)",
    )
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "query.json"
    )
    args = ap.parse_args()

    def n(x: int, floor: int) -> int:
        return max(floor, int(x * args.scale))

    res: dict[str, Any] = {
        "env": environment(),
        "args": {"scale": args.scale, "threads": args.threads},
    }
    print(
        f"binary: {res['env']['binary']} ({res['env']['tora_version']})",
        file=sys.stderr,
    )
    with ToraServer() as srv:
        user = new_user(srv.api)
        conn = Conn(srv.url, user.api_key)
        res["idle"] = server_state(srv)
        print("(a) 1M-point downsample ...", file=sys.stderr)
        res["downsample"] = phase_downsample(
            srv, user, conn, n(1_000_000, 5000), reps=10
        )
        print("(b) 100-run compare ...", file=sys.stderr)
        res["compare"] = phase_compare(
            srv, user, conn, n(100, 5), n(100_000, 2000), reps=5
        )
        conn.close()
        print("(c) 10k-experiment lists ...", file=sys.stderr)
        res["lists"] = phase_lists(srv, n(10_000, 200), reps=10, threads=args.threads)
        print("(d) latency under load ...", file=sys.stderr)
        res["latency"] = phase_latency(
            srv, user, others=8, requests=n(1000, 100), batch=25
        )
        res["server_exit_code"] = srv.stop()
    if args.sqlite:
        print("floor: sqlite3 ...", file=sys.stderr)
        res["sqlite"] = phase_sqlite(n(1_000_000, 5000), n(100, 5), n(100_000, 2000))
    res["env"]["loadavg_at_end"] = os.getloadavg()
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
