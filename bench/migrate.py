#!/usr/bin/env python3
"""`tora migrate` between SQLite and PostgreSQL: how long a whole database takes each way.

    cargo build --release && TORA_BIN=target/release/tora python3 bench/migrate.py [--points N]

Stdlib only. A server on its own temp database takes N points (default 1M: 10 metrics, columns
of values_f64 as our SDK sends them, in step order) and, so that the worst case is beside the
best, the same count again in a second run whose steps arrive shuffled (a resumed run's
blocks); it is stopped (SIGTERM folds its WAL), then a throwaway PostgreSQL cluster
(tests/postgres/cluster.sh, Debian's postgresql on a free port) takes `tora migrate --from
tora.db --to postgres://...` into a fresh database, and `--from postgres://... --to back.db`
brings it back into a new file, `--repeats` times (3) each way. Printed: the median and worst
wall time each way, points per second, and the migrate process's peak RSS (wait4's ru_maxrss).
Each copy is checked by migrate itself (row counts and SHA-256 per table) before it commits.
"""

from __future__ import annotations

import argparse
import array
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from toraserver import REPO, ToraServer, call_ok, new_user, tora_bin

METRICS = 10
STEPS_PER_BATCH = 1_000


def pack(values: list[float]) -> str:
    a = array.array("d", values)
    if sys.byteorder == "big":
        a.byteswap()
    return base64.b64encode(a.tobytes()).decode("ascii")


def fill(server: ToraServer, points: int) -> None:
    user = new_user(server.api)
    steps_total = points // METRICS
    rng = random.Random(7)
    for name, order in (("in order", False), ("shuffled", True)):
        run = call_ok(
            "POST",
            f"{server.api}/experiments",
            {"name": name},
            expect=201,
            api_key=user.api_key,
        )["id"]
        steps = list(range(steps_total))
        if order:
            rng.shuffle(steps)
        for i in range(0, steps_total, STEPS_PER_BATCH):
            chunk = steps[i : i + STEPS_PER_BATCH]
            body = {
                "batch_id": f"{name}-{i}",
                "metrics": [
                    {
                        "name": f"m{k}",
                        "steps": chunk,
                        "values_f64": pack([rng.random() for _ in chunk]),
                    }
                    for k in range(METRICS)
                ],
            }
            call_ok(
                "POST",
                f"{server.api}/experiments/{run}/points",
                body,
                expect=201,
                api_key=user.api_key,
            )


def migrate(src: str, dest: str) -> tuple[float, int]:
    """One `tora migrate`: wall seconds and peak RSS in KiB."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(tora_bin()), "migrate", "--from", src, "--to", dest],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"tora migrate --from {src} --to {dest}: {out!r} {err!r}")
    return wall, usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--points", type=int, default=1_000_000, help="points per run (two runs)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tora-bench-migrate-"))
    work.chmod(0o755)  # the cluster runs as nobody when we are root
    cluster = work / "pg"
    script = REPO / "tests" / "postgres" / "cluster.sh"
    url = subprocess.run(
        [str(script), "start", str(cluster)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        with ToraServer(keep=True) as server:
            fill(server, args.points)
            db = work / "tora.db"
        server.db.rename(db)
        subprocess.run(["rm", "-rf", str(server.dir)], check=False)
        size = db.stat().st_size
        total = 2 * args.points
        print(
            f"tora migrate, {total:,} points ({size / 2**20:.1f} MiB file), {tora_bin()}"
        )
        to_pg, back = [], []
        for i in range(args.repeats):
            target = urllib.parse.urlparse(url)._replace(path=f"/bench{i}").geturl()
            subprocess.run(
                ["psql", url, "-qc", f"CREATE DATABASE bench{i}"],
                check=True,
                capture_output=True,
            )
            to_pg.append(migrate(str(db), target))
            back.append(migrate(target, str(work / f"back{i}.db")))
        for label, runs in (
            ("SQLite -> PostgreSQL", to_pg),
            ("PostgreSQL -> SQLite", back),
        ):
            walls = [w for w, _ in runs]
            med = statistics.median(walls)
            print(
                json.dumps(
                    {
                        "direction": label,
                        "median_s": round(med, 3),
                        "worst_s": round(max(walls), 3),
                        "points_per_s": round(total / med),
                        "peak_rss_mib": round(max(r for _, r in runs) / 1024, 1),
                        "file_mib": round(size / 2**20, 1),
                        "load_1m": os.getloadavg()[0],
                    }
                )
            )
    finally:
        subprocess.run([str(script), "stop", str(cluster)], check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
