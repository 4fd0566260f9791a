"""scikit-learn: a grid search whose candidates become Tora runs, all in one group.

``log_search`` takes the fitted search: each candidate's params become a run's hyperparameters,
its mean/std cross-validation scores, times and rank its results, its per-fold scores the
metric ``split/test_score`` over the folds. The data set ships with scikit-learn.
"""

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tora.integrations.sklearn import log_search


def main() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        {"logisticregression__C": [0.01, 0.1, 1.0], "logisticregression__fit_intercept": [True, False]},
        cv=3,
    ).fit(x, y)
    ids = log_search(search, project="tora-examples", group="breast-cancer-logreg", tags=["sklearn"])
    print("runs:", " ".join(ids))
    print("best:", search.best_index_, search.best_params_)


if __name__ == "__main__":
    main()
