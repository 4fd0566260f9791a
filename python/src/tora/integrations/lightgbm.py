"""A LightGBM callback: ``lgb.train(params, train, valid_sets=[valid], callbacks=[ToraCallback(project="ctr")])``,
also ``lgb.cv`` and the scikit-learn API's ``fit(..., callbacks=[...])``.

After each iteration, every evaluation becomes a metric ``<data>/<metric>`` (``valid_0/l2``)
at step = the iteration; under ``lgb.cv`` the fold mean is ``valid/<metric>`` and the standard
deviation ``valid/<metric>_std``. The training parameters become the run's config at the first
iteration. A run the callback started is finished after the last iteration; when early stopping
ends training sooner (LightGBM tells its callbacks nothing then), it is finished when the next
training starts, by ``tora.finish()``, or at exit. Needs ``pip install lightgbm``.
"""

from __future__ import annotations

from typing import Any

from ._common import RunHolder, hyperparams, require, scalar

require("lightgbm", "lightgbm", "lightgbm")

__all__ = ["ToraCallback"]


class ToraCallback:
    """Logs a LightGBM training to Tora: to the current run (``tora.run``) if there is one,
    else to a run it starts with ``tora.init(project=..., name=..., **init_kwargs)``."""

    order = 20  # with LightGBM's record_evaluation: before early stopping (30) ends a training
    before_iteration = False

    def __init__(self, project: str | None = None, name: str | None = None, **init_kwargs: Any) -> None:
        kwargs = dict(init_kwargs, project=project, name=name)
        self._holder = RunHolder({k: v for k, v in kwargs.items() if v is not None}, resume=False)
        self._model: Any = None

    def __call__(self, env: Any) -> None:
        if env.model is not self._model:  # a new training: the last one may have stopped early
            if self._model is not None:
                self._holder.end()
            self._model = env.model
            self._holder.get().config.update(hyperparams(dict(env.params)))
        values: dict[str, int | float] = {}
        for entry in env.evaluation_result_list or []:
            # (data, metric, value, higher_better[, std]): a tuple before LightGBM 4.7, an
            # EvalResult since; lgb.cv adds the std over the folds, and before 4.7 named the data
            # "cv_agg" with the metric "valid l2"
            data, metric, mean = str(entry[0]), str(entry[1]), scalar(entry[2])
            if data == "cv_agg" and " " in metric:
                data, _, metric = metric.partition(" ")
            std = scalar(entry[4]) if len(entry) > 4 else None
            if std is not None:
                values[f"{data}/{metric}_std"] = std
            if mean is not None:
                values[f"{data}/{metric}"] = mean
        if values:
            self._holder.get().log(values, step=int(env.iteration))
        if env.iteration >= env.end_iteration - 1:
            self._holder.end()
            self._model = None
