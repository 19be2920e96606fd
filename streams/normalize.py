"""Normalisation of raw batches: UTC timestamps and deduplication (pure, no I/O).

Duplicates come from MQTT redelivery (a collector died before acking) and from Kafka
replay (a worker died before committing). A reading is a duplicate when its device,
metric and timestamp were already seen; the first one wins. The memory of what was seen
is bounded per device (``per_device`` keys) — enough for redelivery and replay windows of a
few seconds; a duplicate older than that still lands on the same InfluxDB point (series +
timestamp), so storage stays idempotent either way.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import UTC, datetime

from stationflow.contracts import Reading, ReadingBatch

__all__ = ["RecentKeys", "normalize"]

_Key = tuple[str, int]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts_ns(reading: Reading) -> int:
    """Reading timestamp as integer nanoseconds since the epoch (exact, any UTC offset)."""
    delta = reading.ts - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


class RecentKeys:
    """Bounded memory of recently seen (metric, ts) keys per device (LRU over devices)."""

    def __init__(self, per_device: int = 64, max_devices: int = 50_000) -> None:
        self.per_device = per_device
        self.max_devices = max_devices
        self._devices: OrderedDict[str, tuple[set[_Key], deque[_Key]]] = OrderedDict()

    def check_and_add(self, device_id: str, key: _Key) -> bool:
        """Return True if the key was seen before for this device; remember it otherwise."""
        entry = self._devices.get(device_id)
        if entry is None:
            entry = (set(), deque())
            self._devices[device_id] = entry
            if len(self._devices) > self.max_devices:
                self._devices.popitem(last=False)
        else:
            self._devices.move_to_end(device_id)
        seen, order = entry
        if key in seen:
            return True
        seen.add(key)
        order.append(key)
        if len(order) > self.per_device:
            seen.discard(order.popleft())
        return False


def normalize(batch: ReadingBatch, recent: RecentKeys) -> tuple[ReadingBatch | None, int]:
    """Return the batch without duplicate readings (None if nothing is left) and the count dropped."""
    kept: list[Reading] = []
    check = recent.check_and_add
    device_id = batch.device_id
    for reading in batch.readings:
        # ts_ns() is offset-independent, so no UTC copy of the reading is needed here.
        if not check(device_id, (reading.metric, ts_ns(reading))):
            kept.append(reading)
    dropped = len(batch.readings) - len(kept)
    if not kept:
        return None, dropped
    if dropped == 0:
        return batch, 0
    return batch.model_copy(update={"readings": kept}), dropped
