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
import uuid
from collections.abc import Mapping
from typing import Any

from . import _config, _transport, _validation
from ._exceptions import (
    ToraAPIError,
    ToraAuthenticationError,
    ToraConfigurationError,
    ToraExperimentError,
    ToraMetricError,
    ToraNetworkError,
    ToraValidationError,
)
from ._sender import Sender
from ._validation import HPValue, Number

__all__ = ["Tora", "create_workspace"]

logger = logging.getLogger("tora")

DEFAULT_FLUSH_TIMEOUT = 30.0
_I64_MAX = 2**63 - 1
_NAME_CACHE_LIMIT = 10_000


def _server_url(server_url: str | None, settings: _config.Settings) -> str:
    url = (server_url or settings.base_url).strip().rstrip("/")
    if not url:
        raise ToraConfigurationError("Server URL must be provided via parameter or TORA_BASE_URL")
    if not url.startswith(("http://", "https://")):
        raise ToraConfigurationError(f"Server URL must start with http:// or https://, got {url!r}")
    return url


def _api_key(api_key: str | None, settings: _config.Settings) -> str | None:
    key = api_key or settings.api_key
    if key is None:
        logger.warning("Tora API key not provided. Operating in anonymous mode.")
    return key


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
    if not key:
        raise ToraAuthenticationError("API key is required to create a workspace")
    body = _transport.encode({"name": name, "description": description})
    answer = _transport.request("POST", f"{url}/workspaces", body=body, api_key=key, timeout=settings.timeout)
    if answer.status in (200, 201) and isinstance(answer.data, dict):
        return answer.data
    if answer.status == 401:
        raise ToraAuthenticationError("Invalid API key")
    if answer.status == 400:
        raise ToraValidationError(f"Invalid workspace data: {answer.message}")
    raise ToraAPIError(f"API error: {answer.message}", status_code=answer.status, response_text=answer.text[:500])


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
    ) -> None:
        """A client for an experiment that exists already (see create_experiment, load_experiment)."""
        self._open(experiment_id, url, description, hyperparams, tags, max_buffer_len, api_key, server_url, mode, None)

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
    ) -> None:
        if not experiment_id or not isinstance(experiment_id, str):
            raise ToraValidationError("Experiment ID must be a non-empty string")
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
        self._auto_steps: dict[str, int] = {}
        self._sender = Sender(
            settings,
            experiment_id=self._experiment_id,
            server_url=self._server_url,
            api_key=self._api_key,
            create=create,
            threshold=self._max_buffer_len,
        )
        self._sender.start()

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
    ) -> Tora:
        client = cls.__new__(cls)
        client._open(
            experiment_id, url, description, hyperparams, tags, max_buffer_len, api_key, server_url, mode, create
        )
        return client

    @staticmethod
    def _get_api_key(api_key: str | None) -> str | None:
        return _api_key(api_key, _config.load())

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
    ) -> Tora:
        """Create an experiment and return a client logging to it.

        ``mode="offline"`` (or ``TORA_MODE=offline``) contacts no server: the run is kept on disk
        and ``python -m tora sync`` uploads it later.

        Raises:
            ToraValidationError: an argument is invalid, or the server refused the experiment.
            ToraAuthenticationError: the server refused the API key.
            ToraAPIError: the server refused for another reason.
        """
        name = _validation.experiment_name(name)
        workspace_id = _validation.workspace_id(workspace_id)
        checked_hp = _validation.hyperparams(hyperparams)
        tags = _validation.tags(tags)
        settings = _config.load()
        chosen_mode = _validation.mode(mode, settings.mode)
        url = _server_url(server_url, settings)
        key = (api_key or settings.api_key) if chosen_mode == "offline" else _api_key(api_key, settings)

        payload: dict[str, Any] = {"id": str(uuid.uuid4()), "name": name}
        if workspace_id:
            payload["workspaceId"] = workspace_id
        if description:
            payload["description"] = description
        if checked_hp:
            payload["hyperparams"] = [{"key": k, "value": v} for k, v in checked_hp.items()]
        if tags:
            payload["tags"] = tags
        experiment_id = payload["id"]
        page = _guess_url(url, experiment_id)

        def made(page: str) -> Tora:
            return cls._made(
                experiment_id, page, description, checked_hp, tags, max_buffer_len, key, url, chosen_mode, payload
            )

        if chosen_mode == "offline":
            return made(page)
        answer, error = _call("POST", f"{url}/experiments", _transport.encode(payload), key, settings.timeout)
        if _unreachable(error, answer):
            logger.warning(
                "tora: cannot reach %s to create experiment %r (%s); logging goes on and the experiment is "
                "created when the server answers",
                url,
                name,
                error or (answer.message if answer else ""),
            )
            return made(page)
        assert answer is not None
        if answer.status in (200, 201) and isinstance(answer.data, dict):
            if answer.data.get("id") != experiment_id:
                raise ToraAPIError("The server did not keep the experiment id the client sent")
            return made(answer.data.get("url") or page)
        if answer.status == 401:
            raise ToraAuthenticationError("Invalid API key")
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
    ) -> Tora:
        """Return a client logging to an existing experiment.

        Raises:
            ToraExperimentError: the experiment does not exist (or is not visible to this key).
            ToraAuthenticationError: the server refused the API key.
        """
        if not experiment_id or not isinstance(experiment_id, str):
            raise ToraValidationError("Experiment ID must be a non-empty string")
        experiment_id = experiment_id.strip()
        settings = _config.load()
        chosen_mode = _validation.mode(mode, settings.mode)
        url = _server_url(server_url, settings)
        key = _api_key(api_key, settings)

        def made(page: str, data: dict[str, Any]) -> Tora:
            hp = data.get("hyperparams")
            hyperparams = {i["key"]: i["value"] for i in hp} if isinstance(hp, list) else None
            return cls._made(
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
            )

        if chosen_mode == "offline":
            return made(_guess_url(url, experiment_id), {})
        answer, error = _call("GET", f"{url}/experiments/{experiment_id}", None, key, settings.timeout)
        if _unreachable(error, answer):
            logger.warning("tora: cannot reach %s to load experiment %s; logging goes on", url, experiment_id)
            return made(_guess_url(url, experiment_id), {})
        assert answer is not None
        if answer.status == 200 and isinstance(answer.data, dict):
            return made(answer.data.get("url") or _guess_url(url, experiment_id), answer.data)
        if answer.status == 404:
            raise ToraExperimentError(f"Experiment {experiment_id} not found")
        if answer.status == 401:
            raise ToraAuthenticationError("Invalid API key")
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
        if len(self._names) < _NAME_CACHE_LIMIT:
            self._names[name] = checked  # type: ignore[index]
        return checked

    def flush(self, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> int:
        """Wait until every logged point is delivered, or `timeout` seconds pass, or the server fails
        a fresh attempt. Returns the points not delivered yet (0 when all arrived); those are kept
        and still sent. Offline, every point stays on disk, so this returns how many are kept there.

        Raises:
            ToraMetricError: the client is closed.
        """
        if self._closed:
            raise ToraMetricError("Cannot flush metrics on a closed Tora client")
        return self._sender.flush(timeout)

    def shutdown(self, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> int:
        """Deliver what is pending (waiting as flush does), then close. Points that could not be
        delivered are kept in a spool file for ``python -m tora sync``; returns how many."""
        if self._closed:
            return 0
        self._closed = True
        return self._sender.close(timeout)

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

    def __exit__(self, _exc_type: object, _exc_val: object, _exc_tb: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        status = "closed" if self.is_closed else "open"
        return f"Tora(experiment_id='{self.experiment_id}', status='{status}', buffer_size={self.buffer_size})"
