#!/usr/bin/env python3
"""One table from bench/results/*.json: Tora beside MLflow, trackio and Python's sqlite3.

    python3 bench/summary.py [RESULTS_DIR]    # prints it and writes RESULTS_DIR/summary.md

Stdlib only; run by bench/run_all.sh after the benchmarks. A missing result file shows as
"not run". Each row names the script it comes from and the 1-minute load average while that
script ran (the machine has 2 cores and is shared).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# ingest.py's formats, fastest first when figures tie.
FORMATS = {
    "packed": "columns, values as base64 doubles (values_f64)",
    "columns": "columns, values as JSON numbers",
    "rows": "rows, the 0.0.12 SDK's format",
}


def load(d: Path, name: str) -> dict[str, Any] | None:
    p = d / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def load_of(r: dict[str, Any] | None) -> str:
    if not r:
        return ""
    env = r.get("env", r)
    a, b = env.get("loadavg_at_start"), env.get("loadavg_at_end")
    return f"{a[0]:.1f}→{b[0]:.1f}" if a and b else ""


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def rows(d: Path) -> tuple[list[tuple[str, ...]], list[str]]:
    ing, con, grw, qry, stm, fst, prs, mlc = (
        load(d, n)
        for n in (
            "ingest",
            "writers",
            "growth",
            "query",
            "stream",
            "firstrun",
            "peers",
            "mlflow_client",
        )
    )
    s = (prs or {}).get("summary", {})
    t, m, k = s.get("tora"), s.get("mlflow"), s.get("trackio")
    na = "not run"
    out: list[tuple[str, ...]] = []
    notes: list[str] = []

    def add(
        measure: str,
        tora: str,
        mlflow: str,
        trackio: str,
        floor: str,
        target: str,
        src: str,
        r: Any,
    ) -> None:
        out.append(
            (
                measure,
                tora,
                mlflow,
                trackio,
                floor,
                target,
                f"{src} ({load_of(r)})" if r else src,
            )
        )

    # --- the peers' own figures, all from peers.py (same run, same method)
    add(
        "server start-up, `Popen` to health answering",
        f"{t['startup_s'] * 1000:.0f} ms" if t else na,
        f"{m['startup_s']:.1f} s (first API call {m['startup_api_s']:.1f} s)"
        if m
        else na,
        f"{k['startup_s']:.2f} s" if k else na,
        "",
        "",
        "peers.py",
        prs,
    )
    add(
        "idle RSS, whole server process tree",
        f"{t['idle_rss_mib']:.0f} MiB" if t else na,
        (
            f"{m['idle_rss_mib']:.0f} MiB, {m['idle_procs']} processes"
            + (
                f" ({m['idle_rss_nojobs_mib']:.0f} MiB without its job runner)"
                if m.get("idle_rss_nojobs_mib")
                else ""
            )
        )
        if m
        else na,
        f"{k['idle_rss_mib']:.0f} MiB" if k else na,
        "",
        "",
        "peers.py",
        prs,
    )
    if t:
        r_m = t["ingest_pts_per_s"] / m["ingest_pts_per_s"] if m else None
        r_k = t["ingest_pts_per_s"] / k["ingest_pts_per_s"] if k else None
        target = "≥ 4x trackio, ≥ 50x MLflow (fastest Tora client path)"
        if r_m and r_k:
            target += f": {verdict(r_k >= 4)} / {verdict(r_m >= 50)}"
        paths = t.get("ingest_paths_pts_per_s") or {
            "http.client, rows (logs/batch)": t["ingest_pts_per_s"],
            "Tora SDK": t["ingest_sdk_pts_per_s"],
        }
        best = t.get("ingest_path", "http.client, rows (logs/batch)")
        others = "; ".join(f"{p} {v:,.0f}" for p, v in paths.items() if p != best)
        add(
            "100k points (10 metrics x 10k steps) from a Python client, 1,000-point batches",
            f"{t['ingest_pts_per_s']:,.0f} pts/s ({best}; {others})",
            f"{m['ingest_pts_per_s']:,.0f} pts/s (log_batch; Tora {r_m:.1f}x)"
            if m
            else na,
            f"{k['ingest_pts_per_s']:,.0f} pts/s (self-hosted server; Tora {r_k:.1f}x)"
            if k
            else na,
            "",
            target,
            "peers.py",
            prs,
        )
    else:
        add(
            "100k points (10 metrics x 10k steps) from a Python client, 1,000-point batches",
            na,
            na,
            na,
            "",
            "≥ 4x trackio, ≥ 50x MLflow",
            "peers.py",
            None,
        )

    # --- ingest.py: single client, bigger batches; the sqlite3 floor
    if ing:
        by = {(b.get("format", "rows"), b["batch"]): b for b in ing["batches"]}
        sq = {
            c.get("variant", "unique_msg_id" if c["unique_msg_id"] else "msg_id"): c
            for c in ing["sqlite"]
        }
        plain = sq.get("plain")
        floor = ", ".join(
            f"{sq[v]['points_per_s']:,.0f} rows/s {what}"
            for v, what in (
                ("plain", "(experiment_id, name, step, value)"),
                ("msg_id", "with a msg_id column"),
                ("unique_msg_id", "with a unique msg_id index"),
            )
            if v in sq
        )
        for batch in (5000, 1000):
            present = {f: by[(f, batch)] for f in FORMATS if (f, batch) in by}
            if not present:
                continue
            # The target is checked on the fastest format end to end, named in the row; every
            # format's figures stay in the cell, the fastest first.
            order = sorted(present, key=lambda f: -present[f]["points_per_s"])
            best = present[order[0]]
            cells = []
            for f in order:
                b, pre = present[f], present[f].get("pre_encoded", {})
                cells.append(
                    f"{FORMATS[f]}: {b['points_per_s']:,.0f} pts/s end to end"
                    + (
                        f" ({pre['points_per_s']:,.0f} HTTP only, pre-encoded;"
                        f" server CPU {pre['server_cpu_us_per_point']:.2f} µs/point)"
                        if pre
                        else ""
                    )
                )
            target = ""
            if batch == 5000:
                target = "≥ sqlite3 floor and ≥ 500k pts/s"
                if plain:
                    ok = (
                        best["points_per_s"] >= plain["points_per_s"]
                        and best["points_per_s"] >= 500_000
                    )
                    target += (
                        f" (fastest format end to end: {FORMATS[order[0]]},"
                        f" {best['points_per_s']:,.0f} pts/s): {verdict(ok)}"
                    )
            add(
                f"single client, {best['points']:,} points in {batch:,}-point batches",
                "; ".join(cells),
                "n/a (log_batch takes at most 1,000)" if batch > 1000 else "",
                "",
                floor if batch == 5000 else "",
                target,
                "ingest.py",
                ing,
            )
    else:
        add(
            "single client, 1M points in 5,000-point batches",
            na,
            "",
            "",
            na,
            "≥ sqlite3 floor and ≥ 500k pts/s",
            "ingest.py",
            None,
        )
    if grw:
        f = grw["falloff"]
        charts = [
            grw[key]
            for key in ("chart_first_at_start", "chart_last_at_end")
            if key in grw
        ]
        chart = " → ".join(
            f"{c['median_http_ms']:.1f} ms at {c['db_points'] / 1e6:g}M" for c in charts
        )
        add(
            f"one database growing to {grw['points'] / 1e6:g}M points"
            f" ({grw['experiments']} runs x {grw['metrics']} metrics x {grw['steps']:,} steps,"
            f" {grw['batch']:,}-point batches, {FORMATS[grw.get('format', 'columns')]})",
            f"{grw['points_per_s']:,.0f} pts/s; first → last quarter"
            f" {f['first_quarter_points_per_s']:,.0f} → {f['last_quarter_points_per_s']:,.0f} pts/s"
            f" (x{f['ratio']:.2f}, slowest {grw['slice'] / 1e6:g}M slice"
            f" {f['slowest_slice_points_per_s']:,.0f}); {grw['bytes_per_point']:.0f} bytes/point;"
            f" chart query on a run's {grw['metrics'] * grw['steps'] / 1e6:g}M points to"
            f" 1,000 buckets per metric: {chart}",
            "",
            "",
            "",
            f"no fall-off (last quarter ≥ {f['threshold']:.0%} of first): {verdict(f['no_falloff'])}",
            "growth.py",
            grw,
        )
    else:
        add(
            "one database growing to 20M points",
            na,
            "",
            "",
            "",
            "no fall-off",
            "growth.py",
            None,
        )

    # --- concurrency and latency
    mc = (prs or {}).get("mlflow", {}).get("concurrent")
    if con:
        lat = con["latency_ms"]
        add(
            f"{con['writers']} concurrent writers, 25-point batches",
            f"{con['points_per_s']:,.0f} pts/s ({con['points']:,} points, {con['http_errors']} errors)",
            (
                f"{mc['pts_per_s']:,.0f} pts/s ({mc['points']:,} of {mc['points_sent']:,} points accepted,"
                f" {mc['errors']} errors)"
            )
            if mc
            else na,
            "",
            "",
            "",
            "writers.py, peers.py",
            con,
        )
        add(
            f"request latency p50 / p99 with {con['writers']} writers",
            f"{lat['p50']:.1f} / {lat['p99']:.1f} ms",
            f"{mc['latency_ms']['p50']:,.0f} / {mc['latency_ms']['p99']:,.0f} ms"
            if mc
            else na,
            "",
            "",
            "",
            "writers.py, peers.py",
            con,
        )
    if qry:
        d_ = qry["latency"]
        add(
            f"one writer's 25-point batch p50 / p99 while {d_['background_threads']} others write",
            f"{d_['latency_ms']['p50']:.1f} / {d_['latency_ms']['p99']:.1f} ms"
            f" (all writers {d_['all_points_per_s']:,.0f} pts/s)",
            "",
            "",
            "",
            "",
            "query.py (d)",
            qry,
        )

    # --- reads
    if t:
        extra = ""
        if ing:
            extra = f"; GET /metrics of a 10k-point run {ing['peer']['read_10k_median_s'] * 1000:.0f} ms"
        add(
            "read back one 10k-point metric over HTTP, incl. JSON parse",
            f"{t['read_10k_s'] * 1000:.0f} ms (GET /series, raw points{extra})",
            f"{m['read_10k_s'] * 1000:.0f} ms (get_metric_history)" if m else na,
            f"{k['read_10k_s'] * 1000:.0f} ms (POST /api/get_metric_values)"
            if k
            else na,
            "",
            "",
            "peers.py",
            prs,
        )
        add(
            f"chart query: one {t['chart_points']:,}-point metric to ≤ 1,000 points",
            f"{t['chart_s'] * 1000:.1f} ms (GET /series)",
            f"{m['chart_s'] * 1000:.0f} ms (get-history-bulk-interval, sampled)"
            if m
            else na,
            f"{k['chart_s'] * 1000:.0f} ms (get_metric_values max_points, subsampled)"
            if k and "chart_s" in k
            else na,
            "",
            "",
            "peers.py",
            prs,
        )
    if qry:
        a, b, c = qry["downsample"], qry["compare"], qry["lists"]
        f = qry.get("sqlite")

        def fl(key: str) -> str:
            return (
                f"{f[key]['median_ms']:.0f} ms (GROUP BY, no pre-aggregation)"
                if f
                else ""
            )

        add(
            f"{a['points']:,}-point series to 1,000 buckets",
            f"{a['full']['median_http_ms']:.1f} ms (cold {a['full']['cold_http_ms']:.1f})",
            "",
            "",
            fl("full"),
            f"< 20 ms: {verdict(a['full']['median_http_ms'] < 20)}",
            "query.py (a)",
            qry,
        )
        add(
            "…zoomed to 10% of it",
            f"{a['zoom']['median_http_ms']:.1f} ms (cold {a['zoom']['cold_http_ms']:.1f})",
            "",
            "",
            fl("zoom"),
            "",
            "query.py (a)",
            qry,
        )
        add(
            f"compare {b['experiments']} runs x {b['points_each']:,} points, 1,000 buckets each",
            f"{b['compare']['median_http_ms']:.1f} ms (cold {b['compare']['cold_http_ms']:.1f})",
            "",
            "",
            fl("compare"),
            f"< 200 ms: {verdict(b['compare']['median_http_ms'] < 200)}",
            "query.py (b)",
            qry,
        )
        names = {
            "default_page": "limit=50",
            "filter_sort": "q + sort=-result.acc",
            "sort_hp_second_page": "sort=hp.lr, 2nd page",
            "summary_page": "summary=1",
        }
        worst = max(c[key]["median_http_ms"] for key in names)
        add(
            f"list {c['experiments']:,} experiments: " + ", ".join(names.values()),
            " / ".join(f"{c[key]['median_http_ms']:.0f}" for key in names) + " ms",
            "",
            "",
            "",
            f"< 50 ms: {verdict(worst < 50)}",
            "query.py (c)",
            qry,
        )
    if stm:
        o, w = stm["open"], stm["watched"]
        add(
            f"{o['streams']} open SSE streams on one run, {w['batches']} batches of {w['batch']}",
            f"{o['kib_per_stream']:.0f} KiB RSS per stream; all open in {o['all_open_s'] * 1000:.0f} ms;"
            f" last stream has the batch {w['fanout_last_ms_median']:.0f} ms (p99 {w['fanout_last_ms_p99']:.0f})"
            f" after POST returns; {w['extra_server_us_per_delivery']:.0f} µs server CPU per event delivered;"
            f" {w['streams_exactly_once']}/{o['streams']} streams exactly-once",
            "",
            "",
            "",
            "costs little",
            "stream.py",
            stm,
        )
    if fst:
        n = len(fst["runs"])

        def fv(key: str, digits: int = 1) -> str:
            """A firstrun.py figure: the median of its runs, the worst run in brackets."""
            v = fst["summary"][key]
            return f"{v['median']:,.{digits}f} ({v['worst']:,.{digits}f})"

        sdk = (
            f"metadata on (git status): {fv('setup_default.import_ms')}"
            f" / {fv('setup_default.setup_ms')} / {fv('setup_default.shutdown_ms')};"
            f" TORA_METADATA=0: {fv('setup_no_metadata.import_ms')}"
            f" / {fv('setup_no_metadata.setup_ms')} / {fv('setup_no_metadata.shutdown_ms')}"
        )
        beat = (
            f"{fv('heartbeats.heartbeat.server_cpu_us_each', 0)} µs server CPU each"
            f" (`GET /api/health`: {fv('heartbeats.health.server_cpu_us_each', 0)});"
            f" p50 {fv('heartbeats.heartbeat.p50_ms', 2)} / p99 {fv('heartbeats.heartbeat.p99_ms', 2)} ms"
        )
        live = (
            f"create → `run` p50 {fv('live.run_event_after_create_sent.p50_ms', 2)};"
            f" points → `progress` p50 {fv('live.progress_after_post_sent.p50_ms', 2)}"
            f" (from the POST returning: p50 {fv('live.progress_after_post_returned.p50_ms', 2)},"
            f" p99 {fv('live.progress_after_post_returned.p99_ms', 2)}; < 0: before the response)"
        )
        tbl = (
            f"`state:running` {fv('table.state_running.p50_ms')} / {fv('table.state_running.p99_ms')};"
            f" `state:finished` {fv('table.state_finished.p50_ms')} / {fv('table.state_finished.p99_ms')};"
            f" no filter {fv('table.no_filter.p50_ms')} / {fv('table.no_filter.p99_ms')};"
            f" `experiments.csv` of all: {fv('table.csv.ms', 0)} ms, {fv('table.csv.bytes', 0)} KiB"
        )
        wheel = (
            f"{fv('sdk.wheel_download_ms_median_of_5')} ms, {fv('sdk.wheel_bytes', 0)} KiB"
            f" / {fv('sdk.pip_install_s', 2)} s into a fresh venv"
        )
        a = fst["args"]
        for measure, cell in (
            (
                "SDK in a new interpreter, ms: `import tora` / `tora.setup()` / `shutdown()`",
                sdk,
            ),
            (f"heartbeat ({a['heartbeats']:,} over {a['beat_runs']} runs)", beat),
            ("workspace stream: request sent → its event, ms", live),
            (
                f"run table, {a['table_runs']:,} runs: first page (100, summary=1) p50 / p99 ms",
                tbl,
            ),
            (
                "SDK from the server: wheel GET / `pip install --index-url …/sdk/simple/ tora`",
                wheel,
            ),
        ):
            add(
                f"{measure} (median of {n}, worst)",
                cell,
                "",
                "",
                "",
                "",
                "firstrun.py",
                fst,
            )
    if t:
        extra = ""
        floor = ""
        if ing:
            b5 = next(
                (
                    b
                    for fmt in FORMATS
                    for b in ing["batches"]
                    if b["batch"] == 5000 and b.get("format", "rows") == fmt
                ),
                None,
            )
            if b5:
                extra = (
                    f"; {b5['bytes_per_point']:.0f} for {b5['points']:,} points of"
                    f" ingest.py ({b5.get('format', 'rows')})"
                )
            sq = {
                c.get("variant", "unique_msg_id" if c["unique_msg_id"] else "msg_id"): c
                for c in ing["sqlite"]
            }
            floor = ", ".join(
                f"{sq[v]['bytes_per_point']:.0f} {what}"
                for v, what in (
                    ("plain", "(experiment_id, name, step, value)"),
                    ("msg_id", "with msg_id"),
                    ("unique_msg_id", "with a unique msg_id index"),
                )
                if v in sq
            )
        add(
            "bytes per point on disk",
            f"{t['bytes_per_point']:.0f}{extra}",
            f"{m['bytes_per_point']:.0f}" if m else na,
            f"{k['bytes_per_point']:.0f} (one row per step)" if k else na,
            floor,
            "",
            "peers.py, ingest.py",
            prs,
        )

    if mlc:
        for measure, tora, mlflow in mlflow_client_rows(mlc):
            add(measure, tora, mlflow, "", "", "", "mlflow_client.py", mlc)

    env = next((r["env"] for r in (ing, grw, qry, stm) if r and "env" in r), None)
    if env:
        notes.append(
            f"Tora: `{env['binary']}` ({env['tora_version']}); {env['cpus']} CPUs; {env['platform']}; "
            f"Python {env['python']}, its sqlite3 {env['sqlite_python']}."
        )
    if prs:
        v = prs["versions"]
        notes.append(
            f"Peers: mlflow {v['mlflow']} (`mlflow server`, SQLite, 1 worker, defaults),"
            f" trackio {v['trackio']} (`trackio.show` self-hosted server with a write token);"
            f" run {prs['date']}."
        )
    return out, notes


def mlflow_client_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """mlflow_client.py: the official MLflow client against each server, median of its runs
    with the worst in brackets."""
    a, s = r["args"], r["summary"]
    t, m = s.get("tora", {}), s.get("mlflow", {})

    def cell(d: dict[str, Any], key: str, fmt: str, unit: str) -> str:
        v = d.get(key)
        if v is None:
            return "failed" if d.get("errors") else "not run"
        if isinstance(v, dict):
            return f"{fmt.format(v['median'])} ({fmt.format(v['worst'])}) {unit}"
        return f"{fmt.format(v)} {unit}"

    def pair(d: dict[str, Any]) -> str:
        if not d:
            return "not run"
        return (
            f"{cell(d, 'search_p50_ms', '{:.0f}', 'ms')} / {cell(d, 'search_p99_ms', '{:.0f}', 'ms')}"
            f"; making the runs {cell(d, 'search_create_s', '{:.0f}', 's')}"
        )

    def rss(d: dict[str, Any]) -> str:
        if not d:
            return "not run"
        return (
            f"{cell(d, 'artifact_rss_peak_up_mib', '{:.0f}', 'MiB')} up,"
            f" {cell(d, 'artifact_rss_peak_down_mib', '{:.0f}', 'MiB')} down"
            f" (before: {cell(d, 'artifact_rss_before_mib', '{:.0f}', 'MiB')}"
            + (f", {d['procs']} processes)" if d.get("procs", 1) > 1 else ")")
        )

    def updown(d: dict[str, Any]) -> str:
        if not d:
            return "not run"
        return (
            f"{cell(d, 'artifact_up_mb_s', '{:.0f}', 'MB/s')} up,"
            f" {cell(d, 'artifact_down_mb_s', '{:.0f}', 'MB/s')} down"
        )

    n, mib = a["runs"], a["artifact_mib"]
    rows = [
        (
            f"MlflowClient.log_batch, {a['points']:,} points in 1,000-metric calls (median of {n}, worst)",
            cell(t, "log_batch_pts_per_s", "{:,.0f}", "pts/s"),
            cell(m, "log_batch_pts_per_s", "{:,.0f}", "pts/s"),
        ),
        (
            f"MlflowClient.get_metric_history of a {a['points']:,}-point metric (median of {n}, worst)",
            cell(t, "history_s", "{:.2f}", "s"),
            cell(m, "history_s", "{:.2f}", "s"),
        ),
        (
            (
                f"MlflowClient.search_runs over {a['search_runs']:,} runs, filter + order_by,"
                f" 100 results: p50 / p99 of {a['search_calls']} (median of {n}, worst)"
            ),
            pair(t),
            pair(m),
        ),
    ]
    if mib:
        rows += [
            (
                f"log_artifact / download_artifacts of a {mib:,} MiB file (median of {n}, worst)",
                updown(t),
                updown(m),
            ),
            (
                "server peak RSS (whole process tree) while that file streams",
                rss(t),
                rss(m),
            ),
        ]
    return rows


def main() -> None:
    d = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    out, notes = rows(d)
    header = (
        "Measure",
        "Tora",
        "MLflow",
        "trackio",
        "Python sqlite3 (floor)",
        "Target",
        "Source (1-min load)",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in out]
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text)
    (d / "summary.md").write_text(text)


if __name__ == "__main__":
    main()
