"""The Tora client: 0.0.12's API, on top of the background sender.

Set-up calls (create, load, create_workspace) talk to the server synchronously and raise on a
definite refusal (bad key, unknown workspace). When the server cannot be reached at all,
create_experiment and load_experiment do not raise: the experiment id is made here, and the
sender creates the experiment once the server answers (the server accepts a client-made id,
idempotently). The logging verbs only validate and enqueue.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from . import _config, _metadata, _system, _transport, _validation
from ._artifacts import Uploader, artifact_name, artifact_url
from ._exceptions import (
    ToraAPIError,
    ToraAuthenticationError,
    ToraConfigurationError,
    ToraExperimentError,
    ToraMetricError,
    ToraNetworkError,
    ToraValidationError,
)
from ._run import Run, end_state
from ._sender import Sender
from ._validation import HPValue, Number

__all__ = ["Tora", "create_workspace"]

logger = logging.getLogger("tora")

DEFAULT_FLUSH_TIMEOUT = 30.0
_I64_MAX = 2**63 - 1
_NAME_CACHE_LIMIT = 10_000
_WARNED_LIMIT = 1000


def _server_url(server_url: str | None, settings: _config.Settings) -> str:
    url = (server_url or settings.base_url).strip().rstrip("/")
    if not url:
        raise ToraConfigurationError("Server URL must be provided via parameter or TORA_BASE_URL")
    if not url.startswith(("http://", "https://")):
        raise ToraConfigurationError(f"Server URL must start with http:// or https://, got {url!r}")
    return url


def _api_key(api_key: str | None, settings: _config.Settings) -> str:
    """The key to send, its shape checked: a malformed key fails here, with a message that names
    the problem and never the key, rather than as a network error or a 401 later."""
    key, source = (api_key, "The api_key argument") if api_key else (settings.api_key, "TORA_API_KEY")
    if key is None:
        raise ToraConfigurationError(
            "No API key: set TORA_API_KEY (or pass api_key=). "
            "Create a key with `tora api-key create` or in the dashboard (API keys)."
        )
    return _validation.api_key(key, source)


def _check_flag(value: object, name: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise ToraValidationError(f"{name} must be True, False or None, got {type(value).__name__}")


def _guess_url(server_url: str, experiment_id: str) -> str:
    """The experiment's page, for when the server could not say it: the API root minus ``/api``."""
    root = server_url[: -len("/api")] if server_url.endswith("/api") else server_url
    return f"{root}/experiments/{experiment_id}"


def _unreachable(e: Exception | None, answer: _transport.Response | None) -> bool:
    """No definite answer: the server may simply be down for now."""
    if e is not None:
        return True
    assert answer is not None
    return answer.status >= 500 or answer.status in (408, 429)


def _call(
    method: str, url: str, body: bytes | None, api_key: str | None, timeout: float
) -> tuple[_transport.Response | None, ToraNetworkError | None]:
    try:
        return _transport.request(method, url, body=body, api_key=api_key, timeout=timeout), None
    except ToraNetworkError as e:
        return None, e


def _described(answer: _transport.Response) -> str:
    if answer.text.lstrip().startswith("<"):
        return f"an HTML page (HTTP {answer.status})"
    if answer.body is None:
        return f"HTTP {answer.status} with a body that is not JSON"
    return f"HTTP {answer.status} {answer.message}"


def _not_the_api(answer: _transport.Response, url: str) -> bool:
    """An answer that shows `url` is not Tora's API root: a page (the dashboard, a proxy's) rather
    than JSON, or a 404/405 from a URL without /api, as when it was copied from the browser."""
    if answer.body is None and answer.text.strip():
        return True
    return answer.status in (404, 405) and not url.endswith("/api")


def _nearby_apis(url: str) -> list[str]:
    parts = urlsplit(url)
    candidates = [f"{url}/api", f"{parts.scheme}://{parts.netloc}/api"]
    return [c for i, c in enumerate(candidates) if c != url and c not in candidates[:i]]


def _is_tora_api(url: str, timeout: float) -> bool:
    answer, _ = _call("GET", f"{url}/health", None, None, timeout)
    return (
        answer is not None
        and answer.status == 200
        and isinstance(answer.body, dict)
        and answer.body.get("status") == "ok"
    )


def _setup_call(
    method: str, path: str, body: bytes | None, url: str, key: str, timeout: float
) -> tuple[_transport.Response | None, ToraNetworkError | None, str]:
    """A set-up request to the API root `url`. When the answer shows that `url` is not the API
    root but the API answers nearby (`url` + /api, or the origin + /api), says so and asks there.
    Returns the answer (or the network error) and the API root that gave it.

    Raises:
        ToraConfigurationError: `url` answers, but not as Tora's API, and none nearby does.
    """
    answer, error = _call(method, url + path, body, key, timeout)
    if answer is None or _unreachable(None, answer) or not _not_the_api(answer, url):
        return answer, error, url  # 5xx: a proxy's error page while the server is down is an outage
    for candidate in _nearby_apis(url):
        if _is_tora_api(candidate, timeout):
            logger.warning(
                "tora: %s is not the API root (%s %s answered %s); the Tora API answers at %s and tora uses "
                "that. Set TORA_BASE_URL=%s to say so.",
                url,
                method,
                path,
                _described(answer),
                candidate,
                candidate,
            )
            answer, error = _call(method, candidate + path, body, key, timeout)
            return answer, error, candidate
    if answer.body is not None:
        return answer, error, url
    raise ToraConfigurationError(
        f"{url} does not answer as the Tora API ({method} {path} answered {_described(answer)}). "
        "Set TORA_BASE_URL (or server_url=) to the API root that `tora serve` prints: it ends in /api, "
        "e.g. http://127.0.0.1:8080/api."
    )


def _refused_key(url: str) -> ToraAuthenticationError:
    return ToraAuthenticationError(
        f"The API key was refused by {url}; create one with `tora api-key create` (or in the dashboard) "
        "and set TORA_API_KEY to it."
    )


def _cannot_reach(url: str, what: str, reason: str) -> None:
    logger.warning(
        "tora: cannot reach the Tora server at %s to %s (%s). The run goes on: points are kept, on disk "
        "past a bound, and sent when the server answers (or later by `python -m tora sync`).",
        url,
        what,
        reason,
    )


def announce(message: str, *args: object) -> None:
    """An INFO message the user should see even with logging not configured (the run's URL).

    A program that configured logging (any handler on the way to the root, or a level on the
    "tora" logger) gets an INFO record. One that did not gets the record on stderr from logging's
    last-resort handler, which shows warnings then too, so the URL is not lost.
    """
    if logger.hasHandlers() or logger.level != logging.NOTSET or logging.lastResort is None:
        logger.info(message, *args)
        return
    logging.lastResort.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, args, None))


def create_workspace(
    name: str,
    description: str | None = None,
    api_key: str | None = None,
    server_url: str | None = None,
) -> dict[str, Any]:
    """Create a workspace and return it as the server does (id, name, description, ...)."""
    if not name or not isinstance(name, str):
        raise ToraValidationError("Workspace name must be a non-empty string")
    name = name.strip()
    if len(name) > 255:
        raise ToraValidationError("Workspace name cannot exceed 255 characters")
    if description is not None and len(description) > 1000:
        raise ToraValidationError("Workspace description cannot exceed 1000 characters")
    settings = _config.load()
    url = _server_url(server_url, settings)
    key = _api_key(api_key, settings)
    body = _transport.encode({"name": name, "description": description})
    answer, error, url = _setup_call("POST", "/workspaces", body, url, key, settings.timeout)
    if answer is None:
        assert error is not None
        raise ToraNetworkError(f"Cannot reach the Tora server at {url} to create a workspace: {error.message}")
    if answer.status in (200, 201) and isinstance(answer.data, dict):
        return answer.data
    if answer.status == 401:
        raise _refused_key(url)
    if answer.status == 400:
        raise ToraValidationError(f"Invalid workspace data: {answer.message}")
    raise ToraAPIError(f"API error: {answer.message}", status_code=answer.status, response_text=answer.text[:500])


def _new_run(
    name: str,
    experiment_id: str | None,
    workspace_id: str | None,
    description: str | None,
    hyperparams: Mapping[str, HPValue] | None,
    tags: list[str] | None,
    group: str | None,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    """The body of ``POST /experiments``: only what was given, and always a client-chosen id."""
    payload: dict[str, Any] = {
        "id": str(uuid.uuid4()) if experiment_id is None else _validation.experiment_uuid(experiment_id),
        "name": name,
    }
    if group is not None:
        payload["group"] = group
    if metadata is not None:
        payload["metadata"] = metadata
    if workspace_id:
        payload["workspaceId"] = workspace_id
    if description:
        payload["description"] = description
    if hyperparams:
        payload["hyperparams"] = [{"key": k, "value": v} for k, v in hyperparams.items()]
    if tags:
        payload["tags"] = tags
    return payload


class Tora:
    """A client logging to one experiment.

    Example:
        >>> with Tora.create_experiment("mnist", hyperparams={"lr": 0.1}) as tora:
        ...     tora.metric("loss", 0.25, step_or_epoch=1)
    """

    def __init__(
        self,
        experiment_id: str,
        url: str,
        description: str | None = None,
        hyperparams: Mapping[str, HPValue] | None = None,
        tags: list[str] | None = None,
        max_buffer_len: int = 25,
        api_key: str | None = None,
        server_url: str | None = None,
        *,
        mode: str | None = None,
        system_metrics: bool | None = None,
    ) -> None:
        """A client for an experiment that exists already (see create_experiment, load_experiment)."""
        self._open(
            experiment_id,
            url,
            description,
            hyperparams,
            tags,
            max_buffer_len,
            api_key,
            server_url,
            mode,
            None,
            system_metrics=system_metrics,
        )

    def _open(
        self,
        experiment_id: str,
        url: str,
        description: str | None,
        hyperparams: Mapping[str, HPValue] | None,
        tags: list[str] | None,
        max_buffer_len: int,
        api_key: str | None,
        server_url: str | None,
        mode: str | None,
        create: dict[str, Any] | None,
        reached: bool = True,
        *,
        system_metrics: bool | None = None,
        started: float | None = None,
    ) -> None:
        if not experiment_id or not isinstance(experiment_id, str):
            raise ToraValidationError("Experiment ID must be a non-empty string")
        _check_flag(system_metrics, "system_metrics")
        settings = _config.load()
        self._mode = _validation.mode(mode, settings.mode)
        if self._mode != settings.mode:
            settings = dataclasses.replace(settings, mode=self._mode)
        self._experiment_id = experiment_id.strip()
        self._url = url
        self._description = description
        self._hyperparams = dict(hyperparams) if hyperparams is not None else None
        self._tags = tags
        self._max_buffer_len = max(1, int(max_buffer_len))
        self._api_key = api_key or settings.api_key
        self._server_url = _server_url(server_url, settings)
        self._closed = False
        self._names: dict[str, str] = {}
        self._renamed: set[str] = set()
        self._auto_steps: dict[str, int] = {}
        self._sender = Sender(
            settings,
            experiment_id=self._experiment_id,
            server_url=self._server_url,
            api_key=self._api_key,
            create=create,
            threshold=self._max_buffer_len,
        )
        self._sender.outage_told = not reached
        self._sender.start()
        self._settings = settings
        self._artifacts: Uploader | None = None
        self._run = Run(settings, self._sender, self._server_url, self._api_key)
        self._run.start()
        self._system: _system.SystemMetrics | None = None
        if settings.system_metrics if system_metrics is None else system_metrics:
            self._system = _system.start(self.log_metrics, interval=settings.system_metrics_interval, started=started)

    @classmethod
    def _made(
        cls,
        experiment_id: str,
        url: str,
        description: str | None,
        hyperparams: Mapping[str, HPValue] | None,
        tags: list[str] | None,
        max_buffer_len: int,
        api_key: str | None,
        server_url: str,
        mode: str,
        create: dict[str, Any] | None,
        reached: bool = True,
        *,
        system_metrics: bool | None = None,
        started: float | None = None,
    ) -> Tora:
        client = cls.__new__(cls)
        client._open(
            experiment_id,
            url,
            description,
            hyperparams,
            tags,
            max_buffer_len,
            api_key,
            server_url,
            mode,
            create,
            reached,
            system_metrics=system_metrics,
            started=started,
        )
        return client

    @staticmethod
    def _get_api_key(api_key: str | None) -> str | None:
        return api_key or _config.load().api_key

    @classmethod
    def create_experiment(
        cls,
        name: str,
        workspace_id: str | None = None,
        description: str | None = None,
        hyperparams: Mapping[str, HPValue] | None = None,
        tags: list[str] | None = None,
        max_buffer_len: int = 25,
        api_key: str | None = None,
        server_url: str | None = None,
        *,
        mode: str | None = None,
        metadata: bool | None = None,
        experiment_id: str | None = None,
        group: str | None = None,
        system_metrics: bool | None = None,
    ) -> Tora:
        """Create an experiment and return a client logging to it.

        ``experiment_id`` (a UUID) chooses the run's id; creating an id that exists already and
        was created by the same user returns a client for that run. ``group`` puts the run in a
        group (W&B's group; filter ``group:NAME``).

        ``mode="offline"`` (or ``TORA_MODE=offline``) contacts no server: the run is kept on disk
        and ``python -m tora sync`` uploads it later. ``metadata=False`` (or ``TORA_METADATA=0``)
        keeps the run's git commit, command line, host and versions from being recorded.
        ``system_metrics=False`` (or ``TORA_SYSTEM_METRICS=0``) keeps it from logging ``sys/``
        metrics (CPU, memory, disk, network, GPUs) every TORA_SYSTEM_METRICS_INTERVAL seconds.

        Raises:
            ToraValidationError: an argument is invalid, or the server refused the experiment.
            ToraConfigurationError: the API key is missing or malformed, or the server URL answers
                but is not Tora's API.
            ToraAuthenticationError: the server refused the API key.
            ToraAPIError: the server refused for another reason.
        """
        name = _validation.experiment_name(name)
        _check_flag(system_metrics, "system_metrics")
        workspace_id = _validation.workspace_id(workspace_id)
        checked_hp = _validation.hyperparams(hyperparams)
        tags = _validation.tags(tags)
        settings = _config.load()
        chosen_mode = _validation.mode(mode, settings.mode)
        url = _server_url(server_url, settings)
        key = (api_key or settings.api_key) if chosen_mode == "offline" else _api_key(api_key, settings)

        payload = _new_run(
            name,
            experiment_id,
            workspace_id,
            description,
            checked_hp,
            tags,
            _validation.group(group) if group is not None else None,
            _metadata.collect(_config.VERSION, key) if (settings.metadata if metadata is None else metadata) else None,
        )
        experiment_id = payload["id"]
        page = _guess_url(url, experiment_id)

        def made(page: str, url: str, reached: bool = True) -> Tora:
            client = cls._made(
                experiment_id,
                page,
                description,
                checked_hp,
                tags,
                max_buffer_len,
                key,
                url,
                chosen_mode,
                payload,
                reached,
                system_metrics=system_metrics,
            )
            if not reached:
                announce("tora: run %s will be at %s once the server answers", name, client.url)
            elif chosen_mode == "offline":
                announce(
                    "tora: run %s is offline (id %s); upload it later with: python -m tora sync",
                    name,
                    client.experiment_id,
                )
            else:
                announce("tora: run %s: %s", name, client.url)
            return client

        if chosen_mode == "offline":
            return made(page, url)
        assert key is not None
        body = _transport.encode(payload)
        answer, error, url = _setup_call("POST", "/experiments", body, url, key, settings.timeout)
        page = _guess_url(url, experiment_id)
        if _unreachable(error, answer):
            _cannot_reach(url, f"create run {name}", error.message if error else _described(answer) if answer else "")
            return made(page, url, reached=False)
        assert answer is not None
        if answer.status in (200, 201) and isinstance(answer.data, dict):
            if answer.data.get("id") != experiment_id:
                raise ToraAPIError("The server did not keep the experiment id the client sent")
            return made(answer.data.get("url") or page, url)
        if answer.status == 401:
            raise _refused_key(url)
        if answer.status == 400:
            raise ToraValidationError(f"Invalid experiment data: {answer.message}")
        if answer.status == 404:
            raise ToraValidationError("Workspace not found")
        raise ToraAPIError(f"API error: {answer.message}", status_code=answer.status, response_text=answer.text[:500])

    @classmethod
    def load_experiment(
        cls,
        experiment_id: str,
        max_buffer_len: int = 25,
        api_key: str | None = None,
        server_url: str | None = None,
        *,
        mode: str | None = None,
        system_metrics: bool | None = None,
    ) -> Tora:
        """Return a client logging to an existing experiment.

        ``system_metrics`` as in create_experiment; their steps go on counting seconds from the
        run's ``started_at``.

        Raises:
            ToraExperimentError: the experiment does not exist (or is not visible to this key).
            ToraAuthenticationError: the server refused the API key.
        """
        if not experiment_id or not isinstance(experiment_id, str):
            raise ToraValidationError("Experiment ID must be a non-empty string")
        _check_flag(system_metrics, "system_metrics")
        experiment_id = experiment_id.strip()
        settings = _config.load()
        chosen_mode = _validation.mode(mode, settings.mode)
        url = _server_url(server_url, settings)
        key = (api_key or settings.api_key) if chosen_mode == "offline" else _api_key(api_key, settings)

        def made(page: str, data: dict[str, Any]) -> Tora:
            hp = data.get("hyperparams")
            hyperparams = {i["key"]: i["value"] for i in hp} if isinstance(hp, list) else None
            client = cls._made(
                experiment_id,
                page,
                data.get("description"),
                hyperparams,
                data.get("tags"),
                max_buffer_len,
                key,
                url,
                chosen_mode,
                None,
                chosen_mode == "offline" or bool(data),
                system_metrics=system_metrics,
                started=_system.started_at(data.get("started_at")),
            )
            if chosen_mode == "online" and data:
                announce("tora: run %s: %s", data.get("name") or experiment_id, client.url)
            return client

        if chosen_mode == "offline":
            return made(_guess_url(url, experiment_id), {})
        assert key is not None
        answer, error, url = _setup_call("GET", f"/experiments/{experiment_id}", None, url, key, settings.timeout)
        if _unreachable(error, answer):
            _cannot_reach(
                url, f"load run {experiment_id}", error.message if error else _described(answer) if answer else ""
            )
            return made(_guess_url(url, experiment_id), {})
        assert answer is not None
        if answer.status == 200 and isinstance(answer.data, dict):
            return made(answer.data.get("url") or _guess_url(url, experiment_id), answer.data)
        if answer.status == 404:
            raise ToraExperimentError(f"Experiment {experiment_id} not found on {url}")
        if answer.status == 401:
            raise _refused_key(url)
        raise ToraAPIError(
            f"API error loading experiment: {answer.message}", status_code=answer.status, response_text=answer.text
        )

    def metric(self, name: str, value: Number, step_or_epoch: int) -> None:
        """Log a metric value at a step. Validates and enqueues; never waits for the network.

        Raises:
            ToraValidationError: the name, value or step is invalid.
            ToraMetricError: the client is closed.
        """
        if self._closed:
            raise ToraMetricError("Cannot log metrics on a closed Tora client")
        checked = self._names.get(name) if type(name) is str else None
        if checked is None:
            checked = self._check_name(name)
        if type(value) is not float:
            value = _validation.value(value)
        if type(step_or_epoch) is not int or step_or_epoch < 0 or step_or_epoch > _I64_MAX:
            step_or_epoch = _validation.step(step_or_epoch)
        sender = self._sender
        queue = sender.queue
        queue.append((checked, value, step_or_epoch))
        if len(queue) >= sender.wake_at:
            sender.poke()

    def result(self, name: str, value: Number) -> None:
        """Log a final result of the experiment (a value without a step)."""
        if self._closed:
            raise ToraMetricError("Cannot log metrics on a closed Tora client")
        checked = self._names.get(name) if type(name) is str else None
        if checked is None:
            checked = self._check_name(name)
        if type(value) is not float:
            value = _validation.value(value)
        sender = self._sender
        sender.queue.append((checked, value, None))
        if len(sender.queue) >= sender.wake_at:
            sender.poke()

    def log_metrics(self, metrics: Mapping[str, Number], step: int | None = None) -> None:
        """Log several metrics at one step. Without a step, each name counts its own steps 0, 1, 2, ...

        All values are checked before any is logged.
        """
        if self._closed:
            raise ToraMetricError("Cannot log metrics on a closed Tora client")
        if not isinstance(metrics, Mapping):
            raise ToraValidationError(f"metrics must be a mapping of name to value, got {type(metrics).__name__}")
        fixed = None if step is None else _validation.step(step)
        # Names seen before skip validation (the cache metric() uses): a training loop logs the
        # same few names every step, and checking each again was most of this call's cost.
        known = self._names
        checked = []
        for name, value in metrics.items():
            ok = known.get(name) if type(name) is str else None
            checked.append(
                (
                    ok if ok is not None else self._check_name(name),
                    value if type(value) is float else _validation.value(value),
                )
            )
        counters = self._auto_steps
        queue = self._sender.queue
        if fixed is None:
            for name, value in checked:
                at = counters.get(name, 0)
                counters[name] = at + 1
                queue.append((name, value, at))
        else:
            following = fixed + 1
            for name, value in checked:
                if counters.get(name, 0) < following:
                    counters[name] = following
                queue.append((name, value, fixed))
        sender = self._sender
        if len(sender.queue) >= sender.wake_at:
            sender.poke()

    def _check_name(self, name: object) -> str:
        checked = _validation.metric_name(name)
        assert isinstance(name, str)
        if checked != name.strip() and name not in self._renamed and len(self._renamed) < _WARNED_LIMIT:
            self._renamed.add(name)
            logger.warning(
                "tora: metric name %r is logged as %r (names are 1-100 letters, digits, _ - . /)", name[:200], checked
            )
        if len(self._names) < _NAME_CACHE_LIMIT:
            self._names[name] = checked
        return checked

    def flush(self, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> int:
        """Wait until every logged point is delivered, or `timeout` seconds pass, or the server fails
        a fresh attempt. Returns the points not delivered yet (0 when all arrived); those are kept
        and still sent. Offline, every point stays on disk, so this returns how many are kept there.
        Then logged artifacts are waited for in the same way, within the same timeout
        (``pending_artifacts`` says how many are not uploaded yet).

        Raises:
            ToraMetricError: the client is closed.
        """
        if self._closed:
            raise ToraMetricError("Cannot flush metrics on a closed Tora client")
        deadline = time.monotonic() + timeout
        left = self._sender.flush(timeout)
        # Artifacts go once the server has the run; before that (an outage) there is nothing to wait for.
        if self._artifacts is not None and self._sender.created.is_set():
            self._artifacts.flush(max(0.0, deadline - time.monotonic()))
        return left

    def shutdown(self, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> int:
        """Deliver what is pending (waiting as flush does), mark the run finished (or failed, if an
        uncaught exception was seen), then close. Points that could not be delivered are kept in a
        spool file for ``python -m tora sync``; returns how many."""
        if self._closed:
            return 0
        self._stop_system(timeout)
        self._closed = True
        return self._run.end(self._close_artifacts(timeout))

    def finish(self, state: str = "finished", timeout: float = DEFAULT_FLUSH_TIMEOUT) -> int:
        """shutdown(), marking the run ``state``: "finished" or "failed"."""
        checked = end_state(state)
        if self._closed:
            return 0
        self._stop_system(timeout)
        self._closed = True
        return self._run.end(self._close_artifacts(timeout), checked)

    def _stop_system(self, timeout: float) -> None:
        """The last system sample goes in before the run's points are delivered."""
        if self._system is not None:
            self._system.stop(min(_system.STOP_TIMEOUT, timeout))

    def _close_artifacts(self, timeout: float) -> float:
        """Upload the artifacts (or leave them for sync) before the run ends; returns the time left."""
        if self._artifacts is None:
            return timeout
        deadline = time.monotonic() + timeout
        if not self._sender.created.is_set():
            self._sender.flush(timeout)  # creates the run, or fails at once while the server is away
        created = self._sender.created.is_set()
        self._artifacts.close(max(0.0, deadline - time.monotonic()) if created else 0.0)
        return max(0.0, deadline - time.monotonic())

    # ---------- artifacts ----------

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        """Keep the file at ``path`` with the run, as ``name`` (default: the file's name; "/" makes
        folders, e.g. ``"plots/loss.png"``). Returns at once: a background thread uploads it,
        streamed from disk, retrying while the server is away; what is not uploaded when the
        process ends is kept for ``python -m tora sync``. A file of up to TORA_ARTIFACT_COPY_MAX
        bytes (64 MiB) is copied now, so later changes to it do not matter; a larger one is read
        when uploaded and must stay in place until then. Logging a name again replaces it.

        Raises:
            ToraValidationError: ``path`` is not a readable regular file, or ``name`` is not a
                relative path (no empty, "." or ".." parts). Nothing else ever raises here.
            ToraMetricError: the client is closed.
        """
        if self._closed:
            raise ToraMetricError("Cannot log an artifact on a closed Tora client")
        if not isinstance(path, (str, os.PathLike)):
            raise ToraValidationError(f"log_artifact: path must be a str or a path, got {type(path).__name__}")
        source = Path(path).expanduser()
        checked = artifact_name(source.name if name is None else name)
        uploader = self._artifacts
        if uploader is None or uploader.closed_in_child():
            uploader = self._artifacts = Uploader(
                self._settings,
                experiment_id=self._experiment_id,
                server_url=self._server_url,
                api_key=self._api_key,
                created=self._sender.created,
                create=self._sender.create_payload,
            )
        uploader.add(source, checked)

    @property
    def pending_artifacts(self) -> int:
        """Artifacts logged and not uploaded yet."""
        return 0 if self._artifacts is None else self._artifacts.pending

    def list_artifacts(self) -> list[dict[str, Any]]:
        """The run's artifacts on the server: ``[{"path", "size", "sha256", "created_at"}]``.
        Artifacts still being uploaded are not there yet (``flush()`` waits for them).

        Raises:
            ToraNetworkError: the server cannot be reached.
            ToraExperimentError: the experiment is not on the server (or not visible to this key).
            ToraAPIError: the server refused for another reason.
        """
        url = f"{self._server_url}/experiments/{quote(self._experiment_id, safe='')}/artifacts"
        answer = _transport.request("GET", url, api_key=self._api_key, timeout=self._settings.timeout)
        if answer.status == 200 and isinstance(answer.data, list):
            return answer.data
        raise self._refusal(answer, "list artifacts")

    def download_artifact(self, name: str, dest: str | os.PathLike[str]) -> Path:
        """Download artifact ``name`` to ``dest`` (a file path, or an existing directory: then
        ``dest/<last part of name>``), streamed to disk; ``dest`` appears only once complete.
        Returns the file's path.

        Raises:
            ToraValidationError: ``name`` is not a valid artifact name.
            ToraNetworkError: the server cannot be reached, or the transfer broke off.
            ToraExperimentError: no such artifact (or experiment) on the server.
            ToraAPIError: the server refused for another reason.
        """
        checked = artifact_name(name)
        target = Path(dest).expanduser()
        if target.is_dir():
            target = target / checked.rsplit("/", 1)[-1]
        url = artifact_url(self._server_url, self._experiment_id, checked)
        # A transfer's timeout is per read, not for the whole file: a 1 GB download may take minutes.
        answer = _transport.download(url, target, api_key=self._api_key, timeout=self._settings.timeout)
        if answer.status != 200:
            raise self._refusal(answer, f"download artifact {checked!r}")
        return target

    def _refusal(self, answer: _transport.Response, what: str) -> Exception:
        if answer.status == 404:
            return ToraExperimentError(f"Cannot {what} of experiment {self._experiment_id}: {answer.message}")
        if answer.status == 401:
            return _refused_key(self._server_url)
        return ToraAPIError(
            f"Cannot {what}: {answer.message}", status_code=answer.status, response_text=answer.text[:500]
        )

    @property
    def max_buffer_len(self) -> int:
        """Queued points that wake the sender before its interval is up."""
        return self._max_buffer_len

    @max_buffer_len.setter
    def max_buffer_len(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ToraValidationError("max_buffer_len must be a positive integer")
        self._max_buffer_len = value
        self._sender.set_threshold(value)

    @property
    def experiment_id(self) -> str:
        return self._experiment_id

    @property
    def url(self) -> str:
        """The experiment's page on the server."""
        return self._url

    @property
    def buffer_size(self) -> int:
        """Points logged and held in memory, not delivered yet."""
        return self._sender.in_memory

    @property
    def is_closed(self) -> bool:
        return self._closed or self._sender.closed

    @property
    def mode(self) -> str:
        """``online`` or ``offline``."""
        return self._mode

    def __enter__(self) -> Tora:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, _exc_val: object, _exc_tb: object) -> None:
        if exc_type is None or issubclass(exc_type, GeneratorExit):
            self.shutdown()
        else:
            self.finish("failed")

    def __repr__(self) -> str:
        status = "closed" if self.is_closed else "open"
        return f"Tora(experiment_id='{self.experiment_id}', status='{status}', buffer_size={self.buffer_size})"
