"""Table writes whose changelog records leave as one producer batch per partition (I/O edge).

The analytics write one table entry per device per batch: at 10,000 devices that is one
changelog record per device message. Sent one by one (``AIOKafkaProducer.send``: a future,
an accumulator lookup and a partitioner call per record) they cost the worker about as much
as the windows they carry. Here a write sets the entry and appends its record to an open
``BatchBuilder`` of its changelog partition, synchronously; :meth:`ChangelogWriter.flush`
hands the builders to the producer (``send_batch``) and returns one delivery future per
builder.

Order: every table write goes through one writer, appends happen in call order, and
``flush`` sends, under a lock, the builders that filled up first and then the open ones, each
partition's in the order they were opened. So the changelog holds a key's writes in the order
they were made, whichever task made them (a batch or the no-data timer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["ChangelogWriter"]


class _Builder(Protocol):
    def append(self, *, timestamp: float | None, key: bytes, value: bytes) -> object | None: ...


class _Producer(Protocol):
    def create_batch(self) -> Any: ...
    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]: ...


class ChangelogWriter:
    """Changelog-backed table writes, batched per changelog partition until :meth:`flush`."""

    def __init__(self, producer: Callable[[], _Producer], partition_of: Callable[[bytes], int]) -> None:
        self._producer = producer  # the producer once the app has started (faust creates it late)
        self._partition_of = partition_of
        self._open: dict[tuple[str, int], _Builder] = {}
        self._full: list[tuple[tuple[str, int], _Builder]] = []
        self._lock = asyncio.Lock()
        self.records = 0  # appended since the last flush

    def put(self, data: Any, topic: str, key: bytes, value: bytes) -> None:
        """Set ``data[key] = value`` and queue its changelog record on ``topic``."""
        data[key] = value
        where = (topic, self._partition_of(key))
        builder = self._open.get(where)
        if builder is None:
            builder = self._open[where] = self._producer().create_batch()
        if builder.append(timestamp=None, key=key, value=value) is None:
            self._full.append((where, builder))  # full: it goes first, this record in a new one
            builder = self._open[where] = self._producer().create_batch()
            if builder.append(timestamp=None, key=key, value=value) is None:  # pragma: no cover
                raise RuntimeError("an empty producer batch refused a record")  # (never: the first fits)
        self.records += 1

    async def flush(self) -> list[asyncio.Future[Any]]:
        """Hand every queued record to the producer; the futures resolve on Kafka's ack."""
        async with self._lock:
            batches = [*self._full, *self._open.items()]
            self._full, self._open = [], {}
            self.records = 0
            producer = self._producer()
            return [await producer.send_batch(b, topic, partition=p) for (topic, p), b in batches]
