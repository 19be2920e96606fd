"""Device states kept decoded beside the table values they were encoded to (in memory, bounded).

Each update of a device decoded its ``devices`` table value, applied the readings and encoded
the state again. The value it decodes is almost always the one this worker wrote at the
device's previous update: so the state encoded then is kept, and used instead of decoding for
as long as the table still holds that very value (an identity check). A value restored from the
changelog, written by the no-data timer or taken over from another worker is another object and
is decoded as before; a state whose update failed half-way is forgotten, never reused.

Bounded by an estimate of the memory the states take: each counts ``EXPANSION`` times its
value's bytes (a new device of six metrics: 411 bytes as a value, 5.4 kB decoded, measured with
tracemalloc), and the least recently updated go first. A state whose closed hours the update
decoded (they go packed in the value from ``HOURS_APART_FROM`` hours on, and stay packed in a
lazily decoded state until an hour closes) is not kept: decoded they are far larger than their
packed bytes, and the next update decodes them lazily again.
"""

from __future__ import annotations

from streams.analytics.device import DeviceState
from streams.metrics import ANALYTICS_STATES

__all__ = ["EXPANSION", "LiveStates"]

EXPANSION = 16
"""Estimated bytes of a decoded state per byte of its table value (13 measured; see above)."""
_KEPT, _DECODED = ANALYTICS_STATES.labels("kept"), ANALYTICS_STATES.labels("decoded")


class LiveStates:
    """The decoded state of each device this worker last wrote, by table key (see the module docs)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._states: dict[bytes, tuple[bytes, DeviceState, int]] = {}
        self._bytes = 0

    @property
    def estimated_bytes(self) -> int:
        """The estimated memory of the states kept."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._states)

    def get(self, key: bytes, value: bytes | None) -> DeviceState | None:
        """The state kept for ``key`` if the table still holds the value it was encoded to."""
        entry = self._states.get(key)
        if entry is None or value is None or entry[0] is not value:
            _DECODED.inc()
            return None
        _KEPT.inc()
        return entry[1]

    def keep(self, key: bytes, value: bytes, state: DeviceState) -> None:
        """Keep ``state``, just encoded to ``value`` (the table's new value for ``key``)."""
        self.forget(key)
        if state.hours_loader is None and state.packed_hours is not None:
            return  # its closed hours were decoded for this update (see the module docs)
        weight = len(value) * EXPANSION
        if weight > self.max_bytes:
            return
        self._states[key] = (value, state, weight)
        self._bytes += weight
        states = self._states
        while self._bytes > self.max_bytes:
            oldest = next(iter(states))
            self._bytes -= states.pop(oldest)[2]

    def forget(self, key: bytes) -> None:
        """Forget the state of ``key`` (its update failed, or another is kept)."""
        entry = self._states.pop(key, None)
        if entry is not None:
            self._bytes -= entry[2]
