"""transformers.ToraCallback on a tiny BERT trained by the real Trainer."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import (
    EXAMPLES,
    ToraServer,
    experiment,
    hyperparams,
    results,
    run_example,
    series,
)


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


def test_hyperparameter_search_makes_each_trial_a_run_in_one_group(
    server: ToraServer, tmp_path: Path
) -> None:
    import optuna
    import tora
    from tora.integrations.transformers import ToraCallback
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        Trainer,
        TrainingArguments,
    )

    sys.path.insert(0, str(EXAMPLES))
    from transformers_example import dataset

    def model_init(trial: object = None) -> BertForSequenceClassification:
        config = BertConfig(
            vocab_size=64,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            num_labels=2,
        )
        return BertForSequenceClassification(config)

    outer = tora.init(name="notebook")
    args = TrainingArguments(
        output_dir=str(tmp_path),
        run_name="bert-search",
        max_steps=2,
        logging_steps=1,
        per_device_train_batch_size=8,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model_init=model_init,
        args=args,
        train_dataset=dataset(16),
        eval_dataset=dataset(8),
        callbacks=[ToraCallback()],
    )
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trainer.hyperparameter_search(
        hp_space=lambda t: {
            "learning_rate": t.suggest_float("learning_rate", 1e-4, 1e-2)
        },
        backend="optuna",
        n_trials=2,
        direction="minimize",
    )
    # each trial's run ended with its evaluation; the notebook's run is current again
    assert tora.run is outer and not outer.finished

    workspace = experiment(server, outer.id)["workspace_id"]
    runs = server.get(f"/experiments?workspace={workspace}&q=group:bert-search")
    assert sorted(r["name"] for r in runs) == ["trial-0", "trial-1"]
    rates = set()
    for run in runs:
        assert run["state"] == "finished"
        rates.add(hyperparams(server, run["id"])["learning_rate"])
        points = series(server, run["id"])
        assert [s for s, _ in points["train/loss"]] == [1, 2]
        assert [s for s, _ in points["eval/loss"]] == [2]  # evaluate() after train()
    assert len(rates) == 2
    assert series(server, outer.id) == {}
    outer.finish()
