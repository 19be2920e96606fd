"""The ``readings.clean`` records a worker produced, decoded, for its own analytics (in memory).

The raw stage decodes every document, normalises it and produces the clean documents as
``readings.clean`` bundles; the analytics of the same worker then fetch those bundles and
decoded every document again (at 10,000 devices about a fifth of the analytics' CPU). Kafka
stays the path, and what the analytics apply: this only spares the second decode. Once Kafka
has acknowledged a clean record, the raw stage leaves here, under the record's partition and
offset, the record's bytes and the ``WireBatch`` documents it encoded them from; when the
analytics fetch the record at that position with the same bytes, they take the documents
instead of decoding them. The bytes are compared whole (a memcmp per bundle), so a record that
is not the one remembered (another producer, a broker that lost its log and gave the offset
again) is decoded as before. Nothing else changes: delivery, offsets and state go as without
it, and a miss costs only the decode.

Records of partitions this worker's analytics do not hold are not remembered (``owned``; while
the assignment is not known, as before the group's first one, every record is); what is not
taken within ``max_age_s`` is forgotten (the partition went elsewhere, or the record was read
before it was remembered), and no more than ``max_readings`` readings are held: beyond that a record is
not remembered (a backlog keeps the oldest, which the analytics take first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from stationflow.wire import WireBatch
from streams.metrics import ANALYTICS_HANDOFF

__all__ = ["CleanHandoff"]

_HIT, _MISS, _EXPIRED, _FULL = (ANALYTICS_HANDOFF.labels(r) for r in ("hit", "miss", "expired", "full"))

_Entry = tuple[float, bytes, list[WireBatch], int]  # remembered at, value, documents, readings


class CleanHandoff:
    """Decoded ``readings.clean`` records by ``(partition, offset)``, bounded (see the module docs)."""

    def __init__(self, *, max_readings: int = 200_000, max_age_s: float = 30.0) -> None:
        self.max_readings = max_readings
        self.max_age_s = max_age_s
        # the readings.clean partitions this worker's analytics hold (set by the analytics), or
        # None while that is not known (before the group's first assignment, in a rebalance)
        self.owned: Callable[[], Collection[int] | None] = lambda: None
        self._held: dict[tuple[int, int], _Entry] = {}
        self._readings = 0

    @property
    def readings(self) -> int:
        """Readings held now."""
        return self._readings

    def __len__(self) -> int:
        return len(self._held)

    def remember(self, partition: int, offset: int, value: bytes, documents: list[WireBatch]) -> None:
        """Hold ``documents``, which ``value`` (a record Kafka acknowledged at ``offset``) encodes."""
        now = time.monotonic()
        self._expire(now)
        owned = self.owned()
        if owned is not None and partition not in owned:
            return
        count = sum(len(d.readings) for d in documents)
        if self._readings + count > self.max_readings:
            _FULL.inc()
            return
        self._held[(partition, offset)] = (now, value, documents, count)
        self._readings += count

    def take(self, partition: int, offset: int, value: bytes) -> list[WireBatch] | None:
        """The documents of the record at ``(partition, offset)`` if it was remembered with these
        bytes (and forget it); None otherwise (decode it)."""
        entry = self._held.pop((partition, offset), None)
        if entry is None:
            _MISS.inc()
            return None
        self._readings -= entry[3]
        if entry[1] is not value and entry[1] != value:
            _MISS.inc()
            return None
        _HIT.inc()
        return entry[2]

    def _expire(self, now: float) -> None:
        """Forget the oldest entries once older than ``max_age_s`` (insertion order is age order)."""
        held = self._held
        limit = now - self.max_age_s
        while held:
            key = next(iter(held))
            entry = held[key]
            if entry[0] >= limit:
                return
            del held[key]
            self._readings -= entry[3]
            _EXPIRED.inc()
