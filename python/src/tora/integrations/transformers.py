"""A Hugging Face Transformers callback: ``Trainer(..., callbacks=[ToraCallback(project="glue")])``.

At the start of training, the ``TrainingArguments`` and the model's config (under ``model.``)
become the run's config. Every log of the trainer becomes metrics at ``state.global_step``,
named as W&B's callback names them (``train/loss``, ``eval/loss``, ``train/learning_rate``);
the one-off figures of the end of training (``train_runtime``, ``train_loss``, ``total_flos``,
...) become results. The end of training finishes a run the callback started. Set
``report_to="none"`` in ``TrainingArguments`` so the trainer adds no other logger. Needs
``pip install transformers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._init import Run
from ._common import RunHolder, hyperparams, numbers, require

_transformers = require("transformers", "transformers", "transformers")

__all__ = ["ToraCallback"]

if TYPE_CHECKING:  # mypy checks tora without the frameworks: the base is the framework's at run time
    _TrainerCallback = object
else:
    _TrainerCallback = _transformers.TrainerCallback

_RESULTS = frozenset(
    ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")
)


def metric_names(logs: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's log keys as metric names: ``eval_loss`` -> ``eval/loss``, ``loss`` -> ``train/loss``."""
    named: dict[str, Any] = {}
    for key, value in logs.items():
        for prefix in ("eval", "test"):
            if key.startswith(prefix + "_"):
                named[f"{prefix}/{key[len(prefix) + 1 :]}"] = value
                break
        else:
            named[f"train/{key}"] = value
    return named


class ToraCallback(_TrainerCallback):
    """Logs a Trainer's run to Tora: to the current run (``tora.run``) if there is one when
    training starts, else to a run it starts with ``tora.init(project=..., name=..., **init_kwargs)``
    (``name`` defaults to ``TrainingArguments.run_name``). Only the main process logs. Under
    ``Trainer.hyperparameter_search`` each trial is a run of its own (named by ``hp_name``, else
    ``trial-<n>``) in the group named after ``run_name`` (or ``output_dir``), ended by the
    evaluation that follows the trial's training; the current run stays current."""

    def __init__(self, project: str | None = None, name: str | None = None, **init_kwargs: Any) -> None:
        self._init_kwargs = dict(init_kwargs, project=project, name=name)
        self._holder: RunHolder | None = None
        self._trials = 0
        self._trial_trained = False

    def _run(self, args: Any, state: Any = None) -> Run:
        if self._holder is None:
            kwargs = dict(self._init_kwargs)
            search = bool(getattr(state, "is_hyper_param_search", False))
            if search:  # a run per trial, in one group
                self._trials += 1
                kwargs.setdefault("group", str(args.run_name or args.output_dir)[:128])
                kwargs["name"] = str(getattr(state, "trial_name", None) or f"trial-{self._trials - 1}")
            elif kwargs.get("name") is None and getattr(args, "run_name", None):
                kwargs["name"] = str(args.run_name)
            self._holder = RunHolder({k: v for k, v in kwargs.items() if v is not None}, own=search)
        return self._holder.get()

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if state.is_hyper_param_search and self._holder is not None:
            self._holder.end()  # the last trial, if no evaluate() ended it
            self._holder = None
        self._trial_trained = False
        config: dict[str, Any] = {}
        model_config = getattr(model, "config", None)
        if model_config is not None:
            raw = model_config if isinstance(model_config, Mapping) else model_config.to_dict()
            config.update(hyperparams(raw, prefix="model."))
        config.update(hyperparams(args.to_dict()))
        num_parameters = getattr(model, "num_parameters", None)
        if callable(num_parameters):
            config["model.num_parameters"] = int(num_parameters())
        self._run(args, state).config.update(config)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        run = self._run(args, state)
        values = numbers(logs)
        results = {k: v for k, v in values.items() if k in _RESULTS}
        metrics = metric_names({k: v for k, v in values.items() if k not in _RESULTS})
        if metrics:
            run.log(metrics, step=int(state.global_step))
        if results:
            run.summary.update(results)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # hyperparameter_search evaluates each trial after training it: that ends the trial's run
        if self._trial_trained and state.is_world_process_zero and self._holder is not None:
            self._holder.end()
            self._holder, self._trial_trained = None, False

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self._holder is None:
            return
        if state.is_hyper_param_search:
            self._trial_trained = True  # its run ends after the evaluate() that follows
        else:
            self._holder.end()
