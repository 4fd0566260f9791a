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
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
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


STREAM_BLOCK = 256 * 1024
"""Bytes read from a file (upload) or from the socket (download) at a time."""


class _Exactly:
    """A file object that yields exactly ``size`` bytes of ``source`` then stops, so the body
    matches its Content-Length even when the file grows while it is sent. A file that shrank
    ends the body early: the request fails, and the caller retries later."""

    def __init__(self, source: BinaryIO, size: int) -> None:
        self._source = source
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        chunk = self._source.read(want)
        if not chunk:
            raise OSError("the file got shorter while it was being sent")
        self._left -= len(chunk)
        return chunk


def upload(url: str, source: BinaryIO, size: int, *, api_key: str | None, timeout: float) -> Response:
    """PUT ``size`` bytes of ``source`` to ``url`` as a raw body, streamed block by block (never
    whole in memory), on a connection of its own. Raises ToraNetworkError when no answer arrives."""
    conn, path = _open(url, timeout, blocksize=STREAM_BLOCK)
    headers = _headers(api_key, keep_alive=False)
    headers["Content-Type"] = "application/octet-stream"
    headers["Content-Length"] = str(size)
    try:
        try:
            conn.request("PUT", path, body=_Exactly(source, size), headers=headers)
            answer = conn.getresponse()
            raw = answer.read()
        except (socket.timeout, TimeoutError) as e:
            raise ToraTimeoutError(f"PUT {url} timed out after {conn.timeout}s") from e
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise ToraNetworkError(f"PUT {url} failed: {_reason(e)}") from None
        return _answer(answer.status, raw, answer.getheader("Retry-After"))
    finally:
        conn.close()


def download(url: str, dest: Path, *, api_key: str | None, timeout: float) -> Response:
    """GET ``url`` into the file ``dest``, streamed block by block through ``dest`` + ``.part``
    (renamed once complete, so ``dest`` is never half-written). On any status but 200 nothing is
    written and the answer is returned. Raises ToraNetworkError when the transfer fails."""
    conn, path = _open(url, timeout, blocksize=STREAM_BLOCK)
    part = dest.with_name(dest.name + ".part")
    try:
        try:
            conn.request("GET", path, headers=_headers(api_key, keep_alive=False, accept="*/*"))
            answer = conn.getresponse()
            if answer.status != 200:
                return _answer(answer.status, answer.read(), answer.getheader("Retry-After"))
            expected = answer.getheader("Content-Length")
            written = 0
            with part.open("wb") as out:
                while True:
                    chunk = answer.read(STREAM_BLOCK)
                    if not chunk:
                        break
                    out.write(chunk)
                    written += len(chunk)
            if expected is not None and expected.isdigit() and int(expected) != written:
                raise OSError(f"the answer ended after {written} of {expected} bytes")
            os.replace(part, dest)
        except (socket.timeout, TimeoutError) as e:
            raise ToraTimeoutError(f"GET {url} timed out after {conn.timeout}s") from e
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise ToraNetworkError(f"GET {url} failed: {_reason(e)}") from None
        return Response(status=200, body=None, text="", retry_after=None)
    finally:
        conn.close()
        part.unlink(missing_ok=True)


def _headers(api_key: str | None, *, keep_alive: bool, accept: str = "application/json") -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": accept}
    if not keep_alive:
        headers["Connection"] = "close"
    if api_key:
        headers["x-api-key"] = api_key
    return headers


def _answer(status: int, raw: bytes, retry_after: str | None) -> Response:
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return Response(status=status, body=parsed, text=text, retry_after=_seconds(retry_after))


def _path(parts: Any) -> str:
    path: str = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return path


def _open(url: str, timeout: float, blocksize: int = 8192) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ToraNetworkError(f"Invalid URL: {url}")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.netloc, timeout=timeout, blocksize=blocksize)
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout, blocksize=blocksize)
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
    headers = _headers(api_key, keep_alive=keep_alive)
    if body is not None:
        headers["Content-Type"] = "application/json"
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
