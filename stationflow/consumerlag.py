"""Consumer lag as a Prometheus gauge: ``stationflow_consumer_lag{group,topic,partition}``.

Lag is the partition's true end offset (``stationflow.kafka.true_end_offsets``: Tansu's
``ListOffsets`` answer is short) minus the group's committed offset: the records the group has
not yet confirmed. A partition the group never committed counts from 0. A service that consumes
runs one :class:`ConsumerLagMonitor` for its groups; it refreshes every ``interval_s`` and keeps
going through broker errors (the gauge then keeps its last values, and the log says why).

A partition whose records wait while its committed offset has not moved for ``STALL_S`` is
*stalled* (:class:`StallTracker`): its consumer has stopped, hung or gone, and whatever it feeds
(the analytics, and every flood warning behind them) has stopped with it, silently.
``stationflow_consumer_stalled_partitions{group,topic}`` counts them and an error line names
them; a consumer merely behind still commits, and is not stalled. When a group's first
partition stalls, the process also logs every thread and asyncio task with its stack
(``stationflow.logs.threads_and_tasks``): if the stopped consumer is in this process, that
says what it waits for.
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
from stationflow.logs import LogThrottle, threads_and_tasks

__all__ = ["CONSUMER_LAG", "STALLED_PARTITIONS", "ConsumerLagMonitor", "GroupTopics", "StallTracker", "lag"]

logger = logging.getLogger(__name__)

CONSUMER_LAG = Gauge(
    "stationflow_consumer_lag",
    "Records behind: the partition's end offset minus the group's committed offset",
    ["group", "topic", "partition"],
)
STALLED_PARTITIONS = Gauge(
    "stationflow_consumer_stalled_partitions",
    "Partitions with records waiting whose committed offset has not moved for STALL_S "
    "(their consumer has stopped, hung or gone)",
    ["group", "topic"],
)
# Every few seconds: Prometheus scrapes every 15 s, and each refresh costs one metadata, one
# ListOffsets + fetch per topic and one OffsetFetch per group, nothing a broker notices.
LAG_INTERVAL_S = 5.0
# A worker commits every few seconds while it has work (a batch takes well under a second):
# a minute without a commit, with records waiting, is a consumer that stopped.
STALL_S = 60.0


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


class StallTracker:
    """Since when each partition's committed offset has stood still with records waiting (pure)."""

    def __init__(self, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self._still: dict[TopicPartition, tuple[int, float]] = {}  # committed offset, seen since
        self.stalled: dict[TopicPartition, float] = {}  # the last update's answer

    def update(
        self, behind: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int], now: float
    ) -> dict[TopicPartition, float]:
        """The stalled partitions at ``now``, each with how long its offset has stood still."""
        stalled: dict[TopicPartition, float] = {}
        for tp, waiting in behind.items():
            offset = committed.get(tp, 0)
            seen = self._still.get(tp)
            if waiting <= 0:
                self._still.pop(tp, None)  # caught up: nothing waits
            elif seen is None or seen[0] != offset:
                self._still[tp] = (offset, now)  # moved (or first seen behind): the clock restarts
            elif now - seen[1] >= self.stall_s:
                stalled[tp] = now - seen[1]
        self.stalled = stalled
        return stalled


class ConsumerLagMonitor:
    """Refresh :data:`CONSUMER_LAG` for some groups every ``interval_s`` until cancelled, and
    :data:`STALLED_PARTITIONS` (see the module's docstring)."""

    def __init__(
        self,
        bootstrap: str,
        watches: Sequence[GroupTopics],
        interval_s: float = LAG_INTERVAL_S,
        stall_s: float = STALL_S,
    ) -> None:
        self.bootstrap = bootstrap
        self.watches = tuple(watches)
        self.interval_s = interval_s
        self._throttle = LogThrottle()
        self.stall_s = stall_s
        self._stalls = {watch.group: StallTracker(stall_s) for watch in self.watches}

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
                out, committed = await self._measure(consumer, admin, watch)
            except (KafkaError, OSError, TimeoutError) as exc:
                if self._throttle.allow(f"lag:{watch.group}", time.monotonic()) is not None:
                    logger.warning("consumer lag not measured group=%s reason=%r", watch.group, exc)
                # the broker away: nobody could commit meanwhile, so no offset's stillness counts
                self._stalls[watch.group] = StallTracker(self.stall_s)
                continue
            for tp, behind in out.items():
                CONSUMER_LAG.labels(watch.group, tp.topic, str(tp.partition)).set(behind)
            tracker = self._stalls[watch.group]
            before = set(tracker.stalled)
            self._report_stalls(watch, out, before, tracker.update(out, committed, time.monotonic()))
        return out

    def _report_stalls(
        self,
        watch: GroupTopics,
        behind: Mapping[TopicPartition, int],
        before: set[TopicPartition],
        stalled: Mapping[TopicPartition, float],
    ) -> None:
        for topic in watch.topics:
            STALLED_PARTITIONS.labels(watch.group, topic).set(sum(1 for tp in stalled if tp.topic == topic))
        if stalled and not before:  # a new stall: what this process waits for, once
            try:
                dump = threads_and_tasks()
            except Exception as exc:  # noqa: BLE001 - a diagnostic must not stop the monitor
                dump = f"(not available: {exc!r})"
            logger.error("consumer stalled group=%s, this process's tasks:\n%s", watch.group, dump)
        if stalled and self._throttle.allow(f"stalled:{watch.group}", time.monotonic()) is not None:
            logger.error(
                "consumer stalled: records wait and the committed offset has not moved group=%s "
                "partitions=%s waiting=%d for_s=%.0f",
                watch.group,
                ",".join(f"{tp.topic}:{tp.partition}" for tp in sorted(stalled)),
                sum(behind[tp] for tp in stalled),
                max(stalled.values()),
            )
        moving = before - set(stalled)
        if moving:
            logger.info(
                "consumer moving again group=%s partitions=%s",
                watch.group,
                ",".join(f"{tp.topic}:{tp.partition}" for tp in sorted(moving)),
            )

    async def _measure(
        self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient, watch: GroupTopics
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """The group's lag and committed offsets on the watched topics."""
        tps: list[TopicPartition] = []
        for topic in watch.topics:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            tps += [TopicPartition(topic, p) for p in sorted(partitions or ())]
        if not tps:
            return {}, {}
        ends = await true_end_offsets(consumer, tps)
        offsets = await admin.list_consumer_group_offsets(watch.group, partitions=tps)
        committed = {tp: meta.offset for tp, meta in offsets.items() if meta is not None and meta.offset >= 0}
        return lag(ends, committed), committed
