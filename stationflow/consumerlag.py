"""Consumer lag as a Prometheus gauge: ``stationflow_consumer_lag{group,topic,partition}``.

Lag is the partition's true end offset (``stationflow.kafka.true_end_offsets``: Tansu's
``ListOffsets`` answer is short) minus the group's committed offset: the records the group has
not yet confirmed. A partition the group never committed counts from 0. A service that consumes
runs one :class:`ConsumerLagMonitor` for its groups; it refreshes every ``interval_s`` and keeps
going through broker errors (the gauge then keeps its last values, and the log says why).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from stationflow.kafka import start_with_retry, true_end_offsets
from stationflow.logs import LogThrottle

__all__ = ["CONSUMER_LAG", "ConsumerLagMonitor", "GroupTopics", "lag"]

logger = logging.getLogger(__name__)

CONSUMER_LAG = Gauge(
    "stationflow_consumer_lag",
    "Records behind: the partition's end offset minus the group's committed offset",
    ["group", "topic", "partition"],
)
# Every few seconds: Prometheus scrapes every 15 s, and each refresh costs one metadata, one
# ListOffsets + fetch per topic and one OffsetFetch per group, nothing a broker notices.
LAG_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class GroupTopics:
    """A consumer group and the topics (full names) whose lag it has."""

    group: str
    topics: tuple[str, ...]


def lag(
    ends: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Per partition: end − committed (an uncommitted partition from 0), never below 0."""
    return {tp: max(0, end - committed.get(tp, 0)) for tp, end in ends.items()}


class ConsumerLagMonitor:
    """Refresh :data:`CONSUMER_LAG` for some groups every ``interval_s`` until cancelled."""

    def __init__(
        self, bootstrap: str, watches: Sequence[GroupTopics], interval_s: float = LAG_INTERVAL_S
    ) -> None:
        self.bootstrap = bootstrap
        self.watches = tuple(watches)
        self.interval_s = interval_s
        self._throttle = LogThrottle()

    async def run(self) -> None:
        """Measure until cancelled (the clients are closed on the way out)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await start_with_retry("lag consumer", consumer.start)
        try:
            await start_with_retry("lag admin", admin.start)
            try:
                while True:
                    await self.refresh(consumer, admin)
                    await asyncio.sleep(self.interval_s)
            finally:
                await admin.close()
        finally:
            await consumer.stop()

    async def refresh(
        self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient
    ) -> dict[TopicPartition, int]:
        """One measurement of every watched group; returns the last group's lag (for tests)."""
        out: dict[TopicPartition, int] = {}
        for watch in self.watches:
            try:
                out = await self._measure(consumer, admin, watch)
            except (KafkaError, OSError, TimeoutError) as exc:
                if self._throttle.allow(f"lag:{watch.group}", time.monotonic()) is not None:
                    logger.warning("consumer lag not measured group=%s reason=%r", watch.group, exc)
                continue
            for tp, behind in out.items():
                CONSUMER_LAG.labels(watch.group, tp.topic, str(tp.partition)).set(behind)
        return out

    async def _measure(
        self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient, watch: GroupTopics
    ) -> dict[TopicPartition, int]:
        tps: list[TopicPartition] = []
        for topic in watch.topics:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            tps += [TopicPartition(topic, p) for p in sorted(partitions or ())]
        if not tps:
            return {}
        ends = await true_end_offsets(consumer, tps)
        offsets = await admin.list_consumer_group_offsets(watch.group, partitions=tps)
        committed = {tp: meta.offset for tp, meta in offsets.items() if meta is not None and meta.offset >= 0}
        return lag(ends, committed)
