"""What the integrations share: importing a framework, turning its values into Tora's, and the
run an integration logs to (the current one, or one it starts and finishes itself)."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from .. import _init
from .._init import _hp_value
from .._validation import HPValue

_MAX_KEY = 100
_MAX_DEPTH = 8


def require(module: str, package: str, integration: str) -> ModuleType:
    """Import ``module`` of a framework, or raise ImportError naming the pip ``package``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"tora.integrations.{integration} needs the {package!r} package, which could not be imported "
            f"({e}): pip install {package}"
        ) from e


def hyperparams(raw: Mapping[str, Any], prefix: str = "") -> dict[str, HPValue]:
    """A framework's configuration as hyperparameters: nested mappings flattened with ``.``,
    each value as ``run.config`` sends it (numbers and strings kept, the rest as text), so
    nothing raises in the middle of a training set-up."""
    flat: dict[str, HPValue] = {}
    _flatten(raw, prefix, flat, 0)
    return flat


def _flatten(raw: Mapping[str, Any], prefix: str, into: dict[str, HPValue], depth: int) -> None:
    for key, value in raw.items():
        name = f"{prefix}{key}".strip()
        if not name:
            continue
        if isinstance(value, Mapping) and value and depth < _MAX_DEPTH:
            _flatten(value, f"{name}.", into, depth + 1)
            continue
        into[name[:_MAX_KEY]] = _hp_value(value)


def scalar(value: Any) -> int | float | None:
    """A framework's number (int, float, bool, numpy or JAX scalar, 0-d tensor) as a Python
    number; None for anything else (strings, arrays of several values)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (str, bytes)) or value is None:
        return None
    item = getattr(value, "item", None)
    if callable(item):
        try:
            inner = item()
        except (TypeError, ValueError, RuntimeError):
            return None
        return inner if isinstance(inner, (int, float)) and not isinstance(inner, bool) else None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def numbers(raw: Mapping[str, Any]) -> dict[str, int | float]:
    """The entries of ``raw`` that are single numbers, as Python numbers."""
    out: dict[str, int | float] = {}
    for key, value in raw.items():
        number = scalar(value)
        if number is not None:
            out[str(key)] = number
    return out


class RunHolder:
    """The run a single-run integration logs to.

    ``get()`` returns the current run (``tora.run``) if there is one; otherwise it starts one with
    ``tora.init(**init_kwargs)``, which the holder owns. With ``own=True`` it always starts its
    own (a trial of a search), leaving the current run current again when it ends. ``end()``
    finishes an owned run and leaves a run it did not start alone. With ``resume=True``,
    logging after ``end()`` (Lightning's ``trainer.test`` after ``fit``, Transformers'
    ``evaluate`` after ``train``) continues the same run, resumed by id, so one training script
    stays one run; without, it starts a new run (a booster's next training is another model).
    """

    def __init__(self, init_kwargs: Mapping[str, Any], own: bool = False, resume: bool = True) -> None:
        self._init_kwargs = dict(init_kwargs)
        self._own = own
        self._resume = resume
        self._run: _init.Run | None = None
        self._owned = False
        self._previous: _init.Run | None = None
        self._ended_id: str | None = None
        self._ended_name: str | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> RunHolder:
        """A copy (sklearn's clone, XGBoost's advice to copy a callback before reuse) starts
        afresh: it logs to the current run or starts its own."""
        return RunHolder(self._init_kwargs, self._own, self._resume)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a spawned worker process), the holder leaves the run behind; a copy that
        logs continues an owned run by its id, or starts one."""
        state = dict(self.__dict__)
        if self._run is not None and self._owned:
            state["_ended_id"], state["_ended_name"] = self._run.id, self._run.name
        state.update(_run=None, _owned=False, _previous=None)
        return state

    @property
    def run_id(self) -> str | None:
        """The id of the run logged to, or of the last one ended; None before the first."""
        return self._run.id if self._run is not None else self._ended_id

    @property
    def run_name(self) -> str | None:
        return self._run.name if self._run is not None else self._ended_name

    def get(self) -> _init.Run:
        with _init._lock:
            if self._run is not None and self._run.finished:  # finished by the user (tora.finish())
                if self._owned:
                    self._ended_id, self._ended_name = self._run.id, self._run.name
                self._run, self._owned = None, False
            current = _init.current()
            if self._run is not None and (self._owned or self._run is current):
                return self._run
            if current is not None and not self._own:
                self._run, self._owned = current, False
                return current
            kwargs = dict(self._init_kwargs)
            if self._ended_id is not None and self._resume:
                kwargs.update(id=self._ended_id, resume="must")
            if self._own:
                kwargs["reinit"] = "create_new"
                self._previous = current
            run = _init.init(**kwargs)
            self._run, self._owned = run, True
            return run

    def end(self, failed: bool = False) -> None:
        run, owned, previous = self._run, self._owned, self._previous
        if run is None or not owned:
            return
        self._run, self._owned, self._previous = None, False, None
        self._ended_id, self._ended_name = run.id, run.name
        run.finish(exit_code=1 if failed else 0)
        _restore(previous)


def _restore(previous: _init.Run | None) -> None:
    """Make ``previous`` current again, if it is still open and no other run took its place."""
    with _init._lock:
        if previous is not None and _init.current() is None and not previous.finished:
            _init._set_current(previous)


@contextlib.contextmanager
def side_run(**init_kwargs: Any) -> Iterator[_init.Run]:
    """A run of its own (an Optuna trial, a search's candidate), finished when the block ends
    (failed if it raised), that leaves the current run current afterwards. It is logged after
    the fact, in moments, so it samples no system metrics unless ``system_metrics=True``."""
    init_kwargs.setdefault("system_metrics", False)
    with _init._lock:
        previous = _init.current()
        run = _init.init(reinit="create_new", **init_kwargs)
    try:
        yield run
    except BaseException:
        run.finish(exit_code=1)
        raise
    finally:
        run.finish(exit_code=0)  # finishing again does nothing
        _restore(previous)
