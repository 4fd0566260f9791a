#!/usr/bin/env python3
"""Live-stream fan-out of `tora serve`: 200 SSE watchers on one experiment while it is written.

    TORA_BIN=target/release/tora python3 bench/stream.py       # ~30 s

Stdlib only; one server on 127.0.0.1 with a fresh temp database, stopped by PID at the end.
1. Baseline: 100 batches of 100 points into an experiment nobody watches (POST latency, server CPU).
2. Open 200 streams (`GET /api/experiments/{id}/stream`, x-api-key header) on a second
   experiment: server RSS before and after (cost per stream), time until each got `hello`.
3. The same 100 batches into the watched experiment, one at a time: after each POST returns,
   wait (bounded) until all 200 streams hold the batch, and record when each got it.
4. Every stream must hold every point exactly once: ids consecutive from its `hello` cursor,
   and the (step, value) pairs equal to what was sent.

The streams are raw sockets read by one `selectors` loop that only timestamps bytes and counts
points as they arrive; the JSON is parsed after the run, so client work barely delays the
arrival times.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import socket
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from ingest import Conn, cpu_seconds, environment, new_experiment, proc_status
from toraserver import REPO, ToraServer, new_user

WAIT_S = 30.0  # the longest wait for any one step; past it the run fails


class Stream:
    """One SSE connection: de-chunks the body and splits it into events as bytes arrive."""

    def __init__(self, host: str, port: int, path: str, api_key: str) -> None:
        t0 = time.perf_counter()
        self.sock = socket.create_connection((host, port), timeout=10)
        self.connect_s = time.perf_counter() - t0
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nx-api-key: {api_key}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        self.sock.setblocking(False)
        self.raw = b""
        self.headers: str | None = None
        self.chunked = False
        self.body = b""
        self.closed = False
        self.hello: int | None = None
        self.t_hello = 0.0
        self.points = 0  # counted from the raw data lines as they arrive
        self.events: list[
            tuple[float, str, str, int]
        ] = []  # (arrival, id, data, points so far)

    def feed(self, data: bytes, now: float) -> None:
        if not data:
            self.closed = True
            return
        self.raw += data
        if self.headers is None:
            head, sep, rest = self.raw.partition(b"\r\n\r\n")
            if not sep:
                return
            self.headers = head.decode("latin-1")
            status = self.headers.split("\r\n", 1)[0]
            if " 200 " not in status + " ":
                raise RuntimeError(f"stream: {status}")
            self.chunked = "transfer-encoding: chunked" in self.headers.lower()
            self.raw = rest
        if self.chunked:
            while True:
                line, sep, rest = self.raw.partition(b"\r\n")
                if not sep:
                    break
                size = int(line.split(b";")[0], 16)
                if len(rest) < size + 2:
                    break
                self.body += rest[:size]
                self.raw = rest[size + 2 :]
                if size == 0:
                    self.closed = True
                    break
        else:
            self.body, self.raw = self.body + self.raw, b""
        while True:
            block, sep, rest = self.body.partition(b"\n\n")
            if not sep:
                break
            self.body = rest
            self._event(block.decode(), now)

    def _event(self, block: str, now: float) -> None:
        kind, ev_id, data = "message", "", []
        for line in block.split("\n"):
            if line.startswith(":"):
                continue  # a ping comment
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                kind = value
            elif field == "id":
                ev_id = value
            elif field == "data":
                data.append(value)
        text = "\n".join(data)
        if kind == "hello":
            self.hello = json.loads(text)["cursor"]
            self.t_hello = now
        elif kind == "logs":
            self.points += text.count('{"id":')
            self.events.append((now, ev_id, text, self.points))


class Reader(threading.Thread):
    """One thread reading every stream; `want` is the point count every stream must reach."""

    def __init__(self, streams: list[Stream]) -> None:
        super().__init__(daemon=True)
        self.streams = streams
        self.sel = selectors.DefaultSelector()
        for s in streams:
            self.sel.register(s.sock, selectors.EVENT_READ, s)
        self.stop = threading.Event()
        self.reached = threading.Event()
        self.want = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for key, _ in self.sel.select(timeout=0.1):
                    s: Stream = key.data
                    try:
                        data = s.sock.recv(1 << 16)
                    except BlockingIOError:
                        continue
                    s.feed(data, time.perf_counter())
                    if s.closed:
                        self.sel.unregister(s.sock)
                if not self.reached.is_set() and all(
                    s.points >= self.want and s.hello is not None for s in self.streams
                ):
                    self.reached.set()
        except BaseException as err:  # noqa: BLE001 -- surfaced by the main thread
            self.error = err
            self.reached.set()

    def wait_for(self, points: int) -> None:
        self.want = points
        self.reached.clear()
        if not self.reached.wait(WAIT_S) or self.error:
            lag = sorted(s.points for s in self.streams)[:5]
            raise RuntimeError(
                f"streams short of {points} points after {WAIT_S}s: {lag}; {self.error!r}"
            )


def bodies(n_batches: int, size: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for k in range(n_batches):
        logs = [
            {
                "msg_id": str(uuid.uuid4()),
                "name": "m",
                "value": rng.random(),
                "step": k * size + i,
                "metadata": {"type": "metric"},
            }
            for i in range(size)
        ]
        out.append(json.dumps({"logs": logs}).encode())
    return out


def post(conn: Conn, exp: str, body: bytes, size: int) -> None:
    status, raw = conn.request("POST", f"/api/experiments/{exp}/logs/batch", body)
    if status != 201 or json.loads(raw)["data"]["inserted"] != size:
        raise RuntimeError(f"logs/batch -> {status}: {raw[:300]!r}")


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] if len(xs) >= 2 else xs[0]


def verify(s: Stream, sent: list[tuple[int, float]]) -> str | None:
    """None if the stream holds exactly the points sent, in order, ids consecutive."""
    pts = [p for _, _, text, _ in s.events for p in json.loads(text)]
    ids = [p["id"] for p in pts]
    if s.hello is None or ids != list(range(s.hello + 1, s.hello + 1 + len(sent))):
        head = ids[:3]
        return f"ids: {len(ids)} points from {head}, hello cursor {s.hello}, expected {len(sent)} consecutive"
    if [(p["step"], p["value"]) for p in pts] != sent:
        return "steps/values differ from what was sent"
    if any(ev_id != str(json.loads(text)[-1]["id"]) for _, ev_id, text, _ in s.events):
        return "an event's id is not the id of its last point"
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {}
    with ToraServer() as srv:
        user = new_user(srv.api)
        conn = Conn(srv.url, user.api_key)
        host, port = srv.url.removeprefix("http://").split(":")

        # 1. baseline: nobody watching
        quiet = new_experiment(srv.api, user, "unwatched")
        qb = bodies(args.batches, args.size, seed=1)
        cpu0, t0 = cpu_seconds(srv.pid), time.perf_counter()
        lat0 = []
        for b in qb:
            t = time.perf_counter()
            post(conn, quiet, b, args.size)
            lat0.append(time.perf_counter() - t)
        res["unwatched"] = {
            "wall_s": time.perf_counter() - t0,
            "server_cpu_s": cpu_seconds(srv.pid) - cpu0,
            "post_ms_median": statistics.median(lat0) * 1000,
            "post_ms_p99": pct(lat0, 99) * 1000,
        }

        # 2. open the streams
        exp = new_experiment(srv.api, user, "watched")
        time.sleep(1.0)
        rss0 = proc_status(srv.pid, "VmRSS")
        threads0 = proc_status(srv.pid, "Threads")
        path = f"/api/experiments/{exp}/stream"
        t_open = time.perf_counter()
        # Connected one after another, as fast as the client can; a connect() that waits about
        # 1 s is a SYN the kernel dropped because the server's accept queue was full.
        streams = [
            Stream(host, int(port), path, user.api_key) for _ in range(args.streams)
        ]
        reader = Reader(streams)
        t_read = time.perf_counter()
        reader.start()
        reader.wait_for(0)  # every stream has its hello
        opened_s = time.perf_counter() - t_open
        time.sleep(1.0)
        rss1 = proc_status(srv.pid, "VmRSS")
        hello_ms = [(s.t_hello - t_read) * 1000 for s in streams]
        connect_ms = [s.connect_s * 1000 for s in streams]
        res["open"] = {
            "streams": args.streams,
            "all_open_s": opened_s,
            "connect_ms_total": sum(connect_ms),
            "connect_ms_max": max(connect_ms),
            "connects_over_500ms": sum(c > 500 for c in connect_ms),
            "hello_ms_after_connects_median": statistics.median(hello_ms),
            "hello_ms_after_connects_max": max(hello_ms),
            "rss_before_mib": rss0 / 1024,
            "rss_after_mib": rss1 / 1024,
            "kib_per_stream": (rss1 - rss0) / args.streams,
            "server_threads_before_after": [threads0, proc_status(srv.pid, "Threads")],
        }

        # 3. the same batches into the watched experiment, one at a time
        wb = bodies(args.batches, args.size, seed=2)
        sent_at, returned_at, lat = [], [], []
        load0 = os.getloadavg()
        cpu0, t0 = cpu_seconds(srv.pid), time.perf_counter()
        client0 = os.times()
        for k, b in enumerate(wb):
            t = time.perf_counter()
            post(conn, exp, b, args.size)
            r = time.perf_counter()
            sent_at.append(t)
            returned_at.append(r)
            lat.append(r - t)
            reader.wait_for((k + 1) * args.size)
        wall = time.perf_counter() - t0
        server_cpu = cpu_seconds(srv.pid) - cpu0
        client1 = os.times()
        rss2 = proc_status(srv.pid, "VmRSS")
        reader.stop.set()
        reader.join(timeout=10)

        # When did each stream first hold batch k whole? (events may merge or split batches)
        last_ms, first_ms, all_ms = [], [], []
        for k in range(args.batches):
            need = (k + 1) * args.size
            got = [next(t for t, _, _, n in s.events if n >= need) for s in streams]
            last_ms.append((max(got) - returned_at[k]) * 1000)
            first_ms.append((min(got) - returned_at[k]) * 1000)
            all_ms += [(g - returned_at[k]) * 1000 for g in got]
        sent = []
        for b in wb:
            sent += [(p["step"], p["value"]) for p in json.loads(b)["logs"]]
        problems = [v for v in (verify(s, sent) for s in streams) if v]
        events = sum(len(s.events) for s in streams)
        res["watched"] = {
            "batches": args.batches,
            "batch": args.size,
            "wall_s": wall,
            "server_cpu_s": server_cpu,
            "server_cpu_pct_of_one_core": 100 * server_cpu / wall,
            "client_cpu_s": (client1.user + client1.system)
            - (client0.user + client0.system),
            "post_ms_median": statistics.median(lat) * 1000,
            "post_ms_p99": pct(lat, 99) * 1000,
            "fanout_last_ms_median": statistics.median(last_ms),
            "fanout_last_ms_p99": pct(last_ms, 99),
            "fanout_last_ms_max": max(last_ms),
            "fanout_first_ms_median": statistics.median(first_ms),
            "fanout_any_ms_median": statistics.median(all_ms),
            "events_received": events,
            "events_per_stream_per_batch": events / args.streams / args.batches,
            "streams_exactly_once": args.streams - len(problems),
            "problems": problems[:5],
            "rss_after_mib": rss2 / 1024,
            "loadavg_before": load0,
            "loadavg_after": os.getloadavg(),
        }
        extra = server_cpu - res["unwatched"]["server_cpu_s"]
        res["watched"]["extra_server_cpu_s"] = extra
        res["watched"]["extra_server_us_per_delivery"] = (
            extra / (args.batches * args.streams) * 1e6
        )

        # 4. close every stream; does the server let go?
        for s in streams:
            s.sock.close()
        time.sleep(1.0)
        res["closed"] = {
            "rss_mib": proc_status(srv.pid, "VmRSS") / 1024,
            "server_threads": proc_status(srv.pid, "Threads"),
        }
        conn.close()
        res["server_exit_code"] = srv.stop()
        log = srv.logs()
        res["server_log_errors"] = [
            ln for ln in log.splitlines() if "ERROR" in ln or "panic" in ln
        ][:5]
    return res


def table(res: dict[str, Any]) -> str:
    o, u, w, env = res["open"], res["unwatched"], res["watched"], res["env"]
    rows = [
        ("Binary", f"{env['binary']} ({env['tora_version']})"),
        (
            f"open {o['streams']} streams on one experiment",
            (
                f"all open with `hello` in {o['all_open_s'] * 1000:.0f} ms:"
                f" connect() {o['connect_ms_total']:.0f} ms in all,"
                f" slowest {o['connect_ms_max']:.0f} ms ({o['connects_over_500ms']} over 500 ms); then every `hello`"
                f" within {o['hello_ms_after_connects_max']:.0f} ms"
            ),
        ),
        (
            "server RSS before / after opening them",
            (
                f"{o['rss_before_mib']:.1f} / {o['rss_after_mib']:.1f} MiB"
                f" ({o['kib_per_stream']:.1f} KiB per stream);"
                f" threads {o['server_threads_before_after'][0]} / {o['server_threads_before_after'][1]}"
            ),
        ),
        (
            f"{w['batches']} batches of {w['batch']}: POST returned -> last of {o['streams']} streams has the batch",
            (
                f"median {w['fanout_last_ms_median']:.1f} ms, p99 {w['fanout_last_ms_p99']:.1f} ms, max"
                f" {w['fanout_last_ms_max']:.1f} ms (first stream: median {w['fanout_first_ms_median']:.1f} ms)"
            ),
        ),
        (
            "POST latency median / p99, unwatched vs watched",
            (
                f"{u['post_ms_median']:.1f} / {u['post_ms_p99']:.1f} ms"
                f" vs {w['post_ms_median']:.1f} / {w['post_ms_p99']:.1f} ms"
            ),
        ),
        (
            "server CPU for the 100 batches, unwatched vs watched",
            (
                f"{u['server_cpu_s']:.2f} s vs {w['server_cpu_s']:.2f} s"
                f" ({w['server_cpu_pct_of_one_core']:.0f}% of one core"
                f" over {w['wall_s']:.1f} s; {w['extra_server_us_per_delivery']:.0f} µs per event delivered)"
            ),
        ),
        (
            "every stream got every point exactly once (ids consecutive, values equal)",
            f"{w['streams_exactly_once']} of {o['streams']} ({w['events_per_stream_per_batch']:.2f} events per batch)"
            + (f"; {w['problems'][0]}" if w["problems"] else ""),
        ),
        (
            "server RSS with the streams after the run / 1 s after closing them",
            f"{w['rss_after_mib']:.1f} / {res['closed']['rss_mib']:.1f} MiB",
        ),
        (
            "1-min load average at start / end",
            f"{env['loadavg_at_start'][0]:.2f} / {env['loadavg_at_end'][0]:.2f} ({env['cpus']} CPUs)",
        ),
    ]
    return "\n".join(
        ["| Measure | Value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--size", type=int, default=100, help="points per batch")
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "stream.json"
    )
    args = ap.parse_args()
    env = environment()
    print(f"binary: {env['binary']} ({env['tora_version']})", file=sys.stderr)
    res = run(args)
    res["env"] = env | {"loadavg_at_end": os.getloadavg()}
    res["args"] = vars(args) | {"out": str(args.out)}
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    if res["watched"]["problems"] or res["server_exit_code"] != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
