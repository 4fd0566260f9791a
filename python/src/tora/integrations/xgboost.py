"""An XGBoost training callback: ``xgb.train(params, dtrain, evals=[(dvalid, "valid")],
callbacks=[ToraCallback(project="churn")])``, also ``XGBClassifier(callbacks=[...])`` and ``xgb.cv``.

After each boosting round, every evaluation (``evals`` data set and metric) becomes a metric
``<data>/<metric>`` (``valid/logloss``) at step = the round; under ``xgb.cv`` the fold mean is
the metric and the standard deviation ``<data>/<metric>_std``. The booster's training
parameters (objective, eta, max_depth, ...) become the run's config; with early stopping, the
best score and round become results. Needs ``pip install xgboost``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ._common import RunHolder, hyperparams, require, scalar

_callback = require("xgboost.callback", "xgboost", "xgboost")

__all__ = ["ToraCallback"]

if TYPE_CHECKING:  # mypy checks tora without the frameworks: the base is the framework's at run time
    _TrainingCallback = object
else:
    _TrainingCallback = _callback.TrainingCallback


class ToraCallback(_TrainingCallback):
    """Logs an XGBoost training to Tora: to the current run (``tora.run``) if there is one, else
    to a run it starts with ``tora.init(project=..., name=..., **init_kwargs)`` and finishes after
    the last round."""

    def __init__(self, project: str | None = None, name: str | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        kwargs = dict(init_kwargs, project=project, name=name)
        self._holder = RunHolder({k: v for k, v in kwargs.items() if v is not None}, resume=False)

    def before_training(self, model: Any) -> Any:
        self._holder.get().config.update(booster_params(model))
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, dict[str, Any]]) -> bool:
        values: dict[str, int | float] = {}
        for data, metrics in evals_log.items():
            for metric, history in metrics.items():
                if not history:
                    continue
                last = history[-1]
                if isinstance(last, tuple):  # xgb.cv: (mean, std) over the folds
                    mean, std = scalar(last[0]), scalar(last[1])
                    if std is not None:
                        values[f"{data}/{metric}_std"] = std
                else:
                    mean = scalar(last)
                if mean is not None:
                    values[f"{data}/{metric}"] = mean
        if values:
            self._holder.get().log(values, step=int(epoch))
        return False

    def after_training(self, model: Any) -> Any:
        best_score = scalar(_attribute(model, "best_score"))
        best_iteration = scalar(_attribute(model, "best_iteration"))
        if best_score is not None and best_iteration is not None:
            self._holder.get().summary.update({"best_score": best_score, "best_iteration": int(best_iteration)})
        self._holder.end()
        return model


def booster_params(model: Any) -> dict[str, Any]:
    """The training parameters of a Booster (or of the first fold of ``xgb.cv``'s CVPack), read
    from its saved configuration: booster, objective, the tree parameters, the eval metrics."""
    booster = model if hasattr(model, "save_config") else getattr(getattr(model, "cvfolds", [None])[0], "bst", None)
    if booster is None:
        return {}
    learner = json.loads(booster.save_config()).get("learner", {})
    raw: dict[str, Any] = dict(learner.get("learner_train_param", {}))
    gradient_booster = learner.get("gradient_booster", {})
    raw.update(gradient_booster.get("tree_train_param", {}))
    raw.update(gradient_booster.get("gblinear_train_param", {}))
    model_param = learner.get("learner_model_param", {})
    for key in ("num_feature", "num_class"):
        if key in model_param:
            raw[key] = model_param[key]
    metrics = [m.get("name") for m in learner.get("metrics", []) if isinstance(m, dict)]
    if metrics:
        raw["eval_metric"] = ",".join(str(m) for m in metrics)
    return hyperparams({key: _number(value) for key, value in raw.items()})


def _number(text: Any) -> Any:
    """XGBoost saves numbers as text, floats at single precision: "0.300000012" -> 0.3."""
    if not isinstance(text, str):
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(f"{float(text):.7g}")
    except ValueError:
        return text


def _attribute(model: Any, name: str) -> Any:
    try:
        return getattr(model, name)
    except (AttributeError, TypeError, ValueError):  # no early stopping: Booster raises, xgb.cv's TypeError
        return None
