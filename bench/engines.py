#!/usr/bin/env python3
"""SQLite beside PostgreSQL, and two servers on one PostgreSQL: ingest, charts and run lists.

    cargo build --release
    TORA_BIN=target/release/tora target/venv/bin/python bench/engines.py

Three set-ups, each measured --repeats (3) times on fresh databases: `sqlite` (one `tora serve`
on a file), `postgres` (one `tora serve --db postgres://`) and `postgres x2` (two `tora serve`
processes on one PostgreSQL database, the second started while the first serves). PostgreSQL is
Debian's, a throwaway cluster started by tests/postgres/cluster.sh on this machine with its
default settings (fsync and synchronous_commit on).

- ingest: training processes logging 10 metrics a step with an SDK at its default settings
  (`tora.setup`, `tora.tmetric` per metric, `tora.shutdown`, which returns once every point is
  stored). "ours" is this checkout's SDK (python/src), "0.0.12" the published one as shipped
  (target/venv-0012). One process alone, in step order and in shuffled order (the worst case
  for the packed storage), then two processes at once: both on the one server, or on
  `postgres x2` one on each server. The figure is points stored per second of wall time, from
  the first process's start to the last one's shutdown; every point is read back and counted.
- charts: one metric of --chart-points (1,000,000) points, packed batches; the dashboard's
  queries: the whole run in 1,000 buckets, a zoom on 1% of it, and 1,000 raw points. Median of
  21 requests each (after one warm-up), over keep-alive HTTP including json.loads.
- runs: a workspace of --runs (1,000) runs with hyperparameters and a result; the run table's
  page of 50: newest first, by a hyperparameter, by a result, and filtered by a hyperparameter.
  Median of 21 requests each. On PostgreSQL they are measured after an `ANALYZE` (what
  autovacuum does within a minute of the fill); the filtered page is also measured before it,
  right after the fill, as the worst case (the planner has no statistics of the new rows yet).

On `postgres x2` the charts and runs are written through the first server and read through the
second. The table gives the median of the repeats and, beside it, the worst one.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from ingest import Conn
from toraserver import REPO, ToraServer, call_ok, new_user, tora_bin

METRICS = 10

CLIENT = r"""
import json, random, sys, time
import tora
steps, order, seed, name, metrics = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
xs = list(range(steps))
if order == "shuffled":
    random.Random(5).shuffle(xs)
rng = random.Random(seed)
values = [[rng.random() for _ in range(metrics)] for _ in range(steps)]
names = [f"m{k}" for k in range(metrics)]
start = time.time()
run = tora.setup(name)
for s in xs:
    row = values[s]
    for k in range(metrics):
        tora.tmetric(names[k], row[k], s)
tora.shutdown()
print(json.dumps({"id": run, "start": start, "end": time.time()}))
"""


def med(xs: list[float]) -> float:
    return statistics.median(xs)


class Setup:
    """One set-up's servers on a fresh database; the first server is where runs are written."""

    def __init__(self, kind: str, cluster: str | None, n: int) -> None:
        self.kind = kind
        url = None
        if kind != "sqlite":
            assert cluster is not None
            name = f"bench_{n}"
            subprocess.run(
                ["psql", "-q", cluster, "-c", f"CREATE DATABASE {name}"],
                check=True,
                capture_output=True,
            )
            url = urllib.parse.urlparse(cluster)._replace(path=f"/{name}").geturl()
        self.url = url
        count = 2 if kind == "postgres x2" else 1
        self.servers = []
        for _ in range(count):
            srv = ToraServer()
            if url:
                srv.db = url
            self.servers.append(srv.start())
        self.user = new_user(self.servers[0].api)

    @property
    def reader(self) -> ToraServer:
        return self.servers[-1]

    def stop(self) -> None:
        for srv in self.servers:
            srv.__exit__()


def ingest(
    setup: Setup,
    python: str,
    sdk_path: str | None,
    steps: int,
    order: str,
    clients: int,
) -> float:
    """Points per second of `clients` SDK processes at once, each `steps` x 10 metrics."""
    procs = []
    for i in range(clients):
        srv = setup.servers[i % len(setup.servers)]
        env = dict(
            os.environ,
            TORA_BASE_URL=srv.api,
            TORA_API_KEY=setup.user.api_key,
            TORA_CACHE_DIR=str(srv.dir / f"sdk-cache-{i}-{time.monotonic_ns()}"),
        )
        env.pop("PYTHONPATH", None)
        if sdk_path:
            env["PYTHONPATH"] = sdk_path
        procs.append(
            subprocess.Popen(
                [
                    python,
                    "-c",
                    CLIENT,
                    str(steps),
                    order,
                    str(i),
                    f"{order}-{i}",
                    str(METRICS),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for p in procs:
        out, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"SDK client failed: {err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    for r in results:
        stored = call_ok(
            "GET",
            f"{setup.reader.api}/experiments/{r['id']}/series?names=m0,m9&points=10",
            api_key=setup.user.api_key,
        )["series"]
        totals = sorted(s["total"] for s in stored)
        if totals != [steps, steps]:
            raise RuntimeError(
                f"run {r['id']} holds {totals} points, not {steps} a metric"
            )
    return clients * steps * METRICS / wall


def pack(values: list[float]) -> str:
    a = array.array("d", values)
    if sys.byteorder == "big":
        a.byteswap()
    return base64.b64encode(a.tobytes()).decode("ascii")


def timed(conn: Conn, path: str, check: Any) -> float:
    """Median seconds of 21 GETs (after one warm-up), each parsed and checked."""
    times = []
    for i in range(22):
        t0 = time.perf_counter()
        status, raw = conn.request("GET", path)
        body = json.loads(raw)
        dt = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {raw[:300]!r}")
        check(body["data"])
        if i:
            times.append(dt)
    return med(times)


def charts(setup: Setup, points: int) -> dict[str, float]:
    api, key = setup.servers[0].api, setup.user.api_key
    run = call_ok(
        "POST", f"{api}/experiments", {"name": "chart"}, expect=201, api_key=key
    )["id"]
    rng = random.Random(3)
    per = 10_000
    for first in range(0, points, per):
        steps = list(range(first, min(first + per, points)))
        call_ok(
            "POST",
            f"{api}/experiments/{run}/points",
            {
                "batch_id": f"c{first}",
                "metrics": [
                    {
                        "name": "loss",
                        "steps": steps,
                        "values_f64": pack(
                            [1 / (1 + s / 1e4) + 0.1 * rng.random() for s in steps]
                        ),
                    }
                ],
            },
            expect=201,
            api_key=key,
        )
    conn = Conn(setup.reader.url, key)

    def total(d: dict[str, Any], n: int) -> None:
        (s,) = d["series"]
        if s["total"] != n or len(s["x"]) > 1000:
            raise RuntimeError(f"chart answered {s['total']} of {n}")

    base = f"/api/experiments/{run}/series?names=loss&points=1000"
    lo = points // 2
    out = {
        "whole run, 1,000 buckets": timed(conn, base, lambda d: total(d, points)),
        "zoom on 1%": timed(
            conn,
            f"{base}&from={lo}&to={lo + points // 100 - 1}",
            lambda d: total(d, points // 100),
        ),
        "1,000 raw points": timed(
            conn, f"{base}&from={lo}&to={lo + 999}", lambda d: total(d, 1000)
        ),
    }
    conn.close()
    return out


def runs(setup: Setup, n: int) -> dict[str, float]:
    api, key = setup.servers[0].api, setup.user.api_key
    ws = call_ok(
        "POST", f"{api}/workspaces", {"name": "sweep"}, expect=201, api_key=key
    )["id"]
    rng = random.Random(11)
    conn = Conn(setup.servers[0].url, key)
    high = 0
    for i in range(n):
        lr = rng.random()
        high += lr > 0.5
        body = {
            "name": f"run-{i}",
            "workspaceId": ws,
            "hyperparams": [
                {"key": "lr", "value": lr},
                {"key": "seed", "value": i},
                {"key": "opt", "value": rng.choice(["adam", "sgd"])},
            ],
        }
        status, raw = conn.request(
            "POST", "/api/experiments", json.dumps(body).encode()
        )
        if status != 201:
            raise RuntimeError(f"create run -> {status}: {raw[:200]!r}")
        exp = json.loads(raw)["data"]["id"]
        logs = {"logs": [{"name": "acc", "value": rng.random(), "type": "result"}]}
        status, raw = conn.request(
            "POST", f"/api/experiments/{exp}/logs/batch", json.dumps(logs).encode()
        )
        if status != 201:
            raise RuntimeError(f"result -> {status}: {raw[:200]!r}")
    conn.close()
    conn = Conn(setup.reader.url, key)
    base = f"/api/workspaces/{ws}/experiments?limit=50"

    def page(want: int) -> Any:
        def check(d: list[Any]) -> None:
            if len(d) != min(50, want):
                raise RuntimeError(f"a page of {len(d)} runs, not {min(50, want)}")

        return check

    filtered = f"{base}&sort=-result.acc&q={urllib.parse.quote('lr > 0.5')}"
    # Right after the fill, PostgreSQL's planner still has no statistics of these rows (and may
    # pick a plan that reads every result once per run); autovacuum ANALYZEs a table within a
    # minute of such a change. The fresh figure is the worst case, the rest are measured after
    # the ANALYZE autovacuum would do.
    fresh = timed(conn, filtered, page(high))
    if setup.url:
        subprocess.run(["psql", "-q", setup.url, "-c", "ANALYZE"], check=True)
    out = {
        "lr > 0.5, by result.acc, just filled": fresh,
        "newest first": timed(conn, base, page(n)),
        "by hp.lr": timed(conn, f"{base}&sort=-hp.lr", page(n)),
        "by result.acc": timed(conn, f"{base}&sort=-result.acc", page(n)),
        "lr > 0.5, by result.acc": timed(conn, filtered, page(high)),
    }
    conn.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--steps",
        type=int,
        default=20_000,
        help="steps per process, ours (x10 metrics)",
    )
    ap.add_argument(
        "--steps-0012",
        type=int,
        default=500,
        help="steps per process, 0.0.12 (x10 metrics)",
    )
    ap.add_argument("--chart-points", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=1_000)
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    args = ap.parse_args()

    ours_python = str(REPO / "target" / "venv" / "bin" / "python")
    published = str(REPO / "target" / "venv-0012" / "bin" / "python")
    sdk_src = str(REPO / "python" / "src")
    work = Path(tempfile.mkdtemp(prefix="tora-bench-engines-"))
    work.chmod(0o755)  # the cluster runs as nobody when we are root
    script = REPO / "tests" / "postgres" / "cluster.sh"
    cluster = subprocess.run(
        [str(script), "start", str(work / "pg")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    kinds = ["sqlite", "postgres", "postgres x2"]
    results: dict[str, dict[str, list[float]]] = {k: {} for k in kinds}
    started = time.time()
    n = 0
    try:
        for rep in range(args.repeats):
            for kind in kinds:
                found = results[kind]

                def note(
                    label: str, value: float, found: dict[str, list[float]] = found
                ) -> None:
                    found.setdefault(label, []).append(value)

                for sdk, python, path, steps in (
                    ("ours", ours_python, sdk_src, args.steps),
                    ("0.0.12", published, None, args.steps_0012),
                ):
                    for order, clients in (
                        ("in order", 1),
                        ("shuffled", 1),
                        ("in order", 2),
                    ):
                        n += 1
                        setup = Setup(kind, cluster, n)
                        try:
                            label = f"ingest, {sdk} SDK, {clients} process{'es' if clients > 1 else ''}, {order} (pts/s)"
                            note(
                                label,
                                ingest(setup, python, path, steps, order, clients),
                            )
                        finally:
                            setup.stop()
                n += 1
                setup = Setup(kind, cluster, n)
                try:
                    for label, s in charts(setup, args.chart_points).items():
                        note(f"chart, {label} (ms)", s * 1000)
                    for label, s in runs(setup, args.runs).items():
                        note(f"run table, {label} (ms)", s * 1000)
                finally:
                    setup.stop()
                print(f"repeat {rep + 1}, {kind}: done", file=sys.stderr)
    finally:
        subprocess.run(
            [str(script), "stop", str(work / "pg")], check=False, capture_output=True
        )
        subprocess.run(["rm", "-rf", str(work)], check=False)

    print(
        f"bench/engines.py, {tora_bin()}, {args.repeats} repeats, {time.time() - started:.0f} s"
    )
    print(
        f"load average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)\n"
    )
    labels = list(results["sqlite"])
    print("| | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for label in labels:
        worse = min if "pts/s" in label else max
        cells = []
        for kind in kinds:
            xs = results[kind][label]
            fmt = "{:,.0f}" if "pts/s" in label else "{:.2f}"
            cells.append(f"{fmt.format(med(xs))} (worst {fmt.format(worse(xs))})")
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
