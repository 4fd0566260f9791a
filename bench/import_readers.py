"""Import speed of the TensorBoard and W&B readers: runs/s and points/s, median of 3.

Writes a TensorBoard logdir with the real tensorboardX and W&B offline runs with the real wandb,
then times (1) the reader alone (parsing the files into ImportedRuns) and (2) the whole import,
`python -m tora import SOURCE DIR` into a fresh `tora serve` (a new user each time, so every
repetition uploads everything). Run it with the importers venv, which has both packages:

    TORA_BIN=target/release/tora target/venv-importers/bin/python bench/import_readers.py
    ... --quick   # small sizes, to check that it runs

Writes bench/results/import_readers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from tora._import import tensorboard_reader, wandb_reader
from toraserver import ToraServer, new_user


def run_script(script: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        check=True,
        env={**os.environ, **(env or {})},
    )


def write_tensorboard(logdir: Path, runs: int, tags: int, steps: int) -> None:
    run_script(
        f"""
        from tensorboardX import SummaryWriter
        for r in range({runs}):
            with SummaryWriter({str(logdir)!r} + f"/run{{r:03d}}", flush_secs=3600, max_queue=100000) as w:
                for s in range({steps}):
                    for t in range({tags}):
                        w.add_scalar(f"metric{{t}}", (s * 7 + t) % 101 / 100, s, walltime=1.7e9 + s)
        """
    )


def write_wandb(root: Path, runs: int, keys: int, steps: int) -> None:
    run_script(
        f"""
        import wandb
        for r in range({runs}):
            run = wandb.init(project="bench", name=f"run{{r:03d}}", config={{"seed": r}})
            for s in range({steps}):
                run.log({{f"metric{{k}}": (s * 7 + k) % 101 / 100 for k in range({keys})}})
            run.finish()
        """,
        env={
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(root),
            "WANDB_SILENT": "true",
            "WANDB_DISABLE_GIT": "true",
        },
    )


def time_reader(read: object, path: Path) -> tuple[float, int, int]:
    assert callable(read)
    start = time.perf_counter()
    runs = points = 0
    for run in read(str(path)):
        runs += 1
        points += sum(len(p) for p in run.metrics.values()) + len(run.results)
    return time.perf_counter() - start, runs, points


def time_import(source: str, path: Path) -> tuple[float, str]:
    with ToraServer() as server:
        user = new_user(server.api)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("TORA_", "WANDB_"))
        }
        env.update(TORA_BASE_URL=server.api, TORA_API_KEY=user.api_key)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "tora", "import", source, str(path)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
        server.stop()
    if done.returncode != 0:
        raise SystemExit(f"import {source} failed: {done.stderr}")
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args()
    tb_runs, tb_tags, tb_steps = (3, 2, 200) if args.quick else (20, 5, 2000)
    wb_runs, wb_keys, wb_steps = (2, 2, 200) if args.quick else (10, 5, 2000)
    results: dict[str, object] = {
        "repetitions": 3,
        "load_average_1m": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="tora-import-bench-") as tmp:
        tb = Path(tmp) / "tb"
        wb = Path(tmp) / "wb"
        wb.mkdir()
        started = time.perf_counter()
        write_tensorboard(tb, tb_runs, tb_tags, tb_steps)
        write_wandb(wb, wb_runs, wb_keys, wb_steps)
        print(
            f"wrote the files in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
        for source, read, path in (
            ("tensorboard", tensorboard_reader.read, tb),
            ("wandb", wandb_reader.read, wb),
        ):
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            reads = [time_reader(read, path) for _ in range(3)]
            seconds = statistics.median(r[0] for r in reads)
            runs, points = reads[0][1], reads[0][2]
            imports = [time_import(source, path) for _ in range(3)]
            import_seconds = statistics.median(s for s, _ in imports)
            results[source] = {
                "runs": runs,
                "points": points,
                "bytes": size,
                "read_seconds": round(seconds, 3),
                "read_runs_per_s": round(runs / seconds, 1),
                "read_points_per_s": round(points / seconds),
                "read_mb_per_s": round(size / seconds / 1e6, 2),
                "import_seconds": round(import_seconds, 3),
                "import_runs_per_s": round(runs / import_seconds, 1),
                "import_points_per_s": round(points / import_seconds),
                "import_summary": imports[0][1].strip().splitlines()[:2],
            }
            r = results[source]
            assert isinstance(r, dict)
            print(
                f"{source:12} {runs} runs, {points:,} points ({size / 1e6:.1f} MB): "
                f"read {r['read_runs_per_s']} runs/s, {r['read_points_per_s']:,} points/s; "
                f"import {r['import_runs_per_s']} runs/s, {r['import_points_per_s']:,} points/s"
            )
    out = ROOT / "bench" / "results" / "import_readers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
