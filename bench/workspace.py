#!/usr/bin/env python3
"""Big workspaces (issue 15, item 7): the run table's queries over 100,000 runs in one workspace.

    cargo build --release --bin tora --example scale_fixture
    TORA_BIN=target/release/tora python3 bench/workspace.py                 # 100k runs
    TORA_BIN=target/release/tora python3 bench/workspace.py --runs 10000    # quick check
    python3 bench/workspace.py --save /tmp/ws100k.db    # keep the filled file (before/after)
    TORA_BIN=... python3 bench/workspace.py --db /tmp/ws100k.db   # serve a copy of a kept file

Stdlib only. The account, the workspace and one run go through the real server over HTTP; the
other runs are written by `examples/scale_fixture.rs` (the store functions the handlers call)
into the stopped server's file, because 100,000 `POST /api/experiments` take many minutes; then
the same file is served again and every figure is an HTTP request to it (`limit=100`, as the
dashboard's table asks, and `summary=1` where marked). Each query: one warm-up, then median,
best and worst of --repeat (default 5) on one keep-alive connection. Every answer is checked
(page size, sort order, filter) before its time counts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from toraserver import REPO, ToraServer, call_ok, new_user, tora_bin

# TORA_FIXTURE: the generator built from another checkout (an older schema, for "before").
FIXTURE = Path(
    os.environ.get("TORA_FIXTURE")
    or REPO / "target" / "release" / "examples" / "scale_fixture"
)


class Client:
    def __init__(self, url: str, api_key: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=300)
        self.headers = {"x-api-key": api_key, "Accept": "application/json"}

    def get(self, path: str, query: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        qs = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        t = time.perf_counter()
        self.conn.request("GET", f"/api{path}?{qs}", headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        took = time.perf_counter() - t
        if resp.status != 200:
            raise RuntimeError(f"GET {path}?{qs} -> {resp.status}: {raw[:300]!r}")
        return took, json.loads(raw)


def fill(runs: int, extra: list[str]) -> tuple[ToraServer, Any, str]:
    """A server whose one workspace holds `runs` runs from the fixture plus one made over HTTP."""
    server = ToraServer(binary=tora_bin(), keep=True).start()
    user = new_user(server.api)
    me = call_ok("GET", f"{server.api}/me", api_key=user.api_key)
    ws = call_ok("GET", f"{server.api}/workspaces", api_key=user.api_key)[0]["id"]
    call_ok(
        "POST",
        f"{server.api}/experiments",
        {"name": "over-http", "workspaceId": ws},
        expect=201,
        api_key=user.api_key,
    )
    server.stop()
    if not FIXTURE.is_file():
        raise SystemExit(
            f"{FIXTURE} missing: cargo build --release --example scale_fixture"
        )
    t = time.perf_counter()
    subprocess.run(
        [str(FIXTURE), str(server.db), ws, me["id"], "--runs", str(runs), *extra],
        check=True,
    )
    print(f"fixture: {runs} runs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    server.start()
    return server, user, ws


def sort_value(row: dict[str, Any], key: str) -> Any:
    if key.startswith("hp."):
        return next(
            (p["value"] for p in row["hyperparams"] if p["key"] == key[3:]), None
        )
    if key.startswith("result."):
        return (row.get("summary") or {}).get("results", {}).get(key[7:])
    if key.startswith("metric."):
        m = (row.get("summary") or {}).get("metrics", {}).get(key[7:])
        return m and m["last"]
    return {"created": row["created_at"], "name": row["name"].lower()}[key]


CASES: list[tuple[str, dict[str, Any], str | None]] = [
    # (label, query, the sort key whose order the answer is checked for)
    ("first page (-created)", {}, None),
    ("first page, summary=1", {"summary": 1}, None),
    ("page 2 (cursor)", {"_page2": 1}, None),
    ("sort name", {"sort": "name"}, "name"),
    ("sort -name", {"sort": "-name"}, None),
    ("sort hp.lr", {"sort": "hp.lr", "summary": 1}, "hp.lr"),
    ("sort -hp.seed", {"sort": "-hp.seed"}, None),
    ("sort result.acc", {"sort": "result.acc", "summary": 1}, "result.acc"),
    ("sort -result.acc", {"sort": "-result.acc", "summary": 1}, None),
    ("sort metric.loss", {"sort": "metric.loss", "summary": 1}, "metric.loss"),
    ("filter lr < 0.001", {"q": "lr < 0.001"}, None),
    ("filter tag:baseline", {"q": "tag:baseline"}, None),
    ("filter group:g07", {"q": "group:g07"}, None),
    ("filter state:finished", {"q": "state:finished"}, None),
    ("filter name ~ run-9999", {"q": 'name ~ "run-9999"'}, None),
    (
        "filter acc >= 0.9, sort -result.acc",
        {"q": "acc >= 0.9", "sort": "-result.acc", "summary": 1},
        None,
    ),
    (
        "filter optimizer = adam and lr < 0.001, sort hp.lr",
        {"q": "optimizer = adam and lr < 0.001", "sort": "hp.lr", "summary": 1},
        "hp.lr",
    ),
    (
        "filter tag:baseline, sort -metric.loss",
        {"q": "tag:baseline", "sort": "-metric.loss", "summary": 1},
        None,
    ),
    (
        "filter group:g07, sort -metric.loss",
        {"q": "group:g07", "sort": "-metric.loss"},
        None,
    ),
    (
        "filter name ~ zzz (no match), sort hp.lr",
        {"q": 'name ~ "zzz"', "sort": "hp.lr"},
        None,
    ),
    (
        "filter state:running, sort result.acc",
        {"q": "state:running", "sort": "result.acc"},
        None,
    ),
]


def measure(client: Client, ws: str, repeat: int, runs: int) -> list[dict[str, Any]]:
    out = []
    path = f"/workspaces/{ws}/experiments"
    for label, query, check in CASES:
        q = {"limit": 100, **{k: v for k, v in query.items() if not k.startswith("_")}}
        if "_page2" in query:
            _, first = client.get(path, q)
            q["cursor"] = first["next_cursor"]
        times = []
        for i in range(repeat + 1):
            took, body = client.get(path, q)
            if i:
                times.append(took)
        rows = body["data"]
        assert rows or body["total"] == 0, f"{label}: no rows"
        if not q.get("q"):
            assert body["total"] == runs + 1, f"{label}: total {body['total']}"
            assert len(rows) == 100, f"{label}: {len(rows)} rows"
        if check:
            vals = [sort_value(r, check) for r in rows]
            present = [v for v in vals if v is not None]
            assert present == sorted(present), f"{label}: not sorted by {check}"
        out.append(
            {
                "label": label,
                "total": body["total"],
                "median_ms": 1000 * statistics.median(times),
                "best_ms": 1000 * min(times),
                "worst_ms": 1000 * max(times),
                "bytes": len(json.dumps(body)),
            }
        )
        print(
            f"{label:55} total {body['total']:>7}  median {out[-1]['median_ms']:7.1f} ms  "
            f"best {out[-1]['best_ms']:7.1f}  worst {out[-1]['worst_ms']:7.1f}",
            file=sys.stderr,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--save", help="copy the filled database file here (for a later --db)"
    )
    ap.add_argument(
        "--db", help="serve a copy of this kept file instead of filling a new one"
    )
    ap.add_argument(
        "--user-key",
        help="with --db: an API key of the workspace's owner (saved beside it)",
    )
    args = ap.parse_args()

    if args.db:
        meta = json.loads(Path(args.db + ".json").read_text())
        server = ToraServer(binary=tora_bin(), keep=False)
        shutil.copy(args.db, server.db)
        server.start()
        key, ws, runs = meta["api_key"], meta["workspace"], meta["runs"]
    else:
        server, user, ws = fill(args.runs, [])
        key, runs = user.api_key, args.runs
        if args.save:
            server.stop()
            shutil.copy(server.db, args.save)
            Path(args.save + ".json").write_text(
                json.dumps({"api_key": key, "workspace": ws, "runs": runs})
            )
            server.start()
    try:
        client = Client(server.url, key)
        results = measure(client, ws, args.repeat, runs)
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
    print(
        f"\n{runs + 1} runs in one workspace, binary {tora_bin()}, load {os.getloadavg()[0]:.2f}"
    )
    print("| query (limit=100) | matches | median ms | best | worst |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['label']} | {r['total']} | {r['median_ms']:.1f} | {r['best_ms']:.1f} | {r['worst_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
