"""keras.ToraCallback with Keras 3 on the JAX backend: a small classifier on random data."""

from __future__ import annotations

from conftest import ToraServer, experiment, hyperparams, run_example, series


def test_fit_logs_epochs_and_every_second_batch(server: ToraServer) -> None:
    _, ids = run_example("keras_example.py")
    (run_id,) = ids
    stored = experiment(server, run_id)
    assert stored["state"] == "finished"
    assert stored["name"] == "keras-classifier"
    config = hyperparams(server, run_id)
    assert config["epochs"] == 3
    # 96 training samples (128 less the validation quarter) in batches of 16
    assert config["steps"] == 6
    assert config["optimizer"] == "Adam"
    assert abs(config["learning_rate"] - 0.01) < 1e-9
    assert config["num_parameters"] == 8 * 16 + 16 + 16 * 2 + 2
    points = series(server, run_id)
    for name in (
        "epoch/loss",
        "epoch/accuracy",
        "epoch/val_loss",
        "epoch/val_accuracy",
    ):
        assert [s for s, _ in points[name]] == [0, 1, 2], name
    # 6 batches an epoch, 18 in all, every second one logged, counted across epochs
    assert [s for s, _ in points["batch/loss"]] == list(range(2, 19, 2))
    assert all(0.0 <= v <= 1.0 for _, v in points["epoch/accuracy"])
