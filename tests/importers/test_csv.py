"""CSV files (long and wide) imported into tora, then imported again."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from conftest import Tora

T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z


def ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def test_long_csv_runs_metrics_nan_and_times_once(tora: Tora, tmp_path: Path) -> None:
    rows = ["run,step,metric,value,time"]
    for step in range(50):
        rows.append(
            f"baseline,{step},loss,{1 / (step + 1)},{(T0 + step * 1000) / 1000}"
        )
        rows.append(
            f"baseline,{step},acc,{'nan' if step == 7 else step / 100},2024-05-01T12:00:{step:02d}Z"
        )
        rows.append(
            f"wider,{step * 2},loss,{2 / (step + 1)},{(T0 + 3_600_000 + step * 500) / 1000}"
        )
    rows.append("wider,not-a-step,loss,1.0,")
    path = tmp_path / "history.csv"
    path.write_text("\n".join(rows) + "\n")

    first = tora.imported("csv", str(path))
    assert "runs: 2 imported, 0 already present" in first, first
    assert "points: 150 added, 0 already present" in first, first
    assert (
        "1 rows with a missing or unreadable step, value or time (line 152)" in first
    ), first

    runs = tora.experiments()
    assert set(runs) == {"baseline", "wider"}
    baseline = tora.series(runs["baseline"]["id"])
    assert baseline["loss"] == [(s, 1 / (s + 1)) for s in range(50)]
    assert [s for s, _ in baseline["acc"]] == list(range(50))
    assert baseline["acc"][7][1] == "NaN"
    assert all(v == s / 100 for s, v in baseline["acc"] if s != 7)
    assert [s for s, _ in tora.series(runs["wider"]["id"])["loss"]] == [
        2 * s for s in range(50)
    ]
    # Times: the run starts at its first point, each point keeps its own time.
    assert ms(runs["baseline"]["created_at"]) == T0
    assert ms(runs["wider"]["created_at"]) == T0 + 3_600_000
    times = {
        (m["name"], m["step"]): ms(m["created_at"])
        for m in tora.metrics(runs["baseline"]["id"])
    }
    assert times[("loss", 10)] == T0 + 10_000
    assert times[("acc", 42)] == T0 + 42_000
    assert runs["baseline"]["state"] == "finished"

    before = tora.counts()
    second = tora.imported("csv", str(path))
    assert "runs: 0 imported, 2 already present" in second, second
    assert "points: 0 added, 150 already present" in second, second
    assert tora.counts() == before == (2, 150)


def test_wide_csv_one_run_per_file_into_a_named_workspace(
    tora: Tora, tmp_path: Path
) -> None:
    path = tmp_path / "resnet.csv"
    path.write_text("step,train/loss,val/acc\n0,0.9,\n1,0.8,0.5\n2,inf,\n3,0.6,0.7\n")
    from toraserver import call_ok

    ws = call_ok(
        "POST",
        tora.server.api + "/workspaces",
        {"name": "vision"},
        expect=201,
        api_key=tora.user.api_key,
    )
    out = tora.imported("csv", str(path), "--workspace", "vision")
    assert "runs: 1 imported" in out and "points: 6 added" in out, out
    runs = tora.experiments(ws["id"])
    assert list(runs) == ["resnet"]
    series = tora.series(runs["resnet"]["id"])
    assert series == {
        "train/loss": [(0, 0.9), (1, 0.8), (2, "Infinity"), (3, 0.6)],
        "val/acc": [(1, 0.5), (3, 0.7)],
    }
    assert tora.experiments() == {}  # nothing went to Personal


def test_dry_run_sends_nothing_and_errors_name_the_problem(
    tora: Tora, tmp_path: Path
) -> None:
    path = tmp_path / "a.csv"
    path.write_text("run,step,metric,value\nr,0,loss,1\nr,1,loss,0.5\n")
    dry = tora.imported("csv", str(path), "--dry-run")
    assert "dry run: 1 runs, 2 points would be imported" in dry, dry
    assert tora.experiments() == {}

    missing = tora.run_import("csv", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1 and "nope.csv: no such file" in missing.stderr, (
        missing.stderr
    )
    (tmp_path / "odd.csv").write_text("a,b\n1,2\n")
    odd = tora.run_import("csv", str(tmp_path / "odd.csv"))
    assert odd.returncode == 1 and "neither run,step,metric,value" in odd.stderr, (
        odd.stderr
    )
    unknown = tora.run_import("csv", str(path), "--workspace", "nowhere")
    assert unknown.returncode == 1 and "no workspace 'nowhere'" in unknown.stderr, (
        unknown.stderr
    )

    bad_key = tora.run_import("csv", str(path), "--api-key", "tora_sk_" + "0" * 40)
    assert bad_key.returncode != 0, bad_key
    assert "API key" in bad_key.stderr, bad_key.stderr
    assert tora.experiments() == {}


def test_a_run_that_changed_in_its_source_is_left_as_it_was(
    tora: Tora, tmp_path: Path
) -> None:
    path = tmp_path / "growing.csv"
    path.write_text(
        "run,step,metric,value\n"
        + "".join(f"a,{s},loss,{s}\nb,{s},loss,{s}\n" for s in range(10))
    )
    tora.imported("csv", str(path))
    with path.open("a") as f:
        f.write("a,10,loss,10\n")  # run a went on after the import
    again = tora.imported("csv", str(path))
    assert "runs: 0 imported, 2 already present" in again, again
    assert "points: 0 added, 10 already present" in again, again
    assert (
        "runs whose points changed in their source since an earlier import" in again
    ), again
    runs = tora.experiments()
    assert [s for s, _ in tora.series(runs["a"]["id"])["loss"]] == list(range(10))
    assert tora.counts() == (2, 20)
