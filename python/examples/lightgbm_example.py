"""LightGBM: a booster trained by ``lgb.train`` with ToraCallback.

Random regression data. Each iteration's evaluations become metrics (``training/l2``,
``valid/l2``), the training parameters the run's config.
"""

import lightgbm as lgb
import numpy as np

from tora.integrations.lightgbm import ToraCallback


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0, 0.0]) + 0.1 * rng.normal(size=300)
    train = lgb.Dataset(x[:200], label=y[:200])
    valid = lgb.Dataset(x[200:], label=y[200:], reference=train)
    params = {"objective": "regression", "learning_rate": 0.2, "num_leaves": 7, "metric": ["l2", "l1"], "verbose": -1}
    booster = lgb.train(
        params,
        train,
        num_boost_round=12,
        valid_sets=[train, valid],
        valid_names=["training", "valid"],
        callbacks=[ToraCallback(project="tora-examples", name="lightgbm-regressor", tags=["lightgbm"])],
    )
    print("trees:", booster.num_trees())


if __name__ == "__main__":
    main()
