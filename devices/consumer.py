"""Consumes ``readings.clean`` and ``readings.deadletter`` into the in-memory ``StatusTracker``.

A ``readings.clean`` record is a bundle of ``ReadingBatch`` documents (``stationflow.wire``:
the devices of its partition; a plain record is a bundle of one); each document counts on
its own, and an unreadable one is skipped alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from stationflow import topics
from stationflow.contracts import DeadLetter, ReadingBatch
from stationflow.kafka import start_with_retry
from stationflow.lifetime import AsyncLifetime
from stationflow.settings import CommonSettings
from stationflow.wire import split_bundle

from .status import StatusTracker

__all__ = ["StatusConsumer"]

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_MS = 500  # how long one getmany waits; bounds shutdown latency
FETCH_MAX_RECORDS = 2000


class StatusConsumer(AsyncLifetime):
    """A consumer-group member (its own group id) feeding device counters."""

    def __init__(self, settings: CommonSettings, *, group_id: str, tracker: StatusTracker) -> None:
        self.tracker = tracker
        self._clean = settings.topic(topics.CLEAN)
        self._dead = settings.topic(topics.DEADLETTER)
        # earliest: a new group replays what the topics still hold, rebuilding the last hour.
        self._consumer = AIOKafkaConsumer(
            self._clean,
            self._dead,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=group_id,
            auto_offset_reset="earliest",
            enable_auto_commit=True,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the consuming task, which joins the group in the background.

        Joining takes about 5 s on Tansu; the registry serves meanwhile (the counters it feeds
        fill in from the topics' start once the group is joined).
        """
        self._task = asyncio.create_task(self._join_and_run(), name="registry-status-consumer")

    async def _join_and_run(self) -> None:
        try:
            await start_with_retry("registry-status", self._consumer.start)
        except Exception:
            logger.exception("registry status consumer could not join its group; device status stays empty")
            raise
        await self._run()

    async def stop(self) -> None:
        """Stop the task and leave the group (idempotent)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=FETCH_MAX_RECORDS)
            for tp, records in batches.items():
                for record in records:
                    if record.value is not None:
                        self._apply(tp.topic, record.value)

    def _apply(self, topic: str, value: bytes) -> None:
        if topic != self._clean:
            self._read(topic, value)
            return
        for document in split_bundle(value):
            self._read(topic, document)

    def _read(self, topic: str, value: bytes) -> None:
        try:
            if topic == self._clean:
                self.tracker.on_batch(ReadingBatch.model_validate_json(value))
            else:
                self.tracker.on_dead_letter(DeadLetter.model_validate_json(value))
        except ValidationError as exc:
            logger.warning("skipping unreadable record topic=%s error=%s", topic, exc.errors()[:1])
