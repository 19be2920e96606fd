"""Publishing the registry to the compacted ``registry`` topic: full records, tombstones on delete."""

from __future__ import annotations

import logging
from typing import Protocol

from aiokafka import AIOKafkaProducer

from stationflow.contracts import DeviceRecord
from stationflow.kafka import start_with_retry
from stationflow.lifetime import AsyncLifetime

__all__ = ["KafkaRegistryPublisher", "MemoryRegistryPublisher", "RegistryPublisher"]

logger = logging.getLogger(__name__)


class RegistryPublisher(Protocol):
    """Where device records go; the routes only know this."""

    async def publish(self, records: list[DeviceRecord]) -> None:
        """Publish the current record of each device (key = device id)."""

    async def delete(self, device_ids: list[str]) -> None:
        """Publish a tombstone for each deleted device."""


class KafkaRegistryPublisher(AsyncLifetime):
    """An ``AIOKafkaProducer`` (acks=all) writing JSON ``DeviceRecord`` values keyed by device id."""

    def __init__(self, *, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        self._started = False

    async def start(self) -> None:
        """Connect to Kafka (retrying while the broker comes up)."""
        await start_with_retry("registry-publisher", self._producer.start)
        self._started = True

    async def stop(self) -> None:
        """Flush and disconnect (idempotent)."""
        if self._started:
            self._started = False
            await self._producer.stop()

    async def publish(self, records: list[DeviceRecord]) -> None:
        """Send every record and wait until Kafka acknowledged all of them."""
        futures = [
            await self._producer.send(self.topic, key=r.key(), value=r.model_dump_json().encode())
            for r in records
        ]
        for future in futures:
            await future
        if records:
            logger.info("published device records count=%d topic=%s", len(records), self.topic)

    async def delete(self, device_ids: list[str]) -> None:
        """Send a tombstone (null value) for each device id."""
        futures = [await self._producer.send(self.topic, key=d.encode(), value=None) for d in device_ids]
        for future in futures:
            await future
        if device_ids:
            logger.info("published tombstones count=%d topic=%s", len(device_ids), self.topic)


class MemoryRegistryPublisher:
    """Records what would be published, for unit tests without Kafka: ``(device_id, record | None)``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, DeviceRecord | None]] = []

    async def publish(self, records: list[DeviceRecord]) -> None:
        """Remember each record."""
        self.sent.extend((r.device_id, r) for r in records)

    async def delete(self, device_ids: list[str]) -> None:
        """Remember a tombstone for each id."""
        self.sent.extend((d, None) for d in device_ids)
