"""xgboost.ToraCallback and lightgbm.ToraCallback with the real libraries, on random data."""

from __future__ import annotations

from conftest import ToraServer, experiment, hyperparams, results, run_example, series


def test_xgboost_logs_every_round_params_and_best_round(server: ToraServer) -> None:
    done, ids = run_example("xgboost_example.py")
    (run_id,) = ids
    stored = experiment(server, run_id)
    assert stored["state"] == "finished"
    assert stored["name"] == "xgboost-regressor"
    config = hyperparams(server, run_id)
    assert config["objective"] == "reg:squarederror"
    assert config["eta"] == 0.3
    assert config["max_depth"] == 3
    assert config["eval_metric"] == "rmse,mae"
    points = series(server, run_id)
    assert set(points) == {"train/rmse", "train/mae", "valid/rmse", "valid/mae"}
    rounds = [s for s, _ in points["valid/rmse"]]
    assert rounds == list(range(len(rounds))) and len(rounds) >= 6
    assert points["train/rmse"][-1][1] < points["train/rmse"][0][1]
    best_iteration, best_score = done.stdout.split("best:")[1].split()
    assert results(server, run_id) == {
        "best_iteration": int(best_iteration),
        "best_score": float(best_score),
    }


def test_lightgbm_logs_every_iteration_and_params(server: ToraServer) -> None:
    _, ids = run_example("lightgbm_example.py")
    (run_id,) = ids
    stored = experiment(server, run_id)
    assert stored["state"] == "finished"
    config = hyperparams(server, run_id)
    assert config["objective"] == "regression"
    assert config["learning_rate"] == 0.2
    assert config["num_leaves"] == 7
    points = series(server, run_id)
    assert set(points) == {"training/l2", "training/l1", "valid/l2", "valid/l1"}
    for name, values in points.items():
        assert [s for s, _ in values] == list(range(12)), name
    assert points["valid/l2"][-1][1] < points["valid/l2"][0][1]
