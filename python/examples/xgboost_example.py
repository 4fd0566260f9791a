"""XGBoost: a booster trained by ``xgb.train`` with ToraCallback and early stopping.

Random regression data. Each round's evaluations become metrics (``train/rmse``,
``valid/rmse``), the booster's parameters the run's config, the best round its results.
"""

import numpy as np
import xgboost as xgb

from tora.integrations.xgboost import ToraCallback


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0, 0.0]) + 0.1 * rng.normal(size=300)
    train = xgb.DMatrix(x[:200], label=y[:200])
    valid = xgb.DMatrix(x[200:], label=y[200:])
    params = {"objective": "reg:squarederror", "eta": 0.3, "max_depth": 3, "eval_metric": ["rmse", "mae"]}
    booster = xgb.train(
        params,
        train,
        num_boost_round=15,
        evals=[(train, "train"), (valid, "valid")],
        early_stopping_rounds=5,
        callbacks=[ToraCallback(project="tora-examples", name="xgboost-regressor", tags=["xgboost"])],
        verbose_eval=False,
    )
    print("best:", booster.best_iteration, booster.best_score)


if __name__ == "__main__":
    main()
