"""Plausibility checks applied to every decoded message, whatever its format (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ingest.errors import RejectedMessage

__all__ = ["Limits", "check_not_empty", "check_readings", "check_size"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What a single device message may contain."""

    max_payload_bytes: int = 256 * 1024
    max_readings: int = 10_000
    # Device clocks drift; a few minutes ahead is tolerated, more is a wrong clock.
    max_future: timedelta = timedelta(minutes=5)
    # Loggers upload backlogs after an outage; a month back covers a long field trip.
    max_past: timedelta = timedelta(days=30)


def check_size(payload: bytes, limits: Limits, device_id: str | None) -> None:
    """Refuse payloads over the size limit before parsing them."""
    if len(payload) > limits.max_payload_bytes:
        raise RejectedMessage(
            "oversized",
            f"payload is {len(payload)} bytes, the limit is {limits.max_payload_bytes}; "
            "split the readings over several messages",
            device_id=device_id,
        )


def check_not_empty(payload: bytes, device_id: str | None) -> None:
    """Refuse a zero-length payload with its own code (MQTT clients send one to clear a retained message)."""
    if not payload:
        raise RejectedMessage(
            "empty_payload",
            "the payload is empty (0 bytes), which is how an MQTT client clears a retained "
            "message; publish readings as a JSON object, without the retain flag",
            device_id=device_id,
        )


class Timed(Protocol):
    """A reading as the checks see it (``Reading`` or the native JSON decoder's struct)."""

    @property
    def ts(self) -> datetime:
        """When it was measured (aware)."""
        ...


def check_readings(
    readings: Sequence[Timed], *, received_at: datetime, limits: Limits, device_id: str
) -> None:
    """Refuse messages with too many readings or timestamps outside the accepted window."""
    if len(readings) > limits.max_readings:
        raise RejectedMessage(
            "too_many_readings",
            f"{len(readings)} readings in one message, the limit is {limits.max_readings}",
            device_id=device_id,
        )
    newest = received_at + limits.max_future
    oldest = received_at - limits.max_past
    for i, r in enumerate(readings):
        if r.ts > newest:
            raise RejectedMessage(
                "ts_future",
                f"readings[{i}].ts {r.ts.isoformat()} is more than {limits.max_future} ahead of "
                f"the server clock ({received_at.isoformat()}); check the device clock",
                device_id=device_id,
            )
        if r.ts < oldest:
            raise RejectedMessage(
                "ts_past",
                f"readings[{i}].ts {r.ts.isoformat()} is more than {limits.max_past.days} days "
                f"old (server clock {received_at.isoformat()}); check the device clock",
                device_id=device_id,
            )
