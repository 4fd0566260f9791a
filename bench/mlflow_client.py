#!/usr/bin/env python3
"""The official MLflow client against `mlflow server` and against `tora serve`, side by side.

    bash bench/run_all.sh     # makes the peers' venv if needed, runs every bench
    TORA_BIN=target/release/tora /tmp/tora-peers-venv/bin/python bench/mlflow_client.py  # ~10 min

Run it with the peers' venv (`mlflow==3.17.2 psutil`, made by run_all.sh). One process drives
both servers through `MlflowClient` and nothing else, so every figure includes the client's own
cost, as a training script would see it. Each server listens on 127.0.0.1 on a free port, on a
fresh data directory, and is stopped by PID at the end of its section:

* MLflow: `mlflow server` as peers.py starts it (SQLite backend store, 1 worker), with its
  artifact proxy (`--serve-artifacts --artifacts-destination DIR`, so the client uploads over
  HTTP to the server and the server writes a local directory).
* Tora: `tora serve` on a fresh database, with an account and an API key made beforehand with
  `tora user add` and `tora api-key create --user` on the same `--db`; the client gets
  `MLFLOW_TRACKING_TOKEN=<key>`. Default flags: artifacts are kept inside the SQLite file.

The measured sections, each repeated `--runs` times on the same server (median and worst):

1. log_batch: `--points` points of one metric (steps 0..N-1, values from `random.Random(run)`)
   in `MlflowClient.log_batch` calls of 1,000 `Metric`s, built before the clock; points/s.
2. get_metric_history of that metric (the same N points): seconds, including the client's
   paging as it does by default (the number of HTTP requests is counted); every value checked.
3. search_runs over `--search-runs` runs of one experiment (each has params `opt` (adam/sgd)
   and `lr`, and a metric `loss`; made once per server through the MLflow API from 8 client
   threads, creation time reported apart): `filter_string="params.opt = 'adam' and
   metrics.loss < 0.5"`, `order_by=["metrics.loss ASC"]`, `max_results=100`; p50 / p99 of
   `--search-calls` calls; the 100 run names are checked against the expected order.
4. artifacts: `log_artifact` and `download_artifacts` of one `--artifact-mib` file of random
   bytes (in a temp dir, removed at the end), MB/s (10^6 bytes) each way, the download's
   SHA-256 checked; the server's peak RSS while it streams (VmRSS of its whole process tree,
   sampled every 50 ms from /proc), beside its RSS before the upload.

Any call that fails is recorded with its error (a finding) and the other sections go on.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peers import (
    HOST,
    free_port,
    installed_version,
    med,
    mlflow_server,
    stop_tree,
    tree,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "helpers"))
from toraserver import ToraServer, tora_bin

if TYPE_CHECKING:  # typing.Self is 3.11+
    from typing import Self

BATCH = 1000
EMAIL = "bench@example.com"
SEARCH_FILTER = "params.opt = 'adam' and metrics.loss < 0.5"
SEARCH_ORDER = ["metrics.loss ASC"]
SEARCH_MAX = 100
HISTORY_ENDPOINT = "metrics/get-history"


# ---------------------------------------------------------------- measuring


def rss_each(pid: int, field: str = "VmRSS") -> list[float]:
    """A /proc/PID/status field (MiB) of a process and of each of its descendants: VmRSS, or
    RssAnon (without the pages of files mapped, such as SQLite's)."""
    out = []
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    out.append(int(line.split()[1]) / 1024)
                    break
    return out


def rss_mib(pid: int) -> float:
    """VmRSS summed over a process and its descendants, MiB."""
    return sum(rss_each(pid))


class PeakRss:
    """Samples the process tree's VmRSS every 50 ms in a thread while the block runs: the peak
    of the sum, and the peak of the largest single process (MLflow's worker that streams)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self.peak_single = 0.0
        self.peak_anon = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        each = rss_each(self.pid)
        if each:
            self.peak = max(self.peak, sum(each))
            self.peak_single = max(self.peak_single, max(each))
            self.peak_anon = max(self.peak_anon, sum(rss_each(self.pid, "RssAnon")))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.05)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class RequestCounter:
    """Counts the REST calls the MLflow client makes to endpoints containing `needle`."""

    def __init__(self, needle: str) -> None:
        self.needle = needle
        self.count = 0

    @contextlib.contextmanager
    def active(self):  # type: ignore[no-untyped-def]
        from mlflow.utils import rest_utils

        real = rest_utils.http_request

        def counted(host_creds: Any, endpoint: str, *a: Any, **kw: Any) -> Any:
            if self.needle in endpoint:
                self.count += 1
            return real(host_creds, endpoint, *a, **kw)

        rest_utils.http_request = counted
        try:
            yield self
        finally:
            rest_utils.http_request = real


def loadavg() -> float:
    return os.getloadavg()[0]


def attempt(res: dict[str, Any], key: str, fn: Any, *a: Any) -> Any:
    """Run one section; an exception is kept in res["errors"] (a finding) and returns None."""
    try:
        return fn(*a)
    except Exception as err:  # noqa: BLE001 (any client failure is a result here)
        msg = f"{type(err).__name__}: {str(err)[:400]}"
        res.setdefault("errors", []).append({"section": key, "error": msg})
        print(f"  {key}: FAILED {msg}", file=sys.stderr, flush=True)
        return None


# ---------------------------------------------------------------- the workload


def search_population(n: int) -> list[tuple[str, str, str, float]]:
    """(run name, opt, lr, loss) of the search_runs experiment's runs."""
    rng = random.Random(13)
    return [
        (
            f"r{i:05d}",
            "adam" if i % 2 == 0 else "sgd",
            f"{10 ** -(1 + i % 4)}",
            rng.random(),
        )
        for i in range(n)
    ]


def expected_search(pop: list[tuple[str, str, str, float]]) -> list[str]:
    hits = [(loss, name) for name, opt, _, loss in pop if opt == "adam" and loss < 0.5]
    return [name for _, name in sorted(hits)[:SEARCH_MAX]]


def make_search_runs(
    client: Any, exp_id: str, pop: list[tuple[str, str, str, float]]
) -> float:
    from mlflow.entities import Metric, Param

    def one(row: tuple[str, str, str, float]) -> None:
        name, opt, lr, loss = row
        run_id = client.create_run(exp_id, run_name=name).info.run_id
        ts = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric("loss", loss, ts, 0)],
            params=[Param("opt", opt), Param("lr", lr)],
        )

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for f in [pool.submit(one, row) for row in pop]:
            f.result()
    return time.perf_counter() - t0


def ingest(
    client: Any, exp_id: str, rep: int, n: int
) -> tuple[dict[str, Any], str, list[float]]:
    from mlflow.entities import Metric

    run_id = client.create_run(exp_id, run_name=f"ingest-{rep}").info.run_id
    rng = random.Random(rep)
    vals = [rng.random() for _ in range(n)]
    ts = int(time.time() * 1000)
    metrics = [Metric("loss", v, ts, s) for s, v in enumerate(vals)]
    t0 = time.perf_counter()
    for i in range(0, n, BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "pts_per_s": n / wall, "calls": n // BATCH}, run_id, vals


def history(client: Any, run_id: str, vals: list[float]) -> dict[str, Any]:
    counter = RequestCounter(HISTORY_ENDPOINT)
    with counter.active():
        t0 = time.perf_counter()
        hist = client.get_metric_history(run_id, "loss")
        dt = time.perf_counter() - t0
    got = sorted((m.step, m.value) for m in hist)
    if got != list(enumerate(vals)):
        raise RuntimeError(
            f"get_metric_history returned {len(got)} points that differ from the {len(vals)} logged"
        )
    return {"s": dt, "points": len(hist), "requests": counter.count}


def search(client: Any, exp_id: str, want: list[str], calls: int) -> dict[str, Any]:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        runs = client.search_runs(
            [exp_id],
            filter_string=SEARCH_FILTER,
            order_by=SEARCH_ORDER,
            max_results=SEARCH_MAX,
        )
        times.append(time.perf_counter() - t0)
    got = [r.info.run_name for r in runs]
    if got != want:
        raise RuntimeError(
            f"search_runs returned {len(got)} runs, first {got[:3]}; expected {want[:3]}..."
        )
    q = statistics.quantiles(times, n=100, method="inclusive")
    return {
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": max(times) * 1000,
        "calls": calls,
        "times_ms": [x * 1000 for x in times],
    }


def artifacts(
    client: Any, exp_id: str, pid: int, src: Path, digest: str, scratch: Path, rep: int
) -> dict[str, Any]:
    size = src.stat().st_size
    run_id = client.create_run(exp_id, run_name=f"artifact-{rep}").info.run_id
    before = rss_mib(pid)
    before_single = max(rss_each(pid), default=0.0)
    before_anon = sum(rss_each(pid, "RssAnon"))
    with PeakRss(pid) as up:
        t0 = time.perf_counter()
        client.log_artifact(run_id, str(src))
        t_up = time.perf_counter() - t0
    dst = scratch / f"down-{rep}"
    dst.mkdir()
    try:
        with PeakRss(pid) as down:
            t0 = time.perf_counter()
            local = Path(client.download_artifacts(run_id, src.name, str(dst)))
            t_down = time.perf_counter() - t0
        got = local.stat().st_size
        if got != size or sha256(local) != digest:
            raise RuntimeError(
                f"download_artifacts returned {got} bytes that differ from the upload"
            )
    finally:
        shutil.rmtree(dst, ignore_errors=True)
    return {
        "bytes": size,
        "up_s": t_up,
        "up_mb_s": size / t_up / 1e6,
        "down_s": t_down,
        "down_mb_s": size / t_down / 1e6,
        "rss_before_mib": before,
        "rss_peak_up_mib": up.peak,
        "rss_peak_down_mib": down.peak,
        "rss_peak_single_up_mib": up.peak_single,
        "rss_peak_single_down_mib": down.peak_single,
        "rss_before_single_mib": before_single,
        "rss_anon_before_mib": before_anon,
        "rss_anon_peak_up_mib": up.peak_anon,
        "rss_anon_peak_down_mib": down.peak_anon,
        "rss_samples": up.samples + down.samples,
    }


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def big_file(scratch: Path, mib: int) -> tuple[Path, str]:
    need = (
        4 * mib * 2**20 + 2**30
    )  # the file, the download, both servers' copies, and room
    free = shutil.disk_usage(scratch).free
    if free < need:
        raise SystemExit(
            f"{scratch}: {free / 2**30:.1f} GiB free, need {need / 2**30:.1f}"
        )
    path = scratch / "big.bin"
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(mib // 16):
            block = os.urandom(16 * 2**20)
            h.update(block)
            f.write(block)
    return path, h.hexdigest()


def workload(
    client: Any,
    pid: int,
    args: argparse.Namespace,
    src: Path,
    digest: str,
    scratch: Path,
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "loadavg_before": os.getloadavg(),
        "idle_rss_mib": rss_mib(pid),
    }
    pop = search_population(args.search_runs)
    want = expected_search(pop)
    search_exp = client.create_experiment("bench-search")
    made = attempt(res, "make search runs", make_search_runs, client, search_exp, pop)
    res["search_create_s"] = made
    res["search_create_loadavg"] = loadavg()
    exp_id = client.create_experiment("bench-workload")
    res["runs"] = []
    for rep in range(args.runs):
        run: dict[str, Any] = {"loadavg_start": loadavg()}
        print(f"  run {rep + 1}/{args.runs}", file=sys.stderr, flush=True)
        got = attempt(run, "log_batch", ingest, client, exp_id, rep, args.points)
        if got:
            run["log_batch"], run_id, vals = got
            run["history"] = attempt(
                run, "get_metric_history", history, client, run_id, vals
            )
        if made is not None:
            run["search"] = attempt(
                run, "search_runs", search, client, search_exp, want, args.search_calls
            )
        if src is not None:
            run["artifacts"] = attempt(
                run,
                "artifacts",
                artifacts,
                client,
                exp_id,
                pid,
                src,
                digest,
                scratch,
                rep,
            )
        run["loadavg_end"] = loadavg()
        res["runs"].append(run)
    res["after_rss_mib"] = rss_mib(pid)
    res["after_rss_anon_mib"] = sum(rss_each(pid, "RssAnon"))
    res["loadavg_after"] = os.getloadavg()
    return res


# ---------------------------------------------------------------- the servers


def tora_cli(binary: Path, *args: str, stdin: str = "") -> str:
    out = subprocess.run(
        [str(binary), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"tora {' '.join(args)} -> {out.returncode}: {out.stderr}")
    return out.stdout


def bench_tora(
    args: argparse.Namespace, src: Path, digest: str, scratch: Path
) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    srv = ToraServer(*args.tora_arg)
    srv.start()  # `tora user add` wants a database that `tora serve` has made
    srv.stop()
    try:
        key = tora_key(srv)
    except BaseException:
        shutil.rmtree(srv.dir, ignore_errors=True)
        raise
    os.environ["MLFLOW_TRACKING_TOKEN"] = key
    try:
        with srv:
            client = MlflowClient(tracking_uri=srv.url)
            res = workload(client, srv.pid, args, src, digest, scratch)
            res["exit_code"] = srv.stop()
            res["db_bytes"] = sum(p.stat().st_size for p in srv.dir.glob("tora.db*"))
    finally:
        del os.environ["MLFLOW_TRACKING_TOKEN"]
    res["binary"] = str(srv.binary)
    res["version"] = tora_cli(srv.binary, "--version").strip()
    return res


def tora_key(srv: ToraServer) -> str:
    """An account and an API key for it, made with the CLI on the server's database."""
    tora_cli(
        srv.binary,
        "user",
        "add",
        EMAIL,
        "--db",
        str(srv.db),
        stdin="bench-password-13\n",
    )
    return tora_cli(
        srv.binary, "api-key", "create", "--user", EMAIL, "--db", str(srv.db)
    ).strip()


def bench_mlflow(
    args: argparse.Namespace, src: Path, digest: str, scratch: Path
) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    root = scratch / "mlflow"
    port = free_port()
    proc, _, _ = mlflow_server(
        root,
        port,
        {},
        ["--serve-artifacts", "--artifacts-destination", str(root / "artifacts")],
    )
    try:
        client = MlflowClient(tracking_uri=f"http://{HOST}:{port}")
        res = workload(client, proc.pid, args, src, digest, scratch)
        res["procs"] = len(tree(proc.pid))
    finally:
        res_left = stop_tree(proc.pid)
    res["leftover_pids"] = res_left
    res["db_bytes"] = sum(p.stat().st_size for p in root.glob("mlflow.db*"))
    return res


# ---------------------------------------------------------------- report


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    """Median and worst of each figure over the runs (worst: the lowest rate, the longest time)."""
    runs = r.get("runs", [])

    def fig(
        section: str, key: str, higher_is_better: bool = False
    ) -> dict[str, Any] | None:
        xs = [run[section][key] for run in runs if run.get(section)]
        if not xs:
            return None
        return {
            "median": med(xs),
            "worst": min(xs) if higher_is_better else max(xs),
            "n": len(xs),
        }

    out = {
        "log_batch_pts_per_s": fig("log_batch", "pts_per_s", True),
        "history_s": fig("history", "s"),
        "history_requests": fig("history", "requests"),
        "search_p50_ms": fig("search", "p50_ms"),
        "search_p99_ms": fig("search", "p99_ms"),
        "search_create_s": r.get("search_create_s"),
        "artifact_up_mb_s": fig("artifacts", "up_mb_s", True),
        "artifact_down_mb_s": fig("artifacts", "down_mb_s", True),
        "artifact_rss_before_mib": fig("artifacts", "rss_before_mib"),
        "artifact_rss_peak_up_mib": fig("artifacts", "rss_peak_up_mib"),
        "artifact_rss_peak_down_mib": fig("artifacts", "rss_peak_down_mib"),
        "artifact_rss_before_single_mib": fig("artifacts", "rss_before_single_mib"),
        "artifact_rss_anon_before_mib": fig("artifacts", "rss_anon_before_mib"),
        "artifact_rss_anon_peak_up_mib": fig("artifacts", "rss_anon_peak_up_mib"),
        "artifact_rss_anon_peak_down_mib": fig("artifacts", "rss_anon_peak_down_mib"),
        "artifact_rss_peak_single_up_mib": fig("artifacts", "rss_peak_single_up_mib"),
        "artifact_rss_peak_single_down_mib": fig(
            "artifacts", "rss_peak_single_down_mib"
        ),
        "procs": r.get("procs", 1),
        "loadavg": [run["loadavg_start"] for run in runs],
        "errors": r.get("errors", [])
        + [e for run in runs for e in run.get("errors", [])],
    }
    return out


def table(res: dict[str, Any]) -> str:
    s = res["summary"]
    t, m = s.get("tora", {}), s.get("mlflow", {})
    a = res["args"]

    def cell(d: dict[str, Any], key: str, fmt: str) -> str:
        v = d.get(key)
        if v is None:
            return "failed" if d.get("errors") else "n/a"
        if isinstance(v, (int, float)):
            return fmt.format(v)
        return f"{fmt.format(v['median'])} ({fmt.format(v['worst'])})"

    def ratio(key: str, higher_is_better: bool) -> str:
        if not (t.get(key) and m.get(key)):
            return ""
        x, y = t[key]["median"], m[key]["median"]
        return f"{x / y if higher_is_better else y / x:.1f}x"

    rows = [
        (
            f"log_batch, {a['points']:,} points in 1,000-metric calls (pts/s)",
            cell(t, "log_batch_pts_per_s", "{:,.0f}"),
            cell(m, "log_batch_pts_per_s", "{:,.0f}"),
            ratio("log_batch_pts_per_s", True),
        ),
        (
            f"get_metric_history, {a['points']:,}-point metric (s)",
            cell(t, "history_s", "{:.2f}")
            + " in "
            + cell(t, "history_requests", "{:.0f}")
            + " req",
            cell(m, "history_s", "{:.2f}")
            + " in "
            + cell(m, "history_requests", "{:.0f}")
            + " req",
            ratio("history_s", False),
        ),
        (
            f"search_runs over {a['search_runs']:,} runs, p50 (ms)",
            cell(t, "search_p50_ms", "{:.0f}"),
            cell(m, "search_p50_ms", "{:.0f}"),
            ratio("search_p50_ms", False),
        ),
        (
            f"search_runs, p99 of {a['search_calls']} (ms)",
            cell(t, "search_p99_ms", "{:.0f}"),
            cell(m, "search_p99_ms", "{:.0f}"),
            ratio("search_p99_ms", False),
        ),
        (
            f"making the {a['search_runs']:,} runs (s, not in the figures above)",
            cell(t, "search_create_s", "{:.0f}"),
            cell(m, "search_create_s", "{:.0f}"),
            "",
        ),
        (
            f"log_artifact, {a['artifact_mib']:,} MiB (MB/s)",
            cell(t, "artifact_up_mb_s", "{:.0f}"),
            cell(m, "artifact_up_mb_s", "{:.0f}"),
            ratio("artifact_up_mb_s", True),
        ),
        (
            f"download_artifacts, {a['artifact_mib']:,} MiB (MB/s)",
            cell(t, "artifact_down_mb_s", "{:.0f}"),
            cell(m, "artifact_down_mb_s", "{:.0f}"),
            ratio("artifact_down_mb_s", True),
        ),
        (
            "server RSS, whole process tree: before the upload / peak up / peak down (MiB)",
            " / ".join(
                cell(t, k, "{:.0f}")
                for k in (
                    "artifact_rss_before_mib",
                    "artifact_rss_peak_up_mib",
                    "artifact_rss_peak_down_mib",
                )
            ),
            " / ".join(
                cell(m, k, "{:.0f}")
                for k in (
                    "artifact_rss_before_mib",
                    "artifact_rss_peak_up_mib",
                    "artifact_rss_peak_down_mib",
                )
            ),
            "",
        ),
        (
            "the same, RssAnon only (without mapped file pages) (MiB)",
            " / ".join(
                cell(t, k, "{:.0f}")
                for k in (
                    "artifact_rss_anon_before_mib",
                    "artifact_rss_anon_peak_up_mib",
                    "artifact_rss_anon_peak_down_mib",
                )
            ),
            " / ".join(
                cell(m, k, "{:.0f}")
                for k in (
                    "artifact_rss_anon_before_mib",
                    "artifact_rss_anon_peak_up_mib",
                    "artifact_rss_anon_peak_down_mib",
                )
            ),
            "",
        ),
        (
            "largest single server process: before / peak up / peak down (MiB)",
            " / ".join(
                cell(t, k, "{:.0f}")
                for k in (
                    "artifact_rss_before_single_mib",
                    "artifact_rss_peak_single_up_mib",
                    "artifact_rss_peak_single_down_mib",
                )
            ),
            " / ".join(
                cell(m, k, "{:.0f}")
                for k in (
                    "artifact_rss_before_single_mib",
                    "artifact_rss_peak_single_up_mib",
                    "artifact_rss_peak_single_down_mib",
                )
            )
            + (f" ({m['procs']} processes in the tree)" if m else ""),
            "",
        ),
        (
            "1-min load average at the start of each run",
            ", ".join(f"{x:.1f}" for x in t.get("loadavg", [])),
            ", ".join(f"{x:.1f}" for x in m.get("loadavg", [])),
            "",
        ),
    ]
    head = [
        f"| MlflowClient, median of {a['runs']} (worst) | Tora | MLflow {res['versions']['mlflow']} | Tora vs MLflow |",
        "|---|---|---|---|",
    ]
    lines = head + ["| " + " | ".join(r) + " |" for r in rows]
    for name, d in (("Tora", t), ("MLflow", m)):
        for e in d.get("errors", []):
            lines.append(f"\n{name} failed in {e['section']}: {e['error']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--runs", type=int, default=3, help="repeats of each measured section"
    )
    ap.add_argument(
        "--points",
        type=int,
        default=100_000,
        help="points logged (a multiple of 1,000)",
    )
    ap.add_argument(
        "--search-runs", type=int, default=10_000, help="runs search_runs searches"
    )
    ap.add_argument(
        "--search-calls", type=int, default=20, help="search_runs calls per run"
    )
    ap.add_argument(
        "--artifact-mib",
        type=int,
        default=1024,
        help="size of the artifact file (0: skip)",
    )
    ap.add_argument("--only", choices=["tora", "mlflow"], action="append")
    ap.add_argument(
        "--tora-arg",
        action="append",
        default=[],
        help="a flag for `tora serve`, e.g. --tora-arg=--artifacts-dir=/tmp/arts (repeatable)",
    )
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "mlflow_client.json"
    )
    args = ap.parse_args()
    if args.points % BATCH:
        ap.error("--points must be a multiple of 1,000")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"

    res: dict[str, Any] = {
        "args": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        },
        "versions": {p: installed_version(p) for p in ("mlflow", "psutil")},
        "tora_bin": str(tora_bin()),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_at_start": os.getloadavg(),
    }
    scratch = Path(tempfile.mkdtemp(prefix="tora-mlflow-client-"))
    try:
        src, digest = (
            big_file(scratch, args.artifact_mib) if args.artifact_mib else (None, "")
        )
        for name, fn in (("tora", bench_tora), ("mlflow", bench_mlflow)):
            if name in (args.only or ["tora", "mlflow"]):
                print(f"{name} ...", file=sys.stderr, flush=True)
                res[name] = fn(args, src, digest, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    res["loadavg_at_end"] = os.getloadavg()
    res["summary"] = {
        name: summarize(res[name]) for name in ("tora", "mlflow") if name in res
    }
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
