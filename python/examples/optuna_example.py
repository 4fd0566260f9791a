"""Optuna: a small hyperparameter search where each trial becomes a Tora run, all in one group.

Each trial trains scikit-learn's SGDRegressor for a few epochs on random data, reporting the
validation error after each; the median pruner stops poor trials early. A trial's params are
its run's hyperparameters, its value a result, its reports the metric ``intermediate/val_mse``.
Filter the dashboard with ``group:<study name>`` to see the search.
"""

import time

import numpy as np
import optuna
from sklearn.linear_model import SGDRegressor
from sklearn.metrics import mean_squared_error

from tora.integrations.optuna import ToraCallback

EPOCHS = 5


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = x @ np.array([1.5, -2.0, 0.5, 0.0, 1.0]) + 0.1 * rng.normal(size=400)
    x_train, y_train, x_valid, y_valid = x[:300], y[:300], x[300:], y[300:]

    def objective(trial: optuna.Trial) -> float:
        model = SGDRegressor(
            alpha=trial.suggest_float("alpha", 1e-5, 1e-1, log=True),
            eta0=trial.suggest_float("eta0", 1e-4, 1e-1, log=True),
            penalty=trial.suggest_categorical("penalty", ["l2", "l1"]),
            random_state=0,
        )
        for epoch in range(EPOCHS):
            model.partial_fit(x_train, y_train)
            mse = float(mean_squared_error(y_valid, model.predict(x_valid)))
            trial.report(mse, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return mse

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"sgd-{time.strftime('%Y%m%d-%H%M%S')}",
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    callback = ToraCallback(metric_name="val_mse", project="tora-examples", tags=["optuna"])
    study.optimize(objective, n_trials=6, callbacks=[callback])
    print("study:", study.study_name)
    print("best:", study.best_trial.number, study.best_value)


if __name__ == "__main__":
    main()
