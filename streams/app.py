"""The Faust application: ``readings.raw`` → normalise → InfluxDB + ``readings.clean``."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import faust

from stationflow import topics
from stationflow.settings import CommonSettings
from streams.normalize import RecentKeys
from streams.processor import BatchProcessor, Prepared
from streams.settings import StreamsSettings
from streams.sink import BufferedSink, DiskSpool, SpoolFailure, make_writer

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

# The worker may have been killed between storing a batch and committing its offsets;
# replay is harmless (idempotent sink, dedupe), so committing often only shortens replays.
EXIT_SPOOL_FAILURE = 70


def create_app(settings: StreamsSettings) -> faust.App:
    """Build the Faust app and its agent for these settings."""
    datadir = settings.local_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.streams_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        datadir=str(datadir),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,  # topics are created explicitly (stationflow.topics)
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.streams_session_timeout_s,
        broker_heartbeat_interval=settings.streams_heartbeat_s,
        broker_commit_interval=settings.streams_commit_interval_s,
        broker_rebalance_timeout=max(30.0, settings.streams_session_timeout_s * 3),
        stream_recovery_delay=0.0,
        # Never acknowledge a record whose processing raised or was cancelled.
        stream_ack_exceptions=False,
        stream_ack_cancelled_tasks=False,
        producer_acks=-1,
        producer_linger=0.005,
        web_enabled=settings.streams_web_enabled,
        web_port=settings.streams_web_port,
    )

    @app.on_partitions_assigned.connect
    async def _log_assignment(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # `stationflow up`, the bench and the tests wait for this line.
        assigned = args[0] if args else kwargs.get("assigned", ())
        logger.info("partitions assigned count=%d", len(assigned))

    raw = app.topic(settings.topic(topics.RAW), value_serializer="raw", key_serializer="raw")

    @app.agent(raw, name="normalise-and-store")
    async def normalise_and_store(agent_stream: faust.StreamT[Any]) -> AsyncIterator[Any]:
        stream = cast("faust.Stream[Any]", agent_stream)  # noack_take lives on the concrete class
        async with _open_sink(settings) as sink:
            processor = BatchProcessor(
                sink=sink,
                send=_sender(app),
                clean_topic=settings.topic(topics.CLEAN),
                dead_topic=settings.topic(topics.DEADLETTER),
                recent=RecentKeys(per_device=settings.streams_dedupe_per_device),
            )
            # Pipelined: while batch N is written to InfluxDB and Kafka confirms its clean
            # records, batch N+1 is parsed and rendered. Events are acked only after their
            # batch is stored, so at most one stored-but-unacked batch is replayed on a crash.
            pending: asyncio.Task[None] | None = None
            try:
                async for events in stream.noack_take(
                    settings.streams_batch_max, settings.streams_batch_within_s
                ):
                    prepared = processor.prepare([cast(faust.EventT[Any], e).value for e in events])
                    if pending is not None:
                        await pending
                    pending = asyncio.create_task(_store_and_ack(stream, processor, prepared, events))
                    yield len(events)
            finally:
                if pending is not None:
                    await pending

    return app


async def _store_and_ack(
    stream: faust.Stream[Any], processor: BatchProcessor, prepared: Prepared, events: Sequence[Any]
) -> None:
    try:
        await processor.store(prepared)
    except SpoolFailure:
        # Neither InfluxDB nor the disk took the batch: die *now*, before anything acks
        # it, so Kafka redelivers it to the next worker.
        logger.critical("spool write failed; exiting without committing", exc_info=True)
        os._exit(EXIT_SPOOL_FAILURE)
    for event in events:
        await stream.ack(event)


def _open_sink(settings: CommonSettings | StreamsSettings) -> BufferedSink:
    assert isinstance(settings, StreamsSettings)  # noqa: S101 - narrow for mypy
    spool = DiskSpool(settings.local_dir / "spool", settings.streams_spool_max_mb << 20)
    return BufferedSink(make_writer(settings), spool)


def _sender(app: faust.App) -> Any:
    async def send(topic: str, key: bytes, value: bytes) -> Any:
        return await app.producer.send(topic, key, value, None, None, None)

    return send
