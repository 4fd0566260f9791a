#!/usr/bin/env python3
"""Runs with 10,000 metric names (issue 15, item 6): what the run page and the run table ask.

    cargo build --release --bin tora --example scale_fixture
    TORA_BIN=target/release/tora python3 bench/cardinality.py
    TORA_BIN=target/release/tora python3 bench/cardinality.py --wide 50 --runs 1000   # quick

Stdlib only; one server on a fresh temp database, stopped at the end.
(a) One run logs 10,000 metrics x 5 steps through the real server (`POST .../logs/batch`,
    50,000 points); then what its run page asks: `GET .../summary` (every metric, one page),
    paged and narrowed forms of it, and one batch of charts (`GET .../series?names=4 names`).
(b) The run table over a workspace of --runs narrow runs and --wide runs of 10,000 metrics
    each (default 10,000 and 200; written by `examples/scale_fixture.rs` into the stopped
    server's file, see bench/workspace.py), the wide ones newest so the first pages are all
    wide: `GET /api/workspaces/{id}/experiments?limit=100&summary=1` and its variants.
    "Before" for (b) is the old read path run by Python's sqlite3 on the same file (every
    series of each run on the page, and each run's last point without an index), SQL only,
    without building JSON: a lower bound of what the old handler spent.
Each figure: one warm-up, then median, best and worst of --repeat (default 5).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from toraserver import ToraServer, call_ok, new_user, tora_bin
from workspace import FIXTURE, Client

METRICS = 10_000


def names(m: int) -> list[str]:
    """As scale_fixture's wide runs: loss, then 100 sections of 100, sys/ last."""
    out = ["loss"]
    for j in range(m - 1):
        out.append(f"sys/s{j:05}" if j + 10 >= m - 1 else f"block{j // 100:02}/p{j:05}")
    return out


def timed(
    client: Client, path: str, query: dict[str, Any], repeat: int, check
) -> dict[str, Any]:
    times = []
    for i in range(repeat + 1):
        took, body = client.get(path, query)
        check(body)
        if i:
            times.append(took)
    return {
        "median_ms": 1000 * statistics.median(times),
        "best_ms": 1000 * min(times),
        "worst_ms": 1000 * max(times),
        "bytes": len(json.dumps(body)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--wide", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--table-only",
        action="store_true",
        help="only (b): for a binary without /summary paging",
    )
    args = ap.parse_args()
    if not FIXTURE.is_file():
        raise SystemExit(
            f"{FIXTURE} missing: cargo build --release --example scale_fixture"
        )

    server = ToraServer(binary=tora_bin()).start()
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        user = new_user(server.api)
        me = call_ok("GET", f"{server.api}/me", api_key=user.api_key)
        ws = call_ok("GET", f"{server.api}/workspaces", api_key=user.api_key)[0]["id"]
        exp = call_ok(
            "POST",
            f"{server.api}/experiments",
            {"name": "wide-over-http", "workspaceId": ws},
            expect=201,
            api_key=user.api_key,
        )["id"]
        all_names = names(METRICS)
        logs = [
            {"name": n, "value": j + s * 0.5, "step": s}
            for s in range(5)
            for j, n in enumerate(all_names)
        ]
        t = time.perf_counter()
        call_ok(
            "POST",
            f"{server.api}/experiments/{exp}/logs/batch",
            {"logs": logs},
            expect=201,
            api_key=user.api_key,
        )
        print(
            f"10,000 metrics x 5 steps over HTTP in {time.perf_counter() - t:.2f} s",
            file=sys.stderr,
        )

        if not args.table_only:
            client = Client(server.url, user.api_key)
            summary = f"/experiments/{exp}/summary"

            def whole(b: dict[str, Any]) -> None:
                d = b["data"]
                assert len(d["metrics"]) == METRICS and d["next"] is None, (
                    len(d["metrics"]),
                    d["next"],
                )

            rows.append(
                (
                    "run page: GET /summary (10,000 metrics, one page)",
                    timed(client, summary, {}, args.repeat, whole),
                )
            )

            def page(n: int):
                def check(b: dict[str, Any]) -> None:
                    assert len(b["data"]["metrics"]) == n, len(b["data"]["metrics"])

                return check

            rows.append(
                (
                    "GET /summary?limit=500",
                    timed(client, summary, {"limit": 500}, args.repeat, page(500)),
                )
            )
            _, first = client.get(summary, {"limit": 500})
            rows.append(
                (
                    "GET /summary?limit=500&cursor= (page 2)",
                    timed(
                        client,
                        summary,
                        {"limit": 500, "cursor": first["data"]["next"]},
                        args.repeat,
                        page(500),
                    ),
                )
            )
            rows.append(
                (
                    "GET /summary?prefix=block42/",
                    timed(
                        client, summary, {"prefix": "block42/"}, args.repeat, page(100)
                    ),
                )
            )
            rows.append(
                (
                    "GET /summary?search=p0123",
                    timed(client, summary, {"search": "p0123"}, args.repeat, page(10)),
                )
            )
            four = ",".join(all_names[1:5])

            def four_series(b: dict[str, Any]) -> None:
                assert len(b["data"]["series"]) == 4, b["data"]

            rows.append(
                (
                    "run page chart batch: GET .../series?names=4&points=600",
                    timed(
                        client,
                        f"/experiments/{exp}/series",
                        {"names": four, "points": 600},
                        args.repeat,
                        four_series,
                    ),
                )
            )

        # (b) the run table over many wide runs
        server.stop()
        t = time.perf_counter()
        subprocess.run(
            [
                str(FIXTURE),
                str(server.db),
                ws,
                me["id"],
                "--runs",
                str(args.runs),
                "--wide",
                str(args.wide),
            ],
            check=True,
        )
        print(
            f"fixture: {args.runs} narrow + {args.wide} wide runs in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
        size_mb = server.db.stat().st_size / 1e6
        server.start()
        client = Client(server.url, user.api_key)
        table = f"/workspaces/{ws}/experiments"

        def bounded(b: dict[str, Any]) -> None:
            assert len(b["data"]) == 100
            for r in b["data"]:
                if args.table_only:  # an older binary: every metric, no `partial`
                    continue
                s = r["summary"]
                assert len(s["metrics"]) <= 102 and s["partial"], (
                    r["name"],
                    len(s["metrics"]),
                )

        rows.append(
            (
                f"run table page 1, summary=1 ({args.wide} runs of 10,000 metrics first)",
                timed(
                    client, table, {"limit": 100, "summary": 1}, args.repeat, bounded
                ),
            )
        )
        _, first = client.get(table, {"limit": 100, "summary": 1})
        rows.append(
            (
                "run table page 2, summary=1",
                timed(
                    client,
                    table,
                    {"limit": 100, "summary": 1, "cursor": first["next_cursor"]},
                    args.repeat,
                    bounded,
                ),
            )
        )
        rows.append(
            (
                "summary=1&columns=metric.sys/s09998,metric.block50/p05000",
                timed(
                    client,
                    table,
                    {
                        "limit": 100,
                        "summary": 1,
                        "columns": "metric.sys/s09998,metric.block50/p05000",
                    },
                    args.repeat,
                    bounded,
                ),
            )
        )
        rows.append(
            (
                "summary=1&sort=-metric.block50/p05000",
                timed(
                    client,
                    table,
                    {"limit": 100, "summary": 1, "sort": "-metric.block50/p05000"},
                    args.repeat,
                    bounded,
                ),
            )
        )
        server.stop()

        # Before: the old read path's SQL on the same file.
        db = sqlite3.connect(server.db)
        ids = [
            r[0]
            for r in db.execute(
                "SELECT id FROM experiments WHERE workspace_id = ? ORDER BY created_at DESC, id DESC LIMIT 100",
                (ws,),
            )
        ]
        times = []
        for i in range(args.repeat + 1):
            t = time.perf_counter()
            for e in ids:
                # The old schema's only index for it: UNIQUE (experiment_id, kind, name).
                db.execute(
                    "SELECT max(updated_at) FROM series INDEXED BY sqlite_autoindex_series_1 WHERE experiment_id = ?",
                    (e,),
                ).fetchall()
                db.execute(
                    "SELECT id, kind, name, count, nonfinite, first_step, last_step, last_value, min_value,"
                    " max_value, ordered, updated_at FROM series WHERE experiment_id = ? ORDER BY kind, name",
                    (e,),
                ).fetchall()
            if i:
                times.append(time.perf_counter() - t)
        db.close()
        rows.append(
            (
                "before (old SQL only, sqlite3): page 1 summary=1, every series of 100 wide runs",
                {
                    "median_ms": 1000 * statistics.median(times),
                    "best_ms": 1000 * min(times),
                    "worst_ms": 1000 * max(times),
                    "bytes": 0,
                },
            )
        )
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)

    print(
        f"\nbinary {tora_bin()}, {args.runs} narrow + {args.wide} wide runs ({size_mb:.0f} MB), "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print("| request | median ms | best | worst | bytes |")
    print("|---|---:|---:|---:|---:|")
    for label, r in rows:
        print(
            f"| {label} | {r['median_ms']:.1f} | {r['best_ms']:.1f} | {r['worst_ms']:.1f} | {r['bytes']:,} |"
        )


if __name__ == "__main__":
    main()
