"""Figures for the SDK: the cost of one metric() call in the caller, and points/s delivered.

Measures this SDK and the published tora==0.0.12 in the same run, against the same freshly
started local server (TORA_BIN, default <repo>/target/debug/tora):

    TORA_COMPAT_PYTHON=/path/to/venv-with-0.0.12/bin/python python python/bench/bench_sdk.py

``--ours-src DIR`` measures the tora package in DIR instead of the installed one (say, the
python/src of an older checkout), for before/after figures against the same server.

Each SDK runs in its own interpreter (``--worker``), with default settings
(``Tora.create_experiment(name)``, max_buffer_len=25). Also measured, for this SDK only: the
same against a null server that answers at once without storing, which shows how much the
client side alone can carry.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def worker(calls: int, points: int, varied: bool) -> dict[str, Any]:
    """Runs inside the interpreter under test; TORA_BASE_URL and TORA_API_KEY are set."""
    import tora
    from tora import Tora

    values = [1.0 / (i + 1) if varied else 0.5 for i in range(1000)]

    t = Tora.create_experiment("bench-call-cost")
    durations = []
    clock = time.perf_counter_ns
    for step in range(calls):
        value = values[step % 1000]
        started = clock()
        t.metric("loss", value, step)
        durations.append(clock() - started)
    t.shutdown()
    durations.sort()

    t = Tora.create_experiment("bench-throughput")
    started_s = time.perf_counter()
    for step in range(points):
        t.metric("loss", values[step % 1000], step)
    logged_s = time.perf_counter()
    left = t.shutdown()
    done_s = time.perf_counter()
    return {
        "version": tora.__version__,
        "calls": calls,
        "median_us": statistics.median(durations) / 1000,
        "mean_us": statistics.fmean(durations) / 1000,
        "p99_us": durations[int(len(durations) * 0.99)] / 1000,
        "max_ms": durations[-1] / 1e6,
        "points": points,
        "log_loop_s": logged_s - started_s,
        "points_per_s": points / (done_s - started_s),
        "left": left,
    }


def request(api: str, path: str, body: dict[str, Any], header: dict[str, str]) -> dict[str, Any]:
    req = urllib.request.Request(
        api + path, json.dumps(body).encode(), {"Content-Type": "application/json", **header}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=60) as answer:
        data: dict[str, Any] = json.loads(answer.read())["data"]
        return data


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    binary = os.environ.get("TORA_BIN") or str(REPO / "target" / "debug" / "tora")
    proc = subprocess.Popen(
        [binary, "serve", "--bind", "127.0.0.1:0", "--db", str(workdir / "bench.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("listening on http://"):
        proc.kill()
        sys.exit(f"{binary} did not start: {line!r}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    api = line.split()[-1] + "/api"
    email, password = f"bench-{uuid.uuid4().hex[:8]}@example.com", "benchmark-password"
    request(api, "/signup", {"email": email, "password": password}, {})
    token = request(api, "/login", {"email": email, "password": password}, {})["access_token"]
    key = request(api, "/api-keys", {"name": "bench"}, {"Authorization": f"Bearer {token}"})["key"]
    return proc, api, key


class NullServer(BaseHTTPRequestHandler):
    """Answers like tora serve, stores nothing."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/experiments"):
            sent = json.loads(body)
            data: dict[str, Any] = {"id": sent.get("id") or str(uuid.uuid4()), "url": "http://null/experiments/x"}
        else:
            sent = json.loads(body)
            if "logs" in sent:  # /logs/batch: the SDK before /points
                inserted = len(sent["logs"])
            else:
                inserted = sum(len(m["steps"]) for m in sent.get("metrics", ())) + len(sent.get("results", ()))
            data = {"inserted": inserted, "skipped": 0}
        out = json.dumps({"status": 201, "data": data}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *_: Any) -> None:
        pass


def run_worker(
    python: str, api: str, key: str, calls: int, points: int, cache: Path, src: str | None, varied: bool
) -> dict[str, Any]:
    env = {**os.environ, "TORA_BASE_URL": api, "TORA_API_KEY": key, "TORA_CACHE_DIR": str(cache)}
    if src:
        env["PYTHONPATH"] = src
    args = [python, __file__, "--worker", "--calls", str(calls), "--points", str(points)] + ["--varied"] * varied
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False, cwd="/")
    if done.returncode != 0:
        sys.exit(f"worker {python} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=200_000, help="metric() calls timed one by one")
    parser.add_argument("--points", type=int, default=500_000, help="points for the throughput figure")
    parser.add_argument("--compat-points", type=int, default=50_000, help="points for 0.0.12's throughput")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--varied",
        action="store_true",
        help="log 1/(step+1) (a different value each step) instead of 0.5; the text of such floats costs more to write",
    )
    parser.add_argument(
        "--ours-src",
        help="import our tora from this directory (e.g. an older checkout's python/src, for before/after figures)",
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.calls, args.points, args.varied)))
        return

    compat = os.environ.get("TORA_COMPAT_PYTHON")
    if not compat:
        sys.exit("set TORA_COMPAT_PYTHON to a python that has tora==0.0.12 installed")
    our_python = os.environ.get("TORA_TEST_PYTHON", sys.executable)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        proc, api, key = start_server(workdir)
        try:
            figures["ours"] = run_worker(
                our_python, api, key, args.calls, args.points, workdir / "c1", args.ours_src, args.varied
            )
            figures["0.0.12"] = run_worker(
                compat, api, key, args.calls // 4, args.compat_points, workdir / "c2", None, args.varied
            )
        finally:
            proc.terminate()
            proc.wait()
        null = ThreadingHTTPServer(("127.0.0.1", 0), NullServer)
        threading.Thread(target=null.serve_forever, daemon=True).start()
        null_api = f"http://127.0.0.1:{null.server_address[1]}/api"
        figures["ours, null server"] = run_worker(
            our_python, null_api, "k", args.calls, args.points, workdir / "c3", args.ours_src, args.varied
        )
        null.shutdown()

    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"server: {os.environ.get('TORA_BIN') or REPO / 'target/debug/tora'}; {os.cpu_count()} CPUs")
    print(f"{'sdk':<22}{'median µs':>10}{'mean µs':>10}{'p99 µs':>10}{'max ms':>10}{'points/s':>12}{'points':>10}")
    for name, f in figures.items():
        label = f"{name} ({f['version']})"
        print(
            f"{label:<22}{f['median_us']:>10.2f}{f['mean_us']:>10.2f}{f['p99_us']:>10.2f}{f['max_ms']:>10.1f}"
            f"{f['points_per_s']:>12,.0f}{f['points']:>10,}"
        )


if __name__ == "__main__":
    main()
