"""A scikit-learn search as runs: ``log_search(GridSearchCV(...).fit(x, y), project="churn")``.

Every candidate of the search's ``cv_results_`` becomes a run in one group: its params are the
run's hyperparameters; its mean and std test (and train) scores, fit and score times and rank
are results under their ``cv_results_`` names (``mean_test_score``, ``rank_test_score``,
``mean_test_accuracy`` with several scorers, ...); its per-fold scores are metrics
``split/test_<scorer>`` over the fold number. The best candidate (``best_index_``) is tagged ``best``. Any search
with ``cv_results_`` works (GridSearchCV, RandomizedSearchCV, the Halving searches). The
current run, if there is one, stays current. Needs ``pip install scikit-learn``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from ._common import hyperparams, require, scalar, side_run

require("sklearn", "scikit-learn", "sklearn")

__all__ = ["log_search"]

_SPLIT = re.compile(r"split(\d+)_(.+)")


def log_search(
    search: Any,
    project: str | None = None,
    name: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    **init_kwargs: Any,
) -> list[str]:
    """Log each candidate of a fitted search as a run; returns the runs' ids in candidate order.

    ``name`` prefixes the runs' names (``<name>-<candidate>``; default: the estimator's class
    name); ``group`` names their group (default: ``<name>-<date>-<time>``, one group per call);
    the other keyword arguments go to ``tora.init`` for each run.

    Raises:
        ValueError: the search has not been fitted (it has no ``cv_results_``).
    """
    results = getattr(search, "cv_results_", None)
    if not isinstance(results, dict) or "params" not in results:
        raise ValueError(f"log_search needs a fitted search with cv_results_ (call fit first), got {search!r:.80}")
    base = name or _estimator_name(search)
    group = group or f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"
    best_index = _best_index(search, results)
    ids = []
    for i, params in enumerate(results["params"]):
        values: dict[str, int | float] = {}
        folds: dict[str, dict[int, int | float]] = {}
        for key, column in results.items():
            if key == "params" or key.startswith("param_"):
                continue
            number = scalar(column[i])
            if number is None:
                continue
            split = _SPLIT.fullmatch(key)
            if split:
                folds.setdefault(f"split/{split.group(2)}", {})[int(split.group(1))] = number
            else:
                values[key] = number
        run_tags = [*(tags or []), "best"] if i == best_index else tags
        kwargs = {k: v for k, v in init_kwargs.items() if v is not None}
        if project is not None:
            kwargs["project"] = project
        with side_run(
            name=f"{base}-{i}", group=group, config=hyperparams(params), tags=run_tags or None, **kwargs
        ) as run:
            for metric, by_fold in folds.items():
                for fold, number in sorted(by_fold.items()):
                    run.log({metric: number}, step=fold)
            if values:
                run.summary.update(values)
            ids.append(run.id)
    return ids


def _best_index(search: Any, results: dict[str, Any]) -> int | None:
    """The search's ``best_index_`` (set when it refits), else the first candidate ranked 1st."""
    best = scalar(getattr(search, "best_index_", None))
    if best is not None:
        return int(best)
    refit = getattr(search, "refit", None)
    key = f"rank_test_{refit}" if isinstance(refit, str) else "rank_test_score"
    ranks = results.get(key)
    if ranks is None:
        ranks = next((v for k, v in results.items() if k.startswith("rank_test_")), None)
    if ranks is None:
        return None
    return next((i for i, rank in enumerate(ranks) if rank == 1), None)


def _estimator_name(search: Any) -> str:
    estimator = getattr(search, "estimator", None)
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:  # a Pipeline: name it after its last step
        estimator = steps[-1][1]
    return type(estimator).__name__ if estimator is not None else type(search).__name__
