"""Normalisation of raw batches: exact timestamps and deduplication (pure, no I/O).

Duplicates come from MQTT redelivery (a collector died before acking) and from Kafka
replay (a worker died before committing). A reading is a duplicate when its device,
metric and timestamp were already seen; the first one wins. The memory of what was seen
is bounded per device (``per_device`` to twice as many keys) — enough for redelivery and replay windows of a
few seconds; a duplicate older than that still lands on the same InfluxDB point (series +
timestamp), so storage stays idempotent either way.
"""

from __future__ import annotations

from collections import OrderedDict
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
    """Bounded memory of recently seen (metric, ts) keys per device (LRU over devices).

    Each device remembers at least its ``per_device`` newest keys and at most twice as many:
    the oldest are forgotten in one step when the memory passes twice the bound, which costs
    far less than forgetting one old key for every new one (it was 5 % of the worker's CPU).
    """

    def __init__(self, per_device: int = 64, max_devices: int = 50_000) -> None:
        self.per_device = per_device
        self.max_devices = max_devices
        # per device, its keys in the order first seen (a dict is an ordered set)
        self._devices: OrderedDict[str, dict[_Key, None]] = OrderedDict()

    def check_and_add(self, device_id: str, key: _Key) -> bool:
        """Return True if the key was seen before for this device; remember it otherwise."""
        return not self.new_keys(device_id, (key,))[0]

    def new_keys(self, device_id: str, keys: Iterable[_Key]) -> list[bool]:
        """For each key: True if it is new for this device (and now remembered)."""
        devices = self._devices
        seen = devices.get(device_id)
        if seen is None:
            seen = devices[device_id] = {}
            if len(devices) > self.max_devices:
                devices.popitem(last=False)
        else:
            devices.move_to_end(device_id)
        if type(keys) is not list and type(keys) is not tuple:
            keys = list(keys)
        if seen.keys().isdisjoint(keys):
            fresh = dict.fromkeys(keys)
            if len(fresh) == len(keys):
                # the usual case, in C: nothing seen before and no key twice in this batch
                seen.update(fresh)
                if len(seen) > 2 * self.per_device:
                    self._trim(seen)
                return [True] * len(keys)
        out: list[bool] = []
        for key in keys:
            if key in seen:
                out.append(False)
                continue
            seen[key] = None
            out.append(True)
        self._trim(seen)
        return out

    def _trim(self, seen: dict[_Key, None]) -> None:
        """Past twice the bound, keep only a device's ``per_device`` newest keys."""
        if len(seen) > 2 * self.per_device:
            newest = list(seen)[-self.per_device :]
            seen.clear()
            seen.update(dict.fromkeys(newest))


def normalize(batch: B, recent: RecentKeys) -> tuple[Normalized[B] | None, int]:
    """The batch without duplicate readings (None if nothing is left) and the count dropped.

    The hot path passes ``stationflow.wire.WireBatch`` (msgspec); the pydantic ``ReadingBatch``
    works the same (tests, tools).
    """
    readings = batch.readings
    stamps: list[int] = []
    keys: list[_Key] = []
    last = None
    last_ns = 0
    for r in readings:
        ts = r.ts
        # a message's readings usually share one instant: aware datetimes with the same
        # tzinfo object compare without calling utcoffset, far cheaper than ts_ns
        if last is None or ts != last:
            last, last_ns = ts, ts_ns(r)
        stamps.append(last_ns)
        keys.append((r.metric, last_ns))
    fresh = recent.new_keys(batch.device_id, keys)
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
