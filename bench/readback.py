#!/usr/bin/env python3
"""Read-back benchmark for `tora serve`: the long reads of issue 15, item 5.

    cargo build --release && TORA_BIN=target/release/tora python3 bench/readback.py

Stdlib only. One server on 127.0.0.1 with its own temp database, stopped by PID. Measures:

(a) GET /metrics of a 10k-point metric logged by the published 0.0.12 SDK's format (logs/batch,
    a uuid4 msg_id per point, so every point carries one back);
(b) GET /logs of that run (the 0.0.12 SDK's read, id order);
(c) GET /metrics of a 10k-point metric sent as columns (/points, no msg_ids);
(d) GET /metrics of a 100k-point run (10 metrics x 10k steps, columns);
(e) GET /logs/csv of a 10M-point run (10 metrics x 1M steps): rows/s and the server's peak RSS
    over the download (VmHWM reset through /proc/PID/clear_refs before it, where allowed; else
    VmRSS sampled every 5 ms).

For (a)-(d), "server time" is the wall time from sending the request to its last byte, read as
raw bytes on a keep-alive connection (no JSON parsing; that is the client's cost), plus the
server's CPU time per request from /proc/PID/stat over at least `--cpu-reads` more reads and
2 s (it is counted in 10 ms ticks). Each figure is
the median of `--repeats` (3) and the worst of them, after one warm-up read. The 1-minute load
average is printed beside each: on a busy 2-core machine wall times are the server's time plus
its wait for a CPU.
"""

from __future__ import annotations

import argparse
import array
import base64
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from toraserver import REPO, ToraServer, User, call_ok, new_user, tora_bin

CLK_TCK = os.sysconf("SC_CLK_TCK")


def load1() -> float:
    return os.getloadavg()[0]


def cpu_seconds(pid: int) -> float:
    # Fields 14 and 15 of /proc/PID/stat are utime and stime; split after the ")" of comm.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid: int, field: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class Conn:
    """One keep-alive HTTP connection."""

    def __init__(self, url: str, api_key: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=600)
        self.headers = {"Content-Type": "application/json", "x-api-key": api_key}

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        self.conn.request(method, path, body, self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        self.conn.close()


def post(conn: Conn, path: str, body: bytes, n: int) -> None:
    status, raw = conn.request("POST", path, body)
    if status != 201:
        raise RuntimeError(f"POST {path} -> {status}: {raw[:300]!r}")
    data = json.loads(raw)["data"]
    if (data["inserted"], data["skipped"]) != (n, 0):
        raise RuntimeError(f"POST {path} inserted {data} of {n}")


def new_experiment(srv: ToraServer, user: User, name: str) -> str:
    return call_ok(
        "POST",
        f"{srv.api}/experiments",
        {"name": name},
        expect=201,
        api_key=user.api_key,
    )["id"]


def value(metric: int, step: int) -> float:
    """A training-curve-like value with every kind of float text: decimals, exponents."""
    return (1.0 + metric) / (1.0 + step) + (step % 7) * 1e-7


def ingest_rows(conn: Conn, exp: str, steps: int) -> None:
    """The 0.0.12 SDK's way: a dict per point with a uuid4 msg_id, 1,000 a batch."""
    for start in range(0, steps, 1000):
        logs = [
            {
                "msg_id": str(uuid.uuid4()),
                "name": "loss",
                "value": value(0, s),
                "step": s,
                "metadata": {"type": "metric"},
            }
            for s in range(start, min(start + 1000, steps))
        ]
        post(
            conn,
            f"/api/experiments/{exp}/logs/batch",
            json.dumps({"logs": logs}).encode(),
            len(logs),
        )


def ingest_columns(conn: Conn, exp: str, metrics: int, steps: int, batch: int) -> None:
    """Columns with values as base64 doubles (/points), `batch` points a request."""
    per = max(1, batch // metrics)
    for start in range(0, steps, per):
        stop = min(start + per, steps)
        cols = []
        for m in range(metrics):
            vals = array.array("d", (value(m, s) for s in range(start, stop)))
            if sys.byteorder == "big":
                vals.byteswap()
            cols.append(
                {
                    "name": f"m{m:02}",
                    "steps": list(range(start, stop)),
                    "values_f64": base64.b64encode(vals.tobytes()).decode(),
                }
            )
        post(
            conn,
            f"/api/experiments/{exp}/points",
            json.dumps({"metrics": cols}).encode(),
            (stop - start) * metrics,
        )


def timed_reads(
    srv: ToraServer, conn: Conn, path: str, repeats: int, cpu_reads: int, points: int
) -> dict[str, Any]:
    status, raw = conn.request("GET", path)  # warm-up, and the check
    if status != 200:
        raise RuntimeError(f"GET {path} -> {status}: {raw[:300]!r}")
    data = json.loads(raw)["data"]
    if len(data) != points:
        raise RuntimeError(f"GET {path}: {len(data)} points, expected {points}")
    walls = []
    loads = []
    for _ in range(repeats):
        loads.append(load1())
        t0 = time.perf_counter()
        _, body = conn.request("GET", path)
        walls.append(time.perf_counter() - t0)
        assert len(body) == len(raw)
    # CPU time is counted in clock ticks (10 ms): read for at least 2 s, so a read's share is
    # good to a few percent.
    cpu0 = cpu_seconds(srv.pid)
    t0 = time.perf_counter()
    done = 0
    while done < cpu_reads or time.perf_counter() - t0 < 2.0:
        conn.request("GET", path)
        done += 1
    wall_all = time.perf_counter() - t0
    cpu_reads = done
    cpu = (cpu_seconds(srv.pid) - cpu0) / cpu_reads
    return {
        "path": path,
        "points": points,
        "bytes": len(raw),
        "wall_ms": [w * 1000 for w in walls],
        "median_ms": statistics.median(walls) * 1000,
        "worst_ms": max(walls) * 1000,
        "cpu_reads": cpu_reads,
        "mean_wall_ms_of_cpu_reads": wall_all / cpu_reads * 1000,
        "server_cpu_ms": cpu * 1000,
        "load1": loads,
    }


class PeakRss:
    """The server's peak RSS over a stretch: VmHWM after resetting it, or sampled VmRSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.reset = False
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            pass
        self.before = proc_status(pid, "VmRSS")
        self.sampled = self.before
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.005):
            try:
                self.sampled = max(self.sampled, proc_status(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return

    def peak(self) -> int:
        self.stop.set()
        self.thread.join()
        hwm = proc_status(self.pid, "VmHWM") if self.reset else 0
        return max(hwm, self.sampled)


def csv_download(srv: ToraServer, user: User, exp: str, rows: int) -> dict[str, Any]:
    """One CSV export read as fast as a socket allows; rows counted by newlines."""
    host, port = srv.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=600)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    load = load1()
    peak = PeakRss(srv.pid)
    cpu0 = cpu_seconds(srv.pid)
    t0 = time.perf_counter()
    s.sendall(
        f"GET /api/experiments/{exp}/logs/csv HTTP/1.0\r\nHost: {host}\r\n"
        f"x-api-key: {user.api_key}\r\n\r\n".encode()
    )
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    lines = 0
    total = 0
    first = b""
    while True:
        n = s.recv_into(view)
        if n == 0:
            break
        if len(first) < 4096:
            first += bytes(view[: min(n, 4096)])
        lines += buf.count(b"\n", 0, n)
        total += n
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(srv.pid) - cpu0
    peak_kib = peak.peak()
    s.close()
    head, _, body = first.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"CSV: {head[:200]!r}")
    head_lines = head.count(b"\n") + 2  # the head's lines and the blank line after it
    data_rows = lines - head_lines - 1  # less the CSV header
    if data_rows != rows:
        raise RuntimeError(f"CSV: {data_rows} rows, expected {rows}")
    return {
        "rows": data_rows,
        "bytes": total,
        "wall_s": wall,
        "rows_per_s": data_rows / wall,
        "server_cpu_s": cpu,
        "server_cpu_ns_per_row": cpu / data_rows * 1e9,
        "rss_before_kib": peak.before,
        "peak_rss_kib": peak_kib,
        "peak_by": "VmHWM after clear_refs" if peak.reset else "VmRSS every 5 ms",
        "load1": load,
        "first_row": body.split(b"\n")[1].decode(errors="replace"),
    }


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def environment(binary: Path) -> dict[str, Any]:
    version = subprocess.run(
        [str(binary), "--version"], check=False, capture_output=True, text=True
    )
    return {
        "binary": str(binary),
        "tora_version": version.stdout.strip(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_at_start": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpu-reads", type=int, default=20)
    ap.add_argument(
        "--csv-steps", type=int, default=1_000_000, help="steps of each of 10 metrics"
    )
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "readback.json"
    )
    args = ap.parse_args()
    binary = tora_bin()
    res: dict[str, Any] = {
        "env": environment(binary),
        "args": vars(args) | {"out": str(args.out)},
    }
    log(f"binary: {binary} ({res['env']['tora_version']}), load {os.getloadavg()}")
    with ToraServer() as srv:
        user = new_user(srv.api)
        conn = Conn(srv.url, user.api_key)
        rows_exp = new_experiment(srv, user, "rows-10k")
        ingest_rows(conn, rows_exp, 10_000)
        cols_exp = new_experiment(srv, user, "columns-10k")
        ingest_columns(conn, cols_exp, 1, 10_000, 10_000)
        big_exp = new_experiment(srv, user, "columns-100k")
        ingest_columns(conn, big_exp, 10, 10_000, 50_000)
        reads = [
            (
                "a",
                "/metrics, 10k points with msg_ids (0.0.12 rows)",
                rows_exp,
                "metrics",
                10_000,
            ),
            (
                "b",
                "/logs, 10k points with msg_ids (0.0.12 rows)",
                rows_exp,
                "logs",
                10_000,
            ),
            ("c", "/metrics, 10k points (columns)", cols_exp, "metrics", 10_000),
            (
                "d",
                "/metrics, 100k points (10 x 10k, columns)",
                big_exp,
                "metrics",
                100_000,
            ),
        ]
        res["reads"] = []
        for key, label, exp, what, n in reads:
            r = timed_reads(
                srv,
                conn,
                f"/api/experiments/{exp}/{what}",
                args.repeats,
                args.cpu_reads,
                n,
            )
            r |= {"key": key, "label": label}
            res["reads"].append(r)
            log(
                f"({key}) {label}: median {r['median_ms']:.1f} ms, worst {r['worst_ms']:.1f} ms"
                f" ({', '.join(f'{w:.1f}' for w in r['wall_ms'])}); server CPU"
                f" {r['server_cpu_ms']:.2f} ms/read over {r['cpu_reads']};"
                f" {r['bytes'] / 2**20:.2f} MiB; load {r['load1'][0]:.2f}"
            )

        csv_rows = 10 * args.csv_steps
        csv_exp = new_experiment(srv, user, "csv-10M")
        log(f"(e) storing {csv_rows:,} points ...")
        t0 = time.perf_counter()
        ingest_columns(conn, csv_exp, 10, args.csv_steps, 100_000)
        log(f"    stored in {time.perf_counter() - t0:.1f} s")
        conn.close()
        runs = []
        for _ in range(args.repeats):
            c = csv_download(srv, user, csv_exp, csv_rows)
            runs.append(c)
            log(
                f"(e) CSV of {c['rows']:,} rows: {c['rows_per_s']:,.0f} rows/s"
                f" ({c['wall_s']:.2f} s, {c['bytes'] / 2**20:.0f} MiB; server CPU"
                f" {c['server_cpu_ns_per_row']:.0f} ns/row); RSS {c['rss_before_kib'] / 1024:.1f}"
                f" MiB, peak {c['peak_rss_kib'] / 1024:.1f} MiB ({c['peak_by']}); load {c['load1']:.2f}"
            )
        rates = [c["rows_per_s"] for c in runs]
        res["csv"] = {
            "runs": runs,
            "median_rows_per_s": statistics.median(rates),
            "worst_rows_per_s": min(rates),
            "worst_peak_rss_growth_kib": max(
                c["peak_rss_kib"] - c["rss_before_kib"] for c in runs
            ),
        }
        srv.stop()
    res["env"]["loadavg_at_end"] = os.getloadavg()
    log(
        f"(e) CSV: median {res['csv']['median_rows_per_s']:,.0f} rows/s, worst"
        f" {res['csv']['worst_rows_per_s']:,.0f}; peak RSS growth at most"
        f" {res['csv']['worst_peak_rss_growth_kib'] / 1024:.1f} MiB"
    )
    log(
        f"load average at start {res['env']['loadavg_at_start']}, end {res['env']['loadavg_at_end']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
