#!/usr/bin/env python3
"""Chart benchmark for `tora serve`: issue 15, items 1 and 4.

    cargo build --release && TORA_BIN=target/release/tora python3 bench/charts.py
    TORA_BIN=/path/to/older/tora python3 bench/charts.py --out bench/results/charts-before.json

Stdlib only. One server on 127.0.0.1 with its own temp database, stopped by PID. Measures the
server's time for:

(a) GET /api/series of one metric across 100 runs of 100k points each, 300 buckets a run (what
    the compare page asks), in JSON and, where the server has it, `format=binary`;
(b) GET /api/experiments/{id}/series of a 1M-point series, full range at 1,000 and 300 buckets
    and zoomed to 50%, 10%, 1% and 0.1% of its steps at 1,000 buckets;
(c) the same for a 1M-point series resumed from a checkpoint (steps 0..600k, then 400k..800k
    logged again: `series.ordered = 0`) beside an ordered 1M-point one.

"Server time" is the wall time from sending a request to its last byte on a keep-alive
connection (raw bytes, no parsing), median and worst of `--repeats`, after one warm-up; and the
server's CPU per request from /proc/PID/stat over at least `--cpu-reads` reads and 1.5 s (it is
counted in 10 ms ticks). The 1-minute load average is printed: on a busy 2-core machine wall
times include the wait for a CPU.
"""

from __future__ import annotations

import argparse
import array
import base64
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from toraserver import REPO, ToraServer, User, call_ok, new_user, tora_bin

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Conn:
    """One keep-alive HTTP connection."""

    def __init__(self, url: str, api_key: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=600)
        self.headers = {"Content-Type": "application/json", "x-api-key": api_key}

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, str, bytes]:
        self.conn.request(method, path, body, self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.getheader("content-type") or "", resp.read()


def value(step: int) -> float:
    """A decaying loss with noise, as float32 training gives it."""
    noise = ((step * 2_654_435_761) % 1_000) * 1e-4
    return float(array.array("f", [1.0 / math.sqrt(1.0 + step) + noise])[0])


def send(conn: Conn, exp: str, steps: list[int]) -> None:
    """`steps` of the metric `loss` in batches of 50,000 (base64 doubles, /points)."""
    for at in range(0, len(steps), 50_000):
        part = steps[at : at + 50_000]
        vals = array.array("d", (value(s) for s in part))
        if sys.byteorder == "big":
            vals.byteswap()
        body = {
            "metrics": [
                {
                    "name": "loss",
                    "steps": part,
                    "values_f64": base64.b64encode(vals.tobytes()).decode(),
                }
            ]
        }
        status, _, raw = conn.request(
            "POST", f"/api/experiments/{exp}/points", json.dumps(body).encode()
        )
        if status != 201:
            raise RuntimeError(f"POST points -> {status}: {raw[:300]!r}")


def new_experiment(srv: ToraServer, user: User, name: str) -> str:
    return call_ok(
        "POST",
        f"{srv.api}/experiments",
        {"name": name},
        expect=201,
        api_key=user.api_key,
    )["id"]


def timed(
    srv: ToraServer, conn: Conn, path: str, repeats: int, cpu_reads: int
) -> dict[str, Any] | None:
    status, kind, raw = conn.request("GET", path)  # warm-up, and the check
    if status != 200:
        raise RuntimeError(f"GET {path} -> {status}: {raw[:300]!r}")
    if "format=binary" in path and "octet-stream" not in kind:
        return None  # a server from before the binary format answers JSON
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        conn.request("GET", path)
        walls.append(time.perf_counter() - t0)
    cpu0 = cpu_seconds(srv.pid)
    t0 = time.perf_counter()
    done = 0
    while done < cpu_reads or time.perf_counter() - t0 < 1.5:
        conn.request("GET", path)
        done += 1
    cpu = (cpu_seconds(srv.pid) - cpu0) / done
    buckets = None
    if "octet-stream" not in kind:
        data = json.loads(raw)["data"]
        runs = data if isinstance(data, list) else [data]
        buckets = sum(len(s["x"]) for r in runs for s in r["series"])
    return {
        "path": path,
        "bytes": len(raw),
        "buckets": buckets,
        "median_ms": statistics.median(walls) * 1000,
        "worst_ms": max(walls) * 1000,
        "wall_ms": [w * 1000 for w in walls],
        "cpu_reads": done,
        "server_cpu_ms": cpu * 1000,
        "load1": os.getloadavg()[0],
    }


def report(label: str, r: dict[str, Any] | None) -> None:
    if r is None:
        log(f"  {label:<44} (not supported by this server)")
        return
    buckets = "" if r["buckets"] is None else f"{r['buckets']:>6} buckets "
    log(
        f"  {label:<44} wall median {r['median_ms']:7.2f} ms, worst {r['worst_ms']:7.2f} ms; "
        f"cpu {r['server_cpu_ms']:6.2f} ms/req; {buckets}{r['bytes'] / 1e3:8.1f} kB; "
        f"load {r['load1']:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cpu-reads", type=int, default=20)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--run-points", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "charts.json"
    )
    args = ap.parse_args()
    binary = tora_bin()
    version = subprocess.run(
        [str(binary), "--version"], check=False, capture_output=True, text=True
    ).stdout.strip()
    res: dict[str, Any] = {
        "env": {
            "binary": str(binary),
            "tora_version": version,
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "loadavg_at_start": os.getloadavg(),
        },
        "args": vars(args) | {"out": str(args.out)},
        "results": {},
    }
    log(f"binary: {binary} ({version}), load {os.getloadavg()}")
    with ToraServer() as srv:
        user = new_user(srv.api)
        conn = Conn(srv.url, user.api_key)

        t0 = time.perf_counter()
        runs = []
        for i in range(args.runs):
            exp = new_experiment(srv, user, f"run-{i:03}")
            send(conn, exp, list(range(args.run_points)))
            runs.append(exp)
        big = new_experiment(srv, user, "ordered-1M")
        send(conn, big, list(range(args.big)))
        resumed = new_experiment(srv, user, "resumed-1M")
        cut = args.big * 3 // 5
        back = args.big * 2 // 5
        send(conn, resumed, list(range(cut)) + list(range(back, back + args.big - cut)))
        log(f"stored in {time.perf_counter() - t0:.1f} s")

        out = res["results"]
        ids = ",".join(runs)
        log(
            f"(a) 1 metric x {args.runs} runs x {args.run_points} points, 300 buckets a run"
        )
        for fmt in ["json", "binary"]:
            path = f"/api/series?experiments={ids}&names=loss&points=300"
            if fmt == "binary":
                path += "&format=binary"
            r = timed(srv, conn, path, args.repeats, args.cpu_reads)
            out[f"a_{fmt}"] = r
            report(f"/api/series, {fmt}", r)

        for key, name, exp, last in [
            ("b", f"(b) ordered {args.big} points", big, args.big - 1),
            ("c", f"(c) resumed {args.big} points", resumed, back + args.big - cut - 1),
        ]:
            log(name)
            cases = [("full, 1000", None, 1000), ("full, 300", None, 300)]
            for share in [0.5, 0.1, 0.01, 0.001]:
                cases.append((f"{share:.1%} zoom, 1000", share, 1000))
            for label, share, points in cases:
                path = f"/api/experiments/{exp}/series?names=loss&points={points}"
                if share is not None:
                    lo = int(last * 0.45)
                    path += f"&from={lo}&to={lo + int(last * share)}"
                r = timed(srv, conn, path, args.repeats, args.cpu_reads)
                out[f"{key}_{label}"] = r
                report(label, r)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
