"""The collector's Kafka side: send a record, know when it is acknowledged, fail loudly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer

from ingest.errors import KafkaDeliveryError
from ingest.tcp import metrics

__all__ = ["Delivery", "KafkaOut"]

logger = logging.getLogger(__name__)

Delivery = asyncio.Future[Any]


class KafkaOut:
    """Wrap the producer: count in-flight records, and stop the collector if Kafka fails.

    A record Kafka did not acknowledge is never confirmed to a station (no 9014, no SL 651
    confirmation), so the station sends it again; the collector itself stops with
    :class:`KafkaDeliveryError` so its supervisor restarts it, as the MQTT collector does.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.failed = asyncio.Event()
        self.fatal: KafkaDeliveryError | None = None
        metrics.INFLIGHT.set_function(lambda: self.inflight)

    async def send(self, topic: str, key: bytes, value: bytes) -> Delivery:
        """Hand one record to the producer; the returned future resolves on Kafka's ack."""
        try:
            delivery: Delivery = await self.producer.send(topic, value, key=key)
        except Exception as exc:
            self.fail(exc)
            raise
        self.inflight += 1
        self.idle.clear()
        delivery.add_done_callback(self._done)
        return delivery

    def _done(self, delivery: Delivery) -> None:
        self.inflight -= 1
        if not self.inflight:
            self.idle.set()
        if delivery.cancelled():
            return
        exc = delivery.exception()
        if exc is not None:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """Record the first Kafka failure and signal the collector to stop."""
        if self.fatal is None:
            self.fatal = KafkaDeliveryError(f"Kafka did not acknowledge a record: {exc!r}")
            logger.error("kafka delivery failed, stopping without confirming to stations reason=%r", exc)
        self.failed.set()

    async def drain(self, timeout_s: float) -> None:
        """Wait until every record handed over was acknowledged (or ``timeout_s`` passed)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout=timeout_s)
        if self.inflight:
            logger.warning("shutdown with %d records unacknowledged by kafka", self.inflight)
