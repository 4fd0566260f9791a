"""What every integration shares, in this process: imports, the current run, failed runs."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import tora
from conftest import ToraServer, experiment, hyperparams, results, series

FRAMEWORKS = {
    "lightning": "lightning",
    "transformers": "transformers",
    "keras": "keras",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "optuna": "optuna",
    "sklearn": "scikit-learn",
}


def python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_tora_imports_no_framework() -> None:
    names = ["torch", "jax", *FRAMEWORKS]
    loaded = python(
        "import sys, tora, tora.integrations\n"
        f"print(sorted(m for m in {names!r} if m in sys.modules))"
    )
    assert loaded == "[]"


@pytest.mark.parametrize(("module", "package"), sorted(FRAMEWORKS.items()))
def test_a_missing_framework_is_an_import_error_naming_its_package(
    module: str, package: str
) -> None:
    message = python(
        f"import sys\nsys.modules[{module!r}] = None  # as if not installed\n"
        f"try:\n    import tora.integrations.{module}\n"
        "except ImportError as e:\n    print(e)"
    )
    assert f"tora.integrations.{module} needs the {package!r} package" in message
    assert message.endswith(f"pip install {package}")


def regression(seed: int) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 4))
    return x, x @ np.array([1.0, -1.0, 2.0, 0.0]) + 0.1 * rng.normal(size=120)


def test_callbacks_log_to_the_current_run_and_leave_it_open(server: ToraServer) -> None:
    import lightgbm as lgb
    import xgboost as xgb
    from tora.integrations.lightgbm import ToraCallback as LightGBMCallback
    from tora.integrations.xgboost import ToraCallback as XGBoostCallback

    x, y = regression(0)
    run = tora.init(project="integrations", name="two-boosters", config={"mine": "yes"})
    train = xgb.DMatrix(x, label=y)
    xgb.train(
        {"max_depth": 2},
        train,
        num_boost_round=3,
        evals=[(train, "train")],
        callbacks=[XGBoostCallback(name="ignored: a run is current")],
    )
    params = {"objective": "regression", "num_leaves": 5, "verbose": -1}
    data = lgb.Dataset(x, label=y)
    lgb.train(
        params,
        data,
        num_boost_round=4,
        valid_sets=[data],
        callbacks=[LightGBMCallback()],
    )
    assert tora.run is run and not run.finished
    run.summary["after"] = 1.5
    run.finish()

    stored = experiment(server, run.id)
    assert stored["name"] == "two-boosters"
    assert stored["state"] == "finished"
    config = hyperparams(server, run.id)
    assert config["mine"] == "yes"
    assert config["max_depth"] == 2
    assert config["num_leaves"] == 5
    points = series(server, run.id)
    assert [s for s, _ in points["train/rmse"]] == [0, 1, 2]
    assert [s for s, _ in points["training/l2"]] == [0, 1, 2, 3]
    assert results(server, run.id) == {"after": 1.5}


def test_lightning_run_ends_failed_when_training_raises(server: ToraServer) -> None:
    import torch
    from lightning import LightningModule, Trainer
    from tora.integrations.lightning import ToraLogger
    from torch.utils.data import DataLoader, TensorDataset

    class Exploding(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if batch_idx == 2:
                raise RuntimeError("diverged")
            loss = self.layer(batch[0]).pow(2).mean()
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    logger = ToraLogger(name="exploding")
    trainer = Trainer(
        max_epochs=1,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(TensorDataset(torch.randn(32, 2)), batch_size=4)
    with pytest.raises(RuntimeError, match="diverged"):
        trainer.fit(Exploding(), loader)
    run_id = logger.version  # read after finalize: does not reopen the run
    assert run_id is not None and tora.run is None
    stored = experiment(server, run_id)
    assert stored["state"] == "failed"
    assert [s for s, _ in series(server, run_id)["loss"]] == [0, 1]


def test_optuna_failed_trial_is_a_failed_run_and_the_current_run_stays(
    server: ToraServer,
) -> None:
    import optuna
    from tora.integrations.optuna import ToraCallback

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", -1.0, 1.0)
        if trial.number == 1:
            raise ValueError("bad trial")
        return x * x, abs(x)

    outer = tora.init(name="outer")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name="two-objectives", directions=["minimize", "minimize"]
    )
    callback = ToraCallback(metric_name=["square", "distance"], tags=["t"])
    study.optimize(objective, n_trials=3, callbacks=[callback], catch=(ValueError,))
    assert tora.run is outer and not outer.finished

    workspace = experiment(server, outer.id)["workspace_id"]
    runs = server.get(f"/experiments?workspace={workspace}&q=group:two-objectives")
    by_name = {r["name"]: r for r in runs}
    assert sorted(by_name) == ["trial-0", "trial-1", "trial-2"]
    assert by_name["trial-1"]["state"] == "failed"
    for number in (0, 2):
        run = by_name[f"trial-{number}"]
        assert run["state"] == "finished"
        trial = study.trials[number]
        scores = results(server, run["id"])
        assert scores["square"] == trial.values[0]
        assert scores["distance"] == trial.values[1]
        assert hyperparams(server, run["id"])["x"] == trial.params["x"]
    assert "square" not in results(server, by_name["trial-1"]["id"])
    outer.finish()


def test_log_search_needs_a_fitted_search() -> None:
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV
    from tora.integrations.sklearn import log_search

    with pytest.raises(ValueError, match="call fit first"):
        log_search(GridSearchCV(Ridge(), {"alpha": [1.0, 2.0]}))


def test_cross_validation_logs_fold_means_and_deviations(server: ToraServer) -> None:
    import lightgbm as lgb
    import xgboost as xgb
    from tora.integrations.lightgbm import ToraCallback as LightGBMCallback
    from tora.integrations.xgboost import ToraCallback as XGBoostCallback

    x, y = regression(1)
    xgb_callback = XGBoostCallback(name="xgb-cv")
    history = xgb.cv(
        {"max_depth": 2}, xgb.DMatrix(x, label=y), num_boost_round=3, nfold=3,
        callbacks=[xgb_callback],
    )  # fmt: skip
    run_id = xgb_callback._holder.run_id
    assert run_id is not None
    points = series(server, run_id)
    assert set(points) == {"train/rmse", "train/rmse_std", "test/rmse", "test/rmse_std"}
    assert [v for _, v in points["test/rmse"]] == pytest.approx(
        list(history["test-rmse-mean"])
    )
    assert [v for _, v in points["test/rmse_std"]] == pytest.approx(
        list(history["test-rmse-std"])
    )
    assert hyperparams(server, run_id)["max_depth"] == 2
    assert experiment(server, run_id)["state"] == "finished"

    lgb_callback = LightGBMCallback(name="lgb-cv")
    params = {"objective": "regression", "num_leaves": 5, "verbose": -1}
    result = lgb.cv(
        params,
        lgb.Dataset(x, label=y),
        num_boost_round=4,
        nfold=3,
        stratified=False,
        callbacks=[lgb_callback],
    )
    run_id = lgb_callback._holder.run_id
    assert run_id is not None
    points = series(server, run_id)
    assert set(points) == {"valid/l2", "valid/l2_std"}
    assert [v for _, v in points["valid/l2"]] == pytest.approx(result["valid l2-mean"])
    assert [v for _, v in points["valid/l2_std"]] == pytest.approx(
        result["valid l2-stdv"]
    )
    assert experiment(server, run_id)["state"] == "finished"


def test_a_copied_callback_starts_afresh(server: ToraServer) -> None:
    import copy
    import pickle

    from tora.integrations.keras import ToraCallback

    run = tora.init(name="open")
    callback = ToraCallback(project="p", log_every_n_batches=5)
    assert callback._holder.get() is run
    clone = copy.deepcopy(callback)  # sklearn's clone, XGBoost's advice before reuse
    assert clone._holder.run_id is None and clone._every == 5
    assert pickle.loads(pickle.dumps(callback._holder)).run_id is None  # not its run
    run.finish()


def test_lightgbm_run_stopped_early_ends_when_the_next_training_starts(
    server: ToraServer,
) -> None:
    import lightgbm as lgb
    from tora.integrations.lightgbm import ToraCallback

    def stop_after_third(
        env: Any,
    ) -> None:  # as lgb.early_stopping does, deterministically
        if env.iteration == 2:
            raise lgb.callback.EarlyStopException(2, env.evaluation_result_list)

    stop_after_third.order = 40  # type: ignore[attr-defined]
    x, y = regression(2)
    data = lgb.Dataset(x, label=y, free_raw_data=False)
    params = {"objective": "regression", "num_leaves": 5, "verbose": -1}
    callback = ToraCallback(name="boost")
    lgb.train(
        params,
        data,
        num_boost_round=10,
        valid_sets=[data],
        callbacks=[callback, stop_after_third],
    )
    first = callback._holder.run_id
    assert first is not None and tora.run is not None and tora.run.id == first
    # LightGBM told its callbacks nothing of the stop
    assert experiment(server, first)["state"] == "running"

    lgb.train(params, data, num_boost_round=4, valid_sets=[data], callbacks=[callback])
    second = callback._holder.run_id
    assert second is not None and second != first
    assert experiment(server, first)["state"] == "finished"
    assert experiment(server, second)["state"] == "finished"
    assert [s for s, _ in series(server, first)["training/l2"]] == [0, 1, 2]
    assert [s for s, _ in series(server, second)["training/l2"]] == [0, 1, 2, 3]
    assert tora.run is None
