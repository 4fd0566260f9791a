#!/usr/bin/env python3
"""Many concurrent writers against one `tora serve`: throughput, errors, "database is locked".

    TORA_BIN=target/release/tora python3 bench/writers.py

32 threads (default), each with its own experiment and keep-alive connection, send 25-point
batches (what the 0.0.12 SDK sends by default) until ~200k points are in. The bodies are built
before the start so that, on a small machine, the clock measures the server more than json.dumps.
A failed request is retried (up to 3 attempts) with the same msg_ids, as an SDK would; the
read-back at the end then shows whether anything was lost or stored twice.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from ingest import Conn
from toraserver import REPO, ToraServer, call_ok, new_user

ATTEMPTS = 3
LOCKED = "database is locked"


@dataclass
class Writer:
    exp_id: str
    bodies: list[bytes]
    start: float = 0.0
    end: float = 0.0
    inserted: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def make_bodies(n_points: int, batch: int, seed: int) -> list[bytes]:
    bodies = []
    for first in range(0, n_points, batch):
        logs = [
            {
                "msg_id": str(uuid.uuid4()),
                "name": f"m{i % 5}",
                "value": seed + i * 1e-3,
                "step": i // 5,
            }
            for i in range(first, min(first + batch, n_points))
        ]
        bodies.append(json.dumps({"logs": logs}).encode())
    return bodies


def run_writer(w: Writer, url: str, api_key: str, barrier: threading.Barrier) -> None:
    conn = Conn(url, api_key)
    path = f"/api/experiments/{w.exp_id}/logs/batch"
    barrier.wait()
    w.start = time.perf_counter()
    for body in w.bodies:
        for _attempt in range(ATTEMPTS):
            t0 = time.perf_counter()
            try:
                status, raw = conn.request("POST", path, body)
            except (OSError, http.client.HTTPException) as err:
                w.errors.append(f"{type(err).__name__}: {err}")
                conn.close()  # http.client reconnects on the next request
                continue
            w.latencies.append(time.perf_counter() - t0)
            if status == 201:
                w.inserted += json.loads(raw)["data"]["inserted"]
                break
            w.errors.append(f"HTTP {status}: {raw[:200].decode(errors='replace')}")
    w.end = time.perf_counter()
    conn.close()


def percentile(xs: list[float], q: int) -> float:
    return (
        statistics.quantiles(xs, n=100)[q - 1]
        if len(xs) >= 2
        else (xs[0] if xs else 0.0)
    )


def run(
    args: argparse.Namespace, per_writer: int
) -> tuple[list[Writer], list[int], int | None, str]:
    """Start a server, run the writers together, read every experiment back, stop it."""
    with ToraServer() as srv:
        user = new_user(srv.api)
        writers = []
        for i in range(args.writers):
            body = {"name": f"writer-{i}"}
            exp = call_ok(
                "POST", f"{srv.api}/experiments", body, expect=201, api_key=user.api_key
            )
            writers.append(
                Writer(exp["id"], make_bodies(per_writer, args.batch, seed=i))
            )
        barrier = threading.Barrier(args.writers)
        threads = [
            threading.Thread(
                target=run_writer, args=(w, srv.url, user.api_key, barrier)
            )
            for w in writers
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stored = [
            len(
                call_ok(
                    "GET",
                    f"{srv.api}/experiments/{w.exp_id}/metrics",
                    api_key=user.api_key,
                )
            )
            for w in writers
        ]
        code = srv.stop()
        return writers, stored, code, srv.logs()


def summarize(args: argparse.Namespace, per_writer: int) -> dict[str, Any]:
    load_start = os.getloadavg()  # other work on a small box skews the figures
    writers, stored, code, log = run(args, per_writer)
    total = per_writer * args.writers
    wall = max(w.end for w in writers) - min(w.start for w in writers)
    latencies = [x for w in writers for x in w.latencies]
    errors = [e for w in writers for e in w.errors]
    return {
        "writers": args.writers,
        "per_writer": per_writer,
        "batch": args.batch,
        "points": total,
        "wall_s": wall,
        "points_per_s": total / wall,
        "requests": len(latencies),
        "latency_ms": {f"p{q}": percentile(latencies, q) * 1000 for q in (50, 95, 99)},
        "latency_ms_max": max(latencies, default=0.0) * 1000,
        "http_errors": len(errors),
        "error_samples": errors[:10],
        "locked_in_responses": sum(LOCKED in e for e in errors),
        "locked_in_server_log": log.count(LOCKED),
        "inserted_reported": sum(w.inserted for w in writers),
        "stored": sum(stored),
        "writers_with_wrong_count": sum(n != per_writer for n in stored),
        "server_exit_code": code,
        "loadavg_at_start": load_start,
        "loadavg_at_end": os.getloadavg(),
    }


def table(res: dict[str, Any]) -> str:
    lat = res["latency_ms"]
    rows = [
        (
            f"{res['writers']} writers x {res['per_writer']:,} points, batches of {res['batch']}",
            f"{res['points_per_s']:,.0f} pts/s ({res['wall_s']:.2f} s, {res['requests']:,} requests)",
        ),
        (
            "request latency p50 / p95 / p99 / max",
            f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} / {res['latency_ms_max']:.1f} ms",
        ),
        ("HTTP errors (incl. retried)", f"{res['http_errors']}"),
        (
            "'database is locked' in responses / server log",
            f"{res['locked_in_responses']} / {res['locked_in_server_log']}",
        ),
        (
            "points stored / sent (writers with a wrong count)",
            f"{res['stored']:,} / {res['points']:,} ({res['writers_with_wrong_count']})",
        ),
        (
            "1-min load average at start / end",
            f"{res['loadavg_at_start'][0]:.2f} / {res['loadavg_at_end'][0]:.2f}",
        ),
    ]
    return "\n".join(
        ["| Measure | Value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--writers", type=int, default=32)
    ap.add_argument(
        "--points", type=int, default=200_000, help="total, split evenly across writers"
    )
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "writers.json"
    )
    args = ap.parse_args()

    res = summarize(args, per_writer=args.points // args.writers)
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    if (
        res["http_errors"]
        or res["stored"] != res["points"]
        or res["server_exit_code"] != 0
    ):
        sys.exit(1)


if __name__ == "__main__":
    main()
