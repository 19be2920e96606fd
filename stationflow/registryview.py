"""The worker's copy of the device registry, followed from the compacted ``registry`` topic.

Every worker reads all partitions of the topic from the beginning (no consumer group), so
each holds the full registry; it is ``ready`` once it has read up to the end offsets it saw
at start, and keeps applying changes after that, so a calibration or status change in the
registry reaches the stored values within seconds, without a restart.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from stationflow import topics
from stationflow.contracts import DeviceRecord
from stationflow.kafka import start_with_retry
from stationflow.settings import CommonSettings

__all__ = ["RegistryFollower", "RegistryView"]

logger = logging.getLogger(__name__)

POLL_MS = 500


class RegistryView:
    """device id → latest DeviceRecord."""

    def __init__(self) -> None:
        self._records: dict[str, DeviceRecord] = {}
        self.ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._records)

    def get(self, device_id: str) -> DeviceRecord | None:
        """The device's record, or None if it is not registered."""
        return self._records.get(device_id)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one registry record (a None value deletes the device)."""
        if key is None:
            logger.warning("registry record without key ignored")
            return
        device_id = key.decode(errors="replace")
        if value is None:
            self._records.pop(device_id, None)
            return
        try:
            record = DeviceRecord.model_validate_json(value)
        except ValidationError as exc:
            logger.error("invalid registry record device_id=%s reason=%s", device_id, exc.errors()[0]["msg"])
            return
        self._records[record.device_id] = record


class RegistryFollower:
    """Keep a RegistryView up to date from the registry topic until cancelled."""

    def __init__(self, settings: CommonSettings, view: RegistryView) -> None:
        self.topic = settings.topic(topics.REGISTRY)
        self.view = view
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def run(self) -> None:
        """Load the whole topic, mark the view ready, then follow changes."""
        await start_with_retry("registry consumer", self.consumer.start)
        try:
            partitions = await self._partitions()
            self.consumer.assign(partitions)
            await self.consumer.seek_to_beginning(*partitions)
            end = await self.consumer.end_offsets(partitions)
            while True:
                fetched = await self.consumer.getmany(timeout_ms=POLL_MS)
                for records in fetched.values():
                    for record in records:
                        self.view.apply(record.key, record.value)
                if not self.view.ready.is_set() and await self._caught_up(end):
                    logger.info("registry loaded devices=%d", len(self.view))
                    self.view.ready.set()
        finally:
            await self.consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        for _ in range(60):
            ids = self.consumer.partitions_for_topic(self.topic)
            if ids:
                return [TopicPartition(self.topic, p) for p in sorted(ids)]
            await self.consumer.topics()  # refresh metadata
            await asyncio.sleep(0.5)
        raise RuntimeError(f"registry topic {self.topic!r} not found")

    async def _caught_up(self, end: dict[TopicPartition, int]) -> bool:
        for tp, offset in end.items():
            if await self.consumer.position(tp) < offset:
                return False
        return True
