"""The one place that talks HTTP.

Set-up calls and ``python -m tora sync`` go through :func:`request` (a connection per request);
the background sender holds a :class:`Session`, one keep-alive connection for its whole run,
so a batch does not pay a TCP (or TLS) handshake. Neither retries on its own, except that a
session resends once on a fresh connection when its reused one turns out to be closed (the
sender's requests are idempotent: batch ids and client experiment ids). Callers decide the rest.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._exceptions import ToraNetworkError, ToraTimeoutError

USER_AGENT = "tora-python"


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    """The parsed JSON body, or None when the body was not JSON."""
    text: str
    retry_after: float | None

    @property
    def data(self) -> Any:
        """The ``data`` of a success envelope."""
        return self.body.get("data") if isinstance(self.body, dict) else None

    @property
    def message(self) -> str:
        """A short description of an error answer."""
        if isinstance(self.body, dict):
            error = self.body.get("error") or ""
            message = self.body.get("message") or ""
            return f"{error}: {message}".strip(": ")
        return self.text[:300]


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    api_key: str | None = None,
    timeout: float,
) -> Response:
    """Send one request on a connection of its own and return the answer, whatever its status.

    Raises ToraTimeoutError or ToraNetworkError when no answer arrives.
    """
    conn, path = _open(url, timeout)
    try:
        return _exchange(conn, method, url, path, body, api_key, keep_alive=False)
    finally:
        conn.close()


class Session:
    """One keep-alive connection, used by one thread for a series of idempotent requests."""

    def __init__(self) -> None:
        self._conn: http.client.HTTPConnection | None = None
        self._target: tuple[str, float] | None = None

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        api_key: str | None = None,
        timeout: float,
    ) -> Response:
        """Like :func:`request`, on the session's connection (opened on first use)."""
        parts = urlsplit(url)
        target = (f"{parts.scheme}://{parts.netloc}", timeout)
        reused = self._conn is not None and self._target == target
        if not reused:
            self.close()
        for attempt in (1, 2):
            if self._conn is None:
                self._conn, _ = _open(url, timeout)
                self._target = target
            path = _path(parts)
            try:
                return _exchange(self._conn, method, url, path, body, api_key, keep_alive=True)
            except ToraNetworkError:
                self.close()
                # A reused connection the server had already closed fails before the request
                # reaches it: that one failure gets a fresh connection. Anything else is real.
                if not (reused and attempt == 1):
                    raise
                reused = False
            except ToraTimeoutError:
                self.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def forget(self) -> None:
        """Drop the connection without closing it: after fork, the parent still uses it."""
        self._conn = None


def _path(parts: Any) -> str:
    path: str = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return path


def _open(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ToraNetworkError(f"Invalid URL: {url}")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.netloc, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    return conn, _path(parts)


def _exchange(
    conn: http.client.HTTPConnection,
    method: str,
    url: str,
    path: str,
    body: bytes | None,
    api_key: str | None,
    *,
    keep_alive: bool,
) -> Response:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if not keep_alive:
        headers["Connection"] = "close"
    if body is not None:
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["x-api-key"] = api_key
    try:
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        raw = answer.read()
        retry_after = _seconds(answer.getheader("Retry-After"))
        status = answer.status
        if answer.will_close:
            conn.close()
    except (socket.timeout, TimeoutError) as e:
        raise ToraTimeoutError(f"{method} {url} timed out after {conn.timeout}s") from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise ToraNetworkError(f"{method} {url} failed: {_reason(e)}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return Response(status=status, body=parsed, text=text, retry_after=retry_after)


def _reason(e: Exception) -> str:
    """Why a request failed, in words that never quote a header: http.client's ValueError for a bad
    header value holds the value, and that value can be the API key."""
    if isinstance(e, ValueError):
        return "a request header is not valid (is the API key one line, without spaces?)"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    if isinstance(e, http.client.HTTPException):
        return f"not an HTTP answer ({type(e).__name__})"
    return type(e).__name__


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
