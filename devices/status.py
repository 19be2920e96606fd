"""Per-device reporting status kept in memory: last seen, readings and rejections per rolling hour.

Counters live in minute buckets keyed by the record's own ``received_at``, so a replay of the
topics after a restart rebuilds the last hour instead of inflating it. Nothing is persisted:
after a restart the totals count from what the consumer group replays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stationflow.contracts import DeadLetter, ReadingBatch, utcnow

__all__ = ["DeviceCounters", "StatusTracker"]

WINDOW_MINUTES = 60


def _minute(ts: datetime) -> int:
    return int(ts.timestamp() // 60)


@dataclass(slots=True)
class DeviceCounters:
    """What is known about one device's traffic."""

    last_seen: datetime | None = None
    rejected_total: int = 0
    last_rejection_at: datetime | None = None
    last_rejection_code: str | None = None
    last_rejection_reason: str | None = None
    # minute -> [readings, rejected messages]; only the last WINDOW_MINUTES are kept.
    buckets: dict[int, list[int]] = field(default_factory=dict)

    def add(self, ts: datetime, *, readings: int = 0, rejected: int = 0) -> None:
        """Count into the bucket of ``ts`` and drop buckets older than the window."""
        minute = _minute(ts)
        newest = max([minute, *self.buckets])
        if minute <= newest - WINDOW_MINUTES:
            return
        bucket = self.buckets.setdefault(minute, [0, 0])
        bucket[0] += readings
        bucket[1] += rejected
        for old in [m for m in self.buckets if m <= newest - WINDOW_MINUTES]:
            del self.buckets[old]

    def last_hour(self, now: datetime) -> tuple[int, int]:
        """(readings, rejected messages) in the hour before ``now``."""
        start = _minute(now) - WINDOW_MINUTES
        window = [b for m, b in self.buckets.items() if m > start]
        return sum(b[0] for b in window), sum(b[1] for b in window)


class StatusTracker:
    """Counters of every device seen on ``readings.clean`` and ``readings.deadletter``."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceCounters] = {}
        self.since = utcnow()

    def _get(self, device_id: str) -> DeviceCounters:
        counters = self.devices.get(device_id)
        if counters is None:
            counters = self.devices[device_id] = DeviceCounters()
        return counters

    def on_batch(self, batch: ReadingBatch) -> None:
        """Count a clean batch (it may merge several device messages)."""
        counters = self._get(batch.device_id)
        counters.add(batch.received_at, readings=len(batch.readings))
        if counters.last_seen is None or batch.received_at > counters.last_seen:
            counters.last_seen = batch.received_at

    def on_dead_letter(self, letter: DeadLetter) -> None:
        """Count a refused message of a known device (letters without a device id are skipped)."""
        if letter.device_id is None:
            return
        counters = self._get(letter.device_id)
        counters.add(letter.received_at, rejected=1)
        counters.rejected_total += 1
        if counters.last_rejection_at is None or letter.received_at >= counters.last_rejection_at:
            counters.last_rejection_at = letter.received_at
            counters.last_rejection_code = letter.code
            counters.last_rejection_reason = letter.reason

    def get(self, device_id: str) -> DeviceCounters:
        """The counters of a device (empty if it was never seen)."""
        return self.devices.get(device_id) or DeviceCounters()

    @staticmethod
    def window() -> timedelta:
        """Length of the rolling window."""
        return timedelta(minutes=WINDOW_MINUTES)
