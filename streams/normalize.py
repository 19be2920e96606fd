"""Normalisation of raw batches: exact timestamps and deduplication (pure, no I/O).

Duplicates come from MQTT redelivery (a collector died before acking) and from Kafka
replay (a worker died before committing). A reading is a duplicate when its device,
metric and timestamp were already seen; the first one wins. The memory of what was seen
is bounded per device (``per_device`` keys) — enough for redelivery and replay windows of a
few seconds; a duplicate older than that still lands on the same InfluxDB point (series +
timestamp), so storage stays idempotent either way.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import msgspec

from stationflow.contracts import Reading, ReadingBatch
from stationflow.wire import WireBatch, WireReading

__all__ = ["Normalized", "RecentKeys", "normalize", "ts_ns"]

_Key = tuple[str, int]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
B = TypeVar("B", WireBatch, ReadingBatch)


def ts_ns(reading: Reading | WireReading) -> int:
    """Reading timestamp as integer nanoseconds since the epoch (exact, any UTC offset)."""
    delta = reading.ts - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass(frozen=True, slots=True)
class Normalized(Generic[B]):
    """A batch without duplicates, with each reading's timestamp in nanoseconds."""

    batch: B
    ts_ns: list[int]


class RecentKeys:
    """Bounded memory of recently seen (metric, ts) keys per device (LRU over devices)."""

    def __init__(self, per_device: int = 64, max_devices: int = 50_000) -> None:
        self.per_device = per_device
        self.max_devices = max_devices
        self._devices: OrderedDict[str, tuple[set[_Key], deque[_Key]]] = OrderedDict()

    def check_and_add(self, device_id: str, key: _Key) -> bool:
        """Return True if the key was seen before for this device; remember it otherwise."""
        return not self.new_keys(device_id, (key,))[0]

    def new_keys(self, device_id: str, keys: Iterable[_Key]) -> list[bool]:
        """For each key: True if it is new for this device (and now remembered)."""
        entry = self._devices.get(device_id)
        if entry is None:
            entry = (set(), deque())
            self._devices[device_id] = entry
            if len(self._devices) > self.max_devices:
                self._devices.popitem(last=False)
        else:
            self._devices.move_to_end(device_id)
        seen, order = entry
        keys = keys if isinstance(keys, list | tuple) else list(keys)
        if seen.isdisjoint(keys) and len(set(keys)) == len(keys):
            # the usual case, in C: nothing seen before and no key twice in this batch
            seen.update(keys)
            order.extend(keys)
            self._trim(seen, order)
            return [True] * len(keys)
        out: list[bool] = []
        for key in keys:
            if key in seen:
                out.append(False)
                continue
            seen.add(key)
            order.append(key)
            out.append(True)
        self._trim(seen, order)
        return out

    def _trim(self, seen: set[_Key], order: deque[_Key]) -> None:
        """Forget a device's oldest keys beyond ``per_device``."""
        while len(order) > self.per_device:
            seen.discard(order.popleft())


def normalize(batch: B, recent: RecentKeys) -> tuple[Normalized[B] | None, int]:
    """The batch without duplicate readings (None if nothing is left) and the count dropped.

    The hot path passes ``stationflow.wire.WireBatch`` (msgspec); the pydantic ``ReadingBatch``
    works the same (tests, tools).
    """
    readings = batch.readings
    stamps = [ts_ns(r) for r in readings]
    fresh = recent.new_keys(batch.device_id, [(r.metric, ns) for r, ns in zip(readings, stamps, strict=True)])
    if all(fresh):
        return Normalized(batch, stamps), 0
    kept = [(r, ns) for r, ns, new in zip(readings, stamps, fresh, strict=True) if new]
    dropped = len(readings) - len(kept)
    if not kept:
        return None, dropped
    readings_kept = [r for r, _ in kept]
    trimmed: B
    if isinstance(batch, WireBatch):
        trimmed = msgspec.structs.replace(batch, readings=readings_kept)
    else:
        trimmed = batch.model_copy(update={"readings": readings_kept})
    return Normalized(trimmed, [ns for _, ns in kept]), dropped
