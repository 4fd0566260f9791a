#!/usr/bin/env python3
"""Ingest benchmark for `tora serve`: throughput, bytes on disk, start-up, memory, read-back.

    cargo build --release && TORA_BIN=target/release/tora python3 bench/ingest.py

Stdlib only. Every server runs on 127.0.0.1 with its own temp database and is stopped by PID.
Sections (see bench/README.md): (a) 1M points in each of three formats, rows (POST logs/batch,
what the published tora==0.0.12 SDK sends), columns (POST points with the values as JSON numbers)
and packed (POST points with the values as base64 little-endian doubles, `values_f64`, the
format Tora's own SDK is to send), batches of 1,000 and 5,000, end to end and with pre-encoded bodies;
(b) bytes per point on disk; (c) the same rows through Python's sqlite3; (d) the peers'
100k-point workload in each format; (e) start-up, idle RSS, binary size; (f) read-back of a
10k-point metric.
"""

from __future__ import annotations

import argparse
import array
import base64
import http.client
import itertools
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from toraserver import REPO, ToraServer, User, call, call_ok, new_user, tora_bin

N_METRICS = 10
PEER_STEPS = 10_000  # /work/shared/bench/peers/common.py: 10 metrics x 10,000 steps
# The peers' workload in the columnar format: 100 steps x 10 metrics = 1,000 points per request,
# what Tora's SDK sends when its 1,000-point buffer fills from log_metrics({10 names}, step).
PEER_STEPS_PER_BATCH = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")
FORMATS = ("rows", "columns", "packed")
# rows: a dict per point with a msg_id, what the published tora==0.0.12 SDK sends;
# columns: {name, steps, values} per metric and one batch_id per request;
# packed: the same columns with values_f64 (base64 little-endian doubles) instead of values, for
# Tora's own SDK: Python's float repr in json.dumps costs ~1 µs a value, packing ~10 ns.
PATHS = {
    "rows": "/api/experiments/{}/logs/batch",
    "columns": "/api/experiments/{}/points",
    "packed": "/api/experiments/{}/points",
}
LABELS = {
    "rows": "rows, a dict per point (logs/batch)",
    "columns": "columns, values as JSON numbers (points)",
    "packed": "columns, values as base64 doubles (points, values_f64)",
}


class Conn:
    """One persistent keep-alive HTTP connection, as a real SDK would hold."""

    def __init__(self, url: str, api_key: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=300)
        self.headers = {"Content-Type": "application/json", "x-api-key": api_key}

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        self.conn.request(method, path, body, self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        self.conn.close()


def proc_status(pid: int, field: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    # Fields 14 and 15 of /proc/PID/stat are utime and stime; split after the ")" of comm.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def new_experiment(api: str, user: User, name: str) -> str:
    return call_ok(
        "POST", f"{api}/experiments", {"name": name}, expect=201, api_key=user.api_key
    )["id"]


def post(conn: Conn, path: str, body: bytes, n: int) -> None:
    """POST one batch of n points; raise unless the server says it stored all n."""
    status, raw = conn.request("POST", path, body)
    # A benchmark that counts rejected points as ingested would be worse than none.
    if status != 201:
        raise RuntimeError(f"POST {path} -> {status}: {raw[:300]!r}")
    data = json.loads(raw)["data"]
    if (data["inserted"], data["skipped"]) != (n, 0):
        raise RuntimeError(f"POST {path} inserted {data} of {n}")


def synthetic_values(
    n_points: int, size: int, seed: int = 1
) -> Iterator[tuple[int, list[float]]]:
    """(first point index, values) per batch; point i is metric m{i % 10} at step i // 10."""
    rng = random.Random(seed)
    for start in range(0, n_points, size):
        yield start, [rng.random() for _ in range(min(size, n_points - start))]


def rows_payload(start: int, values: list[float]) -> dict[str, Any]:
    """logs/batch: a dict per point with a uuid4 msg_id, as the 0.0.12 SDK builds it."""
    return {
        "logs": [
            {
                "msg_id": str(uuid.uuid4()),
                "name": f"m{i % N_METRICS}",
                "value": v,
                "step": i // N_METRICS,
                "metadata": {"type": "metric"},
            }
            for i, v in enumerate(values, start)
        ]
    }


def columns_payload(start: int, values: list[float], batch_id: str) -> dict[str, Any]:
    """points: one {name, steps, values} per metric and one batch_id for the request.

    start and len(values) are multiples of N_METRICS, so metric k holds values[k::10].
    """
    first, n_steps = start // N_METRICS, len(values) // N_METRICS
    steps = list(range(first, first + n_steps))
    return {
        "batch_id": batch_id,
        "metrics": [
            {"name": f"m{k}", "steps": steps, "values": values[k::N_METRICS]}
            for k in range(N_METRICS)
        ],
    }


def payload(fmt: str, start: int, values: list[float], batch_id: str) -> dict[str, Any]:
    """The request as Python objects, floats still floats; encode() turns it into the body."""
    if fmt == "rows":
        return rows_payload(start, values)
    return columns_payload(start, values, batch_id)


def pack_f64(values: list[float]) -> str:
    """values_f64: little-endian IEEE-754 doubles, base64 (standard alphabet, padded)."""
    a = array.array("d", values)
    if sys.byteorder == "big":
        a.byteswap()
    return base64.b64encode(a.tobytes()).decode("ascii")


def encode(fmt: str, obj: dict[str, Any]) -> bytes:
    """The request body: json.dumps, after packing each metric's values for "packed"."""
    if fmt == "packed":
        obj = {
            "batch_id": obj["batch_id"],
            "metrics": [
                {
                    "name": m["name"],
                    "steps": m["steps"],
                    "values_f64": pack_f64(m["values"]),
                }
                for m in obj["metrics"]
            ],
        }
    return json.dumps(obj).encode()


def peer_values(seed: int = 0) -> list[list[float]]:
    """Copy of peers/common.py values(): the same 10,000 x 10 floats every peer logged."""
    rng = random.Random(seed)
    return [[rng.random() for _ in range(N_METRICS)] for _ in range(PEER_STEPS)]


def peer_payloads(
    fmt: str, vals: list[list[float]]
) -> list[tuple[dict[str, Any], int]]:
    """The peers' 100k points as 1,000-point request payloads (and their point counts).

    Built before the clock, as the peers built their Metric objects, with the values as floats;
    encode() (json.dumps, and for "packed" the base64 packing) is timed. rows: 1,000 dicts with
    msg_ids, step-major; columns and packed: 100 steps x 10 metrics.
    """
    if fmt == "rows":
        points = [
            {
                "msg_id": str(uuid.uuid4()),
                "name": f"m{k}",
                "value": vals[s][k],
                "step": s,
                "metadata": {"type": "metric"},
            }
            for s in range(PEER_STEPS)
            for k in range(N_METRICS)
        ]
        return [
            ({"logs": points[i : i + 1000]}, 1000) for i in range(0, len(points), 1000)
        ]
    token = uuid.uuid4().hex[:12]
    out = []
    for b, s0 in enumerate(range(0, PEER_STEPS, PEER_STEPS_PER_BATCH)):
        steps = list(range(s0, s0 + PEER_STEPS_PER_BATCH))
        metrics = [
            {"name": f"m{k}", "steps": steps, "values": [vals[s][k] for s in steps]}
            for k in range(N_METRICS)
        ]
        out.append(
            (
                {"batch_id": f"{token}.{b:04d}", "metrics": metrics},
                len(steps) * N_METRICS,
            )
        )
    return out


def send_payloads(
    conn: Conn, exp_id: str, fmt: str, payloads: list[tuple[dict[str, Any], int]]
) -> float:
    """encode() and POST each payload in order; returns the wall seconds of the whole."""
    path = PATHS[fmt].format(exp_id)
    t0 = time.perf_counter()
    for body, n in payloads:
        post(conn, path, encode(fmt, body), n)
    return time.perf_counter() - t0


def bench_batches(n_points: int, batch: int, fmt: str) -> dict[str, Any]:
    """(a) and (b): one format and batch size, end to end and with pre-encoded bodies."""
    e2e = ingest_run(n_points, batch, fmt, pre_encoded=False)
    pre = ingest_run(n_points, batch, fmt, pre_encoded=True)
    return e2e | {
        "points_per_http_s": pre["points_per_s"],
        "pre_encoded": pre,
    }


def ingest_run(
    n_points: int, batch: int, fmt: str, pre_encoded: bool
) -> dict[str, Any]:
    """n_points in batches of `batch` on a fresh server, then bytes per point after SIGTERM.

    End to end, the clock covers making the values, building the payload (dicts with uuid4
    msg_ids, or column lists), encoding it (json.dumps; for "packed" the base64 packing of each
    metric's values first) and the HTTP round trip. Pre-encoded, every body is built before
    the clock, which then holds only the round trips: the server's rate.
    """
    token = uuid.uuid4().hex[:12]
    bodies: list[tuple[bytes, int]] = []
    encode_s = 0.0
    if pre_encoded:
        t0 = time.perf_counter()
        bodies = [
            (encode(fmt, payload(fmt, start, vals, f"{token}.{i:06d}")), len(vals))
            for i, (start, vals) in enumerate(synthetic_values(n_points, batch))
        ]
        encode_s = time.perf_counter() - t0
    with ToraServer() as srv:
        user = new_user(srv.api)
        exp_id = new_experiment(srv.api, user, f"ingest-{fmt}-{batch}")
        path = PATHS[fmt].format(exp_id)
        conn = Conn(srv.url, user.api_key)
        cpu0 = cpu_seconds(srv.pid)
        gen_s = encode_s_e2e = http_s = 0.0
        body_bytes = 0
        t_start = time.perf_counter()
        if pre_encoded:
            for body, n in bodies:
                post(conn, path, body, n)
            http_s = time.perf_counter() - t_start
            body_bytes = sum(len(b) for b, _ in bodies)
        else:
            values = synthetic_values(n_points, batch)
            for i in itertools.count():
                t0 = time.perf_counter()
                item = next(values, None)
                if item is None:
                    break
                start, vals = item
                obj = payload(fmt, start, vals, f"{token}.{i:06d}")
                t1 = time.perf_counter()
                body = encode(fmt, obj)
                t2 = time.perf_counter()
                post(conn, path, body, len(vals))
                t3 = time.perf_counter()
                gen_s, encode_s_e2e, http_s = (
                    gen_s + t1 - t0,
                    encode_s_e2e + t2 - t1,
                    http_s + t3 - t2,
                )
                body_bytes += len(body)
        wall = time.perf_counter() - t_start
        server_cpu = cpu_seconds(srv.pid) - cpu0
        peak_rss = proc_status(srv.pid, "VmHWM")
        conn.close()
        # SIGTERM lets the server checkpoint the WAL, so the main file holds everything.
        code = srv.stop()
        sizes = {p.name: p.stat().st_size for p in srv.dir.glob("tora.db*")}
    del bodies
    on_disk = sum(sizes.values())
    return {
        "format": fmt,
        "label": LABELS[fmt],
        "endpoint": PATHS[fmt].format("{id}"),
        "batch": batch,
        "points": n_points,
        "pre_encoded_bodies": pre_encoded,
        "encode_s": encode_s,
        "wall_s": wall,
        "points_per_s": n_points / wall,
        "client_gen_s": gen_s,
        # json.dumps, and for "packed" the base64 packing before it
        "client_encode_s": encode_s_e2e,
        "http_s": http_s,
        "body_bytes_per_point": body_bytes / n_points,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_point": server_cpu / n_points * 1e6,
        "server_peak_rss_mib": peak_rss / 1024,
        "exit_code": code,
        "files": sizes,
        "bytes_per_point": on_disk / n_points,
    }


SQLITE_VARIANTS = {
    "plain": "(experiment_id, name, step, value): the columns format's rows",
    "msg_id": "+ a msg_id column: the rows format's rows",
    "unique_msg_id": "+ a unique (experiment_id, msg_id) index: exactly-once per point",
}


def bench_sqlite(n_points: int, batch: int, variant: str) -> dict[str, Any]:
    """(c) Python's sqlite3 inserting the same rows: the floor a SQLite-backed server sits on.

    The clock covers making the values and the row tuples (uuid4 msg_ids where there is a
    msg_id column) as well as executemany + commit, as (a)'s end-to-end clock does.
    """
    with_msg_id = variant != "plain"
    with tempfile.TemporaryDirectory(prefix="tora-bench-sqlite-") as tmp:
        path = Path(tmp) / "baseline.db"
        con = sqlite3.connect(path)
        con.execute("PRAGMA journal_mode=WAL")
        # NORMAL is the usual setting with WAL; FULL would fsync every commit.
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(
            "CREATE TABLE logs (experiment_id TEXT NOT NULL, name TEXT NOT NULL,"
            " step INTEGER, value REAL"
            + (", msg_id TEXT NOT NULL)" if with_msg_id else ")")
        )
        con.execute("CREATE INDEX logs_series ON logs (experiment_id, name, step)")
        if variant == "unique_msg_id":
            # What exactly-once retries of single points cost: the server must dedupe msg_ids.
            con.execute("CREATE UNIQUE INDEX logs_msg ON logs (experiment_id, msg_id)")
        insert = "INSERT INTO logs VALUES (?, ?, ?, ?" + (
            ", ?)" if with_msg_id else ")"
        )
        exp_id = str(uuid.uuid4())
        names = [f"m{k}" for k in range(N_METRICS)]
        gen_s = insert_s = 0.0
        t_start = time.perf_counter()
        values = synthetic_values(n_points, batch)
        while True:
            t0 = time.perf_counter()
            item = next(values, None)
            if item is None:
                break
            start, vals = item
            if with_msg_id:
                rows: list[tuple[Any, ...]] = [
                    (exp_id, names[i % N_METRICS], i // N_METRICS, v, str(uuid.uuid4()))
                    for i, v in enumerate(vals, start)
                ]
            else:
                rows = [
                    (exp_id, names[i % N_METRICS], i // N_METRICS, v)
                    for i, v in enumerate(vals, start)
                ]
            t1 = time.perf_counter()
            con.executemany(insert, rows)
            con.commit()
            gen_s, insert_s = gen_s + t1 - t0, insert_s + time.perf_counter() - t1
        wall = time.perf_counter() - t_start
        con.close()  # the last connection's close checkpoints and removes the WAL
        on_disk = sum(p.stat().st_size for p in Path(tmp).glob("baseline.db*"))
    return {
        "variant": variant,
        "label": SQLITE_VARIANTS[variant],
        "msg_id": with_msg_id,
        "unique_msg_id": variant == "unique_msg_id",
        "batch": batch,
        "points": n_points,
        "wall_s": wall,
        "points_per_s": n_points / wall,
        "client_gen_s": gen_s,
        "insert_s": insert_s,
        "points_per_insert_s": n_points / insert_s,
        "bytes_per_point": on_disk / n_points,
        "sqlite_version": sqlite3.sqlite_version,
    }


def bench_peer_workload(repeats: int, reads: int) -> dict[str, Any]:
    """(d) the peers' 100k points in 1,000-point batches in each format, and (f) read-back."""
    vals = peer_values(seed=0)
    with ToraServer() as srv:
        user = new_user(srv.api)
        conn = Conn(srv.url, user.api_key)
        out: dict[str, Any] = {}
        for fmt in FORMATS:
            runs = [
                ingest_peer_points(srv, user, conn, vals, fmt, i)
                for i in range(repeats)
            ]
            wall = statistics.median(r["wall_s"] for r in runs)
            out[fmt] = {
                "runs": runs,
                "wall_s": wall,
                "points_per_s": N_METRICS * PEER_STEPS / wall,
                "endpoint": PATHS[fmt].format("{id}"),
                "label": LABELS[fmt],
            }

        # (f) an experiment holding one metric of 10k points: /metrics has no name filter.
        exp_id = new_experiment(srv.api, user, "read-10k")
        points = [
            {"msg_id": str(uuid.uuid4()), "name": "m0", "value": vals[s][0], "step": s}
            for s in range(PEER_STEPS)
        ]
        for i in range(0, PEER_STEPS, 1000):
            post(
                conn,
                PATHS["rows"].format(exp_id),
                json.dumps({"logs": points[i : i + 1000]}).encode(),
                1000,
            )
        read_s, http_s = [], []
        for _ in range(reads):
            t0 = time.perf_counter()
            rows, http, size = get_metrics(conn, exp_id)
            read_s.append(time.perf_counter() - t0)
            http_s.append(http)
        read_bad = check_series(
            rows, [(s, vals[s][0]) for s in range(PEER_STEPS)], "m0"
        )
        conn.close()
        srv.stop()
    return out | {
        "columns_steps_per_batch": PEER_STEPS_PER_BATCH,
        "read_10k_first_s": read_s[0],
        "read_10k_median_s": statistics.median(read_s),
        "read_10k_all_s": read_s,
        "read_10k_http_median_s": statistics.median(http_s),
        "read_10k_bytes": size,
        "read_10k_values_differing": read_bad,
    }


def ingest_peer_points(
    srv: ToraServer,
    user: User,
    conn: Conn,
    vals: list[list[float]],
    fmt: str,
    rep: int,
) -> dict[str, Any]:
    exp_id = new_experiment(srv.api, user, f"peer-100k-{fmt}-{rep}")
    payloads = peer_payloads(fmt, vals)
    cpu0 = cpu_seconds(srv.pid)
    wall = send_payloads(conn, exp_id, fmt, payloads)
    server_cpu = cpu_seconds(srv.pid) - cpu0
    # Every peer checked its data landed; so do we, for all 100k values.
    t1 = time.perf_counter()
    rows, http_s, size = get_metrics(conn, exp_id)
    read_all_s = time.perf_counter() - t1
    bad = sum(
        check_series(
            [r for r in rows if r["name"] == f"m{k}"],
            [(s, vals[s][k]) for s in range(PEER_STEPS)],
            f"m{k}",
        )
        for k in range(N_METRICS)
    )
    return {
        "wall_s": wall,
        "points_per_s": N_METRICS * PEER_STEPS / wall,
        "server_cpu_s": server_cpu,
        "read_100k_s": read_all_s,
        "read_100k_http_s": http_s,
        "read_100k_bytes": size,
        "values_differing": bad,
    }


def get_metrics(conn: Conn, exp_id: str) -> tuple[list[dict[str, Any]], float, int]:
    """GET /metrics: (rows, seconds to the last byte, body bytes); json.loads is not timed.

    Splitting the two shows whether a slow read is the server or the client's JSON parse.
    """
    t0 = time.perf_counter()
    status, raw = conn.request("GET", f"/api/experiments/{exp_id}/metrics")
    http_s = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"GET metrics -> {status}: {raw[:300]!r}")
    return json.loads(raw)["data"], http_s, len(raw)


def check_series(
    rows: list[dict[str, Any]], want: list[tuple[int, float]], name: str
) -> int:
    """Raise if a point is lost, duplicated or out of step order; return how many values differ.

    Differing values are counted, not raised, so that a float-precision bug in the server
    shows up as a figure in the report instead of hiding all the other figures.
    """
    steps = [r["step"] for r in rows]
    if steps != [s for s, _ in want]:
        raise RuntimeError(
            f"{name}: read back {len(steps)} points/steps, expected {len(want)}"
        )
    return sum(r["value"] != v for r, (_, v) in zip(rows, want, strict=True))


def bench_startup(n: int, idle_s: float) -> dict[str, Any]:
    """(e) Popen -> 200 on /api/health, median of n fresh starts; idle RSS of the last one."""
    times, listening = [], []
    rss_kib = 0
    for i in range(n):
        srv = ToraServer()
        t0 = time.perf_counter()
        with srv:
            # start() returns as soon as it has read the "listening on" line.
            listening.append(time.perf_counter() - t0)
            status, body = call("GET", f"{srv.api}/health")
            times.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"/api/health -> {status}: {body}")
            if i == n - 1:
                time.sleep(idle_s)  # let the server settle before sampling its memory
                rss_kib = proc_status(srv.pid, "VmRSS")
    return {
        "startup_s_median": statistics.median(times),
        "startup_s_all": times,
        "listening_s_median": statistics.median(listening),
        "idle_rss_mib": rss_kib / 1024,
        "binary_bytes": tora_bin().stat().st_size,
    }


def environment() -> dict[str, Any]:
    version = subprocess.run(
        [str(tora_bin()), "--version"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return {
        "binary": str(tora_bin()),
        "tora_version": version.stdout.strip() or version.stderr.strip(),
        "python": platform.python_version(),
        "sqlite_python": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        # Other work on a 2-core box skews every figure; keep the evidence with them.
        "loadavg_at_start": os.getloadavg(),
    }


def table(res: dict[str, Any]) -> str:
    env = res["env"]
    load = f"{env['loadavg_at_start'][0]:.2f} / {env['loadavg_at_end'][0]:.2f}"
    rows = [
        ("Binary", f"{env['binary']} ({env['tora_version']})"),
        ("Machine (1-min load average at start / end)", f"{env['cpus']} CPUs ({load})"),
    ]
    for a in res["batches"]:
        what = (
            f"{LABELS[a['format']]}, {a['points']:,} points, batches of {a['batch']:,}"
        )
        rows.append((f"(a) {what}", ingest_cell(a)))
        rows.append((f"(b) bytes/point on disk after SIGTERM: {what}", bytes_cell(a)))
    for c in res["sqlite"]:
        cell = (
            f"{c['points_per_s']:,.0f} rows/s wall ({c['points_per_insert_s']:,.0f} counting"
            f" executemany+commit only); {c['bytes_per_point']:.1f} bytes/row"
        )
        label = (
            f"(c) Python sqlite3, {c['points']:,} rows in commits of {c['batch']:,},"
            f" indexed WAL table {c['label']}"
        )
        rows.append((label, cell))
    p, s = res["peer"], res["startup"]
    for fmt in FORMATS:
        f = p[fmt]
        runs = ", ".join(f"{r['wall_s']:.3f}" for r in f["runs"])
        shape = (
            "1,000 dicts"
            if fmt == "rows"
            else f"{p['columns_steps_per_batch']} steps x {N_METRICS} metrics"
        )
        rows.append(
            (
                f"(d) peers' 100k points, 1,000-point batches, {LABELS[fmt]} ({shape})",
                f"{f['points_per_s']:,.0f} pts/s, {f['wall_s']:.3f} s median (runs: {runs} s)",
            )
        )
    rows_runs = p["rows"]["runs"]
    read_100k = statistics.median(r["read_100k_s"] for r in rows_runs)
    read_100k_http = statistics.median(r["read_100k_http_s"] for r in rows_runs)
    all_runs = [r for fmt in FORMATS for r in p[fmt]["runs"]]
    differing = p["read_10k_values_differing"] + sum(
        r["values_differing"] for r in all_runs
    )
    rows += [
        (
            "(e) start-up to 200 on /api/health, median of 5",
            f"{s['startup_s_median'] * 1000:.1f} ms",
        ),
        ("(e) idle RSS after 2 s", f"{s['idle_rss_mib']:.1f} MiB"),
        ("(e) binary size", f"{s['binary_bytes'] / 2**20:.1f} MiB"),
        (
            "(f) read back one 10k-point metric, GET /metrics, median of 5",
            read_cell(
                p["read_10k_median_s"], p["read_10k_http_median_s"], p["read_10k_bytes"]
            ),
        ),
        (
            "(f) read back a 100k-point experiment of (d), rows",
            read_cell(read_100k, read_100k_http, rows_runs[0]["read_100k_bytes"]),
        ),
        (
            "(d)+(f) values read back != values sent (exact float compare)",
            f"{differing:,} of {N_METRICS * PEER_STEPS * len(all_runs) + PEER_STEPS:,}",
        ),
    ]
    return "\n".join(
        ["| Measure | Value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    )


def ingest_cell(a: dict[str, Any]) -> str:
    pre = a["pre_encoded"]
    client_s = a["client_gen_s"] + a["client_encode_s"]
    enc = "base64 + json.dumps" if a["format"] == "packed" else "json.dumps"
    return (
        f"{a['points_per_s']:,.0f} pts/s end to end ({a['wall_s']:.2f} s; client build"
        f" {a['client_gen_s']:.2f} s + {enc} {a['client_encode_s']:.2f} s = {client_s:.2f} s);"
        f" {pre['points_per_s']:,.0f} pts/s HTTP only, bodies pre-encoded ({pre['wall_s']:.2f} s);"
        f" server CPU {pre['server_cpu_us_per_point']:.2f} µs/point pre-encoded"
        f" ({a['server_cpu_us_per_point']:.2f} end to end); server peak RSS"
        f" {max(a['server_peak_rss_mib'], pre['server_peak_rss_mib']):.0f} MiB;"
        f" {a['body_bytes_per_point']:.0f} request bytes/point"
    )


def read_cell(total_s: float, http_s: float, size: int) -> str:
    return (
        f"{total_s * 1000:.1f} ms incl. json.loads ({http_s * 1000:.1f} ms to the last byte"
        f" of {size / 2**20:.1f} MiB)"
    )


def bytes_cell(a: dict[str, Any]) -> str:
    files = ", ".join(f"{name} {size:,} B" for name, size in a["files"].items())
    return f"{a['bytes_per_point']:.1f} ({files})"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--points",
        type=int,
        default=1_000_000,
        help="points for (a), (b) and (c); a multiple of 5,000",
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="repeats of the 100k peer workload (d)"
    )
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "ingest.json"
    )
    args = ap.parse_args()
    if args.points <= 0 or args.points % 5000:
        ap.error("--points must be a positive multiple of 5,000")

    res: dict[str, Any] = {
        "env": environment(),
        "args": {"points": args.points, "repeats": args.repeats},
    }
    print(
        f"binary: {res['env']['binary']} ({res['env']['tora_version']})",
        file=sys.stderr,
    )
    res["batches"] = []
    for fmt in FORMATS:
        for batch in (1000, 5000):
            print(
                f"(a) {args.points:,} points, {fmt}, batches of {batch:,} ...",
                file=sys.stderr,
            )
            res["batches"].append(bench_batches(args.points, batch, fmt))
    print("(c) sqlite3 floor ...", file=sys.stderr)
    res["sqlite"] = [bench_sqlite(args.points, 5000, v) for v in SQLITE_VARIANTS]
    print("(d)+(f) peer workload ...", file=sys.stderr)
    res["peer"] = bench_peer_workload(args.repeats, reads=5)
    print("(e) start-up ...", file=sys.stderr)
    res["startup"] = bench_startup(5, idle_s=2.0)

    res["env"]["loadavg_at_end"] = os.getloadavg()
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
