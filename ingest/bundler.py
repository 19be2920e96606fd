"""Per-partition bundles of ``ReadingBatch`` documents: many MQTT messages, one Kafka record.

Each accepted message's document joins the open bundle of the partition its device id hashes
to (aiokafka's default partitioner: murmur2 of the UTF-8 device id over the topic's
partitions, as a keyed record of that device would go). A bundle is sealed and handed to the
producer as **one record with that explicit partition** (``stationflow.wire.join_bundle``):

- when the event loop has run everything that was ready when its first document arrived
  (``loop.call_soon``): every message gmqtt parsed from the same socket read has joined it by
  then, and nothing waits on a timer (a timed wait would add its length to alert latency);
- or at once when the next document would pass ``max_bytes`` or ``max_documents``.

The record has no key: the worker reads values only (``streams.rawconsumer``), and one device
id would misname a record that carries many devices.

``add`` returns the bundle's delivery future, shared by every message of the bundle: it is
resolved when Kafka acknowledged the record, and fails with the producer's error otherwise,
so no message of a failed bundle is acknowledged. After a failure the bundler refuses new
documents and fails the bundles still queued: nothing later is acknowledged ahead of it.

Order: sealed bundles of a partition go to the producer one after another from a single
sender task per partition, each only after the previous one was appended (aiokafka resumes
waiters on a full batch in no particular order), so one device's documents reach the topic
in arrival order.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stationflow.kafka import CachingPartitioner
from stationflow.wire import join_bundle

__all__ = ["MAX_BUNDLE_BYTES", "MAX_BUNDLE_DOCUMENTS", "Bundler", "Producer"]

# Well below Kafka's 1 MB default record limit and the collector producer's 512 KB batches.
MAX_BUNDLE_BYTES = 256 * 1024
MAX_BUNDLE_DOCUMENTS = 1000


class Producer(Protocol):
    """The part of ``AIOKafkaProducer`` the bundler uses."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None
    ) -> asyncio.Future[Any]:
        """Append a record; its delivery future."""
        ...

    async def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions (waits for metadata)."""
        ...


Partitioner = Callable[[bytes, list[int], list[int]], int]


@dataclass(slots=True)
class _Bundle:
    """Documents of one partition waiting to go out as one record."""

    partition: int
    delivered: asyncio.Future[None]
    opened: float  # loop time of the first document
    documents: list[bytes] = field(default_factory=list)
    size: int = 0


class Bundler:
    """Collect documents per partition; send each bundle as one record; one future per bundle."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        *,
        max_bytes: int = MAX_BUNDLE_BYTES,
        max_documents: int = MAX_BUNDLE_DOCUMENTS,
        partitioner: Partitioner | None = None,
        on_sent: Callable[[int, float], None] | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.max_bytes = max_bytes
        self.max_documents = max_documents
        self._partitioner: Partitioner = partitioner or CachingPartitioner()
        self._on_sent = on_sent  # (documents, seconds since its first document) per acknowledged bundle
        self._partitions: list[int] = []
        self._open: dict[int, _Bundle] = {}
        self._sealed: dict[int, deque[_Bundle]] = {}
        self._senders: dict[int, asyncio.Task[None]] = {}
        self._failed: BaseException | None = None

    async def start(self) -> None:
        """Learn the topic's partitions (waits for the producer's metadata)."""
        self._partitions = list(await self.producer.partitions_for(self.topic))

    @property
    def started(self) -> bool:
        """True once ``start`` learnt the partitions (``add`` may be called)."""
        return bool(self._partitions)

    def partition_for(self, key: bytes) -> int:
        """The partition aiokafka's default partitioner gives a record keyed ``key``."""
        return self._partitioner(key, self._partitions, self._partitions)

    def add(self, key: bytes, document: bytes) -> asyncio.Future[None]:
        """Put ``document`` (of the device ``key``) in its partition's bundle; its delivery future.

        Never suspends. Raises the first delivery error once one bundle has failed.
        """
        if self._failed is not None:
            raise self._failed
        if not self._partitions:
            raise RuntimeError("Bundler.start() was not awaited")
        partition = self._partitioner(key, self._partitions, self._partitions)
        bundle = self._open.get(partition)
        size = len(document) + 1
        if bundle is not None and (
            bundle.size + size > self.max_bytes or len(bundle.documents) >= self.max_documents
        ):
            self._seal(partition)
            bundle = None
        if bundle is None:
            loop = asyncio.get_running_loop()
            bundle = self._open[partition] = _Bundle(partition, loop.create_future(), loop.time())
            loop.call_soon(self._seal_bundle, bundle)
        bundle.documents.append(document)
        bundle.size += size
        return bundle.delivered

    @property
    def pending(self) -> int:
        """Bundles open or waiting for the producer."""
        return len(self._open) + sum(map(len, self._sealed.values()))

    def _seal_bundle(self, bundle: _Bundle) -> None:
        """The ``call_soon`` flush: seal ``bundle`` unless the size cap already did."""
        if self._open.get(bundle.partition) is bundle:
            self._seal(bundle.partition)

    def _seal(self, partition: int) -> None:
        bundle = self._open.pop(partition)
        queue = self._sealed.get(partition)
        if queue is None:
            queue = self._sealed[partition] = deque()
        queue.append(bundle)
        if partition not in self._senders:
            self._senders[partition] = asyncio.ensure_future(self._send_partition(partition, queue))

    async def _send_partition(self, partition: int, queue: deque[_Bundle]) -> None:
        """Hand this partition's sealed bundles to the producer, in order, one at a time."""
        try:
            while queue:
                bundle = queue.popleft()
                if self._failed is not None:
                    _settle(bundle, self._failed)
                    continue
                try:
                    delivery = await self.producer.send(
                        self.topic, join_bundle(bundle.documents), key=None, partition=partition
                    )
                except Exception as exc:  # noqa: BLE001 - not swallowed: every message of the bundle raises it
                    self._fail(exc)
                    _settle(bundle, exc)
                    continue
                delivery.add_done_callback(functools.partial(self._delivered, bundle))
                # the same set aiokafka partitions keyed records over (returns at once when known)
                self._partitions = list(await self.producer.partitions_for(self.topic))
        finally:
            del self._senders[partition]
            if not queue:
                del self._sealed[partition]

    def _delivered(self, bundle: _Bundle, delivery: asyncio.Future[Any]) -> None:
        exc = delivery.exception() if not delivery.cancelled() else asyncio.CancelledError()
        if exc is not None:
            self._fail(exc)
            _settle(bundle, exc)
            return
        _settle(bundle, None)
        if self._on_sent is not None:
            self._on_sent(len(bundle.documents), asyncio.get_running_loop().time() - bundle.opened)

    def _fail(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
        for partition in list(self._open):  # sealed now, failed by their sender
            self._seal(partition)


def _settle(bundle: _Bundle, exc: BaseException | None) -> None:
    if bundle.delivered.done():
        return
    if exc is None:
        bundle.delivered.set_result(None)
    else:
        bundle.delivered.set_exception(exc)
