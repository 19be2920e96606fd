"""What every simulated TCP station shares: counters, the station clock, reconnect back-off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["BEIJING", "Backoff", "StationClock", "StationCounters", "sleep_or_stop"]

BEIJING = timezone(timedelta(hours=8))  # both standards stamp Beijing local time without a zone


@dataclass(slots=True)
class StationCounters:
    """What the TCP stations did (summed over stations when merged)."""

    uploads: int = 0  # data frames built (a retransmission is not a new upload)
    sent: int = 0  # frames written, retransmissions and answers included
    acked: int = 0  # uploads the center confirmed (HJ 212 9014, SL 651 EOT/ESC confirmation)
    lost: int = 0  # uploads given up after the retries
    retries: int = 0  # retransmissions after a missing confirmation
    replies: int = 0  # frames received from the center
    time_sets: int = 0  # clock settings applied (HJ 212 CN 1012)
    connects: int = 0  # TCP connections opened
    readings: int = 0  # values in confirmed uploads
    keepalives: int = 0  # SL 651 2F frames

    def add(self, other: StationCounters) -> None:
        """Add ``other``'s counts to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class StationClock:
    """A station's own clock: the wall clock plus an offset the center may correct."""

    def __init__(self, offset_s: float = 0.0, now: Callable[[], datetime] | None = None) -> None:
        self.offset_s = offset_s
        self._now = now or (lambda: datetime.now(UTC))

    def utc(self) -> datetime:
        """What the station believes the time is (aware, UTC)."""
        return self._now() + timedelta(seconds=self.offset_s)

    def local(self) -> datetime:
        """The station's time as it writes it: Beijing local time, naive."""
        return self.utc().astimezone(BEIJING).replace(tzinfo=None)

    def set_local(self, local: datetime) -> float:
        """Set the clock to ``local`` (Beijing time if naive); return the correction applied (s)."""
        target = (local if local.tzinfo else local.replace(tzinfo=BEIJING)).astimezone(UTC)
        correction = (target - self.utc()).total_seconds()
        self.offset_s += correction
        return correction


class Backoff:
    """Reconnect delays: ``first`` doubling up to ``cap``; ``reset`` after a good connection."""

    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        """The delay before the next attempt."""
        delay = self._next
        self._next = min(self._next * 2.0, self.cap)
        return delay

    def reset(self) -> None:
        """A connection worked: start again from ``first``."""
        self._next = self.first


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ``stop`` was set meanwhile."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))
    except TimeoutError:
        return False
    return True


def monotonic() -> float:
    """Monotonic seconds (one place to read it)."""
    return time.monotonic()
