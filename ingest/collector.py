"""MQTT → Kafka collector.

Each MQTT message becomes one Kafka record: a ``ReadingBatch`` on ``readings.raw`` keyed by
device id, or a ``DeadLetter`` on ``readings.deadletter`` when the message is refused. The
MQTT message is acknowledged (QoS 1 PUBACK, manual ack) only after Kafka acknowledged that
record, and acks go out in arrival order; a collector that dies loses nothing, because the
broker redelivers every unacknowledged message of its persistent session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as paho
from aiokafka import AIOKafkaProducer
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest import metrics
from ingest.decoders import DECODERS
from ingest.errors import KafkaDeliveryError
from ingest.mqtt import AsyncioPaho
from ingest.router import route
from ingest.settings import IngestSettings
from ingest.topics import shared_filter
from stationflow import topics
from stationflow.contracts import ReadingBatch, utcnow
from stationflow.logs import LogThrottle

__all__ = ["Collector"]

logger = logging.getLogger(__name__)

SYS_DROPPED = "$SYS/broker/publish/messages/dropped"
# Pause reading from the broker when this many messages wait for the producer; resume at
# half. QoS 1 traffic is already bounded by Receive Maximum; this bounds QoS 0 floods.
QUEUE_HIGH_WATER = 5000
RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 10.0
KEEPALIVE_S = 30
# On shutdown, wait this long for in-flight records to be acknowledged by Kafka.
DRAIN_TIMEOUT_S = 10.0


@dataclass(slots=True)
class _Pending:
    """One received MQTT message waiting for its Kafka acknowledgement."""

    mid: int
    qos: int
    generation: int
    t0: float
    done: bool = False


_Outgoing = tuple[_Pending, str, bytes, bytes]


class Collector:
    """Subscribe to device topics, decode, publish to Kafka, acknowledge after Kafka."""

    def __init__(self, settings: IngestSettings, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.limits = settings.limits()
        self.decode = DECODERS["json"]
        self.raw_topic = settings.topic(topics.RAW)
        self.dead_topic = settings.topic(topics.DEADLETTER)
        self._pending: deque[_Pending] = deque()
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._generation = 0
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None
        self._throttle = LogThrottle()
        self._connected = asyncio.Event()
        self.client = self._make_client()
        self._io: AsyncioPaho | None = None

    # -- MQTT ---------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.ingest_client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        if s.mqtt_username:
            password = s.mqtt_password.get_secret_value() if s.mqtt_password else None
            client.username_pw_set(s.mqtt_username, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.ingest_session_expiry_s
        props.ReceiveMaximum = self.settings.ingest_receive_maximum
        return props

    def _on_connect(self, client: paho.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            logger.error(
                "mqtt connect refused host=%s port=%s reason=%s",
                self.settings.mqtt_host,
                self.settings.mqtt_port,
                rc,
            )
            return
        self._generation += 1
        metrics.CONNECTED.set(1)
        self._connected.set()
        filt = shared_filter(self.settings.ingest_share_group, self.settings.ingest_topic_filter)
        client.subscribe([(filt, SubscribeOptions(qos=1)), (SYS_DROPPED, SubscribeOptions(qos=0))])
        logger.info(
            "mqtt connected host=%s port=%s filter=%s session_present=%s",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            filt,
            flags.session_present,
        )

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        metrics.CONNECTED.set(0)
        self._connected.clear()
        # Acks of this connection can no longer be sent; the broker redelivers those messages.
        self._generation += 1
        if not self._stop.is_set():
            logger.warning("mqtt disconnected reason=%s; reconnecting", rc)

    async def _connect_forever(self) -> None:
        delay = RECONNECT_INITIAL_S
        while not self._stop.is_set():
            if not self._connected.is_set():
                try:
                    await asyncio.to_thread(self._blocking_connect)
                    delay = RECONNECT_INITIAL_S
                except OSError as exc:
                    logger.warning(
                        "mqtt connect failed host=%s port=%s reason=%s retry_in=%.1fs",
                        self.settings.mqtt_host,
                        self.settings.mqtt_port,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)

    def _blocking_connect(self) -> None:
        """TCP connect in a worker thread; paho then registers its socket on the loop."""
        self.client.connect(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=self._connect_properties(),
        )

    # -- per message -------------------------------------------------------------------

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic.startswith("$SYS/"):
            with contextlib.suppress(ValueError):
                metrics.BROKER_DROPPED.set(float(msg.payload))
            return
        metrics.MESSAGES.inc()
        entry = _Pending(msg.mid, msg.qos, self._generation, time.monotonic())
        topic, key, value = self.route(msg.topic, bytes(msg.payload), utcnow())
        self._pending.append(entry)
        self._queue.put_nowait((entry, topic, key, value))
        if self._queue.qsize() >= QUEUE_HIGH_WATER and self._io is not None:
            self._io.pause()

    def route(self, mqtt_topic: str, payload: bytes, received_at: datetime) -> tuple[str, bytes, bytes]:
        """Kafka topic, key and value for one MQTT message (never raises)."""
        result = route(mqtt_topic, payload, received_at, limits=self.limits, decode=self.decode)
        if isinstance(result, ReadingBatch):
            metrics.READINGS.inc(len(result.readings))
            return self.raw_topic, result.key(), ReadingBatch.__pydantic_serializer__.to_json(result)
        metrics.REJECTED.labels(result.code).inc()
        suppressed = self._throttle.allow(result.device_id or mqtt_topic, time.monotonic())
        if suppressed is not None:
            logger.warning(
                "message rejected device_id=%s topic=%s code=%s reason=%s suppressed_since_last=%d",
                result.device_id,
                mqtt_topic[:200],
                result.code,
                result.reason,
                suppressed,
            )
        return self.dead_topic, result.key(), result.model_dump_json().encode()

    # -- Kafka ---------------------------------------------------------------------------

    async def _pump(self) -> None:
        """Hand queued records to the producer; acks follow in ``_delivered``."""
        while True:
            entry, topic, key, value = await self._queue.get()
            try:
                fut = await self.producer.send(topic, value, key=key)
            except Exception as exc:  # noqa: BLE001 - any producer failure is fatal, see _fail
                self._fail(exc)
                return
            fut.add_done_callback(lambda f, e=entry: self._delivered(e, f))
            if self._io is not None and self._io.paused and self._queue.qsize() < QUEUE_HIGH_WATER // 2:
                self._io.resume()

    def _delivered(self, entry: _Pending, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._fail(fut.exception() or asyncio.CancelledError())
            return
        entry.done = True
        metrics.ACK_SECONDS.observe(time.monotonic() - entry.t0)
        pending = self._pending
        while pending and pending[0].done:
            head = pending.popleft()
            if head.qos > 0 and head.generation == self._generation:
                self.client.ack(head.mid, head.qos)
        metrics.INFLIGHT.set(len(pending))

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = KafkaDeliveryError(f"Kafka did not acknowledge a record: {exc!r}")
            logger.error("kafka delivery failed, stopping without acking reason=%r", exc)
        self._stop.set()

    # -- lifetime ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set or Kafka fails; then drain and disconnect."""
        loop = asyncio.get_running_loop()
        self._io = AsyncioPaho(self.client, loop)
        pump = asyncio.create_task(self._pump(), name="kafka-pump")
        connector = asyncio.create_task(self._connect_forever(), name="mqtt-connect")
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait(
                {waiter, asyncio.create_task(self._stop.wait())}, return_when="FIRST_COMPLETED"
            )
        finally:
            self._stop.set()
            self._io.pause()  # take nothing new; unacked messages stay with the broker
            await self._drain(pump)
            for task in (pump, connector, waiter):
                task.cancel()
            await asyncio.gather(pump, connector, waiter, return_exceptions=True)
            self.client.disconnect()
            await self._io.close()
            metrics.CONNECTED.set(0)
        if self._fatal is not None:
            raise self._fatal

    async def _drain(self, pump: asyncio.Task[None]) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while (self._pending or not self._queue.empty()) and self._fatal is None:
            if pump.done() or time.monotonic() > deadline:
                logger.warning("shutdown with %d messages unacked; the broker keeps them", len(self._pending))
                return
            await asyncio.sleep(0.05)
