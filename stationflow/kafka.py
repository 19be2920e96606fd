"""Small Kafka helpers shared by the services (no service logic)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["FETCH_MAX_WAIT_MS", "CachingPartitioner", "start_with_retry", "true_end_offsets"]

logger = logging.getLogger(__name__)

_DEFAULT_PARTITIONER = DefaultPartitioner()

# Services may start before the broker in `stationflow up` or under an orchestrator;
# keep trying for a minute, then fail loudly so the supervisor sees it.
START_DEADLINE_S = 60.0
START_RETRY_S = 1.0

# How long a consumer on the alert path lets the broker hold a fetch that found no data.
# Tansu 0.6 does not answer a waiting fetch when data arrives: measured (aiokafka 0.14, one
# record produced at a random moment into an idle topic), produce → consumed took up to half
# the fetch_max_wait_ms (500: 8-243 ms; 1500: 28-727 ms; 100: 2-47 ms; 10: 1-6 ms). Kafka
# answers at once. An idle consumer then costs about 1 % CPU at 50 ms (plus about 2 % in Tansu)
# against 0.2 % at aiokafka's default 500 ms. Under a steady load the wait also sets how much
# each fetch brings: the worker's raw stage, whose batch size follows it, keeps a longer one
# (StreamsSettings.streams_fetch_max_wait_ms).
FETCH_MAX_WAIT_MS = 50


async def start_with_retry(what: str, start: Callable[[], Awaitable[None]]) -> None:
    """Await ``start()`` until it succeeds or ``START_DEADLINE_S`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_DEADLINE_S
    while True:
        try:
            await start()
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if loop.time() > deadline:
                raise
            logger.warning("waiting for kafka what=%s reason=%r", what, exc)
            await asyncio.sleep(START_RETRY_S)


async def true_end_offsets(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], timeout_s: float = 5.0
) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition, on Kafka and on Tansu alike.

    ``consumer`` is a started consumer without a group that is not fetching anything else
    (its assignment is replaced). Tansu 0.6 answers ``ListOffsets`` with the *base* offset of
    the last record batch plus one (measured: 15 records in batches of 10 and 5 → 11), so a
    producer's batch would look partly unread forever. A fetch's high watermark is right:
    fetch one record from that base offset and take it. On Kafka the listed end is already
    right and the fetch just confirms it. A partition that does not answer within
    ``timeout_s`` keeps its listed end (which may be short).
    """
    listed = await consumer.end_offsets(list(tps))
    out = {tp: 0 for tp in tps if listed[tp] == 0}
    pending = [tp for tp in tps if listed[tp] > 0]
    if not pending:
        return out
    consumer.assign(pending)
    try:
        for tp in pending:
            consumer.seek(tp, listed[tp] - 1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while pending and loop.time() < deadline:
            await consumer.getmany(*pending, timeout_ms=200, max_records=1)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    out[tp] = max(highwater, listed[tp])
                    pending.remove(tp)
    finally:
        consumer.unsubscribe()  # no background fetching for partitions nobody reads
    for tp in pending:
        out[tp] = listed[tp]
    return out


class CachingPartitioner:
    """aiokafka's default key → partition mapping (murmur2, as Java clients), memoised per key.

    murmur2 is pure Python in aiokafka and runs for every record; devices send many records
    under the same key, so a bounded cache saves measurable CPU on the collector's hot path.
    Records without a key, or whose partitions are unavailable, go to the default partitioner.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        """Partition for ``key`` among ``all_partitions``."""
        if key is None or len(available) != len(all_partitions):
            return int(_DEFAULT_PARTITIONER(key, all_partitions, available))
        slot = (key, len(all_partitions))
        partition = self._cache.get(slot)
        if partition is None:
            if len(self._cache) >= self.max_keys:
                self._cache.clear()
            partition = self._cache[slot] = int(_DEFAULT_PARTITIONER(key, all_partitions, available))
        return partition
