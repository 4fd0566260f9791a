"""The command itself: an interrupted import finished by running it again, the progress bar on a
terminal (and not elsewhere)."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import Tora

RUNS, STEPS = 300, 400


def many_runs(tmp_path: Path) -> Path:
    path = tmp_path / "many.csv"
    rows = ["run,step,loss,acc"]
    rows += [
        f"r{r:03d},{s},{1 / (s + 1 + r)},{s / STEPS}"
        for r in range(RUNS)
        for s in range(STEPS)
    ]
    rows[1:] = sorted(rows[1:])  # grouped by run, as a user's file would be
    path.write_text("\n".join(rows) + "\n")
    return path


def env(tora: Tora) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("TORA_")}
    out.update(TORA_BASE_URL=tora.server.api, TORA_API_KEY=tora.user.api_key)
    return out


def test_an_interrupted_import_is_finished_by_running_it_again(
    tora: Tora, tmp_path: Path
) -> None:
    path = many_runs(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tora", "import", "csv", str(path)],
        env=env(tora),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(tora.experiments()) < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "interrupted: run the same import again" in err, err
    partial = len(tora.experiments())
    assert 5 <= partial < RUNS

    again = tora.imported("csv", str(path))
    imported = int(again.split("runs: ")[1].split(" imported")[0])
    present = int(again.split("imported, ")[1].split(" already")[0])
    completed = (
        int(again.split("present, ")[1].split(" completed")[0])
        if " completed" in again
        else 0
    )
    assert imported + present + completed == RUNS and present + completed == partial, (
        again
    )
    assert completed <= 1, again  # at most the run it was stopped in
    runs = tora.experiments()
    assert len(runs) == RUNS
    for name in ("r000", f"r{partial - 1:03d}", f"r{RUNS - 1:03d}"):
        series = tora.series(runs[name]["id"])
        assert [s for s, _ in series["loss"]] == sorted(range(STEPS), key=str)
    assert tora.counts() == (RUNS, RUNS * STEPS * 2)


def test_progress_bar_on_a_terminal_only(tora: Tora, tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text(
        "step,loss\n" + "".join(f"{s},{1 / (s + 1)}\n" for s in range(1000))
    )
    plain = tora.imported("csv", str(path), "--dry-run")
    assert "\r" not in plain

    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tora", "import", "csv", str(path)],
        env=env(tora),
        stdout=subprocess.PIPE,
        stderr=secondary,
        text=True,
    )
    os.close(secondary)
    out, _ = proc.communicate(timeout=120)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.returncode == 0, out
    terminal = seen.decode(errors="replace")
    assert "run 1: one [########################] 1,000/1,000 points" in terminal, (
        terminal
    )
    assert "runs: 1 imported" in out and "\r" not in out, out


def test_a_second_import_checks_every_run_of_a_large_workspace(
    tora: Tora, tmp_path: Path
) -> None:
    """The server's run summaries are read page by page (500 a page): a changed run on the
    second page is found as well."""
    path = tmp_path / "wide.csv"
    runs = 600
    rows = [f"r{r:03d},{s},{s / 10}" for r in range(runs) for s in range(5)]
    path.write_text("run,step,loss\n" + "\n".join(rows) + "\n")
    first = tora.imported("csv", str(path))
    assert f"runs: {runs} imported" in first, first
    with path.open("a") as f:
        f.write("r000,5,0.5\n")  # the oldest run, on the second page of the run list
    again = tora.imported("csv", str(path))
    assert f"runs: 0 imported, {runs} already present" in again, again
    assert f"points: 0 added, {(runs - 1) * 5:,} already present" in again, again
    assert "runs whose points changed in their source since an earlier import" in again
    assert tora.counts() == (runs, runs * 5)
