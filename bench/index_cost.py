#!/usr/bin/env python3
"""What schema v7's series indexes cost ingest (issue 15, items 6 and 7).

    TORA_BIN=target/release/tora python3 bench/index_cost.py

Stdlib only. The same server binary on two fresh databases, one as made and one with
`series_last_point` and `series_value` dropped (the server does not make them again: the file is
already at v7), alternating, --repeat times (default 3) each. Two workloads over HTTP as columnar
batches (`POST .../points`, values as base64 doubles): (wide) one run, 1,000 metrics, 100 batches
of one step each: every batch rewrites 1,000 series rows, the indexes' worst case; (narrow) one
run, 10 metrics, 100 batches of 1,000 steps. Prints points per second, median and worst.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sqlite3
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import Conn
from toraserver import ToraServer, call_ok, new_user, tora_bin


def body(names: list[str], first: int, steps: int, batch: str) -> bytes:
    values = base64.b64encode(
        struct.pack(f"<{steps}d", *[0.5 + 0.001 * s for s in range(steps)])
    ).decode()
    return json.dumps(
        {
            "batch_id": batch,
            "metrics": [
                {
                    "name": n,
                    "steps": list(range(first, first + steps)),
                    "values_f64": values,
                }
                for n in names
            ],
        }
    ).encode()


def run(
    drop: bool, metrics: int, steps: int, batches: int, indexes: list[str]
) -> float:
    server = ToraServer(binary=tora_bin()).start()
    try:
        if drop:
            server.stop()
            db = sqlite3.connect(server.db)
            db.executescript("".join(f"DROP INDEX {i};" for i in indexes))
            db.close()
            server.start()
        user = new_user(server.api)
        exp = call_ok(
            "POST",
            f"{server.api}/experiments",
            {"name": "cost"},
            expect=201,
            api_key=user.api_key,
        )["id"]
        names = [f"layer{j:04}/grad" for j in range(metrics)]
        bodies = [body(names, b * steps, steps, f"b{b}") for b in range(batches)]
        conn = Conn(server.url, user.api_key)
        t = time.perf_counter()
        for b in bodies:
            status, raw = conn.request("POST", f"/api/experiments/{exp}/points", b)
            assert status == 201, raw[:300]
        took = time.perf_counter() - t
        conn.close()
        return metrics * steps * batches / took
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--drop", default="series_last_point,series_value", help="the indexes left out"
    )
    ap.add_argument("--only-wide", action="store_true")
    args = ap.parse_args()
    print("| workload | with the v7 indexes, pts/s median (worst) | without | ratio |")
    print("|---|---:|---:|---:|")
    workloads = [
        ("wide: 1,000 metrics x 1 step a batch", 1000, 1),
        ("narrow: 10 metrics x 1,000 steps a batch", 10, 1000),
    ]
    for label, metrics, steps in workloads[:1] if args.only_wide else workloads:
        got: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeat):
            for drop in (False, True):
                got[drop].append(run(drop, metrics, steps, 100, args.drop.split(",")))
        w, wo = statistics.median(got[False]), statistics.median(got[True])
        print(
            f"| {label} | {w:,.0f} ({min(got[False]):,.0f}) | {wo:,.0f} ({min(got[True]):,.0f}) | {w / wo:.2f} |"
        )


if __name__ == "__main__":
    main()
