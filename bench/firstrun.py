#!/usr/bin/env python3
"""What issue 12 ("the first ten minutes") added, measured the way a user meets it.

    TORA_BIN=target/release/tora python3 bench/firstrun.py    # ~35 s idle (--runs 3)

Stdlib only. Each run starts its own server on 127.0.0.1:0 with a fresh temp database (stopped
by PID at the end of the run) and measures, in this order:

5. the SDK from the server: `GET /sdk/tora-VERSION-py3-none-any.whl` (time, bytes, sha256 against
   the simple index), then `python3 -m venv` and `pip install --index-url URL/sdk/simple/ tora`
   into a fresh venv under target/ (no pip config, a fresh pip cache: a first-time user);
1. `tora.setup()` from that venv, a new interpreter per measurement, cwd this git checkout:
   import, setup and shutdown (which posts finish) timed inside the process, the interpreter's
   whole life from outside; (a) default settings (metadata on, so `git status` runs), (b)
   TORA_METADATA=0. The run must read `finished`, with git metadata in (a) and none in (b);
2. heartbeats: 200 runs, 10 rounds of `POST /api/experiments/{id}/heartbeat` on one keep-alive
   connection: server CPU per heartbeat (/proc/PID/stat) and latency, beside `GET /api/health`;
3. the live table: a workspace stream (stream-token, then `GET .../stream?token=` on a raw
   socket); 50 runs created one at a time (time from the create returning to its `run` event),
   then one points batch to each (to its `progress` event: each run's first, so none is paced);
4. the run table on 10,000 runs of one workspace (60% finished, 10% failed, 30% running, each
   with 3 hyperparameters, a tag, 10 loss points and a result): the dashboard's first page
   (`limit=100&sort=-created&summary=1`) with `q=state:running`, `q=state:finished` and no
   filter, 20 calls each; and the CSV export of all of them.

Every figure is the median of the runs (--runs, default 3) and the worst run. Writes
bench/results/firstrun.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from ingest import CLK_TCK, Conn, cpu_seconds, environment
from toraserver import REPO, ToraServer, User, call_ok, new_user

WAIT_S = 30.0  # the longest wait for any one live event; past it the run fails
PAGE = 100  # assets/js/pages/experiments.js: PAGE
# Run by a fresh interpreter of the SDK's venv: times come back as the last line of stdout.
WORKER = """\
import json, sys, time
t0 = time.perf_counter()
import tora
t1 = time.perf_counter()
run = tora.setup("first-run", hyperparams={"lr": 0.001, "batch": 64})
t2 = time.perf_counter()
tora.shutdown()
t3 = time.perf_counter()
print(json.dumps({"id": run, "import_s": t1 - t0, "setup_s": t2 - t1, "shutdown_s": t3 - t2}))
"""


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] if len(xs) >= 2 else xs[0]


def ms(xs: list[float]) -> dict[str, float]:
    """p50 / p99 / max of durations in seconds, as milliseconds."""
    return {
        "p50_ms": statistics.median(xs) * 1000,
        "p99_ms": pct(xs, 99) * 1000,
        "max_ms": max(xs) * 1000,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def get(conn: Conn, path: str) -> bytes:
    status, raw = conn.request("GET", path)
    if status != 200:
        raise RuntimeError(f"GET {path} -> {status}: {raw[:300]!r}")
    return raw


def send(conn: Conn, path: str, body: Any, expect: int) -> Any:
    status, raw = conn.request(
        "POST", path, None if body is None else json.dumps(body).encode()
    )
    if status != expect:
        raise RuntimeError(f"POST {path} -> {status}: {raw[:300]!r}")
    return json.loads(raw)["data"]


def new_workspace(conn: Conn, name: str) -> str:
    return send(conn, "/api/workspaces", {"name": name}, 201)["id"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any TORA_* or PIP_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORA_", "PIP_"))}
    return env | extra


# --- 5. the SDK from the server ------------------------------------------------------------


def bench_sdk(
    srv: ToraServer, conn: Conn, venv_root: Path
) -> tuple[dict[str, Any], Path]:
    index = get(conn, "/sdk/simple/tora/").decode()
    m = re.search(r'href="\.\./\.\./(tora-[^"#]+\.whl)#sha256=([0-9a-f]{64})"', index)
    if not m:
        raise RuntimeError(f"no wheel link in /sdk/simple/tora/: {index[:300]}")
    wheel, sha = m.groups()
    downloads = [timed(lambda: get(conn, f"/sdk/{wheel}")) for _ in range(5)]
    if any(hashlib.sha256(body).hexdigest() != sha for _, body in downloads):
        raise RuntimeError("the wheel served differs from the sha256 of the index")
    venv = venv_root / f"venv-{uuid.uuid4().hex[:8]}"
    cache = venv_root / f"pip-cache-{venv.name}"
    venv_s, _ = timed(
        lambda: subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    )
    # A first-time user: no pip configuration (this machine's /etc/pip.conf and PIP_* variables
    # left out), an empty pip cache. pip's check for a newer pip is off: it is not part of
    # installing tora, and it would ask the server's index for pip.
    env = clean_env(
        PIP_CONFIG_FILE=os.devnull,
        PIP_CACHE_DIR=str(cache),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    cmd = [
        str(venv / "bin" / "pip"),
        "install",
        "--index-url",
        f"{srv.url}/sdk/simple/",
        "tora",
    ]
    pip_s, done = timed(
        lambda: subprocess.run(
            cmd, env=env, capture_output=True, text=True, check=False
        )
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"pip install failed ({done.returncode}): {done.stderr[-1000:]}"
        )
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "wheel": wheel,
        "wheel_bytes": len(downloads[0][1]),
        "wheel_download_ms_median_of_5": statistics.median(t for t, _ in downloads)
        * 1000,
        "venv_s": venv_s,
        "pip_install_s": pip_s,
        "pip_version": subprocess.run(
            [str(venv / "bin" / "pip"), "--version"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split(" from ")[0],
    }, venv


# --- 1. setup() from a new interpreter -----------------------------------------------------


def bench_setup(
    srv: ToraServer, user: User, python: Path, worker: Path, metadata: bool
) -> dict[str, Any]:
    env = clean_env(
        TORA_BASE_URL=srv.api,
        TORA_API_KEY=user.api_key,
        TORA_CACHE_DIR=str(worker.parent / "cache"),
    )
    if not metadata:
        env["TORA_METADATA"] = "0"
    wall, done = timed(
        lambda: subprocess.run(
            [str(python), str(worker)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"setup worker failed ({done.returncode}): {done.stderr[-1000:]}"
        )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    exp = call_ok("GET", f"{srv.api}/experiments/{out['id']}", api_key=user.api_key)
    git = (exp.get("metadata") or {}).get("git")
    if exp["state"] != "finished":
        raise RuntimeError(f"after shutdown() the run is {exp['state']}, not finished")
    if metadata and not (git and git.get("commit")):
        raise RuntimeError(
            f"metadata on, but the run has no git commit: {exp.get('metadata')}"
        )
    if not metadata and exp.get("metadata"):
        raise RuntimeError(
            f"TORA_METADATA=0, but the run has metadata: {exp['metadata']}"
        )
    return {
        "import_ms": out["import_s"] * 1000,
        "setup_ms": out["setup_s"] * 1000,
        "shutdown_ms": out["shutdown_s"] * 1000,
        "interpreter_ms": wall * 1000,
    }


# --- 2. heartbeats ---------------------------------------------------------------------------


def bench_heartbeats(
    srv: ToraServer, conn: Conn, n_runs: int, n_beats: int
) -> dict[str, Any]:
    ws = new_workspace(conn, "heartbeats")
    runs = [
        send(conn, "/api/experiments", {"name": f"hb-{i}", "workspaceId": ws}, 201)[
            "id"
        ]
        for i in range(n_runs)
    ]
    out: dict[str, Any] = {"runs": n_runs, "heartbeats": n_beats}

    def measure(one: Callable[[int], None]) -> dict[str, Any]:
        lat = []
        cpu0, t0 = cpu_seconds(srv.pid), time.perf_counter()
        for i in range(n_beats):
            t = time.perf_counter()
            one(i)
            lat.append(time.perf_counter() - t)
        wall, cpu = time.perf_counter() - t0, cpu_seconds(srv.pid) - cpu0
        return ms(lat) | {
            "server_cpu_us_each": cpu / n_beats * 1e6,
            "per_s": n_beats / wall,
        }

    def beat(i: int) -> None:
        if (
            send(conn, f"/api/experiments/{runs[i % n_runs]}/heartbeat", None, 200)[
                "state"
            ]
            != "running"
        ):
            raise RuntimeError("a heartbeat did not answer running")

    out["heartbeat"] = measure(beat)
    out["health"] = measure(lambda _: get(conn, "/api/health"))
    return out


# --- 3. the live table -----------------------------------------------------------------------


class WorkspaceStream(threading.Thread):
    """A workspace stream on a raw socket: records when each run's first `run` and `progress`
    event arrived. The events are only split and timestamped here, parsed little."""

    def __init__(self, url: str, path: str) -> None:
        super().__init__(daemon=True)
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=WAIT_S)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        self.seen: dict[tuple[str, str], float] = {}  # (event, run id) -> arrival
        self.cond = threading.Condition()
        self.error: BaseException | None = None

    def run(self) -> None:
        raw, body, headers = b"", b"", False
        try:
            while True:
                data = self.sock.recv(1 << 16)
                now = time.perf_counter()
                if not data:
                    raise RuntimeError("the workspace stream ended")
                raw += data
                if not headers:
                    head, sep, raw = raw.partition(b"\r\n\r\n")
                    if not sep:
                        raw = head
                        continue
                    status = head.split(b"\r\n", 1)[0].decode("latin-1")
                    if " 200 " not in status + " " or b"chunked" not in head.lower():
                        raise RuntimeError(f"workspace stream: {status}")
                    headers = True
                while True:  # de-chunk
                    line, sep, rest = raw.partition(b"\r\n")
                    if not sep:
                        break
                    size = int(line.split(b";")[0], 16)
                    if len(rest) < size + 2:
                        break
                    body, raw = body + rest[:size], rest[size + 2 :]
                while True:
                    block, sep, body = body.partition(b"\n\n")
                    if not sep:
                        body = block
                        break
                    self._event(block.decode(), now)
        except BaseException as err:  # noqa: BLE001 -- surfaced by the waiting thread
            with self.cond:
                self.error = err
                self.cond.notify_all()

    def _event(self, block: str, now: float) -> None:
        kind, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            if field == "event":
                kind = value.strip()
            elif field == "data":
                data.append(value.removeprefix(" "))
        if not data:
            return  # a ping comment
        key = "" if kind == "hello" else json.loads("\n".join(data)).get("id", "")
        with self.cond:
            self.seen.setdefault((kind, key), now)
            self.cond.notify_all()

    def wait(self, kind: str, key: str = "") -> float:
        with self.cond:
            if not self.cond.wait_for(
                lambda: (kind, key) in self.seen or self.error, WAIT_S
            ):
                raise RuntimeError(
                    f"no {kind} event for {key or 'the stream'} within {WAIT_S}s"
                )
            if self.error:
                raise RuntimeError(f"workspace stream: {self.error!r}")
            return self.seen[(kind, key)]


def bench_live(srv: ToraServer, conn: Conn, n_runs: int) -> dict[str, Any]:
    ws = new_workspace(conn, "live")
    token = send(conn, f"/api/workspaces/{ws}/stream-token", None, 200)["token"]
    stream = WorkspaceStream(
        srv.url, f"/api/workspaces/{ws}/stream?token={urllib.parse.quote(token)}"
    )
    stream.start()
    stream.wait("hello")
    run_lat, run_sent, runs = [], [], []
    for i in range(n_runs):
        t = time.perf_counter()
        exp = send(
            conn, "/api/experiments", {"name": f"live-{i}", "workspaceId": ws}, 201
        )["id"]
        r = time.perf_counter()
        got = stream.wait("run", exp)
        run_lat.append(got - r)
        run_sent.append(got - t)
        runs.append(exp)
    rng = random.Random(3)
    prog_lat, prog_sent = [], []
    for exp in runs:
        body = {
            "batch_id": str(uuid.uuid4()),
            "metrics": [
                {
                    "name": "loss",
                    "steps": list(range(10)),
                    "values": [rng.random() for _ in range(10)],
                }
            ],
        }
        t = time.perf_counter()
        send(conn, f"/api/experiments/{exp}/points", body, 201)
        r = time.perf_counter()
        got = stream.wait("progress", exp)
        prog_lat.append(got - r)
        prog_sent.append(got - t)
    stream.sock.close()
    return {
        "runs": n_runs,
        "run_event_after_create_returned": ms(run_lat),
        "run_event_after_create_sent": ms(run_sent),
        "progress_after_post_returned": ms(prog_lat),
        "progress_after_post_sent": ms(prog_sent),
        "events_before_the_response": sum(x < 0 for x in run_lat + prog_lat),
    }


# --- 4. the run table on 10,000 runs --------------------------------------------------------


def fill_table(
    srv: ToraServer, user: User, ws: str, n: int, threads: int
) -> dict[str, int]:
    """n runs: 60% finished, 10% failed, the rest running; returns the count of each state."""
    states = ["finished"] * 6 + ["failed"] + ["running"] * 3

    def work(k: int, errors: list[BaseException]) -> None:
        conn = Conn(srv.url, user.api_key)
        rng = random.Random(k)
        try:
            for i in range(k, n, threads):
                new = {
                    "name": f"sweep-{i % 500}",
                    "workspaceId": ws,
                    "hyperparams": [
                        {"key": "lr", "value": 10 ** rng.uniform(-4, -1)},
                        {"key": "batch", "value": rng.choice([32, 64, 128])},
                        {"key": "opt", "value": rng.choice(["adam", "sgd"])},
                    ],
                    "tags": [rng.choice(["baseline", "sweep"])],
                }
                exp = send(conn, "/api/experiments", new, 201)["id"]
                points = {
                    "batch_id": str(uuid.uuid4()),
                    "metrics": [
                        {
                            "name": "loss",
                            "steps": list(range(10)),
                            "values": [rng.random() for _ in range(10)],
                        }
                    ],
                    "results": [{"name": "acc", "value": rng.random()}],
                }
                send(conn, f"/api/experiments/{exp}/points", points, 201)
                state = states[i % len(states)]
                if state != "running":
                    send(conn, f"/api/experiments/{exp}/finish", {"state": state}, 200)
        except BaseException as err:  # noqa: BLE001 -- re-raised by the caller
            errors.append(err)
        finally:
            conn.close()

    errors: list[BaseException] = []
    pool = [threading.Thread(target=work, args=(k, errors)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return {s: sum(states[i % len(states)] == s for i in range(n)) for s in set(states)}


def bench_table(
    srv: ToraServer, user: User, conn: Conn, n: int, calls: int, threads: int
) -> dict[str, Any]:
    ws = new_workspace(conn, "table")
    fill_s, counts = timed(lambda: fill_table(srv, user, ws, n, threads))
    out: dict[str, Any] = {"runs": n, "fill_s": fill_s, "states": counts}
    for label, q, want in (
        ("state_running", "state:running", counts["running"]),
        ("state_finished", "state:finished", counts["finished"]),
        ("no_filter", None, n),
    ):
        # As the dashboard asks for its first page (assets/js/pages/experiments.js, load()).
        query = {"limit": PAGE, "sort": "-created", "summary": 1} | (
            {"q": q} if q else {}
        )
        path = f"/api/workspaces/{ws}/experiments?{urllib.parse.urlencode(query)}"
        lat = []
        for _ in range(calls):
            t, raw = timed(lambda p=path: get(conn, p))
            lat.append(t)
        page = json.loads(raw)
        if page["total"] != want or len(page["data"]) != min(PAGE, want):
            raise RuntimeError(
                f"{label}: total {page['total']}, {len(page['data'])} rows; expected {want}"
            )
        if q and any(r["state"] != q.split(":")[1] for r in page["data"]):
            raise RuntimeError(f"{label}: a run of another state on the page")
        out[label] = ms(lat) | {
            "cold_ms": lat[0] * 1000,
            "total": page["total"],
            "bytes": len(raw),
        }
    path = f"/api/workspaces/{ws}/experiments.csv?sort=-created"
    t, raw = timed(lambda: get(conn, path))
    rows = list(csv.reader(io.StringIO(raw.decode())))
    if len(rows) != n + 1:
        raise RuntimeError(f"experiments.csv has {len(rows) - 1} runs, expected {n}")
    out["csv"] = {"ms": t * 1000, "bytes": len(raw), "columns": len(rows[0])}
    return out


# --- the runs and the table ----------------------------------------------------------------


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (first line of /proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_cpu_s() -> float:
    """This process's CPU and its waited-for children's: the server (once stopped), pip, the SDK."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def one_run(args: argparse.Namespace, venv_root: Path, worker: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"loadavg_at_start": os.getloadavg()}
    busy0, own0, t0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
    with ToraServer() as srv:
        user = new_user(srv.api)
        conn = Conn(srv.url, user.api_key)
        res["sdk"], venv = bench_sdk(srv, conn, venv_root)
        python = venv / "bin" / "python"
        res["setup_default"] = bench_setup(srv, user, python, worker, metadata=True)
        res["setup_no_metadata"] = bench_setup(
            srv, user, python, worker, metadata=False
        )
        shutil.rmtree(venv, ignore_errors=True)
        res["heartbeats"] = bench_heartbeats(srv, conn, args.beat_runs, args.heartbeats)
        res["live"] = bench_live(srv, conn, args.live_runs)
        res["table"] = bench_table(
            srv, user, conn, args.table_runs, args.calls, args.threads
        )
        conn.close()
        res["server_exit_code"] = srv.stop()
        res["server_log_errors"] = [
            ln for ln in srv.logs().splitlines() if "ERROR" in ln or "panic" in ln
        ][:5]
    res["loadavg_at_end"] = os.getloadavg()
    # The load average counts this benchmark too (its client and server are busy throughout); what
    # the rest of the machine used while it ran is the better sign of a quiet machine.
    wall = time.perf_counter() - t0
    other = (busy_cpu_s() - busy0) - (own_cpu_s() - own0)
    res["wall_s"] = wall
    res["other_cpu_pct_of_one_core"] = max(0.0, 100 * other / wall)
    return res


# (label, path into a run's result, unit); each row shows the median of the runs and the worst.
ROWS: list[tuple[str, tuple[str, ...], str]] = [
    ("1a `import tora` (metadata on)", ("setup_default", "import_ms"), "ms"),
    (
        "1a `tora.setup()` (metadata on: git status)",
        ("setup_default", "setup_ms"),
        "ms",
    ),
    ("1a `tora.shutdown()` (posts finish)", ("setup_default", "shutdown_ms"), "ms"),
    ("1a whole interpreter, start to exit", ("setup_default", "interpreter_ms"), "ms"),
    ("1b `import tora` (TORA_METADATA=0)", ("setup_no_metadata", "import_ms"), "ms"),
    ("1b `tora.setup()` (TORA_METADATA=0)", ("setup_no_metadata", "setup_ms"), "ms"),
    ("1b `tora.shutdown()`", ("setup_no_metadata", "shutdown_ms"), "ms"),
    (
        "1b whole interpreter, start to exit",
        ("setup_no_metadata", "interpreter_ms"),
        "ms",
    ),
    (
        "2 heartbeat: server CPU each",
        ("heartbeats", "heartbeat", "server_cpu_us_each"),
        "µs",
    ),
    ("2 heartbeat latency p50", ("heartbeats", "heartbeat", "p50_ms"), "ms"),
    ("2 heartbeat latency p99", ("heartbeats", "heartbeat", "p99_ms"), "ms"),
    (
        "2 (`GET /api/health`: server CPU each)",
        ("heartbeats", "health", "server_cpu_us_each"),
        "µs",
    ),
    ("2 (`GET /api/health` latency p50)", ("heartbeats", "health", "p50_ms"), "ms"),
    (
        "3 create returned → `run` event, p50",
        ("live", "run_event_after_create_returned", "p50_ms"),
        "ms",
    ),
    (
        "3 create sent → `run` event, p50",
        ("live", "run_event_after_create_sent", "p50_ms"),
        "ms",
    ),
    (
        "3 create returned → `run` event, p99",
        ("live", "run_event_after_create_returned", "p99_ms"),
        "ms",
    ),
    (
        "3 points POST returned → `progress`, p50",
        ("live", "progress_after_post_returned", "p50_ms"),
        "ms",
    ),
    (
        "3 points POST returned → `progress`, p99",
        ("live", "progress_after_post_returned", "p99_ms"),
        "ms",
    ),
    (
        "3 points POST sent → `progress`, p50",
        ("live", "progress_after_post_sent", "p50_ms"),
        "ms",
    ),
    (
        "4 first page, `q=state:running`, p50",
        ("table", "state_running", "p50_ms"),
        "ms",
    ),
    (
        "4 first page, `q=state:running`, p99",
        ("table", "state_running", "p99_ms"),
        "ms",
    ),
    (
        "4 first page, `q=state:finished`, p50",
        ("table", "state_finished", "p50_ms"),
        "ms",
    ),
    (
        "4 first page, `q=state:finished`, p99",
        ("table", "state_finished", "p99_ms"),
        "ms",
    ),
    ("4 first page, no filter, p50", ("table", "no_filter", "p50_ms"), "ms"),
    ("4 first page, no filter, p99", ("table", "no_filter", "p99_ms"), "ms"),
    ("4 `experiments.csv` of every run: time", ("table", "csv", "ms"), "ms"),
    ("4 `experiments.csv`: size", ("table", "csv", "bytes"), "KiB"),
    ("4 (filling the workspace, 4 threads)", ("table", "fill_s"), "s"),
    (
        "5 wheel download (median of 5 GETs)",
        ("sdk", "wheel_download_ms_median_of_5"),
        "ms",
    ),
    ("5 wheel size", ("sdk", "wheel_bytes"), "KiB"),
    ("5 `python3 -m venv` (before pip)", ("sdk", "venv_s"), "s"),
    ("5 `pip install --index-url …/sdk/simple/ tora`", ("sdk", "pip_install_s"), "s"),
]


def pick(run: dict[str, Any], path: tuple[str, ...]) -> float:
    v: Any = run
    for key in path:
        v = v[key]
    return float(v)


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per ROWS entry, keyed by its path joined with dots: the median of the runs and the worst."""
    out = {}
    for label, path, unit in ROWS:
        xs = [pick(r, path) for r in runs]
        scale = 1 / 1024 if unit == "KiB" else 1.0
        out[".".join(path)] = {
            "label": label,
            "median": statistics.median(xs) * scale,
            "worst": max(xs) * scale,
            "unit": unit,
        }
    return out


def table(res: dict[str, Any]) -> str:
    env, runs, args = res["env"], res["runs"], res["args"]
    n = len(runs)
    lines = [f"| Measure | median of {n} | worst run |", "|---|---|---|"]
    for s in res["summary"].values():
        digits = 0 if s["unit"] in ("µs", "KiB") else 2
        if s["unit"] == "ms" and abs(s["median"]) >= 10:
            digits = 1
        lines.append(
            f"| {s['label']} | {s['median']:,.{digits}f} {s['unit']} | {s['worst']:,.{digits}f} {s['unit']} |"
        )
    t = runs[0]["table"]
    lines += [
        f"| 4 runs in the workspace / states | {t['runs']:,} / "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(t["states"].items()))
        + " | |",
        (
            f"| 2 / 3 sizes | {args['heartbeats']:,} heartbeats over {args['beat_runs']} runs;"
            f" {args['live_runs']} runs created and written while watched | |"
        ),
        (
            f"| Binary | {env['binary']} ({env['tora_version']}); wheel {runs[0]['sdk']['wheel']};"
            f" {runs[0]['sdk']['pip_version']} | |"
        ),
        "| 1-min load average at each run's start → end | "
        + ", ".join(
            f"{r['loadavg_at_start'][0]:.2f}→{r['loadavg_at_end'][0]:.2f}" for r in runs
        )
        + f" ({env['cpus']} CPUs) | |",
        "| CPU used by other processes during each run (% of one core) | "
        + ", ".join(f"{r['other_cpu_pct_of_one_core']:.0f}%" for r in runs)
        + " | |",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3, help="runs, each on a fresh server")
    ap.add_argument("--beat-runs", type=int, default=200)
    ap.add_argument("--heartbeats", type=int, default=2000)
    ap.add_argument("--live-runs", type=int, default=50)
    ap.add_argument("--table-runs", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=20, help="calls of each table query")
    ap.add_argument(
        "--threads", type=int, default=4, help="client threads filling the table"
    )
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "firstrun.json"
    )
    args = ap.parse_args()
    env = environment()
    print(f"binary: {env['binary']} ({env['tora_version']})", file=sys.stderr)
    (REPO / "target").mkdir(exist_ok=True)
    venv_root = Path(tempfile.mkdtemp(prefix="firstrun-", dir=REPO / "target"))
    runs = []
    try:
        worker = venv_root / "train.py"
        worker.write_text(WORKER)
        for i in range(args.runs):
            print(
                f"run {i + 1}/{args.runs} (load {os.getloadavg()[0]:.2f})",
                file=sys.stderr,
            )
            runs.append(one_run(args, venv_root, worker))
    finally:
        shutil.rmtree(venv_root, ignore_errors=True)
    res = {
        "env": env | {"loadavg_at_end": os.getloadavg()},
        "args": vars(args) | {"out": str(args.out)},
        "summary": summarize(runs),
        "runs": runs,
    }
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    if any(r["server_exit_code"] != 0 or r["server_log_errors"] for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
