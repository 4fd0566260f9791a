#!/usr/bin/env python3
"""Hostile clients against `tora serve`: does the server stay up, small, and answer others?

    TORA_BIN=target/release/tora python3 bench/attacks.py            # ~5 min
    TORA_BIN=target/release/tora python3 bench/attacks.py --quick    # < 2 min, small sizes
    python3 bench/attacks.py --only slowloris,unread-csv

Stdlib only. One template database is filled first (two accounts, a workspace of 20 runs, a
run of 1M points in 10 metrics, an empty run to stream to); every attack then gets its own
server on a fresh copy of it, so a crash or a bloated heap never leaks into the next one.
Per attack: server RSS before / peak during (sampled every 25 ms) / after (a few seconds after
the attack ended and its sockets closed), its open file descriptors, whether it stayed up
(alive and answering /api/health), and a normal client's latency during the attack: another
account, from another address (127.0.0.2, so the attack's rate-limit buckets are not its),
looping over GET /api/health, GET /api/workspaces (API key), POST /api/login (every 4 s, under
the per-account limit) and POST /points of 5 points, each on a fresh connection with a 10 s
timeout. A server whose RSS passes --rss-cap-mib is killed (the machine is shared) and the
attack is reported as such. Exits 1 if any attack left the server down.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from ingest import cpu_seconds, environment, pack_f64, proc_status
from toraserver import REPO, ToraServer, call_ok, new_user

NORMAL_SRC = "127.0.0.2"  # the normal client's address: its own rate-limit buckets
CLIENT_TIMEOUT_S = 10.0
SAMPLE_S = 0.025
# The account's login bucket holds 10 and refills one every 6 s: every 4 s stays under it.
LOGIN_EVERY_S = 4.0
SMALL_RCVBUF = 4096
N_METRICS = 10
BATCH = 50_000  # points per POST /points when filling a run


class Sizes:
    """Attack sizes: the issue's by default, smaller with --quick."""

    def __init__(self, quick: bool) -> None:
        q = quick
        self.filter_parens = 2_400
        self.filter_nots = 5_000
        self.filter_flat = 12_000
        self.filter_terms = 1_100
        self.filter_window_s = 1.5 if q else 3.0
        self.settle_s = 0.5 if q else 1.0  # after start, before RSS 'before'
        self.hold_s = 3.0 if q else 15.0
        self.slow_hold_s = 4.0 if q else 20.0
        self.after_s = 1.5 if q else 3.0
        self.idle_sockets = 500 if q else 3_000
        self.slowloris = 200 if q else 1_000
        self.slow_bodies = 40 if q else 200
        self.slow_chunked = 5 if q else 20
        self.trickle_bytes = 32 << 10  # per connection per second
        self.keepalive = 200 if q else 1_000
        self.big_points = 200_000 if q else 1_000_000
        self.unread = 20
        self.series_dups = 200
        self.series_points = 10_000
        self.publish_points = 1_000_000 if q else 6_000_000
        self.metrics_parallel = 4
        self.logins = 100 if q else 300
        self.login_clients = 20 if q else 50


# ---------------------------------------------------------------------------------------
# Measuring: server RSS and fds, and the normal client


def rss_kib(pid: int) -> int | None:
    try:
        return proc_status(pid, "VmRSS")
    except (OSError, KeyError):  # gone, or a zombie (no VmRSS line)
        return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Sampler(threading.Thread):
    """VmRSS every 25 ms (open fds every 0.5 s); kills the server past the RSS cap."""

    def __init__(self, srv: ToraServer, cap_kib: int) -> None:
        super().__init__(daemon=True)
        self.srv, self.cap_kib = srv, cap_kib
        self.peak_kib = 0
        self.peak_fds = 0
        self.capped = False
        self.halt = threading.Event()

    def run(self) -> None:
        next_fd = 0.0
        while not self.halt.is_set():
            rss = rss_kib(self.srv.pid)
            if rss is None:
                return
            self.peak_kib = max(self.peak_kib, rss)
            if rss > self.cap_kib:
                self.capped = True
                self.srv.kill()
                return
            if time.monotonic() >= next_fd:
                self.peak_fds = max(self.peak_fds, fd_count(self.srv.pid) or 0)
                next_fd = time.monotonic() + 0.5
            time.sleep(SAMPLE_S)


def one_request(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    source: str | None = NORMAL_SRC,
) -> tuple[int, bytes]:
    """A request on a fresh connection, CLIENT_TIMEOUT_S per socket operation."""
    host, port = host_port(url)
    conn = http.client.HTTPConnection(
        host,
        port,
        timeout=CLIENT_TIMEOUT_S,
        source_address=(source, 0) if source else None,
    )
    try:
        conn.request(method, path, body, headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class NormalClient(threading.Thread):
    """A well-behaved user during the attack: health, read, login and write, each in a loop."""

    KINDS = ("health", "read", "login", "write")

    def __init__(self, url: str, ctx: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.ctx = url, ctx
        self.lat: dict[str, list[float]] = {k: [] for k in self.KINDS}
        self.fails: dict[str, Counter[str]] = {k: Counter() for k in self.KINDS}
        self.halt = threading.Event()

    def _do(self, kind: str) -> None:
        key = {"x-api-key": self.ctx["normal_key"]}
        json_key = key | {"Content-Type": "application/json"}
        if kind == "health":
            args: tuple[Any, ...] = ("GET", "/api/health", None, {})
            want = 200
        elif kind == "read":
            args, want = ("GET", "/api/workspaces", None, key), 200
        elif kind == "login":
            body = {
                "email": self.ctx["normal_email"],
                "password": self.ctx["normal_pw"],
            }
            args = ("POST", "/api/login", json.dumps(body).encode(), json_key)
            want = 200
        else:
            body = {
                "batch_id": uuid.uuid4().hex,
                "metrics": [
                    {"name": "probe", "steps": [0, 1, 2, 3, 4], "values": [1.0] * 5}
                ],
            }
            path = f"/api/experiments/{self.ctx['normal_exp']}/points"
            args, want = ("POST", path, json.dumps(body).encode(), json_key), 201
        t0 = time.perf_counter()
        try:
            status, _ = one_request(self.url, *args)
            why = "" if status == want else str(status)
        except TimeoutError:
            why = "timeout"
        except OSError as err:
            why = type(err).__name__
        except http.client.HTTPException as err:
            why = type(err).__name__
        took = time.perf_counter() - t0
        if not why and took > CLIENT_TIMEOUT_S:
            why = "over 10 s"
        if why:
            self.fails[kind][why] += 1
        else:
            self.lat[kind].append(took)

    def run(self) -> None:
        # One loop per kind, so a request the server holds up does not hide the others.
        loops = [
            threading.Thread(target=self._loop, args=(k,), daemon=True)
            for k in self.KINDS
        ]
        for t in loops:
            t.start()
        for t in loops:
            t.join()

    def _loop(self, kind: str) -> None:
        pause = LOGIN_EVERY_S if kind == "login" else 0.1
        while not self.halt.is_set():
            t0 = time.monotonic()
            self._do(kind)
            self.halt.wait(max(0.1, pause - (time.monotonic() - t0)))

    def report(self) -> dict[str, Any]:
        out = {}
        for k in self.KINDS:
            ms = sorted(x * 1000 for x in self.lat[k])
            out[k] = {
                "ok": len(ms),
                "failed": sum(self.fails[k].values()),
                "failures": dict(self.fails[k]),
                "p50_ms": pct(ms, 50),
                "p99_ms": pct(ms, 99),
                "max_ms": ms[-1] if ms else None,
            }
        return out


def pct(sorted_xs: list[float], q: int) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_xs:
        return None
    return sorted_xs[min(len(sorted_xs) - 1, max(0, -(-q * len(sorted_xs) // 100) - 1))]


# ---------------------------------------------------------------------------------------
# Raw sockets: open many, hold them, notice what the server does with them


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def open_sockets(
    url: str, n: int, rcvbuf: int | None = None, wait_s: float = 10.0
) -> tuple[list[socket.socket], int]:
    """n non-blocking connects; returns the connected sockets and how many never connected."""
    addr = host_port(url)
    sel = selectors.DefaultSelector()
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setblocking(False)
        s.connect_ex(addr)
        sel.register(s, selectors.EVENT_WRITE)
    done: list[socket.socket] = []
    failed = 0
    deadline = time.monotonic() + wait_s
    while len(sel.get_map()) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            sel.unregister(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done.append(s)
            else:
                failed += 1
                s.close()
    for key in list(sel.get_map().values()):
        failed += 1
        key.fileobj.close()  # type: ignore[union-attr]
    sel.close()
    return done, failed


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def send_some(s: socket.socket, data: bytes) -> int:
    """Non-blocking send; 0 if the buffer is full; raises OSError if the server closed."""
    try:
        return s.send(data)
    except BlockingIOError:
        return 0


def hold(
    socks: list[socket.socket],
    seconds: float,
    tick: Callable[[socket.socket], None] | None = None,
) -> dict[str, Any]:
    """Keep the sockets open for `seconds`, reading whatever the server sends.

    Records the status line of the first response on each socket and when the server closed
    it (EOF or reset); `tick` runs once a second on each socket still open (to trickle bytes).
    """
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    t0 = time.monotonic()
    answered: Counter[str] = Counter()
    seen: set[socket.socket] = set()
    closed_at: list[float] = []
    open_socks = set(socks)
    next_tick = t0
    while time.monotonic() - t0 < seconds:
        if tick and time.monotonic() >= next_tick:
            for s in list(open_socks):
                try:
                    tick(s)
                except OSError:
                    sel.unregister(s)
                    open_socks.discard(s)
                    closed_at.append(time.monotonic() - t0)
            next_tick += 1.0
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                data = s.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data and s not in seen:
                seen.add(s)
                answered[data.split(b"\r\n", 1)[0].decode("latin-1")[:40]] += 1
            if not data:
                sel.unregister(s)
                open_socks.discard(s)
                closed_at.append(time.monotonic() - t0)
    sel.close()
    closed_at.sort()
    return {
        "closed_by_server": len(closed_at),
        "first_close_s": closed_at[0] if closed_at else None,
        "median_close_s": statistics.median(closed_at) if closed_at else None,
        "responses": dict(answered),
    }


def request_head(url: str, method: str, path: str, headers: dict[str, str]) -> bytes:
    host, port = host_port(url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---------------------------------------------------------------------------------------
# The attacks: each gets (url, ctx, sizes) and returns what it saw


def attack_filter(kind: str) -> Callable[[str, dict[str, Any], Sizes], dict[str, Any]]:
    def run(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
        q = {
            "parens": "(" * z.filter_parens + "a" + ")" * z.filter_parens,
            "nots": "not " * z.filter_nots + "a",
            "flat": " or ".join(["a"] * z.filter_flat),
            "terms": " or ".join(["a"] * z.filter_terms),
        }[kind]
        path = f"/api/workspaces/{ctx['ws']}/experiments?limit=50&q={urllib.parse.quote_plus(q)}"
        statuses: Counter[str] = Counter()
        took: list[float] = []
        first: dict[str, Any] = {}
        t0 = time.monotonic()
        # Sent again and again for the window, so the normal client has something to meet.
        while time.monotonic() - t0 < z.filter_window_s or not took:
            t = time.perf_counter()
            try:
                status, body = one_request(
                    url, "GET", path, headers={"x-api-key": ctx["key"]}, source=None
                )
                why = str(status)
            except (OSError, http.client.HTTPException) as err:
                why, body = type(err).__name__, b""
            took.append(time.perf_counter() - t)
            statuses[why] += 1
            if not first:
                first = {
                    "status": why,
                    "ms": took[-1] * 1000,
                    "body": body[:160].decode(errors="replace"),
                }
            if not why.isdigit():
                break  # the server is gone or hung: no point hammering it
        return {
            "uri_bytes": len(path),
            "first": first,
            "statuses": dict(statuses),
            "requests": len(took),
            "max_ms": max(took) * 1000,
            "summary": f"{first['status']} in {first['ms']:.0f} ms ({len(path):,}-byte URI);"
            f" {len(took)} sent: {fmt_counter(statuses)}",
        }

    return run


def attack_idle_sockets(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
    socks, failed = open_sockets(url, z.idle_sockets)
    try:
        seen = hold(socks, z.hold_s)
    finally:
        close_all(socks)
    return seen | {
        "connected": len(socks),
        "connect_failed": failed,
        "summary": f"{len(socks):,}/{z.idle_sockets:,} connected, held {z.hold_s:.0f} s; "
        + held_summary(seen),
    }


def attack_slowloris(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
    head = request_head(url, "GET", "/api/health", {}).removesuffix(b"\r\n")
    head += b"X-Slow: "
    pos: dict[socket.socket, int] = {}
    sent = 0

    def tick(s: socket.socket) -> None:
        nonlocal sent
        i = pos.get(s, 0)
        # The request line and Host, then one header's value forever: never a blank line.
        if send_some(s, head[i : i + 1] or b"a"):
            pos[s] = i + 1
            sent += 1

    socks, failed = open_sockets(url, z.slowloris)
    try:
        seen = hold(socks, z.slow_hold_s, tick)
    finally:
        close_all(socks)
    return seen | {
        "connected": len(socks),
        "connect_failed": failed,
        "bytes_sent": sent,
        "summary": f"{len(socks):,} connected, 1 header byte/s each for {z.slow_hold_s:.0f} s; "
        + held_summary(seen),
    }


def attack_slow_bodies(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
    path = f"/api/experiments/{ctx['stream_exp']}/points"
    base = {"x-api-key": ctx["key"], "Content-Type": "application/json"}
    sized = request_head(url, "POST", path, base | {"Content-Length": str(30 << 20)})
    chunked = request_head(url, "POST", path, base | {"Transfer-Encoding": "chunked"})
    prefix = b'{"metrics":[{"name":"m","steps":['
    filler = b"0," * (z.trickle_bytes // 2)
    is_chunked: dict[socket.socket, bool] = {}
    pending: dict[
        socket.socket, bytes
    ] = {}  # bytes due but not yet taken by the kernel
    sent = 0

    def tick(s: socket.socket) -> None:
        nonlocal sent
        first = s not in pending
        data = prefix if first else filler
        if is_chunked[s]:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if first:
            data = (chunked if is_chunked[s] else sized) + data
        data = pending.get(s, b"") + data
        n = send_some(s, data)
        sent += n
        pending[s] = data[n:]

    socks, failed = open_sockets(url, z.slow_bodies + z.slow_chunked)
    for i, s in enumerate(socks):
        is_chunked[s] = i >= z.slow_bodies
    try:
        seen = hold(socks, z.slow_hold_s, tick)
    finally:
        close_all(socks)
    return seen | {
        "connected": len(socks),
        "connect_failed": failed,
        "bytes_sent": sent,
        "summary": f"{z.slow_bodies} x Content-Length 30 MiB + {z.slow_chunked} chunked,"
        f" {z.trickle_bytes >> 10} KiB/s each for {z.slow_hold_s:.0f} s"
        f" ({sent / 2**20:.0f} MiB sent); " + held_summary(seen),
    }


def attack_idle_keepalive(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
    socks, failed = open_sockets(url, z.keepalive)
    req = request_head(url, "GET", "/api/health", {})
    for s in socks:
        s.setblocking(True)
        s.settimeout(10)
        try:
            s.sendall(req)
        except OSError:
            pass
    try:
        seen = hold(socks, z.hold_s)
    finally:
        close_all(socks)
    return seen | {
        "connected": len(socks),
        "connect_failed": failed,
        "summary": f"{len(socks):,} made one request, then idle {z.hold_s:.0f} s; "
        + held_summary(seen),
    }


def attack_unread(what: str) -> Callable[[str, dict[str, Any], Sizes], dict[str, Any]]:
    def run(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
        path = f"/api/experiments/{ctx['big']}/{what}"
        req = request_head(url, "GET", path, {"x-api-key": ctx["key"]})
        socks, failed = open_sockets(url, z.unread, rcvbuf=SMALL_RCVBUF)
        for s in socks:
            s.setblocking(True)
            s.settimeout(10)
            s.sendall(req)
        time.sleep(z.hold_s)
        close_all(socks)
        return {
            "connected": len(socks),
            "connect_failed": failed,
            "summary": f"{len(socks)} x GET {what} of a {ctx['big_points']:,}-point run,"
            f" never read (SO_RCVBUF {SMALL_RCVBUF}), held {z.hold_s:.0f} s",
        }

    return run


def read_counting(
    url: str, path: str, key: str, timeout: float = 120.0
) -> dict[str, Any]:
    """GET path and count the body's bytes as they come, keeping none of them."""
    host, port = host_port(url)
    t0 = time.perf_counter()
    size = 0
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"x-api-key": key})
        resp = conn.getresponse()
        status = str(resp.status)
        while chunk := resp.read(1 << 20):
            size += len(chunk)
    except (OSError, http.client.HTTPException) as err:
        status = f"{type(err).__name__} after {size:,} bytes"
    finally:
        conn.close()
    return {"status": status, "bytes": size, "s": time.perf_counter() - t0}


def attack_series_duplicates(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
    ids = ",".join([ctx["big"]] * z.series_dups)
    path = f"/api/series?experiments={ids}&points={z.series_points}"
    r = read_counting(url, path, ctx["key"])
    return r | {
        "summary": f"{z.series_dups} x the same run, points={z.series_points}:"
        f" {r['status']}, {r['bytes'] / 2**20:,.1f} MiB in {r['s']:.1f} s"
    }


def attack_metrics(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
    path = f"/api/experiments/{ctx['big']}/metrics"
    out: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            target=lambda: out.append(read_counting(url, path, ctx["key"]))
        )
        for _ in range(z.metrics_parallel)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = Counter(r["status"] for r in out)
    return {
        "requests": out,
        "summary": f"{z.metrics_parallel} x GET metrics of {ctx['big_points']:,} points:"
        f" {fmt_counter(statuses)}; {max(r['bytes'] for r in out) / 2**20:,.0f} MiB each,"
        f" slowest {max(r['s'] for r in out):.1f} s",
    }


def attack_unread_stream(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
    exp = ctx["stream_exp"]
    req = request_head(
        url,
        "GET",
        f"/api/experiments/{exp}/stream",
        {"x-api-key": ctx["key"], "Accept": "text/event-stream"},
    )
    socks, _ = open_sockets(url, 1, rcvbuf=SMALL_RCVBUF)
    for s in socks:
        s.setblocking(True)
        s.sendall(req)
    host, port = host_port(url)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"x-api-key": ctx["key"], "Content-Type": "application/json"}
    per = BATCH // N_METRICS
    lat: list[float] = []
    statuses: Counter[str] = Counter()
    sent = 0
    t0 = time.perf_counter()
    try:
        for b in range(z.publish_points // BATCH):
            steps = list(range(b * per, (b + 1) * per))
            vals = pack_f64([b + i / per for i in range(per)])
            body = json.dumps(
                {
                    "batch_id": f"pub-{b}",
                    "metrics": [
                        {"name": f"m{k}", "steps": steps, "values_f64": vals}
                        for k in range(N_METRICS)
                    ],
                }
            ).encode()
            t = time.perf_counter()
            try:
                conn.request("POST", f"/api/experiments/{exp}/points", body, headers)
                resp = conn.getresponse()
                resp.read()
                statuses[str(resp.status)] += 1
            except (OSError, http.client.HTTPException) as err:
                statuses[type(err).__name__] += 1
                break
            lat.append(time.perf_counter() - t)
            sent += BATCH
    finally:
        conn.close()
        wall = time.perf_counter() - t0
        close_all(socks)
    ms = sorted(x * 1000 for x in lat)
    return {
        "published_points": sent,
        "statuses": dict(statuses),
        "wall_s": wall,
        "post_p50_ms": pct(ms, 50),
        "post_max_ms": ms[-1] if ms else None,
        "summary": f"1 stream never read while {sent:,} points were published in"
        f" {BATCH:,}-point POSTs ({fmt_counter(statuses)}; {wall:.1f} s,"
        f" POST p50 {fmt_ms(pct(ms, 50))} max {fmt_ms(ms[-1] if ms else None)})",
    }


def attack_replay(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
    req = request_head(
        url,
        "GET",
        f"/api/experiments/{ctx['big']}/stream?cursor=0",
        {"x-api-key": ctx["key"], "Accept": "text/event-stream"},
    )
    socks, _ = open_sockets(url, 1, rcvbuf=SMALL_RCVBUF)
    got = 0
    status = "no answer"
    try:
        s = socks[0]
        s.setblocking(True)
        s.settimeout(1.0)
        s.sendall(req)
        t0 = time.monotonic()
        while time.monotonic() - t0 < z.hold_s:
            try:
                data = s.recv(4096)  # 4 KiB every 50 ms: a slow reader, ~80 KiB/s
            except TimeoutError:
                continue
            if not data:
                status += " (closed by server)"
                break
            if not got:
                status = data.split(b"\r\n", 1)[0].decode("latin-1")
            got += len(data)
            time.sleep(0.05)
    finally:
        close_all(socks)
    return {
        "status": status,
        "bytes_read": got,
        "summary": f"GET stream?cursor=0 on the {ctx['big_points']:,}-point run, read at"
        f" ~80 KiB/s for {z.hold_s:.0f} s: {status}, {got / 2**20:.1f} MiB read",
    }


def attack_failed_logins(url: str, ctx: dict[str, Any], z: Sizes) -> dict[str, Any]:
    """Wrong passwords for an existing account; every other client hangs up at once."""
    body = json.dumps(
        {"email": ctx["email"], "password": "wrong-password-123"}
    ).encode()
    req = request_head(
        url,
        "POST",
        "/api/login",
        {"Content-Type": "application/json", "Content-Length": str(len(body))},
    )
    addr = host_port(url)
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    todo = iter(range(z.logins))

    def client() -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                with socket.create_connection(addr, timeout=30) as s:
                    s.sendall(req + body)
                    if i % 2 == 0:
                        why = "hung up after sending"
                    else:
                        why = s.recv(64).split(b"\r\n", 1)[0].decode("latin-1")[9:12]
                        why = why or "closed"
            except (OSError, IndexError) as err:
                why = type(err).__name__
            with lock:
                statuses[why] += 1

    threads = [threading.Thread(target=client) for _ in range(z.login_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The hashes of clients that hung up may still be running: the attack lasts until they end.
    busy = busy_for(ctx["pid"])
    return {
        "statuses": dict(statuses),
        "server_busy_after_s": busy,
        "summary": f"{z.logins} wrong-password logins from {z.login_clients} clients:"
        f" {fmt_counter(statuses)}; server busy {busy:.1f} s after the last was sent",
    }


def busy_for(pid: int, limit_s: float = 30.0) -> float:
    """Seconds until the server uses under 10% of a core over half a second."""
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < limit_s:
            cpu0 = cpu_seconds(pid)
            time.sleep(0.5)
            if cpu_seconds(pid) - cpu0 < 0.05:
                break
    except OSError:
        pass
    return time.monotonic() - t0


ATTACKS: list[
    tuple[str, str, Callable[[str, dict[str, Any], Sizes], dict[str, Any]]]
] = [
    ("filter-nested", "((( a ))) x 2,400", attack_filter("parens")),
    ("filter-nested", "not x 5,000", attack_filter("nots")),
    ("filter-nested", "a or a x 12,000", attack_filter("flat")),
    ("filter-nested", "a or a x 1,100", attack_filter("terms")),
    ("idle-sockets", "", attack_idle_sockets),
    ("slowloris", "", attack_slowloris),
    ("slow-bodies", "", attack_slow_bodies),
    ("idle-keepalive", "", attack_idle_keepalive),
    ("unread-csv", "logs/csv", attack_unread("logs/csv")),
    ("unread-csv", "logs", attack_unread("logs")),
    ("series-duplicates", "", attack_series_duplicates),
    ("unread-stream", "publish", attack_unread_stream),
    ("unread-stream", "replay cursor=0", attack_replay),
    ("metrics-1m", "", attack_metrics),
    ("failed-logins", "", attack_failed_logins),
]


# ---------------------------------------------------------------------------------------
# The template database and the runner


def build_template(z: Sizes) -> tuple[Path, dict[str, Any]]:
    """Accounts, a workspace of 20 runs, the big run; the stopped server's tora.db."""
    with ToraServer(keep=True) as srv:
        owner = new_user(srv.api)
        normal = new_user(srv.api)
        key = owner.api_key
        ws = call_ok(
            "POST",
            f"{srv.api}/workspaces",
            {"name": "attacked"},
            expect=201,
            api_key=key,
        )["id"]
        for i in range(20):
            hp = [
                {"key": "lr", "value": 10 ** -(1 + i % 4)},
                {"key": "opt", "value": "adam"},
            ]
            call_ok(
                "POST",
                f"{srv.api}/experiments",
                {
                    "name": f"run-{i}",
                    "workspaceId": ws,
                    "hyperparams": hp,
                    "tags": ["sweep"],
                },
                expect=201,
                api_key=key,
            )

        def exp(name: str, api_key: str) -> str:
            return call_ok(
                "POST",
                f"{srv.api}/experiments",
                {"name": name},
                expect=201,
                api_key=api_key,
            )["id"]

        big, stream_exp = exp("big", key), exp("stream-target", key)
        normal_exp = exp("normal-writes", normal.api_key)
        host, port = host_port(srv.url)
        conn = http.client.HTTPConnection(host, port, timeout=300)
        headers = {"x-api-key": key, "Content-Type": "application/json"}
        per = BATCH // N_METRICS
        for b in range(z.big_points // BATCH):
            steps = list(range(b * per, (b + 1) * per))
            body = {
                "batch_id": f"big-{b}",
                "metrics": [
                    {
                        "name": f"m{k}",
                        "steps": steps,
                        "values_f64": pack_f64([k + s / 1e6 for s in steps]),
                    }
                    for k in range(N_METRICS)
                ],
            }
            conn.request(
                "POST",
                f"/api/experiments/{big}/points",
                json.dumps(body).encode(),
                headers,
            )
            resp = conn.getresponse()
            raw = resp.read()
            if resp.status != 201:
                raise RuntimeError(f"filling the big run: {resp.status} {raw[:200]!r}")
        conn.close()
    ctx = {
        "key": key,
        "email": owner.email,
        "ws": ws,
        "big": big,
        "big_points": z.big_points // BATCH * BATCH,
        "stream_exp": stream_exp,
        "normal_key": normal.api_key,
        "normal_email": normal.email,
        "normal_pw": normal.password,
        "normal_exp": normal_exp,
    }
    return srv.dir, ctx


def health_ok(url: str) -> bool:
    try:
        return one_request(url, "GET", "/api/health")[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def stop_server(srv: ToraServer) -> str:
    """SIGTERM, 5 s grace, then SIGKILL; says which it took."""
    if srv.proc is None or srv.proc.poll() is not None:
        return "already gone"
    srv.proc.send_signal(signal.SIGTERM)
    try:
        srv.proc.wait(timeout=5)
        return f"stopped on SIGTERM (exit {srv.proc.returncode})"
    except Exception:  # noqa: BLE001 -- subprocess.TimeoutExpired; kill below
        srv.kill()
        return "ignored SIGTERM for 5 s, killed"


def exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited {code}"


def run_one(
    name: str,
    variant: str,
    fn: Callable[[str, dict[str, Any], Sizes], dict[str, Any]],
    template: Path,
    ctx: dict[str, Any],
    z: Sizes,
    cap_kib: int,
) -> dict[str, Any]:
    srv = ToraServer()
    shutil.copy(template / "tora.db", srv.db)
    row: dict[str, Any] = {"attack": name, "variant": variant}
    try:
        srv.start()
        row["server_nofile_limit"] = nofile_of(srv.pid)
        time.sleep(z.settle_s)
        row["rss_before_mib"] = (rss_kib(srv.pid) or 0) / 1024
        row["fds_before"] = fd_count(srv.pid)
        sampler = Sampler(srv, cap_kib)
        client = NormalClient(srv.url, ctx)
        sampler.start()
        client.start()
        t0, cpu0 = time.monotonic(), cpu_seconds(srv.pid)
        try:
            row["details"] = fn(srv.url, ctx | {"pid": srv.pid}, z)
        except Exception as err:  # noqa: BLE001 -- an attack that breaks is reported, not fatal
            row["details"] = {"summary": f"attack script error: {err!r}"}
        row["attack_s"] = time.monotonic() - t0
        try:
            row["server_cpu_s"] = cpu_seconds(srv.pid) - cpu0
        except OSError:
            row["server_cpu_s"] = None
        client.halt.set()
        client.join(timeout=30)
        row["client"] = client.report()
        time.sleep(z.after_s)
        alive = srv.proc is not None and srv.proc.poll() is None
        row["rss_after_mib"] = (rss_kib(srv.pid) or 0) / 1024 if alive else None
        row["fds_after"] = fd_count(srv.pid) if alive else None
        sampler.halt.set()
        sampler.join(timeout=5)
        row["rss_peak_mib"] = sampler.peak_kib / 1024
        row["fds_peak"] = sampler.peak_fds
        answering = alive and health_ok(srv.url)
        if sampler.capped:
            row["server"] = (
                f"killed by this script at the RSS cap ({cap_kib >> 10} MiB)"
            )
        elif not alive:
            assert srv.proc is not None
            row["server"] = f"crashed ({exit_text(srv.proc.returncode)})"
        elif not answering:
            row["server"] = "no answer"
        else:
            row["server"] = "up"
        row["stayed_up"] = row["server"] == "up"
        row["stop"] = stop_server(srv)
    except Exception as err:  # noqa: BLE001 -- e.g. the server did not start
        row.setdefault("server", f"script error: {err!r}")
        row["stayed_up"] = False
    finally:
        srv.kill()
        log = srv.logs()
        row["server_log"] = [
            ln
            for ln in log.splitlines()
            if any(
                w in ln.lower()
                for w in ("panic", "overflow", "error", "memory", "abort")
            )
        ][:8]
        shutil.rmtree(srv.dir, ignore_errors=True)
    return row


def nofile_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return " / ".join(line.split()[3:5])
    return "?"


# ---------------------------------------------------------------------------------------
# Output


def fmt_counter(c: Counter[str] | dict[str, int]) -> str:
    return (
        ", ".join(f"{k} x{v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))
        or "-"
    )


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return (
        f"{x / 1000:.1f} s"
        if x >= 1000
        else f"{x:.0f} ms"
        if x >= 10
        else f"{x:.1f} ms"
    )


def held_summary(seen: dict[str, Any]) -> str:
    closed = seen["closed_by_server"]
    text = f"server closed {closed}"
    if closed:
        text += f" (first at {seen['first_close_s']:.1f} s, median {seen['median_close_s']:.1f} s)"
    if seen["responses"]:
        text += f"; answers: {fmt_counter(seen['responses'])}"
    return text


def client_cell(c: dict[str, Any]) -> str:
    cell = f"{fmt_ms(c['p50_ms'])} / {fmt_ms(c['p99_ms'])} / {fmt_ms(c['max_ms'])}"
    if c["failed"]:
        cell += f" **{c['failed']} failed** ({fmt_counter(c['failures'])})"
    return cell


def mib(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        (
            "| attack | server | RSS MiB before / peak / after | fds before / peak / after"
            " | health p50 / p99 / max | read | login | write (5 points) | what the attack saw |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = r["attack"] + (f" ({r['variant']})" if r["variant"] else "")
        c = r.get("client")
        clients = [client_cell(c[k]) for k in NormalClient.KINDS] if c else ["-"] * 4
        rss = f"{mib(r.get('rss_before_mib'))} / {mib(r.get('rss_peak_mib'))} / {mib(r.get('rss_after_mib'))}"
        fds = f"{r.get('fds_before', '-')} / {r.get('fds_peak', '-')} / {r.get('fds_after') or '-'}"
        server = r["server"] if r["stayed_up"] else f"**{r['server']}**"
        what = r.get("details", {}).get("summary", "")
        if r.get("server_log"):
            what += f"; server log: `{r['server_log'][0][:120]}`"
        out.append(
            f"| {name} | {server} | {rss} | {fds} | "
            + " | ".join(clients)
            + f" | {what} |"
        )
    return "\n".join(out)


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several runs of an attack: the median of every number (max: the worst),
    up only if every run stayed up, and the worst run's server state and failures."""
    if len(runs) == 1:
        return runs[0]

    def merge(values: list[Any], key: str = "") -> Any:
        present = [v for v in values if v is not None]
        if not present:
            return None
        first = present[0]
        if isinstance(first, bool):
            return all(present)
        if isinstance(first, (int, float)):
            if key in ("max_ms", "failed") or key.startswith("fds_peak"):
                return max(present)
            return statistics.median(present)
        if isinstance(first, dict):
            keys = {k for v in present if isinstance(v, dict) for k in v}
            return {k: merge([v.get(k) for v in present], k) for k in keys}
        return first

    worst = next((r for r in runs if not r.get("stayed_up")), runs[0])
    row = merge(runs)
    row["server"] = worst["server"]
    row["stayed_up"] = all(r.get("stayed_up") for r in runs)
    row["details"] = worst.get("details", {})
    for kind, c in (row.get("client") or {}).items():
        if isinstance(c, dict) and "failures" in c:
            c["failed"] = sum(
                ((r.get("client") or {}).get(kind) or {}).get("failed", 0) for r in runs
            )
            c["failures"] = {}
            for r in runs:
                got = ((r.get("client") or {}).get(kind) or {}).get("failures") or {}
                for why, n in got.items():
                    c["failures"][why] = c["failures"].get(why, 0) + n
    row["runs"] = runs
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, < 2 min")
    ap.add_argument("--only", default="", help="NAME[,NAME]: run only these attacks")
    ap.add_argument(
        "--runs",
        type=int,
        default=1,
        help="run each attack N times (a fresh server each) and report medians",
    )
    ap.add_argument(
        "--rss-cap-mib",
        type=int,
        default=6144,
        help="kill a server whose RSS passes this (the machine is shared)",
    )
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "attacks.json"
    )
    args = ap.parse_args()
    names = {a[0] for a in ATTACKS}
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    if only - names:
        ap.error(
            f"unknown attack(s) {sorted(only - names)}; known: {', '.join(sorted(names))}"
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    os.environ.setdefault("TORA_BIN", str(REPO / "target" / "release" / "tora"))
    z = Sizes(args.quick)
    env = environment()
    print(f"binary: {env['binary']} ({env['tora_version']})", file=sys.stderr)
    t0 = time.monotonic()
    print(f"template: {z.big_points:,}-point run ...", file=sys.stderr)
    template, ctx = build_template(z)
    rows = []
    try:
        for name, variant, fn in ATTACKS:
            if only and name not in only:
                continue
            runs = []
            for n in range(args.runs):
                print(
                    f"{name} {variant} (run {n + 1}) ...", file=sys.stderr, flush=True
                )
                row = run_one(
                    name, variant, fn, template, ctx, z, args.rss_cap_mib << 10
                )
                print(
                    f"  {row['server']}; {row.get('details', {}).get('summary', '')}",
                    file=sys.stderr,
                )
                runs.append(row)
            rows.append(merge_runs(runs))
    finally:
        shutil.rmtree(template, ignore_errors=True)
    res = {
        "env": env | {"loadavg_at_end": os.getloadavg(), "nofile_limit": [soft, hard]},
        "args": {
            "quick": args.quick,
            "runs": args.runs,
            "only": sorted(only),
            "rss_cap_mib": args.rss_cap_mib,
        },
        "sizes": vars(z),
        "wall_s": time.monotonic() - t0,
        "attacks": rows,
    }
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out} ({res['wall_s']:.0f} s)", file=sys.stderr)
    if not all(r["stayed_up"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
