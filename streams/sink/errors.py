"""Errors of the InfluxDB sink; callers ask ``exc.retriable`` instead of matching library types.

Third-party exceptions (httpx, aiohttp, influxdb-client) are translated into these once, in
the writers, with ``raise ... from exc``; nothing above the writers imports those libraries.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

__all__ = [
    "SinkError",
    "SinkRejected",
    "SinkUnavailable",
    "SpoolFailure",
    "error_for_status",
    "parse_retry_after",
]

_REJECT_REASONS = {
    400: "bad_data",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    413: "too_large",
}


class SinkError(Exception):
    """Root of every error the sink raises."""

    retriable: bool = False

    def __str__(self) -> str:
        return f"{type(self).__name__}: {super().__str__()}"


class SinkUnavailable(SinkError):
    """InfluxDB cannot take the write now (down, overloaded, timing out); try again later."""

    retriable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class SinkRejected(SinkError):
    """InfluxDB refused the data or the request itself; sending it again will not help."""

    retriable = False

    def __init__(self, message: str, *, status: int, reason: str | None = None) -> None:
        super().__init__(f"status={status} {message}")
        self.message = message
        self.status = status
        self.reason = reason or _REJECT_REASONS.get(status, f"http_{status}")


class SpoolFailure(SinkError):
    """A batch could not be written to the on-disk spool (disk full, permissions)."""


def error_for_status(
    status: int, message: str, *, retry_after: str | None = None
) -> SinkUnavailable | SinkRejected:
    """Our error for a non-2xx HTTP status from a write or query endpoint."""
    if status == 429 or status == 408 or status >= 500:
        return SinkUnavailable(f"status={status} {message}", retry_after=parse_retry_after(retry_after))
    return SinkRejected(message, status=status)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
