"""The worker's hot path: ``readings.raw`` → InfluxDB + ``readings.clean``, in batches.

This stage is stateless (normalise, store, forward), so it reads Kafka with an aiokafka
consumer-group member and ``getmany`` instead of a Faust agent. Measured on the 2-core
development machine, Faust's per-record machinery cost 140-240 µs of CPU per record before
any work was done (the consumer awaits a future per message), which alone caps a worker
at about 5,000 device messages/s; ``getmany`` costs a few µs per record. Faust still hosts
the worker and is where the stateful analytics on ``readings.clean`` go (tables with
changelogs), where per-record cost matters far less because records are per device and batch.

Delivery: offsets are committed only after the batch is in InfluxDB (or the disk spool)
and Kafka confirmed its clean / dead-letter records. While batch N is being stored, batch
N+1 is fetched, parsed and its clean records sent (batch N+1 then stores and commits after
batch N); on a rebalance the pending batches finish and commit before the partitions are given
up. A crash replays what was not committed, idempotently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from stationflow import topics
from stationflow.kafka import start_with_retry
from stationflow.registryview import CATCH_UP_S, RegistryView
from streams.handoff import CleanHandoff
from streams.normalize import RecentKeys
from streams.processor import BatchProcessor, Emitted, Prepared, ReadingSink
from streams.settings import StreamsSettings
from streams.sink import SpoolFailure

__all__ = ["RawConsumer"]

logger = logging.getLogger(__name__)

EXIT_SPOOL_FAILURE = 70
MAX_KAFKA_BATCH_BYTES = 512 * 1024
# Batches taken and not yet stored and committed, the one being prepared included (memory:
# 3 x streams_batch_max records, as two in flight plus one in preparation were before the wait
# moved ahead of the fetch)
INFLIGHT = 3
Offsets = dict[TopicPartition, int]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Finish and commit the pending batch before partitions move; log assignments."""

    def __init__(self, before_revoke: Callable[[], Awaitable[None]]) -> None:
        self.before_revoke = before_revoke

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.before_revoke()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        # `stationflow up`, the bench and the tests wait for this line.
        logger.info("partitions assigned count=%d", len(assigned))


class RawConsumer:
    """Consume raw batches, store them, forward clean records, commit; until stopped."""

    def __init__(
        self,
        settings: StreamsSettings,
        sink: ReadingSink,
        registry: RegistryView | None = None,
        handoff: CleanHandoff | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            # Not the Faust app id: Faust's own consumer joins that group with its own protocol.
            group_id=f"{settings.streams_app_id}.raw",
            client_id=f"{settings.streams_app_id}-{settings.streams_instance}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(settings.streams_session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.streams_heartbeat_s * 1000),
            max_poll_interval_ms=300_000,
            max_partition_fetch_bytes=4 << 20,
            # Tansu answers a fetch only when this wait expires, even when records arrived
            # sooner: it bounds how long a lone record waits (stationflow.kafka.FETCH_MAX_WAIT_MS).
            fetch_max_wait_ms=settings.streams_fetch_max_wait_ms,
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            # No linger: a batch's clean / dead records are all appended before the sender
            # runs (send() does not yield), so they leave in one request per partition anyway;
            # linger_ms=5 only added 5 ms to every lone record (measured on Tansu: 6 → 1 ms).
            linger_ms=0,
            max_batch_size=MAX_KAFKA_BATCH_BYTES,
        )
        self.processor = BatchProcessor(
            sink=sink,
            send=self._send,
            clean_topic=settings.topic(topics.CLEAN),
            dead_topic=settings.topic(topics.DEADLETTER),
            recent=RecentKeys(per_device=settings.streams_dedupe_per_device),
            registry=registry,
            handoff=handoff,
        )
        self.registry = registry
        # the batches taken and still completing, oldest first (each task waits for the one before)
        self._inflight: deque[asyncio.Task[None]] = deque()

    async def _send(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> Any:
        return await self.producer.send(topic, value, key=key, partition=partition)

    async def _learn_clean_partitions(self) -> None:
        """The partitions the producer would spread device-keyed records of readings.clean over
        (the clean bundles go to the same ones); returns at once when the metadata is known."""
        clean = self.processor.clean_topic
        self.processor.clean_partitions = sorted(await self.producer.partitions_for(clean))

    async def _finish_pending(self) -> None:
        """Wait until every batch taken is stored and committed (each waits for the one before)."""
        if self._inflight:
            last = self._inflight[-1]
            self._inflight.clear()
            await last

    async def _store_and_commit(
        self,
        prepared: list[Prepared],
        emitted: list[Emitted],
        offsets: Offsets,
        before: asyncio.Task[None] | None,
    ) -> None:
        """Complete a batch whose records were emitted: after the batch before it (sink writes
        and commits in batch order), write its points, wait for Kafka's acks, commit."""
        if before is not None:
            await before
        try:
            for part, sent in zip(prepared, emitted, strict=True):
                await self.processor.complete(part, sent)
        except SpoolFailure:
            # Neither InfluxDB nor the disk took the batch: die *now*, before the commit,
            # so Kafka redelivers it to the next worker.
            logger.critical("spool write failed; exiting without committing", exc_info=True)
            os._exit(EXIT_SPOOL_FAILURE)
        await self.consumer.commit(offsets)

    async def run(self) -> None:
        """Consume until cancelled; on the way out, store and commit what was taken."""
        s = self.settings
        await start_with_retry("kafka producer", self.producer.start)
        try:
            await self._learn_clean_partitions()
            await start_with_retry("kafka consumer", self.consumer.start)
            # the group join (about 5 s on Tansu) runs in the background from here, while
            # the registry loads
            self.consumer.subscribe([s.topic(topics.RAW)], listener=_Rebalance(self._finish_pending))
            try:
                if self.registry is not None:
                    # no "unknown device" verdicts before the registry is loaded
                    await self.registry.ready.wait()
                await self._loop()
            finally:
                try:
                    await self._finish_pending()
                except Exception:  # stopping anyway: the batch is not committed and comes again
                    logger.exception("the last batch did not complete; it is redelivered")
                await self.consumer.stop()
        finally:
            await self.producer.stop()

    async def _loop(self) -> None:
        s = self.settings
        timeout_ms = int(s.streams_batch_within_s * 1000)
        while True:
            # Up to INFLIGHT batches in flight: those before the next one are still completing
            # (InfluxDB writes, Kafka acks, commits, each after the one before) while it is
            # fetched, prepared and emitted. The wait for the oldest comes before the fetch, not
            # between a batch's preparation and its emission: a batch's records go to the
            # analytics and the alerts as soon as they are ready (the alert bench's raw -> clean
            # hop waited 15-80 ms for an older batch's InfluxDB write there), and what arrives
            # during the wait is in the next fetch.
            while len(self._inflight) >= INFLIGHT:
                await self._inflight.popleft()
            fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=s.streams_batch_max)
            if not fetched:
                continue
            await self._learn_clean_partitions()  # a topic's partitions may be added
            values: list[bytes] = []
            offsets: Offsets = {}
            for tp, records in fetched.items():
                values.extend(r.value for r in records)
                offsets[tp] = records[-1].offset + 1
            prepared = [self.processor.prepare(values, defer_unknown=self.registry is not None)]
            if prepared[0].unknown and self.registry is not None:
                # a device registered a moment ago may still be on its way to the view
                if not await self.registry.catch_up(CATCH_UP_S):
                    logger.warning("registry view not caught up within %.0f s", CATCH_UP_S)
                # the deferred documents were counted (records, documents) by the first pass
                retried = self.processor.prepare(prepared[0].unknown)
                prepared.append(dataclasses.replace(retried, records=0, documents=0))
            # the records go out in batch order because this loop hands them to the producer
            # itself (with the wait after the preparation, four in flight gave alert p99 694-714
            # ms against 486-540 with two)
            emitted = [await self.processor.emit(part) for part in prepared]
            # let the producer's sender take the records now: the next fetch may return at once
            # (prefetched), and its preparation would hold them back
            await asyncio.sleep(0)
            before = self._inflight[-1] if self._inflight else None
            self._inflight.append(
                asyncio.create_task(self._store_and_commit(prepared, emitted, offsets, before))
            )
