"""The exception classes of 0.0.12, unchanged in name and shape.

Only the caller's mistakes (bad values, bad names, a closed client) and definite refusals at
set-up time (bad API key, unknown workspace) raise. Network trouble while logging never does.
"""

from __future__ import annotations

from typing import Any


class ToraError(Exception):
    """Base class of every Tora SDK error."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        if self.details:
            return f"{self.message} (Details: {self.details})"
        return self.message


class ToraConfigurationError(ToraError):
    """A setting is missing or invalid."""


class ToraAuthenticationError(ToraError):
    """The server refused the API key."""


class ToraValidationError(ToraError):
    """An argument is invalid; raised at once, in the caller."""


class ToraNetworkError(ToraError):
    """A request could not be completed."""

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        response_text: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details)
        self.status_code = status_code
        self.response_text = response_text

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code:
            parts.append(f"Status: {self.status_code}")
        if self.response_text:
            parts.append(f"Response: {self.response_text}")
        if self.details:
            parts.append(f"Details: {self.details}")
        return " | ".join(parts)


class ToraAPIError(ToraNetworkError):
    """The server answered with an error."""


class ToraTimeoutError(ToraNetworkError):
    """A request timed out."""


class ToraExperimentError(ToraError):
    """An experiment operation failed (for example: not found)."""


class ToraMetricError(ToraError):
    """A metric operation failed (for example: the client is closed)."""


class ToraWorkspaceError(ToraError):
    """A workspace operation failed."""


class HTTPStatusError(ToraNetworkError):
    """Kept for code that imported it from 0.0.12; use ToraNetworkError."""

    def __init__(self, message: str, response: Any) -> None:
        super().__init__(
            message=message,
            status_code=getattr(response, "status_code", None),
            response_text=getattr(response, "text", None),
        )
        self.response = response


class ToraUnsupportedError(ToraError):
    """A W&B feature Tora does not provide; the message says what to use instead."""
