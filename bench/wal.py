#!/usr/bin/env python3
"""Copying tora.db is a backup: what the idle fold costs and what it bounds.

    cargo build --release && TORA_BIN=target/release/tora python3 bench/wal.py
    TORA_BIN=target/release/tora python3 bench/wal.py --before /tmp/tora-old   # side by side

Stdlib only. For each binary (the one under test, and `--before`, an older build, if given),
median and worst of `--runs` runs (default 3):
  (a) ingest: 1M points as packed columns (values_f64) in batches of 5,000, one client, as
      Tora's SDK sends them; points/s end to end;
  (b) steady load: `--seconds` (default 20) of two writers posting batches without pause while a
      reader asks for charts; the -wal file's size sampled every 20 ms: median and maximum;
  (c) idle fold: after the last write, how long until the -wal file is empty (so that `cp
      tora.db` alone is a complete copy), and whether such a copy passes `tora doctor`.
Writes bench/results/wal.json.
"""

from __future__ import annotations

import argparse
import array
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from toraserver import REPO, ToraServer, call_ok, new_user, tora_bin

BATCH = 5_000


def packed_body(start: int, n: int, name: str = "loss") -> bytes:
    values = array.array("d", (1.0 / (i + 3) for i in range(start, start + n)))
    if sys.byteorder != "little":
        values.byteswap()
    body: dict[str, Any] = {
        "metrics": [
            {
                "name": name,
                "steps": list(range(start, start + n)),
                "values_f64": base64.b64encode(values.tobytes()).decode(),
            }
        ]
    }
    return json.dumps(body).encode()


class Poster:
    """One keep-alive connection posting batches to one run."""

    def __init__(self, server: ToraServer, key: str, exp: str) -> None:
        host, port = server.url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.path = f"/api/experiments/{exp}/points"
        self.headers = {"Content-Type": "application/json", "x-api-key": key}

    def post(self, body: bytes) -> None:
        self.conn.request("POST", self.path, body, self.headers)
        resp = self.conn.getresponse()
        resp.read()
        assert resp.status == 201, resp.status


def wal_size(db: Path) -> int:
    try:
        return os.stat(f"{db}-wal").st_size
    except FileNotFoundError:
        return 0


def new_run(server: ToraServer) -> tuple[str, str]:
    user = new_user(server.api)
    exp = call_ok(
        "POST",
        f"{server.api}/experiments",
        {"name": "wal"},
        expect=201,
        api_key=user.api_key,
    )["id"]
    return user.api_key, exp


def ingest(binary: Path, points: int) -> float:
    bodies = [packed_body(s, BATCH) for s in range(0, points, BATCH)]
    with ToraServer(binary=binary) as server:
        key, exp = new_run(server)
        poster = Poster(server, key, exp)
        start = time.perf_counter()
        for body in bodies:
            poster.post(body)
        return points / (time.perf_counter() - start)


def steady(binary: Path, seconds: float) -> dict[str, float]:
    with ToraServer(binary=binary) as server:
        key, exp = new_run(server)
        stop = threading.Event()
        written = [0, 0]

        def writer(no: int) -> None:
            poster = Poster(server, key, exp)
            # A metric each: two writers on one metric would interleave its steps.
            step = 0
            while not stop.is_set():
                poster.post(packed_body(step, BATCH, f"loss{no}"))
                step += BATCH
                written[no] += BATCH

        def reader() -> None:
            # The dashboard's chart of the run, as someone watching it asks for it.
            url = f"{server.api}/experiments/{exp}/series?names=loss0,loss1&points=300"
            while not stop.is_set():
                call_ok("GET", url, api_key=key)
                time.sleep(0.05)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        sizes = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sizes.append(wal_size(server.db))
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join()
        return {
            "points_per_s": sum(written) / seconds,
            "wal_median_mib": statistics.median(sizes) / 2**20,
            "wal_max_mib": max(sizes) / 2**20,
        }


def idle_fold(binary: Path, doctor: Path) -> dict[str, Any]:
    with ToraServer(binary=binary) as server:
        key, exp = new_run(server)
        poster = Poster(server, key, exp)
        for s in range(0, 100_000, BATCH):
            poster.post(packed_body(s, BATCH))
        last = time.monotonic()
        while wal_size(server.db) > 0:
            if time.monotonic() - last > 30:
                return {"fold_s": None, "copy_ok": False}
            time.sleep(0.005)
        fold = time.monotonic() - last
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "copy.db"
            shutil.copyfile(server.db, copy)
            ok = (
                subprocess.run(
                    [str(doctor), "doctor", str(copy)], check=False, capture_output=True
                ).returncode
                == 0
            )
        return {"fold_s": fold, "copy_ok": ok}


def measure(
    binary: Path, runs: int, points: int, seconds: float, doctor: Path
) -> dict[str, Any]:
    ingests = [ingest(binary, points) for _ in range(runs)]
    loads = [steady(binary, seconds) for _ in range(runs)]
    folds = [idle_fold(binary, doctor) for _ in range(runs)]
    fold_times = [f["fold_s"] for f in folds if f["fold_s"] is not None]
    return {
        "binary": str(binary),
        "ingest_pts_s": {"median": statistics.median(ingests), "worst": min(ingests)},
        "steady_pts_s": statistics.median(x["points_per_s"] for x in loads),
        "wal_median_mib": statistics.median(x["wal_median_mib"] for x in loads),
        "wal_max_mib": max(x["wal_max_mib"] for x in loads),
        "fold_s": {
            "median": statistics.median(fold_times) if fold_times else None,
            "worst": max(fold_times) if fold_times else None,
            "folded": f"{len(fold_times)} of {runs}",
        },
        "idle_copy_passes_doctor": f"{sum(f['copy_ok'] for f in folds)} of {runs}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument(
        "--before", type=Path, help="an older tora binary to measure beside"
    )
    args = ap.parse_args()
    now = tora_bin()
    results = {"after": measure(now, args.runs, args.points, args.seconds, now)}
    if args.before:
        results["before"] = measure(
            args.before, args.runs, args.points, args.seconds, now
        )
    results["loadavg_1m"] = os.getloadavg()[0]
    out = REPO / "bench" / "results" / "wal.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
