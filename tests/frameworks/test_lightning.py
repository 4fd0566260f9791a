"""lightning.ToraLogger with the real Trainer: a small regression model on random data."""

from __future__ import annotations

from conftest import ToraServer, experiment, hyperparams, run_example, series


def test_trainer_logs_hyperparams_and_metrics_at_global_steps(
    server: ToraServer,
) -> None:
    done, ids = run_example("lightning_example.py")
    assert len(ids) == 1, ids  # validate() after fit() continues the same run
    (run_id,) = ids
    assert f"run: {run_id}" in done.stdout  # the logger's version is the run id
    stored = experiment(server, run_id)
    assert stored["state"] == "finished"
    assert stored["name"] == "lightning-regressor"
    assert hyperparams(server, run_id) == {"hidden": 16, "lr": 0.01}
    points = series(server, run_id)
    # 64 samples in batches of 16: 4 steps per epoch, 3 epochs; logged at every step
    assert [s for s, _ in points["train/loss"]] == list(range(12))
    assert points["train/loss"][-1][1] < points["train/loss"][0][1]
    # val/loss at the end of each epoch (steps 3, 7, 11), then validate() at the final step
    assert [s for s, _ in points["val/loss"]] == [3, 7, 11, 12]
    # Lightning adds the epoch to each logged dict; validate() comes after the 3 epochs
    epochs = {s: s // 4 for s in range(12)} | {12: 3}
    assert {s: v for s, v in points["epoch"]} == epochs
