"""``tora.init()`` and the run it returns: W&B's way of logging, on top of the Tora client.

``import tora as wandb`` runs W&B's quickstart unchanged: ``init`` starts (or resumes) a run,
``log`` sends numbers at W&B's steps, ``config`` becomes the run's hyperparameters and
``summary`` its results. What W&B offers and Tora does not (media, tables, sweeps, ...) raises
``ToraUnsupportedError`` saying what to do instead; nothing is dropped silently.

One run is *current* per process: the run of the last ``init()`` or ``setup()``. The module
functions (``tora.log``, ``tora.finish``, ``tora.tmetric``, ...) act on it.
"""

from __future__ import annotations

import atexit
import glob
import json
import logging
import os
import secrets
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from . import _client, _config, _transport, _validation
from ._client import DEFAULT_FLUSH_TIMEOUT, Tora
from ._exceptions import (
    ToraAPIError,
    ToraError,
    ToraExperimentError,
    ToraMetricError,
    ToraNetworkError,
    ToraUnsupportedError,
    ToraValidationError,
)
from ._validation import HPValue, Number

__all__ = ["TORA_NAMESPACE", "Config", "Run", "Summary", "current", "init", "login"]

logger = logging.getLogger("tora")

TORA_NAMESPACE = uuid.UUID("5b0c2f4e-8a1d-4e6b-9c3a-7f2e1d0b4a96")
"""The namespace of the UUIDs that W&B-style run ids (``init(id="my-run")``) map to."""

_WARNED_LIMIT = 1000
_MAX_HYPERPARAMS = 1000
_TAG_BAD = str.maketrans({c: "-" for c in '<>:"/\\|?*,;'})
_ADJECTIVES = ("amber", "brisk", "calm", "deft", "eager", "fair", "glad", "hardy", "keen", "lucid", "merry", "noble")
_NOUNS = ("brook", "cedar", "dune", "ember", "fern", "grove", "harbor", "island", "lagoon", "meadow", "pine", "river")

_lock = threading.RLock()
_current: Run | None = None
_login: dict[str, str] = {}
_open_runs: weakref.WeakSet[Run] = weakref.WeakSet()


def current() -> Run | None:
    """The current run: the last one started by init() or setup() and not finished yet."""
    run = _current
    return None if run is None or run.finished else run


def _set_current(run: Run | None) -> None:
    global _current
    _current = run


def require_current(verb: str) -> Run:
    run = current()
    if run is None:
        raise ToraError(f"No run: call tora.init() (or tora.setup()) before {verb}.")
    return run


# ---------- values ----------


def _flatten(data: Mapping[Any, Any], sep: str, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and depth < 16:
            out.update(_flatten(value, sep, f"{name}{sep}", depth + 1))
        else:
            out[name] = value
    return out


def _hp_value(raw: Any) -> HPValue:
    """A config value as a hyperparameter: numbers and strings as they are, the rest as text."""
    if isinstance(raw, str):
        return raw[:1000]
    if isinstance(raw, bool):
        return raw
    if raw is not None and not isinstance(raw, (list, tuple, dict, set)):
        try:
            number = _validation.value(raw)
        except ToraValidationError:
            pass
        else:
            return number if _validation.is_finite(number) else str(number)
    try:
        text = json.dumps(raw, default=str, sort_keys=isinstance(raw, dict))
    except (TypeError, ValueError):
        text = str(raw)
    return text[:1000]


def _hyperparams(config: Mapping[str, Any]) -> dict[str, HPValue]:
    out: dict[str, HPValue] = {}
    for key, value in _flatten(config, ".").items():
        name = str(key).strip()[:100] or "_"
        if len(out) >= _MAX_HYPERPARAMS:
            logger.warning("tora: config has more than %d keys; the rest are not sent", _MAX_HYPERPARAMS)
            break
        out[name] = _hp_value(value)
    return out


def _as_mapping(raw: object, what: str) -> Mapping[str, Any]:
    """A config given as a dict, an argparse Namespace or any object with attributes."""
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, str):
        raise ToraUnsupportedError(
            f"{what}: a config file name ({raw!r:.60}) is not read by Tora; load it and pass a dict."
        )
    attributes = getattr(raw, "__dict__", None)
    if isinstance(attributes, dict):
        return {k: v for k, v in attributes.items() if not k.startswith("_")}
    raise ToraValidationError(f"{what} must be a mapping (or an argparse Namespace), got {type(raw).__name__}")


def _clean_tags(raw: Iterable[str] | None) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [raw]
    tags: list[str] = []
    for tag in raw:
        if not isinstance(tag, str):
            raise ToraValidationError(f"tags must be strings, got {type(tag).__name__}")
        cleaned = tag.strip().translate(_TAG_BAD)[:50]
        if cleaned != tag.strip():
            logger.warning(
                'tora: tag %r is kept as %r (tags are at most 50 characters, without <>:"/\\|?*,;)', tag, cleaned
            )
        if cleaned and cleaned not in tags:
            tags.append(cleaned)
    if len(tags) > 50:
        logger.warning("tora: %d tags given; the first 50 are kept", len(tags))
    return tags[:50]


def _run_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(999) + 1}"


# ---------- config and summary ----------


class _AttrDict(MutableMapping[str, Any]):
    """A dict that also answers attribute access (``config.lr``), as W&B's config does."""

    _items: dict[str, Any]

    def __init__(self) -> None:
        object.__setattr__(self, "_items", {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        del self._items[key]
        self._changed()

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__.lower()} has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self.update({name: value})

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return repr(self._items)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def _changed(self) -> None:
        pass


class Config(_AttrDict):
    """The run's configuration: a dict with attribute access. Every change is sent, in the
    background, as the run's hyperparameters (nested dicts flattened with ".")."""

    def __init__(self, on_change: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_on_change", on_change)

    def update(self, d: Any = None, allow_val_change: bool | None = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Add or change keys: from a dict, an argparse Namespace, or keyword arguments."""
        changes = dict(_as_mapping(d, "config.update()"))
        changes.update(kwargs)
        if not changes:
            return
        self._items.update({str(k): v for k, v in changes.items()})
        self._changed()

    def setdefaults(self, d: Mapping[str, Any]) -> None:
        """Add the keys of ``d`` not set yet."""
        self.update({k: v for k, v in d.items() if k not in self._items})

    def _changed(self) -> None:
        on_change = self.__dict__.get("_on_change")
        if on_change is not None:
            on_change(self._items)


class Summary(_AttrDict):
    """The run's summary. Reading gives the last value logged under each key (as W&B's does);
    a number set here is sent as one of the run's results."""

    def __init__(self, run: Run | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_set", set())

    def update(self, d: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Set keys (nested dicts flattened with "/"); numbers become the run's results."""
        changes = _flatten(dict(_as_mapping(d, "summary.update()")), "/")
        changes.update(kwargs)
        run: Run | None = self.__dict__.get("_run")
        for key, value in changes.items():
            name = str(key)
            self._items[name] = value
            self._set.add(name)
            if run is not None:
                run._result(name, value)

    def _logged(self, values: Mapping[str, Any]) -> None:
        self._items.update(values)


# ---------- hyperparameter and field updates, sent in the background ----------


class _Patcher:
    """PATCHes the run's fields (hyperparams, name, tags, ...) from a daemon thread: the caller
    never waits for the network. The latest value of each field wins; retried while the server
    is away; ``flush`` at the end of the run waits a little for the last one."""

    def __init__(self, client: Tora, settings: _config.Settings) -> None:
        self._client = client
        self._settings = settings
        self._url = f"{client._server_url}/experiments/{quote(client.experiment_id, safe='')}"
        self._pending: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._failures = 0
        self._closing = False
        self._inflight: dict[str, Any] = {}

    def push(self, fields: Mapping[str, Any]) -> None:
        with self._cond:
            if self._stopped:
                return
            self._pending.update(fields)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tora-patch", daemon=True)
                try:
                    self._thread.start()
                except RuntimeError:
                    return
            self._cond.notify_all()

    def close(self, timeout: float) -> None:
        """Send what is pending: wait until it is sent, ``timeout`` passes, or a fresh attempt
        fails (the server is away: then say what is lost). Later changes are not sent."""
        deadline = time.monotonic() + timeout
        with self._cond:
            failures = self._failures
            self._closing = True
            self._cond.notify_all()  # a loop waiting out a backoff tries again now
            while (self._pending or self._busy) and self._failures <= failures + (1 if self._busy else 0):
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    break
                self._cond.wait(left)
            self._stopped = True
            self._cond.notify_all()
            lost = sorted({*self._pending, *self._inflight})
        if lost:
            logger.warning(
                "tora: the run's %s could not be sent to %s (the server did not answer); set it again "
                "after resuming the run, or in the dashboard",
                ", ".join(lost),
                self._client._server_url,
            )

    def _loop(self) -> None:
        backoff = self._settings.retry_base
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._stopped:
                        self._cond.wait()
                    if not self._pending:
                        return
                    body, self._pending = self._pending, {}
                    self._inflight = body
                    self._busy = True
                ok = self._send(body)
                with self._cond:
                    self._busy = False
                    self._inflight = {}
                    if not ok:
                        self._failures += 1
                        self._pending = {**body, **self._pending}
                    self._cond.notify_all()
                    if not ok:
                        if self._stopped or self._closing:
                            return  # close() said what is not sent
                        self._cond.wait(backoff)
                        backoff = min(backoff * 2, self._settings.retry_max)
                    else:
                        backoff = self._settings.retry_base
        except Exception:
            logger.debug("tora: the run-update thread stopped", exc_info=True)

    def _send(self, body: dict[str, Any]) -> bool:
        """True when done with ``body`` (sent, or refused for good: said once, then dropped)."""
        if not self._client._sender.created.wait(self._settings.timeout):
            return False
        try:
            answer = _transport.request(
                "PATCH",
                self._url,
                body=_transport.encode(body),
                api_key=self._client._api_key,
                timeout=self._settings.timeout,
            )
        except ToraNetworkError:
            return False
        if answer.status in (200, 201):
            return True
        if answer.status >= 500 or answer.status in (408, 429):
            return False
        logger.error("tora: the server refused to update the run's %s: %s", ", ".join(body), answer.message)
        return True


# ---------- the run ----------


class Run:
    """A run started by ``tora.init()``: log numbers, keep its config and summary, finish it.

    ``client`` is the underlying ``Tora`` client (None for a ``mode="disabled"`` run).
    """

    def __init__(
        self,
        client: Tora | None,
        *,
        name: str,
        project: str | None = None,
        group: str | None = None,
        notes: str | None = None,
        tags: list[str] | None = None,
        config: Mapping[str, Any] | None = None,
        job_type: str | None = None,
        resumed: bool = False,
        start_step: int = 0,
        mode: str = "online",
    ) -> None:
        self._client = client
        self._name = name
        self._project = project
        self._group = group
        self._notes = notes
        self._tags = tuple(tags or ())
        self._job_type = job_type
        self._resumed = resumed
        self._mode = mode
        self._step = start_step
        self._finished = False
        self._warned: set[str] = set()
        self._defined: set[str] = set()
        self._start_time = time.time()
        self._disabled_id = str(uuid.uuid4())
        self._dir: str | None = None
        self._dir_parent: str | os.PathLike[str] | None = None
        self._patcher = None if client is None or mode != "online" else _Patcher(client, client._settings)
        if client is not None:
            _open_runs.add(self)
        self._config = Config()
        if config:
            self._config._items.update(config)
        object.__setattr__(self._config, "_on_change", self._config_changed)
        self._summary = Summary(self)

    # --- identity ---

    @property
    def id(self) -> str:
        """The run's id: the Tora experiment id (a UUID; ``tora.init(id=run.id)`` resumes it)."""
        return self._client.experiment_id if self._client is not None else self._disabled_id

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = _validation.experiment_name(value)
        if self._patcher is not None:
            self._patcher.push({"name": self._name})

    @property
    def notes(self) -> str | None:
        return self._notes

    @notes.setter
    def notes(self, value: str | None) -> None:
        self._notes = value
        if self._patcher is not None:
            self._patcher.push({"description": value})

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        self._tags = tuple(_clean_tags(value) or ())
        if self._patcher is not None:
            self._patcher.push({"tags": list(self._tags)})

    @property
    def url(self) -> str | None:
        """The run's page on the server (None for a disabled run)."""
        return self._client.url if self._client is not None else None

    def get_url(self) -> str | None:
        return self.url

    @property
    def project(self) -> str | None:
        """The workspace's name, as given to init() (None: the Personal workspace)."""
        return self._project

    @property
    def group(self) -> str | None:
        return self._group

    @property
    def job_type(self) -> str | None:
        return self._job_type

    @property
    def client(self) -> Tora | None:
        return self._client

    @property
    def config(self) -> Config:
        return self._config

    @property
    def summary(self) -> Summary:
        return self._summary

    @property
    def step(self) -> int:
        """The step the next ``log()`` without a step lands on."""
        return self._step

    @property
    def resumed(self) -> bool:
        """The run existed before this init() and is continued."""
        return self._resumed

    @property
    def offline(self) -> bool:
        return self._mode == "offline"

    @property
    def disabled(self) -> bool:
        return self._mode == "disabled"

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def dir(self) -> str:
        """A directory for the run's files, made on first use (under init's ``dir`` if given):
        what it holds when the run finishes is kept as the run's artifacts, as W&B's run.dir."""
        if self._dir is None:
            parent = self._dir_parent
            if parent is not None:
                Path(parent).mkdir(parents=True, exist_ok=True)
            self._dir = tempfile.mkdtemp(prefix="tora-run-", dir=parent)
        return self._dir

    def _keep_dir(self) -> None:
        if self._dir is None or self._client is None:
            return
        root = Path(self._dir)
        for path in sorted(root.rglob("*")):
            if path.is_file():
                try:
                    self._client.log_artifact(path, path.relative_to(root).as_posix())
                except ToraError as e:
                    logger.warning("tora: cannot keep %s from run.dir: %s", path, e)

    def log_code(self, *_args: Any, **_kwargs: Any) -> None:
        """Accepted and ignored, said once: the run's metadata records its git commit and command line."""
        if "log_code" not in self._warned:
            self._warned.add("log_code")
            logger.warning("tora: log_code() is ignored: the run's metadata records its git commit and command line")

    @property
    def start_time(self) -> float:
        return self._start_time

    @property
    def finished(self) -> bool:
        """The run was finished (through it, or through its client)."""
        return self._finished or (self._client is not None and self._client.is_closed)

    # --- logging ---

    def log(
        self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None, sync: bool | None = None
    ) -> None:
        """Log numbers at a step, as W&B does.

        Without ``step``, the values land on the run's current step, which then moves on by one
        (``commit=False`` keeps it, so later calls add to the same step). With ``step``, they land
        there and the step moves on only with ``commit=True``; a step lower than the last is kept
        too (W&B drops it), for a run resumed from a checkpoint. Nested dicts become names joined
        by "/". A value that is not a number (a string, a list, None) is skipped, with one warning
        per key. ``sync`` (deprecated in W&B) is ignored: sending is always in the background.

        Raises:
            ToraValidationError: ``data`` is not a mapping, or ``step`` is not an integer >= 0.
            ToraMetricError: the run is finished.
        """
        if self._finished:
            raise ToraMetricError("Cannot log to a finished run; call tora.init() to start (or resume) one")
        if not isinstance(data, Mapping):
            raise ToraValidationError(f"log() takes a dict of name to number, got {type(data).__name__}")
        if step is None:
            at = self._step
            if commit is None:
                commit = True
        else:
            at = _validation.step(step)
            self._step = at
        points: dict[str, Number] = {}
        for key, value in data.items():
            if type(value) is float or (type(value) is int and -(2**63) <= value < 2**63):
                points[key] = value
            elif isinstance(value, Mapping):
                for name, inner in _flatten(value, "/", f"{key}/").items():
                    number = self._number(name, inner)
                    if number is not None:
                        points[name] = number
            else:
                number = self._number(key, value)
                if number is not None:
                    points[key] = number
        if points:
            if self._client is not None:
                self._client.log_metrics(points, step=at)
            self._summary._logged(points)
        if commit:
            self._step = at + 1

    def _number(self, key: object, value: object) -> Number | None:
        if isinstance(key, str) and key.startswith("_"):
            return None  # W&B's own keys (_step, _runtime, _timestamp)
        try:
            return _validation.value(value)
        except ToraValidationError:
            name = str(key)
            if name not in self._warned and len(self._warned) < _WARNED_LIMIT:
                self._warned.add(name)
                logger.warning(
                    "tora: log(): %r is a %s, not a number: skipped (Tora stores numbers; "
                    "keep files with tora.log_artifact(path)). Said once per key.",
                    name[:100],
                    type(value).__name__,
                )
            return None

    def _result(self, name: str, value: object) -> None:
        try:
            number = _validation.value(value)
        except ToraValidationError:
            if f"summary:{name}" not in self._warned and len(self._warned) < _WARNED_LIMIT:
                self._warned.add(f"summary:{name}")
                logger.warning(
                    "tora: summary[%r] is a %s, not a number: kept in run.summary, not sent "
                    "(Tora's results are numbers)",
                    name[:100],
                    type(value).__name__,
                )
            return
        if self._client is not None and not self._finished:
            self._client.result(name, number)

    def _config_changed(self, items: Mapping[str, Any]) -> None:
        if self._patcher is not None:
            self._patcher.push({"hyperparams": [{"key": k, "value": v} for k, v in _hyperparams(items).items()]})
        elif self._mode == "offline" and self._client is not None:
            _offline_hyperparams(self._client, items)

    def define_metric(self, name: str, step_metric: str | None = None, **_options: Any) -> None:
        """Accepted and ignored: Tora charts every metric over its step (or time) and shows its
        last, min and max in the run table. Said once per run."""
        if not self._defined:
            logger.warning(
                "tora: define_metric(%r) is ignored: Tora charts each metric over its step or time and "
                "summarises it as last/min/max by itself",
                name,
            )
        self._defined.add(name)

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None, **_wandb: Any) -> None:
        """Keep a file with the run (see Tora.log_artifact). W&B's ``type`` and ``aliases`` are ignored."""
        if isinstance(path, (str, os.PathLike)) and self._client is not None:
            self._client.log_artifact(path, name)
        elif not isinstance(path, (str, os.PathLike)):
            raise ToraUnsupportedError(
                "log_artifact(): Tora keeps files, not W&B Artifact objects; pass the file's path"
            )

    def save(
        self, glob_str: str | os.PathLike[str], base_path: str | os.PathLike[str] | None = None, policy: str = "live"
    ) -> list[str]:
        """Keep the files matching ``glob_str`` as artifacts, named relative to ``base_path``
        (default: the pattern's directory). Unlike W&B, each file is uploaded once, as it is now."""
        pattern = str(glob_str)
        base = Path(base_path) if base_path is not None else Path(pattern).parent
        kept = []
        for found in sorted(glob.glob(pattern, recursive=True)):
            path = Path(found)
            if path.is_file():
                try:
                    name = path.relative_to(base).as_posix()
                except ValueError:
                    name = path.name
                if self._client is not None:
                    self._client.log_artifact(path, name)
                kept.append(str(path))
        return kept

    def watch(self, *_args: Any, **_kwargs: Any) -> None:
        raise _unsupported("watch")

    def alert(self, *_args: Any, **_kwargs: Any) -> None:
        raise _unsupported("alert")

    def use_artifact(self, *_args: Any, **_kwargs: Any) -> None:
        raise _unsupported("use_artifact")

    def log_model(self, *_args: Any, **_kwargs: Any) -> None:
        raise _unsupported("log_model")

    # --- ending ---

    def finish(
        self, exit_code: int | None = None, quiet: bool | None = None, *, timeout: float = DEFAULT_FLUSH_TIMEOUT
    ) -> int:
        """End the run: deliver what was logged, then mark it finished (failed when ``exit_code``
        is not 0). Returns the points kept on disk for ``python -m tora sync`` (0 when all
        arrived). Finishing again does nothing."""
        state = None if exit_code is None else ("finished" if exit_code == 0 else "failed")
        return self._end(state, timeout)

    def _end(self, state: str | None, timeout: float) -> int:
        """End with ``state``, or with None as shutdown() does (failed if an uncaught exception was seen)."""
        with _lock:
            if _current is self:
                _set_current(None)
        if self._finished:
            return 0
        self._finished = True
        _open_runs.discard(self)
        if self._client is None:
            return 0
        deadline = time.monotonic() + timeout
        self._keep_dir()
        if self._patcher is not None:
            self._patcher.close(min(timeout, 10.0))
        left = max(0.0, deadline - time.monotonic())
        try:
            return self._client.finish(state, left) if state is not None else self._client.shutdown(left)
        except Exception:
            logger.exception("tora: error while finishing the run")
            return 0

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, _exc: object, _tb: object) -> None:
        failed = exc_type is not None and not issubclass(exc_type, GeneratorExit)
        self.finish(exit_code=1 if failed else 0)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self._name!r}, mode={self._mode!r}, finished={self._finished})"


def _offline_hyperparams(client: Tora, items: Mapping[str, Any]) -> None:
    """Offline, the run is created by sync from the spooled create body: change its hyperparams there."""
    create = client._sender.create_payload
    if create is None or client._sender._spool._fd is not None:
        logger.warning(
            "tora: an offline run's config change after its first points were written to disk is not "
            "kept; set the config before logging (or change it in the dashboard after sync)"
        )
        return
    create["hyperparams"] = [{"key": k, "value": v} for k, v in _hyperparams(items).items()]


_UNSUPPORTED = {
    "Image": "Tora stores numbers, not media: save the image to a file and keep it with tora.log_artifact(path).",
    "Audio": "Tora stores numbers, not media: keep the file with tora.log_artifact(path).",
    "Video": "Tora stores numbers, not media: keep the file with tora.log_artifact(path).",
    "Html": "Tora stores numbers, not HTML: keep the file with tora.log_artifact(path).",
    "Object3D": "Tora stores numbers, not 3D objects: keep the file with tora.log_artifact(path).",
    "Molecule": "Tora stores numbers, not molecules: keep the file with tora.log_artifact(path).",
    "Plotly": "Tora draws its own charts from logged numbers: keep a figure file with tora.log_artifact(path).",
    "Table": "Tora has no tables: log each column as numbers with tora.log(), or save a CSV and keep it "
    "with tora.log_artifact(path).",
    "Histogram": "Tora has no histograms: log summary numbers (mean, std, min, max) with tora.log().",
    "Artifact": "Tora keeps plain files with the run: tora.log_artifact(path, name) and "
    "Tora.download_artifact(name, dest).",
    "use_artifact": "Tora keeps plain files with the run: download one with Tora.download_artifact(name, dest).",
    "log_model": "Tora keeps plain files with the run: save the model and keep it with tora.log_artifact(path).",
    "use_model": "Tora keeps plain files with the run: download one with Tora.download_artifact(name, dest).",
    "link_model": "Tora has no model registry: keep the model file with tora.log_artifact(path).",
    "watch": "Tora does not record gradients or parameter histograms: log the numbers you need "
    "(e.g. a gradient norm) with tora.log().",
    "unwatch": "Tora does not record gradients (see tora.watch).",
    "sweep": "Tora has no sweep server: run the search with Optuna and tora.integrations.optuna.ToraCallback "
    "(each trial a run in one group).",
    "agent": "Tora has no sweep agents: run the search with Optuna and tora.integrations.optuna.ToraCallback.",
    "controller": "Tora has no sweep controller: run the search with Optuna and tora.integrations.optuna.ToraCallback.",
    "Api": "Tora has no W&B public API object: read runs over Tora's HTTP API (/api/experiments, see "
    "/api/openapi.json), and bring W&B history in with `python -m tora import wandb RUN_DIR`.",
    "restore": "Tora keeps files as artifacts: download one with Tora.download_artifact(name, dest).",
    "alert": "Tora sends no alerts.",
    "plot": "Tora draws its own charts from logged numbers; log the numbers with tora.log().",
    "Settings": "Tora is configured by init()'s arguments and TORA_* environment variables (see the README).",
    "mark_preempting": "Tora has no preemption marker: resume the run later with tora.init(id=..., resume='allow').",
}


def _send_config_at_exit() -> None:
    """Before the client's own exit hook ends the runs (atexit runs hooks last in, first out):
    the last config change of each open run, within a few seconds."""
    for run in list(_open_runs):
        if run._patcher is not None:
            try:
                run._patcher.close(min(5.0, run._patcher._settings.exit_timeout))
            except Exception:
                logger.debug("tora: could not send the config at exit", exc_info=True)


atexit.register(_send_config_at_exit)


def _unsupported(name: str) -> ToraUnsupportedError:
    return ToraUnsupportedError(f"wandb.{name} is not supported by Tora. {_UNSUPPORTED[name]}")


# ---------- init ----------


def workspace_id(project: str, url: str, key: str, timeout: float, *, create: bool = True) -> str:
    """The id of the caller's workspace named ``project`` (the oldest, when several are), created
    if missing (or, with ``create=False``, ToraExperimentError)."""
    answer, error, url = _client._setup_call("GET", "/workspaces", None, url, key, timeout)
    if answer is None or answer.status >= 500:
        reason = error.message if error is not None else answer.message if answer is not None else ""
        raise ToraNetworkError(
            f"Cannot reach the Tora server at {url} to find the project (workspace) {project!r}: {reason}. "
            "Check TORA_BASE_URL, or log with mode='offline' and upload later with `python -m tora sync`."
        )
    if answer.status == 401:
        raise _client._refused_key(url)
    if answer.status != 200 or not isinstance(answer.data, list):
        raise ToraAPIError(f"Cannot list workspaces: {answer.message}", status_code=answer.status)
    for workspace in answer.data:
        if isinstance(workspace, dict) and workspace.get("name") == project:
            return str(workspace["id"])
    if not create:
        raise ToraExperimentError(f"There is no project (workspace) named {project!r} on {url}")
    made = _client.create_workspace(project, api_key=key, server_url=url)
    logger.info("tora: created the workspace %r for project %r", made.get("name"), project)
    return str(made["id"])


def _user_id(url: str, key: str, timeout: float) -> str:
    answer, error, url = _client._setup_call("GET", "/me", None, url, key, timeout)
    if answer is not None and answer.status == 200 and isinstance(answer.data, dict):
        return str(answer.data["id"])
    if answer is not None and answer.status == 401:
        raise _client._refused_key(url)
    reason = error.message if error is not None else answer.message if answer is not None else ""
    raise ToraNetworkError(f"Cannot reach the Tora server at {url} to resolve the run id: {reason}")


def experiment_id_for(run_id: str, scope: str) -> str:
    """The Tora experiment id of a W&B-style run id: a UUID as it is, any other string mapped to
    ``uuid5(TORA_NAMESPACE, f"{scope}/{run_id}")``, scope being the workspace's id."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(TORA_NAMESPACE, f"{scope}/{run_id}"))


def _existing(url: str, key: str, experiment_id: str, timeout: float) -> dict[str, Any] | None:
    """The experiment if the server has it (for this key), None if not."""
    answer, error, url = _client._setup_call("GET", f"/experiments/{experiment_id}", None, url, key, timeout)
    if answer is None or answer.status >= 500:
        reason = error.message if error is not None else answer.message if answer is not None else ""
        raise ToraNetworkError(f"Cannot reach the Tora server at {url} to look up run {experiment_id}: {reason}")
    if answer.status == 200 and isinstance(answer.data, dict):
        return answer.data
    if answer.status == 404:
        return None
    if answer.status == 401:
        raise _client._refused_key(url)
    raise ToraAPIError(f"Cannot look up run {experiment_id}: {answer.message}", status_code=answer.status)


_SUMMARY_PAGES = 10


def _stored_summary(client: Tora, timeout: float) -> tuple[int, dict[str, Any]]:
    """Where a resumed run left off: one past the last step of its metrics (system metrics,
    whose steps count seconds, aside), and the last value of each metric and result."""
    url = f"{client._server_url}/experiments/{client.experiment_id}/summary"
    data: dict[str, Any] = {}
    # One page holds 10,000 metrics and results; a wider run's next pages follow (a bounded few).
    cursor = None
    for _ in range(_SUMMARY_PAGES):
        page_url = url if cursor is None else f"{url}?cursor={cursor}"
        try:
            answer = _transport.request("GET", page_url, api_key=client._api_key, timeout=timeout)
        except ToraNetworkError:
            return 0, {}
        page = answer.data if answer.status == 200 and isinstance(answer.data, dict) else {}
        for key in ("metrics", "results"):
            data.setdefault(key, []).extend(page.get(key) or [])
        cursor = page.get("next")
        if not isinstance(cursor, str) or not cursor.isalnum():
            break
    metrics = [m for m in data.get("metrics") or [] if isinstance(m, dict) and isinstance(m.get("name"), str)]
    steps = [
        m["last_step"] for m in metrics if isinstance(m.get("last_step"), int) and not m["name"].startswith("sys/")
    ]
    values = {m["name"]: m.get("last") for m in metrics}
    values.update({r["name"]: r.get("value") for r in data.get("results") or [] if isinstance(r, dict) and "name" in r})
    return (max(steps) + 1 if steps else 0), values


_RESUME = {
    None: "never",
    False: "never",
    "never": "never",
    True: "allow",
    "allow": "allow",
    "auto": "allow",
    "must": "must",
}


def with_system_metrics(method: Callable[..., Tora], kwargs: dict[str, Any], system_metrics: bool | None) -> Tora:
    """Call ``method`` (create_experiment or load_experiment) with ``kwargs`` and the run's
    ``system_metrics`` choice."""
    return method(**kwargs, system_metrics=system_metrics)


def init(
    project: str | None = None,
    name: str | None = None,
    config: Any = None,
    tags: Iterable[str] | None = None,
    group: str | None = None,
    notes: str | None = None,
    id: str | None = None,
    resume: bool | str | None = None,
    mode: str | None = None,
    *,
    job_type: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    reinit: bool | str | None = None,
    entity: str | None = None,
    system_metrics: bool | None = None,
    metadata: bool | None = None,
    api_key: str | None = None,
    server_url: str | None = None,
    **wandb_options: Any,
) -> Run:
    """Start a run (or continue one) and make it the current run, as ``wandb.init`` does.

    ``project`` names a workspace (created if the caller has none of that name; None: Personal).
    ``id`` resumes: a Tora experiment id is used as it is, any other string maps to one id per
    workspace, so the same ``id`` names the same run. ``resume``: None/"never" creates (an
    existing run is an error), "allow" creates or continues, "must" continues (a missing run is
    an error). ``mode``: "online" (default), "offline" (kept on disk for ``python -m tora sync``)
    or "disabled" (nothing is sent or kept). ``config`` becomes the run's hyperparameters,
    ``notes`` its description, ``group`` its group, ``tags`` its tags; ``job_type`` is added as
    a tag. ``dir`` is where ``run.dir`` is made; ``entity`` is W&B's and ignored. ``api_key``/``server_url`` default to
    ``tora.login()``'s, then TORA_API_KEY/TORA_BASE_URL.

    Raises:
        ToraExperimentError: resume="must" and the run does not exist, or resume="never" and it does.
        ToraUnsupportedError: a W&B option Tora cannot honour (fork_from, resume_from, ...).
        ToraConfigurationError, ToraAuthenticationError, ToraNetworkError: as Tora.create_experiment.
    """
    _check_wandb_options(wandb_options)
    if reinit not in (None, False, True, "default", "return_previous", "finish_previous", "create_new"):
        raise ToraValidationError(
            f"reinit must be 'return_previous', 'finish_previous' or 'create_new' (or a bool), got {reinit!r:.40}"
        )
    with _lock:
        previous = current()
        if previous is not None:
            if reinit in (None, False, "default", "return_previous"):
                logger.warning(
                    "tora.init(): run %s is still open and is returned; finish it first, or pass "
                    "reinit='finish_previous' (or 'create_new')",
                    previous.name,
                )
                return previous
            if reinit in (True, "finish_previous"):
                previous.finish()
        run = _start(
            project=project,
            name=name,
            config=config,
            tags=tags,
            group=group,
            notes=notes,
            run_id=id,
            resume=resume,
            mode=mode,
            job_type=job_type,
            system_metrics=system_metrics,
            metadata=metadata,
            api_key=api_key,
            server_url=server_url,
        )
        run._dir_parent = dir
        _set_current(run)
        return run


_IGNORED_OPTIONS = {
    "save_code": "Tora records the git commit and command line in the run's metadata",
    "anonymous": "Tora runs belong to the API key's user",
    "allow_val_change": "config values may always change",
    "force": "",
    "magic": "",
    "monitor_gym": "",
    "settings": "Tora is configured by init()'s arguments and TORA_* environment variables",
    "config_exclude_keys": "",
    "config_include_keys": "",
    "sync_tensorboard": "import TensorBoard logs with `python -m tora import tensorboard LOGDIR`",
    "tensorboard": "import TensorBoard logs with `python -m tora import tensorboard LOGDIR`",
}
_REFUSED_OPTIONS = {
    "fork_from": "Tora cannot fork a run; start a new one (group= keeps related runs together)",
    "resume_from": "Tora cannot rewind a run; resume it with id= and resume='allow' and log the steps "
    "again: every point is kept",
}


def _check_wandb_options(options: Mapping[str, Any]) -> None:
    for option, value in options.items():
        if option in _REFUSED_OPTIONS:
            if value is not None:
                raise ToraUnsupportedError(f"init({option}=...) is not supported by Tora: {_REFUSED_OPTIONS[option]}.")
        elif option in _IGNORED_OPTIONS:
            if value not in (None, False):
                reason = _IGNORED_OPTIONS[option]
                logger.warning("tora.init(): %s= is ignored%s", option, f" ({reason})" if reason else "")
        else:
            raise TypeError(f"init() got an unexpected keyword argument {option!r}")


def _start(
    *,
    project: str | None,
    name: str | None,
    config: Any,
    tags: Iterable[str] | None,
    group: str | None,
    notes: str | None,
    run_id: str | None,
    resume: bool | str | None,
    mode: str | None,
    job_type: str | None,
    system_metrics: bool | None,
    metadata: bool | None,
    api_key: str | None,
    server_url: str | None,
) -> Run:
    if resume not in _RESUME:
        raise ToraValidationError(f"resume must be None, 'never', 'allow', 'must' or 'auto', got {resume!r:.40}")
    policy = _RESUME[resume]
    settings = _config.load()
    wanted = (mode or settings.mode or "online").strip().lower()
    chosen = "disabled" if wanted == "disabled" else _validation.mode(wanted, "online")
    config_items = dict(_as_mapping(config, "config"))
    checked_group = _validation.group(group)
    all_tags = _clean_tags(tags) or []
    if job_type:
        all_tags = _clean_tags([*all_tags, job_type]) or []
    if project is not None and (not isinstance(project, str) or not project.strip()):
        raise ToraValidationError("project must be a non-empty string (a workspace's name)")
    project = project.strip() if project is not None else None
    if run_id is not None and (not isinstance(run_id, str) or not run_id.strip()):
        raise ToraValidationError("id must be a non-empty string")
    run_id = run_id.strip() if run_id is not None else None
    if policy == "must" and run_id is None:
        raise ToraValidationError("resume='must' needs the id= of the run to continue")
    if chosen == "disabled":
        return Run(
            None,
            name=name or _run_name(),
            project=project,
            group=checked_group,
            notes=notes,
            tags=all_tags,
            config=config_items,
            job_type=job_type,
            mode="disabled",
        )
    api_key = api_key or _login.get("key")
    server_url = server_url or _login.get("host")
    if chosen == "offline":
        return _start_offline(
            project, name, config_items, all_tags, checked_group, notes, run_id, policy, job_type,
            system_metrics, metadata, api_key, server_url,
        )  # fmt: skip

    url = _client._server_url(server_url, settings)
    key = _client._api_key(api_key, settings)
    in_workspace = workspace_id(project, url, key, settings.timeout, create=policy != "must") if project else None
    experiment_id = None
    existing = None
    if run_id is not None:
        scope = in_workspace or f"user:{_user_id(url, key, settings.timeout)}"
        experiment_id = experiment_id_for(run_id, scope)
        existing = _existing(url, key, experiment_id, settings.timeout)
        if existing is None and policy == "must":
            raise ToraExperimentError(
                f"resume='must': there is no run with id {run_id!r} (experiment {experiment_id}) on {url}"
                + (f" in project {project!r}" if project else "")
                + "; use resume='allow' to create it when missing"
            )
        if existing is not None and policy == "never":
            raise ToraExperimentError(
                f"A run with id {run_id!r} exists already ({existing.get('url') or experiment_id}); "
                "pass resume='allow' (or 'must') to continue it, or choose another id"
            )
    if existing is not None and experiment_id is not None:
        client = with_system_metrics(
            Tora.load_experiment,
            {"experiment_id": experiment_id, "api_key": key, "server_url": url, "mode": "online"},
            system_metrics,
        )
        return _resumed_run(client, existing, project, name, config_items, all_tags, checked_group, notes, job_type)
    run_name = name or (run_id if run_id is not None else _run_name())
    client = with_system_metrics(
        Tora.create_experiment,
        {
            "name": run_name,
            "workspace_id": in_workspace,
            "description": notes,
            "hyperparams": _hyperparams(config_items),
            "tags": all_tags or None,
            "api_key": key,
            "server_url": url,
            "mode": "online",
            "metadata": metadata,
            "experiment_id": experiment_id,
            "group": checked_group,
        },
        system_metrics,
    )
    return Run(
        client,
        name=run_name,
        project=project,
        group=checked_group,
        notes=notes,
        tags=all_tags,
        config=config_items,
        job_type=job_type,
        mode="online",
    )


def _resumed_run(
    client: Tora,
    existing: Mapping[str, Any],
    project: str | None,
    name: str | None,
    config_items: dict[str, Any],
    tags: list[str],
    group: str | None,
    notes: str | None,
    job_type: str | None,
) -> Run:
    """A run continued: its config is what it had plus what init() gave; fields given to init() are updated."""
    had = existing.get("hyperparams")
    config = {h["key"]: h["value"] for h in had if isinstance(h, dict)} if isinstance(had, list) else {}
    changed_config = any(config.get(k) != v for k, v in _hyperparams(config_items).items())
    config.update(config_items)
    next_step, last_values = _stored_summary(client, client._settings.timeout)
    old_tags = [t for t in existing.get("tags") or [] if isinstance(t, str)]
    merged_tags = old_tags + [t for t in tags if t not in old_tags]
    run = Run(
        client,
        name=name or str(existing.get("name") or client.experiment_id),
        project=project,
        group=group if group is not None else existing.get("group"),
        notes=notes if notes is not None else existing.get("description"),
        tags=merged_tags,
        config=config,
        job_type=job_type,
        resumed=True,
        start_step=next_step,
        mode="online",
    )
    run.summary._logged(last_values)
    fields: dict[str, Any] = {}
    if name is not None and name != existing.get("name"):
        fields["name"] = _validation.experiment_name(name)
    if notes is not None and notes != existing.get("description"):
        fields["description"] = notes
    if group is not None and group != existing.get("group"):
        fields["group"] = group
    if merged_tags != old_tags:
        fields["tags"] = merged_tags
    if changed_config:
        fields["hyperparams"] = [{"key": k, "value": v} for k, v in _hyperparams(config).items()]
    if fields and run._patcher is not None:
        run._patcher.push(fields)
    return run


def _start_offline(
    project: str | None,
    name: str | None,
    config_items: dict[str, Any],
    tags: list[str],
    group: str | None,
    notes: str | None,
    run_id: str | None,
    policy: str,
    job_type: str | None,
    system_metrics: bool | None,
    metadata: bool | None,
    api_key: str | None,
    server_url: str | None,
) -> Run:
    """Offline: nothing can be looked up. The project's name is recorded with the run, and
    ``python -m tora sync`` finds (or makes) the workspace; a W&B-style id maps without the
    workspace's id (``offline:<project>/<id>``). Sync creates the run, or adds to it if it exists."""
    experiment_id = None if run_id is None else experiment_id_for(run_id, f"offline:{project or ''}")
    run_name = name or (run_id if run_id is not None else _run_name())
    if policy == "must":
        assert experiment_id is not None
        client = with_system_metrics(
            Tora.load_experiment,
            {"experiment_id": experiment_id, "api_key": api_key, "server_url": server_url, "mode": "offline"},
            system_metrics,
        )
    else:
        client = with_system_metrics(
            Tora.create_experiment,
            {
                "name": run_name,
                "description": notes,
                "hyperparams": _hyperparams(config_items),
                "tags": tags or None,
                "api_key": api_key,
                "server_url": server_url,
                "mode": "offline",
                "metadata": metadata,
                "experiment_id": experiment_id,
                "group": group,
            },
            system_metrics,
        )
        create = client._sender.create_payload
        if project is not None and create is not None:
            create["workspaceName"] = project  # read by sync (see _sync._placed), before any point is on disk
    return Run(
        client,
        name=run_name,
        project=project,
        group=group,
        notes=notes,
        tags=tags,
        config=config_items,
        job_type=job_type,
        mode="offline",
    )


def login(
    key: str | None = None,
    relogin: bool | None = None,
    host: str | None = None,
    anonymous: str | None = None,
    timeout: float | None = None,
    verify: bool = False,
    **_wandb: Any,
) -> bool:
    """Remember an API key (and server URL, ``host``) for the runs this process starts.

    W&B keys are not Tora keys: create one with ``tora api-key create`` or in the dashboard.
    With ``verify=True`` the key is checked against the server now. Returns True.

    Raises:
        ToraConfigurationError: no key is given and TORA_API_KEY is not set, or the key is malformed.
        ToraAuthenticationError: ``verify=True`` and the server refused the key.
    """
    settings = _config.load()
    checked = _client._api_key(key, settings)
    if key is not None:
        _login["key"] = checked
    if host is not None:
        _login["host"] = _client._server_url(host, settings)
    if verify:
        url = _client._server_url(_login.get("host"), settings)
        _user_id(url, checked, settings.timeout if timeout is None else timeout)
    return True


def define_metric(name: str, step_metric: str | None = None, **options: Any) -> None:
    """Accepted and ignored, as Run.define_metric."""
    require_current("tora.define_metric()").define_metric(name, step_metric, **options)


def save(
    glob_str: str | os.PathLike[str], base_path: str | os.PathLike[str] | None = None, policy: str = "live"
) -> list[str]:
    """Keep the files matching ``glob_str`` with the current run (see Run.save)."""
    return require_current("tora.save()").save(glob_str, base_path, policy)


# ---------- module-level stand-ins: tora.config, tora.summary, and what Tora does not provide ----------


class _CurrentMapping(MutableMapping[str, Any]):
    """``tora.config`` / ``tora.summary``: the current run's, whichever run that is."""

    def __init__(self, attribute: str) -> None:
        object.__setattr__(self, "_attribute", attribute)

    def _target(self) -> _AttrDict:
        attribute = self.__dict__["_attribute"]
        target: _AttrDict = getattr(require_current(f"using tora.{attribute}"), attribute)
        return target

    def __getitem__(self, key: str) -> Any:
        return self._target()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._target()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._target()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._target())

    def __len__(self) -> int:
        return len(self._target())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._target(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._target(), name)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._target().update(*args, **kwargs)

    def as_dict(self) -> dict[str, Any]:
        return self._target().as_dict()

    def __repr__(self) -> str:
        run = current()
        if run is None:
            return f"<tora.{self.__dict__['_attribute']}: no run yet, call tora.init()>"
        return repr(getattr(run, self.__dict__["_attribute"]))


class Unsupported:
    """A W&B class Tora does not provide: making one raises ToraUnsupportedError saying what to do."""

    _wandb_name = ""

    def __new__(cls, *_args: Any, **_kwargs: Any) -> Unsupported:
        raise _unsupported(cls._wandb_name)


def unsupported_class(name: str) -> type[Unsupported]:
    return type(name, (Unsupported,), {"_wandb_name": name, "__doc__": f"Not in Tora: {_UNSUPPORTED[name]}"})


def unsupported_function(name: str) -> Callable[..., Any]:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise _unsupported(name)

    refuse.__name__ = refuse.__qualname__ = name
    refuse.__doc__ = f"Not in Tora: {_UNSUPPORTED[name]}"
    return refuse


class UnsupportedNamespace:
    """A W&B module Tora does not provide (``wandb.plot``): any use raises ToraUnsupportedError."""

    def __init__(self, name: str) -> None:
        self._wandb_name = name

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise _unsupported(self._wandb_name)
