"""transformers.ToraCallback on a tiny BERT trained by the real Trainer."""

from __future__ import annotations

from conftest import ToraServer, experiment, hyperparams, results, run_example, series


def test_trainer_logs_config_metrics_and_results_to_one_run(server: ToraServer) -> None:
    _, ids = run_example("transformers_example.py")
    assert len(ids) == 1, ids  # evaluate() after train() continues the same run
    (run_id,) = ids
    stored = experiment(server, run_id)
    assert stored["state"] == "finished"
    assert stored["name"] == "tiny-bert"
    assert {"transformers", "example"} <= set(stored["tags"])
    config = hyperparams(server, run_id)
    assert config["max_steps"] == 8
    assert config["learning_rate"] == 1e-3
    assert config["model.hidden_size"] == 16
    assert config["model.model_type"] == "bert"
    assert config["model.num_parameters"] > 0
    points = series(server, run_id)
    assert [s for s, _ in points["train/loss"]] == [2, 4, 6, 8]
    assert [s for s, _ in points["train/learning_rate"]] == [2, 4, 6, 8]
    # eval at steps 4 and 8 during training, then evaluate() at the final step 8 again
    assert [s for s, _ in points["eval/loss"]] == [4, 8, 8]
    assert set(results(server, run_id)) >= {
        "train_runtime",
        "train_loss",
        "train_samples_per_second",
        "total_flos",
    }
