"""A scikit-learn hyperparameter search that logs one Tora experiment per configuration.

Each configuration's cross-validation folds are logged as steps of a metric, and its scores
as results, so the dashboard can compare configurations side by side.
"""

from itertools import product

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tora import Tora

GRID = {"C": [0.01, 0.1, 1.0], "penalty": ["l2"], "fit_intercept": [True, False]}


def main() -> None:
    x, y = load_breast_cancer(return_X_y=True)  # ships with scikit-learn: no download
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)

    for values in product(*GRID.values()):
        config = dict(zip(GRID, values))
        with Tora.create_experiment(
            "breast-cancer-logreg", hyperparams=config, tags=["example", "sklearn", "grid-search"]
        ) as run:
            scores = []
            for fold, (fit_idx, val_idx) in enumerate(folds.split(x_train, y_train)):
                model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, **config))
                model.fit(x_train[fit_idx], y_train[fit_idx])
                scores.append(model.score(x_train[val_idx], y_train[val_idx]))
                run.metric("cv/accuracy", scores[-1], fold)
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, **config)).fit(x_train, y_train)
            run.result("cv_mean_accuracy", sum(scores) / len(scores))
            run.result("test_accuracy", model.score(x_test, y_test))
            print(f"{config}: cv {sum(scores) / len(scores):.3f} -> {run.url}")


if __name__ == "__main__":
    main()
