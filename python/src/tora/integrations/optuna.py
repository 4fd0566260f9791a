"""An Optuna callback: ``study.optimize(objective, n_trials=50, callbacks=[ToraCallback(metric_name="accuracy")])``.

Each finished trial becomes a run named ``trial-<number>`` in the group named after the study,
so ``group:<study name>`` lists the whole search: the trial's params are its hyperparameters,
its value (or values, for a multi-objective study) its results under ``metric_name``, the
values it reported with ``trial.report(value, step)`` a metric ``intermediate/<metric_name>``
over those steps, and its numeric user attributes results too. A completed or pruned trial (tagged
``pruned``) ends finished, a failed one failed. The current run, if there is one, stays
current. Needs ``pip install optuna``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._common import hyperparams, numbers, require, scalar, side_run

_optuna = require("optuna", "optuna", "optuna")

__all__ = ["ToraCallback"]


class ToraCallback:
    """Makes each trial of a study a Tora run (``tora.init(project=..., group=<study name>, ...)``).

    ``metric_name`` names the objective's value, or the values of a multi-objective study (a
    sequence, one name per objective; a single name gets ``_0``, ``_1``, ... appended).
    """

    def __init__(
        self,
        metric_name: str | Sequence[str] = "value",
        project: str | None = None,
        tags: list[str] | None = None,
        **init_kwargs: Any,
    ) -> None:
        if not isinstance(metric_name, str) and not (
            isinstance(metric_name, Sequence) and metric_name and all(isinstance(m, str) for m in metric_name)
        ):
            raise ValueError(f"metric_name must be a string or a sequence of strings, got {metric_name!r:.60}")
        self._metric_name = metric_name
        self._init_kwargs = dict(init_kwargs, project=project, tags=tags)

    def _names(self, count: int) -> list[str]:
        if isinstance(self._metric_name, str):
            return [self._metric_name] if count == 1 else [f"{self._metric_name}_{i}" for i in range(count)]
        names = list(self._metric_name)
        if len(names) != count:
            raise ValueError(f"metric_name names {len(names)} objectives, the study has {count}")
        return names

    def __call__(self, study: Any, trial: Any) -> None:
        state = trial.state
        values: list[Any] = list(trial.values or [])
        names = self._names(len(values) or len(study.directions))
        results: dict[str, int | float] = {}
        for name, value in zip(names, values):
            number = scalar(value)
            if number is not None:
                results[name] = number
        results.update(numbers({k: v for k, v in trial.user_attrs.items() if k not in results}))
        if trial.datetime_start is not None and trial.datetime_complete is not None:
            results["duration_s"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
        tags = list(self._init_kwargs.get("tags") or [])
        if state == _optuna.trial.TrialState.PRUNED:
            tags.append("pruned")
        kwargs = {k: v for k, v in self._init_kwargs.items() if v is not None}
        kwargs.update(
            name=f"trial-{trial.number}",
            group=str(study.study_name)[:128],
            config=hyperparams({**trial.params, "trial_number": trial.number}),
            tags=tags or None,
        )
        with side_run(**kwargs) as run:
            steps = sorted(trial.intermediate_values.items())
            for step, value in steps:
                number = scalar(value)
                if number is not None:
                    run.log({f"intermediate/{names[0]}": number}, step=int(step))
            if results:
                run.summary.update(results)
            run.finish(exit_code=1 if state == _optuna.trial.TrialState.FAIL else 0)
