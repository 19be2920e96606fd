"""Writing the registry to the compacted ``registry`` topic: records keyed by device id, tombstones.

The routes never call this directly: they commit an outbox row with each change, and the relay
(``devices.relay``) sends through a :class:`RegistryPublisher`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from stationflow import topics
from stationflow.contracts import DeviceRecord
from stationflow.kafka import start_with_retry
from stationflow.lifetime import AsyncLifetime
from stationflow.settings import CommonSettings

__all__ = ["Entry", "KafkaRegistryPublisher", "MemoryRegistryPublisher", "RegistryPublisher"]

logger = logging.getLogger(__name__)

Entry = tuple[str, DeviceRecord | None]  # device id, its record (None: deleted, a tombstone)


class RegistryPublisher(Protocol):
    """Where device records go."""

    async def send(self, entries: list[Entry]) -> list[tuple[int, int]]:
        """Send every entry; return ``(partition, offset)`` of each once Kafka acknowledged all."""

    async def end_offsets(self) -> dict[int, int] | None:
        """Next offset of each partition of the topic; None when the topic does not exist."""

    async def ensure_topic(self) -> None:
        """Create the topic (compacted, configured partitions) if it is missing."""


class KafkaRegistryPublisher(AsyncLifetime):
    """An ``AIOKafkaProducer`` (acks=all) writing JSON ``DeviceRecord`` values keyed by device id.

    Every send resolves within ``timeout_s`` (the producer's request timeout): acknowledged, or
    an error the relay retries. A second client (a group-less consumer) reads end offsets.
    """

    def __init__(self, settings: CommonSettings, *, timeout_s: float) -> None:
        self.settings = settings
        self.topic = settings.topic(topics.REGISTRY)
        self.timeout_s = timeout_s
        timeout_ms = int(timeout_s * 1000)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5, request_timeout_ms=timeout_ms
        )
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=None, request_timeout_ms=timeout_ms
        )
        self._started = False

    async def start(self) -> None:
        """Connect to Kafka (retrying while the broker comes up)."""
        await start_with_retry("registry-publisher", self._producer.start)
        await start_with_retry("registry-offsets", self._offsets.start)
        self._started = True

    async def stop(self) -> None:
        """Flush and disconnect (idempotent)."""
        if self._started:
            self._started = False
            await self._offsets.stop()
            await self._producer.stop()

    async def send(self, entries: list[Entry]) -> list[tuple[int, int]]:
        """Send every entry and wait until Kafka acknowledged all of them."""
        futures = [
            await self._producer.send(
                self.topic,
                key=device_id.encode(),
                value=None if record is None else record.model_dump_json().encode(),
            )
            for device_id, record in entries
        ]
        acked = [await future for future in futures]
        return [(meta.partition, meta.offset) for meta in acked]

    async def end_offsets(self) -> dict[int, int] | None:
        """End offsets from fresh metadata (so a topic the broker lost shows as missing)."""
        metadata = await asyncio.wait_for(self._offsets._client.fetch_all_metadata(), self.timeout_s)
        partitions = metadata.partitions_for_topic(self.topic)
        if not partitions:
            return None
        wanted = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        ends = await asyncio.wait_for(self._offsets.end_offsets(wanted), self.timeout_s)
        return {tp.partition: offset for tp, offset in ends.items()}

    async def ensure_topic(self) -> None:
        """Create the registry topic if missing (a topic auto-created by a client is kept)."""
        try:
            await asyncio.wait_for(topics.ensure_topics(self.settings, (topics.REGISTRY,)), self.timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:
            logger.warning("registry topic not created topic=%s reason=%r", self.topic, exc)


class MemoryRegistryPublisher:
    """Records what would be published, for unit tests without Kafka: ``(device_id, record | None)``.

    ``fail`` makes every send raise (Kafka down); ``sent`` lists what was acknowledged.
    """

    def __init__(self) -> None:
        self.sent: list[Entry] = []
        self.fail = False
        self.ensured = 0

    async def send(self, entries: list[Entry]) -> list[tuple[int, int]]:
        """Remember each entry (or fail, when told to)."""
        if self.fail:
            raise KafkaError("memory publisher told to fail")
        start = len(self.sent)
        self.sent.extend(entries)
        return [(0, start + i) for i in range(len(entries))]

    async def end_offsets(self) -> dict[int, int] | None:
        """One partition holding everything sent."""
        if self.fail:
            raise KafkaError("memory publisher told to fail")
        return {0: len(self.sent)}

    async def ensure_topic(self) -> None:
        """Count the calls."""
        self.ensured += 1
