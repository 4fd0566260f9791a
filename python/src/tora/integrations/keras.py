"""A Keras 3 callback: ``model.fit(x, y, callbacks=[ToraCallback(project="mnist")])``.

Any backend (JAX, TensorFlow, PyTorch). At the end of each epoch its logs (``loss``,
``accuracy``, ``val_loss``, ...) become metrics ``epoch/<name>`` at step = the epoch; with
``log_every_n_batches=N`` the batch logs become ``batch/<name>`` every N batches, at step = the
batch count since training began. The fit's settings (epochs, steps per epoch, optimizer and
learning rate, parameter count) become the run's config. Needs ``pip install keras``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._common import RunHolder, hyperparams, numbers, require, scalar

_keras = require("keras", "keras", "keras")

__all__ = ["ToraCallback"]

if TYPE_CHECKING:  # mypy checks tora without the frameworks: the base is the framework's at run time
    _Callback = object
else:
    _Callback = _keras.callbacks.Callback


class ToraCallback(_Callback):
    """Logs ``model.fit`` to Tora: to the current run (``tora.run``) if there is one when
    training starts, else to a run it starts with ``tora.init(project=..., name=..., **init_kwargs)``
    and finishes when training ends."""

    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        log_every_n_batches: int | None = None,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        if log_every_n_batches is not None and (not isinstance(log_every_n_batches, int) or log_every_n_batches < 1):
            raise ValueError(f"log_every_n_batches must be a positive integer, got {log_every_n_batches!r}")
        kwargs = dict(init_kwargs, project=project, name=name)
        self._holder = RunHolder({k: v for k, v in kwargs.items() if v is not None})
        self._every = log_every_n_batches
        self._batches = 0

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        run = self._holder.get()
        params: dict[str, Any] = getattr(self, "params", None) or {}
        config: dict[str, Any] = {k: params[k] for k in ("epochs", "steps") if params.get(k) is not None}
        model = getattr(self, "model", None)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            config["optimizer"] = type(optimizer).__name__
            rate = scalar(_learning_rate(optimizer))
            if rate is not None:
                config["learning_rate"] = rate
        if model is not None and getattr(model, "built", False):
            config["num_parameters"] = int(model.count_params())
        run.config.update(hyperparams(config))

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batches += 1
        if self._every is None or self._batches % self._every or not logs:
            return
        values = numbers(logs)
        if values:
            self._holder.get().log({f"batch/{k}": v for k, v in values.items()}, step=self._batches)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        values = numbers(logs or {})
        if values:
            self._holder.get().log({f"epoch/{k}": v for k, v in values.items()}, step=int(epoch))

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._holder.end()


def _learning_rate(optimizer: Any) -> Any:
    try:
        rate = optimizer.learning_rate
        return rate.numpy() if hasattr(rate, "numpy") else rate
    except Exception:  # a schedule, or a backend that cannot read it here: leave it out
        return None
