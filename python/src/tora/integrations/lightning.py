"""A Lightning logger: ``Trainer(logger=ToraLogger(project="mnist"))``.

Hyperparameters (``self.save_hyperparameters()``, ``log_hyperparams``) become the run's config;
``self.log(...)`` values become metrics at the trainer's global step; the end of ``fit`` (or
``validate``, ``test``) finishes the run, failed if training raised. Needs ``pip install lightning``.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._init import Run
from ._common import RunHolder, hyperparams, numbers, require

_loggers = require("lightning.pytorch.loggers", "lightning", "lightning")
_rank_zero = require("lightning.pytorch.utilities.rank_zero", "lightning", "lightning")

__all__ = ["ToraLogger"]

if TYPE_CHECKING:  # mypy checks tora without the frameworks: the base is the framework's at run time
    _Logger = object
else:
    _Logger = _loggers.Logger

_FINISHED = ("success", "finished")


class ToraLogger(_Logger):
    """Logs a Lightning run to Tora: to the current run (``tora.run``) if there is one when
    training starts, else to a run it starts with ``tora.init(project=..., name=..., **init_kwargs)``
    and finishes when the trainer finalizes (``"failed"`` if training raised).

    Only the process of global rank 0 logs, as with Lightning's own loggers.
    """

    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: list[str] | None = None,
        group: str | None = None,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        kwargs = dict(init_kwargs, project=project, name=name, config=config, tags=tags, group=group)
        self._holder = RunHolder({k: v for k, v in kwargs.items() if v is not None})
        self._name = name

    @property
    def experiment(self) -> Run | None:
        """The Tora run (``tora.init``'s run object), started on first use; None off rank 0."""
        if not _is_rank_zero():
            return None
        return self._holder.get()

    @property
    def name(self) -> str | None:
        """The run's name (before the run starts: the name given, else the run is started)."""
        if self._holder.run_name is not None or self._name is not None:
            return self._holder.run_name or self._name
        run = self.experiment
        return run.name if run is not None else None

    @property
    def version(self) -> str | None:
        """The run's id (Lightning names checkpoint folders after it); reading it after the
        trainer finalized does not reopen the run."""
        if self._holder.run_id is not None:
            return self._holder.run_id
        run = self.experiment
        return run.id if run is not None else None

    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        run = self.experiment
        if run is None:
            return
        raw = vars(params) if isinstance(params, Namespace) else params
        run.config.update(hyperparams(raw))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        run = self.experiment
        if run is None:
            return
        values = numbers(metrics)
        if values:
            run.log(values, step=step)

    def finalize(self, status: str) -> None:
        if _is_rank_zero():
            self._holder.end(failed=status not in _FINISHED)


def _is_rank_zero() -> bool:
    return getattr(_rank_zero.rank_zero_only, "rank", 0) == 0
