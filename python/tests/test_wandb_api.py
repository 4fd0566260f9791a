"""The W&B-style API: ``import tora as wandb`` and W&B's own code runs, and the server has the run.

Each test is a user's story: what they write, then what the server stores (read over HTTP).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import ToraServer, run_python, sync

import tora
from tora import TORA_NAMESPACE


def hyperparams(server: ToraServer, experiment_id: str) -> dict[str, Any]:
    experiment = server.get(f"/experiments/{experiment_id}")
    return {h["key"]: h["value"] for h in experiment["hyperparams"]}


def series(server: ToraServer, experiment_id: str, name: str) -> list[tuple[int, float]]:
    """(step, value) of a metric, in the order stored."""
    return [(m["step"], m["value"]) for m in server.metrics(experiment_id) if m["name"] == name]


def workspace_named(server: ToraServer, name: str) -> dict[str, Any] | None:
    found = [w for w in server.get("/workspaces") if w["name"] == name]
    return found[0] if found else None


@pytest.fixture(autouse=True)
def no_run_left_open() -> Any:
    yield
    tora.finish()


WANDB_QUICKSTART = """
import random

import tora as wandb

# Start a new wandb run to track this script.
run = wandb.init(
    # Set the wandb project where this run will be logged.
    project="my-awesome-project",
    # Track hyperparameters and run metadata.
    config={
        "learning_rate": 0.02,
        "architecture": "CNN",
        "dataset": "CIFAR-100",
        "epochs": 10,
    },
)

# Simulate training.
epochs = 10
offset = random.random() / 5
for epoch in range(2, epochs):
    acc = 1 - 2**-epoch - random.random() / epoch - offset
    loss = 2**-epoch + random.random() / epoch + offset

    # Log metrics to wandb.
    run.log({"acc": acc, "loss": loss})

# Finish the run and upload any remaining data.
run.finish()
"""

WANDB_CONTEXT_QUICKSTART = """
import wandb
import random

wandb.login()

# Project that the run is recorded to
project = "my-awesome-project"

# Dictionary with hyperparameters
config = {
    'epochs' : 10,
    'lr' : 0.01
}

with wandb.init(project=project, config=config) as run:
    offset = random.random() / 5
    print(f"lr: {config['lr']}")

    # Simulate a training run
    for epoch in range(2, config['epochs']):
        acc = 1 - 2**-config['epochs'] - random.random() / config['epochs'] - offset
        loss = 2**-config['epochs'] + random.random() / config['epochs'] + offset
        print(f"epoch={config['epochs']}, accuracy={acc}, loss={loss}")
        run.log({"accuracy": acc, "loss": loss})
"""

WANDB_MODULE_QUICKSTART = """
import tora as wandb

wandb.init(project="my-awesome-project", config={"learning_rate": 0.02, "epochs": 5})
lr = wandb.config.learning_rate
for epoch in range(wandb.config.epochs):
    acc = 0.5 + 0.1 * epoch
    loss = lr / (epoch + 1)
    wandb.log({"acc": acc, "loss": loss})
wandb.finish()
print("run id", wandb.run)
"""


def experiments_in(server: ToraServer, workspace_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = server.get(f"/workspaces/{workspace_id}/experiments")
    return data


def test_wandb_quickstart_runs_unchanged_and_the_server_has_the_run(server: ToraServer, tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(WANDB_QUICKSTART)
    done = run_python([str(script)])
    assert done.returncode == 0, done.stderr
    workspace = workspace_named(server, "my-awesome-project")
    assert workspace is not None, "project= made a workspace of that name"
    (experiment,) = [e for e in experiments_in(server, workspace["id"]) if e["url"] in done.stderr]
    assert experiment["state"] == "finished"
    assert hyperparams(server, experiment["id"]) == {
        "learning_rate": 0.02,
        "architecture": "CNN",
        "dataset": "CIFAR-100",
        "epochs": 10,
    }
    for name in ("acc", "loss"):
        assert [step for step, _ in series(server, experiment["id"], name)] == list(range(8))


def test_wandb_login_and_with_block_quickstart_runs_with_tora_installed_as_wandb(
    server: ToraServer, tmp_path: Path
) -> None:
    # W&B's current quickstart says `import wandb`: a module named wandb that is tora runs it as written.
    (tmp_path / "wandb.py").write_text("import sys\n\nimport tora\n\nsys.modules[__name__] = tora\n")
    script = tmp_path / "quickstart.py"
    script.write_text(WANDB_CONTEXT_QUICKSTART)
    done = run_python([str(script)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "lr: 0.01" in done.stdout
    workspace = workspace_named(server, "my-awesome-project")
    assert workspace is not None
    (experiment,) = [e for e in experiments_in(server, workspace["id"]) if e["url"] in done.stderr]
    assert experiment["state"] == "finished", "leaving the with block finished the run"
    assert hyperparams(server, experiment["id"]) == {"epochs": 10, "lr": 0.01}
    assert sorted(step for step, _ in series(server, experiment["id"], "accuracy")) == list(range(8))


def test_module_level_quickstart_uses_config_attributes_and_the_same_workspace(
    server: ToraServer, tmp_path: Path
) -> None:
    script = tmp_path / "module_quickstart.py"
    script.write_text(WANDB_MODULE_QUICKSTART)
    before = workspace_named(server, "my-awesome-project")
    done = run_python([str(script)])
    assert done.returncode == 0, done.stderr
    assert "run id None" in done.stdout, "wandb.run is None once the run is finished"
    workspace = workspace_named(server, "my-awesome-project")
    assert workspace is not None
    if before is not None:
        assert workspace["id"] == before["id"], "an existing workspace is found by name, not made again"
    (experiment,) = [e for e in experiments_in(server, workspace["id"]) if e["url"] in done.stderr]
    assert series(server, experiment["id"], "loss") == [(e, 0.02 / (e + 1)) for e in range(5)]
    assert series(server, experiment["id"], "acc") == [(e, 0.5 + 0.1 * e) for e in range(5)]


def test_config_summary_notes_tags_and_group_reach_the_server(server: ToraServer) -> None:
    run = tora.init(
        name="cifar-resnet",
        config={"lr": 0.1, "optimizer": {"name": "sgd", "momentum": 0.9}, "layers": [64, 128]},
        notes="baseline",
        tags=["resnet", "cifar/100"],
        group="sweep-7",
    )
    assert tora.run is run
    run.config.batch_size = 32
    tora.config.update({"lr": 0.05})
    run.log({"loss": 0.5})
    run.summary["best_acc"] = 0.93
    tora.summary.update({"test_acc": 0.91})
    run.notes = "baseline, lr halved"
    run.tags = [*run.tags, "halved"]
    experiment_id = run.id
    run.finish()
    assert tora.run is None
    experiment = server.get(f"/experiments/{experiment_id}")
    assert experiment["name"] == "cifar-resnet"
    assert experiment["description"] == "baseline, lr halved"
    assert experiment["tags"] == ["resnet", "cifar-100", "halved"]
    assert hyperparams(server, experiment_id) == {
        "lr": 0.05,
        "optimizer.name": "sgd",
        "optimizer.momentum": 0.9,
        "layers": "[64, 128]",
        "batch_size": 32,
    }
    results = {r["name"]: r["value"] for r in server.results(experiment_id)}
    assert results == {"best_acc": 0.93, "test_acc": 0.91}


def test_runs_of_one_group_are_found_by_the_group_filter(server: ToraServer) -> None:
    group = f"sweep-{uuid.uuid4().hex[:6]}"
    ids = []
    for lr in (0.1, 0.01):
        with tora.init(project="group-tests", group=group, config={"lr": lr}) as run:
            run.log({"loss": lr})
            ids.append(run.id)
    with tora.init(project="group-tests", group="other") as other:
        other.log({"loss": 1.0})
    assert [server.get(f"/experiments/{i}")["group"] for i in ids] == [group, group]
    workspace = workspace_named(server, "group-tests")
    assert workspace is not None
    found = server.get(f"/experiments?workspace={workspace['id']}&q=group:{group.upper()}")
    assert sorted(e["id"] for e in found) == sorted(ids)


def test_steps_follow_wandb_commit_and_explicit_steps(server: ToraServer) -> None:
    run = tora.init()
    run.log({"a": 1.0})  # step 0, then 1
    run.log({"b": 2.0}, commit=False)  # step 1, stays
    run.log({"c": 3.0})  # step 1, then 2
    run.log({"a": 4.0}, step=10)  # step 10; without commit, the step stays open
    run.log({"b": 5.0})  # lands on 10 too, then 11
    run.log({"c": 6.0}, step=12, commit=True)  # step 12, then 13
    assert run.step == 13
    run.log({"a": 7.0}, step=3)  # lower than the last: kept, where W&B would drop it
    run.finish()
    assert sorted(series(server, run.id, "a")) == [(0, 1.0), (3, 7.0), (10, 4.0)]
    assert sorted(series(server, run.id, "b")) == [(1, 2.0), (10, 5.0)]
    assert sorted(series(server, run.id, "c")) == [(1, 3.0), (12, 6.0)]


def test_non_numbers_are_skipped_with_one_warning_per_key(server: ToraServer, caplog: pytest.LogCaptureFixture) -> None:
    numpy = pytest.importorskip("numpy")
    run = tora.init()
    with caplog.at_level(logging.WARNING, logger="tora"):
        for step in range(3):
            run.log({"loss": numpy.float32(0.5), "note": "hello", "hist": [1, 2], "epoch": step, "ok": True})
    warnings = [r.getMessage() for r in caplog.records if "not a number" in r.getMessage()]
    assert len(warnings) == 2
    assert any("'note' is a str" in w for w in warnings)
    assert any("'hist' is a list" in w for w in warnings)
    run.finish()
    assert {m["name"] for m in server.metrics(run.id)} == {"loss", "epoch", "ok"}
    assert series(server, run.id, "epoch") == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_nested_dicts_are_logged_with_slashes(server: ToraServer) -> None:
    run = tora.init()
    run.log({"train": {"loss": 0.25, "acc": 0.5}, "lr": 0.1})
    run.finish()
    assert {m["name"] for m in server.metrics(run.id)} == {"train/loss", "train/acc", "lr"}


def test_context_manager_marks_a_failed_run(server: ToraServer) -> None:
    def train() -> str:
        with tora.init() as run:
            run.log({"loss": 1.0})
            raise RuntimeError(run.id)

    with pytest.raises(RuntimeError) as failure:
        train()
    experiment_id = str(failure.value)
    assert server.get(f"/experiments/{experiment_id}")["state"] == "failed"
    assert tora.run is None


def test_finish_with_an_exit_code_fails_the_run(server: ToraServer) -> None:
    run = tora.init()
    tora.finish(exit_code=3)
    assert server.get(f"/experiments/{run.id}")["state"] == "failed"
    again = tora.init()
    tora.finish(0)
    assert server.get(f"/experiments/{again.id}")["state"] == "finished"


def test_setup_and_init_share_the_current_run(server: ToraServer) -> None:
    experiment_id = tora.setup("old-api", hyperparams={"lr": 0.1})
    assert tora.run is not None
    assert tora.run.id == experiment_id
    tora.tmetric("loss", 0.5, 0)
    tora.log({"loss": 0.25})  # the run's step counter starts at 0 too
    tora.config.update({"extra": 1})
    tora.finish(state="finished")
    assert sorted(series(server, experiment_id, "loss")) == [(0, 0.25), (0, 0.5)]
    assert hyperparams(server, experiment_id) == {"lr": 0.1, "extra": 1}
    run = tora.init()
    tora.tmetric("acc", 0.75, 4)
    tora.shutdown()
    assert series(server, run.id, "acc") == [(4, 0.75)]


def test_using_the_module_before_init_names_tora_init() -> None:
    with pytest.raises(tora.ToraError, match=r"tora\.init\(\)"):
        tora.log({"loss": 1.0})
    with pytest.raises(tora.ToraError, match=r"tora\.init\(\)"):
        tora.config.lr = 0.1
    with pytest.raises(tora.ToraError, match=r"tora\.init\(\)"):
        tora.summary["acc"]
    assert tora.run is None


def test_wandb_only_names_raise_a_clear_error() -> None:
    with pytest.raises(tora.ToraUnsupportedError, match="log_artifact"):
        tora.Image("plot.png")
    with pytest.raises(tora.ToraUnsupportedError, match="Tora has no tables"):
        tora.Table(columns=["a"], data=[[1]])
    with pytest.raises(tora.ToraUnsupportedError, match="Optuna"):
        tora.sweep({"method": "grid"})
    with pytest.raises(tora.ToraUnsupportedError, match="gradient"):
        tora.watch(object())
    with pytest.raises(tora.ToraUnsupportedError, match="charts"):
        tora.plot.line(None, "x", "y")
    with pytest.raises(tora.ToraUnsupportedError, match="fork"):
        tora.init(fork_from="abc?_step=10", mode="disabled")
    with pytest.raises(TypeError, match="no_such_option"):
        tora.init(no_such_option=1, mode="disabled")
    assert not isinstance(1, tora.Image)
    assert hasattr(tora, "Histogram")


def test_disabled_mode_sends_nothing(server: ToraServer) -> None:
    before = len(server.get("/experiments"))
    run = tora.init(project="never-made", mode="disabled", config={"lr": 1})
    run.log({"loss": 1.0})
    run.config.lr = 2
    run.summary["acc"] = 1.0
    assert run.config.lr == 2
    assert run.summary["loss"] == 1.0
    assert run.finish() == 0
    assert len(server.get("/experiments")) == before
    assert workspace_named(server, "never-made") is None


def test_tora_mode_disabled_turns_a_whole_script_off(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORA_MODE", "disabled")
    before = len(server.get("/experiments"))
    with tora.init(project="never-made", id="x", resume="must") as run:
        assert run.disabled
        tora.log({"loss": 1.0})
    assert len(server.get("/experiments")) == before


def test_resume_allow_continues_the_same_run(server: ToraServer) -> None:
    run_id = f"resumable-{uuid.uuid4().hex[:8]}"
    first = tora.init(project="resume-tests", id=run_id, resume="allow", config={"lr": 0.1})
    first.log({"loss": 1.0})
    first.log({"loss": 0.5})
    first.finish()
    second = tora.init(project="resume-tests", id=run_id, resume="allow", config={"epochs": 3})
    assert second.id == first.id
    assert second.resumed
    assert second.step == 2, "a resumed run's steps go on after the last one stored"
    assert second.summary["loss"] == 0.5, "and its summary holds what it logged last"
    assert second.config["lr"] == 0.1
    second.log({"loss": 0.25})
    second.finish()
    assert series(server, first.id, "loss") == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert hyperparams(server, first.id) == {"lr": 0.1, "epochs": 3}
    workspace = workspace_named(server, "resume-tests")
    assert workspace is not None
    assert first.id == str(uuid.uuid5(TORA_NAMESPACE, f"{workspace['id']}/{run_id}"))


def test_resume_must_on_a_missing_run_and_a_reused_id_without_resume_are_errors(server: ToraServer) -> None:
    run_id = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(tora.ToraExperimentError, match="resume='must'"):
        tora.init(id=run_id, resume="must")
    assert tora.run is None
    run = tora.init(id=run_id)
    run.finish()
    with pytest.raises(tora.ToraExperimentError, match="resume='allow'"):
        tora.init(id=run_id)
    with pytest.raises(tora.ToraExperimentError, match="resume='allow'"):
        tora.init(id=run_id, resume="never")
    resumed = tora.init(id=run_id, resume="must")
    assert resumed.id == run.id
    resumed.finish()
    project = f"nowhere-{uuid.uuid4().hex[:6]}"
    with pytest.raises(tora.ToraExperimentError, match="no project"):
        tora.init(project=project, id=run_id, resume="must")
    assert workspace_named(server, project) is None, "resume='must' makes no workspace"


def test_a_tora_experiment_id_resumes_as_it_is(server: ToraServer) -> None:
    run = tora.init(name="by-uuid")
    run.log({"loss": 1.0})
    run.finish()
    again = tora.init(id=run.id, resume="must")
    assert again.id == run.id
    assert again.name == "by-uuid"
    again.finish()


CRASHING = """
import os, sys, time
import tora as wandb

run = wandb.init(project="crash-tests", id=sys.argv[1], resume="allow", config={"lr": 0.1})
start = 0 if not run.resumed else int(sys.argv[2])
for step in range(start, int(sys.argv[3])):
    run.log({"loss": 1.0 / (step + 1), "attempt": float(run.resumed)}, step=step)
assert run.client.flush() == 0  # on the server before the crash
print("logged", flush=True)
if sys.argv[4] == "hang":
    time.sleep(600)
run.finish()
"""


def test_a_run_killed_and_resumed_from_a_checkpoint_keeps_every_point(server: ToraServer, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(CRASHING)
    run_id = f"crashy-{uuid.uuid4().hex[:8]}"
    # The first attempt logs steps 0-9, then dies with SIGKILL (no atexit, no finish).
    with subprocess.Popen(
        [sys.executable, str(script), run_id, "0", "10", "hang"],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "logged"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The second resumes from the checkpoint at step 6 and logs 6-14 again.
    done = run_python([str(script), run_id, "6", "15", "finish"])
    assert done.returncode == 0, done.stderr
    workspace = workspace_named(server, "crash-tests")
    assert workspace is not None
    experiment_id = str(uuid.uuid5(TORA_NAMESPACE, f"{workspace['id']}/{run_id}"))
    losses = series(server, experiment_id, "loss")
    assert sorted(step for step, _ in losses) == sorted(list(range(10)) + list(range(6, 15)))
    attempts = series(server, experiment_id, "attempt")
    for step in range(6, 10):  # logged by both attempts: both kept
        assert sorted(v for s, v in attempts if s == step) == [0.0, 1.0]
    assert server.get(f"/experiments/{experiment_id}")["state"] == "finished"


def test_load_experiment_continues_a_finished_run(server: ToraServer) -> None:
    run = tora.init()
    run.log({"loss": 1.0})
    run.finish()
    assert server.get(f"/experiments/{run.id}")["state"] == "finished"
    client = tora.Tora.load_experiment(run.id)
    client.metric("loss", 0.5, 1)
    client.flush()
    deadline = time.monotonic() + 10
    while server.get(f"/experiments/{run.id}")["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.get(f"/experiments/{run.id}")["state"] == "running", "a heartbeat reopens the run"
    client.finish()
    assert series(server, run.id, "loss") == [(0, 1.0), (1, 0.5)]
    assert server.get(f"/experiments/{run.id}")["state"] == "finished"


def test_login_sets_the_key_for_later_runs(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORA_API_KEY")
    with pytest.raises(tora.ToraConfigurationError, match="tora_sk_"):
        tora.login(key="0123456789abcdef0123456789abcdef01234567")  # a W&B key
    try:
        assert tora.login(key=server.key, verify=True)
        run = tora.init()
        run.log({"loss": 1.0})
        run.finish()
        assert series(server, run.id, "loss") == [(0, 1.0)]
    finally:
        tora._init._login.clear()


def test_a_second_init_returns_the_open_run_unless_told(server: ToraServer) -> None:
    first = tora.init()
    assert tora.init() is first
    second = tora.init(reinit="finish_previous")
    assert second is not first
    assert first.finished
    assert server.get(f"/experiments/{first.id}")["state"] == "finished"
    side = tora.init(reinit="create_new")  # another run at once; it becomes the current one
    assert tora.run is side
    assert not second.finished
    tora.log({"loss": 1.0})
    side.finish()
    assert tora.run is None, "finishing the current run leaves none current"
    second.log({"loss": 2.0})
    second.finish()
    assert series(server, side.id, "loss") == [(0, 1.0)]
    assert series(server, second.id, "loss") == [(0, 2.0)]
    third = tora.init()
    assert third.client is not None
    third.client.finish()  # ended through its client: no current run, the next init starts one
    assert tora.run is None
    fourth = tora.init()
    assert third.finished
    assert fourth is not third
    fourth.finish()


def test_offline_run_is_uploaded_by_sync(server: ToraServer) -> None:
    project = f"offline-{uuid.uuid4().hex[:6]}"
    run = tora.init(project=project, mode="offline", name="offline-run", config={"lr": 0.1}, id="night-1")
    run.config.update({"epochs": 2})  # before the first point reaches the disk: kept
    run.log({"loss": 1.0})
    run.finish()
    assert workspace_named(server, project) is None, "nothing was sent while offline"
    done = sync()
    assert done.returncode == 0, done.stderr
    workspace = workspace_named(server, project)
    assert workspace is not None, "sync found (here: made) the project's workspace"
    assert server.get(f"/experiments/{run.id}")["workspace_id"] == workspace["id"]
    assert series(server, run.id, "loss") == [(0, 1.0)]
    assert hyperparams(server, run.id) == {"lr": 0.1, "epochs": 2}
    # The same id offline again continues that run once synced.
    again = tora.init(project=project, mode="offline", id="night-1", resume="allow")
    assert again.id == run.id
    again.log({"loss": 0.5}, step=1)
    again.finish()
    assert sync().returncode == 0
    assert series(server, run.id, "loss") == [(0, 1.0), (1, 0.5)]


def test_init_without_a_server_keeps_the_run_or_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORA_API_KEY", "tora_sk_" + "a" * 40)  # TORA_BASE_URL: nothing listens there
    # A project must be looked up: that needs the server, and the message says how to go on without it.
    with pytest.raises(tora.ToraNetworkError, match="mode='offline'"):
        tora.init(project="somewhere")
    assert tora.run is None
    # Without project or id nothing needs looking up: the run goes on and its points are kept on disk.
    run = tora.init(config={"lr": 0.1})
    run.log({"loss": 1.0})
    run.log({"loss": 0.5})
    assert run.finish(timeout=0.5) == 2


def test_files_in_run_dir_and_saved_files_are_kept_as_artifacts(server: ToraServer, tmp_path: Path) -> None:
    run = tora.init(dir=tmp_path / "runs")
    assert Path(run.dir).parent == tmp_path / "runs"
    Path(run.dir, "model.pt").write_bytes(b"weights")
    Path(run.dir, "plots").mkdir()
    Path(run.dir, "plots", "loss.png").write_bytes(b"png")
    (tmp_path / "config.yaml").write_text("lr: 0.1\n")
    assert tora.save(str(tmp_path / "*.yaml")) == [str(tmp_path / "config.yaml")]
    run.finish()
    kept = {a["path"]: a["size"] for a in server.get(f"/experiments/{run.id}/artifacts")}
    assert kept == {"model.pt": 7, "plots/loss.png": 3, "config.yaml": 8}


def test_a_config_change_the_server_never_gets_is_said_not_lost_silently(
    lone_server: ToraServer, caplog: pytest.LogCaptureFixture
) -> None:
    run = tora.init(config={"lr": 0.1})
    run.log({"loss": 1.0})
    assert run.client is not None
    assert run.client.flush() == 0
    lone_server.kill()
    run.config.update({"lr": 0.2})
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tora"):
        run.finish(timeout=3)
    assert time.monotonic() - started < 10, "finishing does not wait out retries"
    assert any("hyperparams could not be sent" in r.getMessage() for r in caplog.records)
