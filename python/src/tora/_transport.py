"""The one function that talks HTTP.

Every request of the SDK, from the background sender, from set-up calls and from
``python -m tora sync``, goes through :func:`request`. It never retries; callers decide.
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
    """Send one request and return the answer, whatever its status.

    Raises ToraTimeoutError or ToraNetworkError when no answer arrives.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ToraNetworkError(f"Invalid URL: {url}")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.netloc, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "Connection": "close"}
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
    except (socket.timeout, TimeoutError) as e:
        raise ToraTimeoutError(f"{method} {url} timed out after {timeout}s") from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise ToraNetworkError(f"{method} {url} failed: {e!r}") from e
    finally:
        conn.close()
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return Response(status=status, body=parsed, text=text, retry_after=retry_after)


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
