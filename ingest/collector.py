"""MQTT → Kafka collector.

Each accepted MQTT message becomes one ``ReadingBatch`` document in a bundle: the messages
whose device ids hash to the same partition of ``readings.raw`` travel as one record
(``ingest.bundler``; sent as soon as the event loop has nothing more ready, or at the size
cap). A refused message becomes one ``DeadLetter`` record on ``readings.deadletter``. The
QoS 1 PUBACK goes to the broker only after Kafka acknowledged the record that carries the
message (gmqtt with ``optimistic_acknowledgement=False`` sends it when the async handler
returns), so a collector that dies loses nothing: the broker redelivers every
unacknowledged message of its persistent session. If Kafka fails, every handler of the
bundle raises, no PUBACK is sent, and the collector stops so its supervisor can restart it.

Every device subtopic is heard (``devices/#``): ``readings`` (native JSON), ``senml`` and
``hj212`` are decoded, anything else is dead-lettered as ``unknown_subtopic`` and acknowledged
(see ``ingest.router``). For ``hj212`` the collector follows the device registry
(``ingest.mqtt_hj212``); no other message waits for it.

gmqtt rather than paho-mqtt: measured here, paho's per-message cost (about 95 µs of CPU
to read, dispatch and acknowledge one PUBLISH) was the largest single item of the
collector; gmqtt parses packets inside an asyncio protocol at about a third of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

import gmqtt
from aiokafka import AIOKafkaProducer
from gmqtt.mqtt.constants import MQTTCommands, MQTTv50
from gmqtt.mqtt.package import CommandWithMidPacket

from ingest import metrics
from ingest.bundler import Bundler
from ingest.errors import KafkaDeliveryError, RejectedMessage
from ingest.mqtt_hj212 import Hj212Registry
from ingest.qos0 import DeviceLabels, Qos0Gate
from ingest.resume import DropWatch
from ingest.router import Accepted, Ignored, route
from ingest.settings import IngestSettings
from ingest.topics import device_id_from_topic, shared_filter
from stationflow import topics
from stationflow.contracts import DeadLetter, utcnow
from stationflow.logs import LogThrottle

__all__ = ["Collector"]

logger = logging.getLogger(__name__)

SYS_DROPPED = "$SYS/broker/publish/messages/dropped"
CONNECT_RETRY_INITIAL_S = 0.5
CONNECT_RETRY_MAX_S = 10.0
# After losing the broker, gmqtt retries at this fixed interval. Short, so the collector is
# subscribed again soon after the broker is back: until then a broker that forgot the
# subscription (Mosquitto 2.0.11 does not persist shared ones) drops what devices send.
RECONNECT_DELAY_S = 0.2
KEEPALIVE_S = 30
# On shutdown, wait this long for in-flight records to be acknowledged by Kafka.
DRAIN_TIMEOUT_S = 10.0
# Before a session resume (``ingest.resume``), wait at most this long for in-flight records:
# what is still unacknowledged then is redelivered by the broker and deduplicated downstream.
RESUME_DRAIN_S = 2.0
RESUME_CHECK_S = 1.0
SYS_REFRESH_S = 5.0  # how often the drop counter is asked for again (see _resume_after_drops)
PUBACK_SUCCESS = 0
HJ212_SUFFIX = "/hj212"
LEGACY_FILTER = "devices/+/readings"  # the only subscription of collectors before issue 10


def _publish_payload(raw_packet: bytes, offset: int) -> bytes:
    """The payload of a QoS 0 MQTT v5 PUBLISH whose topic ends at ``offset`` (skip the properties)."""
    size = shift = 0
    for pos in range(offset, min(offset + 4, len(raw_packet))):
        size |= (raw_packet[pos] & 0x7F) << shift
        shift += 7
        if not raw_packet[pos] & 0x80:
            return raw_packet[pos + 1 + size :]
    return raw_packet[offset:]


class Collector:
    """Subscribe to device topics, decode, publish to Kafka, acknowledge after Kafka."""

    def __init__(self, settings: IngestSettings, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.limits = settings.limits()
        self.hj212 = Hj212Registry(settings)
        self.raw_topic = settings.topic(topics.RAW)
        self.dead_topic = settings.topic(topics.DEADLETTER)
        self._inflight = 0
        self._idle = asyncio.Event()  # set while nothing waits for Kafka
        self._idle.set()
        metrics.INFLIGHT.set_function(lambda: self._inflight)  # read at scrape time, not per message
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None
        self._throttle = LogThrottle()
        self._qos0 = Qos0Gate(settings.ingest_qos0_max_inflight, settings.ingest_qos0_max_inflight_per_device)
        metrics.QOS0_INFLIGHT.set_function(lambda: self._qos0.inflight)
        self._shed_throttle = LogThrottle()
        self._shed_labels = DeviceLabels()
        self._reports: set[asyncio.Future[None]] = set()
        self.bundler = Bundler(producer, self.raw_topic, on_sent=_bundle_sent)
        self._tally = metrics.TALLY
        self._drops = DropWatch()
        self.client = self._make_client()

    def _make_client(self) -> gmqtt.Client:
        s = self.settings
        client = gmqtt.Client(
            s.ingest_client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            session_expiry_interval=s.ingest_session_expiry_s,
            receive_maximum=s.ingest_receive_maximum,
        )
        # -1: never give up. gmqtt reconnects on its own after a lost connection (same client id,
        # clean start off, so the persistent session resumes) and _on_connect subscribes again.
        client.set_config({"reconnect_retries": -1, "reconnect_delay": RECONNECT_DELAY_S})
        if s.mqtt_username:
            password = s.mqtt_password.get_secret_value() if s.mqtt_password else None
            client.set_auth_credentials(s.mqtt_username, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._shed_before_task(client)
        self._coalesce_pubacks(client)
        self._qos1_without_task(client)
        return client

    def _qos1_without_task(self, client: gmqtt.Client) -> None:
        """Forward a plain QoS 1 message straight from gmqtt's PUBLISH handler, without a task.

        gmqtt starts a task per message and sends the PUBACK when it returns; measured, the
        task and its coroutine were a tenth of the collector's CPU. A QoS 1 message of the
        JSON and SenML subtopics (and any refusal) is routed here as gmqtt parses it; its
        PUBACK is sent by a callback on its bundle's delivery future, so it still goes out only
        after Kafka acknowledged the record, and never if Kafka failed. HJ 212 (which may
        wait for the registry), QoS 2 and ``$SYS`` messages keep gmqtt's task (``_on_message``).
        A private gmqtt hook, guarded: without it every message takes ``_on_message``.
        """
        handler = getattr(client, "_package_handler", client)
        original = getattr(handler, "_handle_qos_1_publish_packet", None)
        if original is None or getattr(handler, "_send_puback", None) is None:
            logger.warning("gmqtt has no QoS 1 handler hook; every message runs in its own task")
            return

        def handle_qos1(mid: int, packet: bytes, topic: str | bytes, properties: Any) -> None:
            if not isinstance(topic, str) or not self._forwards_directly(topic):
                original(mid, packet, topic, properties)
                return
            self._forward_qos1(handler, mid, topic, packet)

        handler._handle_qos_1_publish_packet = handle_qos1
        state = getattr(handler, "_connection_state", None)
        if state is None or not hasattr(state, "protocol_version"):
            return
        parse = handler._handle_publish_packet  # the shedding hook's, or gmqtt's

        def handle_publish(cmd: int, raw_packet: bytes) -> None:
            if cmd & 0x06 != 0x02 or not self._publish_qos1(handler, state.protocol_version, raw_packet):
                parse(cmd, raw_packet)

        handler._handle_publish_packet = handle_publish

    def _forwards_directly(self, topic: str) -> bool:
        """Whether a QoS 1 message on ``topic`` is routed by ``_forward_qos1`` as it is parsed
        (not HJ 212, which may wait for the registry, nor ``$SYS``; the bundler running)."""
        return not (topic.startswith("$SYS/") or topic.endswith(HJ212_SUFFIX)) and self.bundler.started

    def _publish_qos1(self, handler: Any, version: int, raw_packet: bytes) -> bool:
        """Forward a QoS 1 PUBLISH (variable header + payload) without gmqtt's parser; False:
        not one for this path (gmqtt parses it and ``handle_qos1`` decides, as before).

        gmqtt's parser builds struct formats, a properties dict and a task-ready call for every
        message: measured, a tenth of the collector's CPU. Here: the topic, the packet id and,
        on MQTT 5, an empty property block (a message with properties, such as a user property
        or a topic alias, takes gmqtt's parser).
        """
        end = 2 + int.from_bytes(raw_packet[:2])
        if end == 2 or len(raw_packet) < end + 2:
            return False
        try:
            topic = raw_packet[2:end].decode()
        except UnicodeDecodeError:
            return False
        if not self._forwards_directly(topic):
            return False
        mid = int.from_bytes(raw_packet[end : end + 2])
        start = end + 2
        if version >= MQTTv50:
            if raw_packet[start : start + 1] != b"\x00":
                return False
            start += 1
        self._forward_qos1(handler, mid, topic, raw_packet[start:])
        return True

    def _forward_qos1(self, handler: Any, mid: int, mqtt_topic: str, payload: bytes) -> None:
        """Route one QoS 1 message; PUBACK ``mid`` once Kafka acknowledged it (see above)."""
        self._tally.messages += 1
        out = self.route(mqtt_topic, bytes(payload), utcnow())
        if out is None:  # nothing to store: acknowledge
            handler._send_puback(mid)
            return
        kafka_topic, key, value = out
        delivered: asyncio.Future[Any]
        if kafka_topic == self.raw_topic:
            try:
                delivered = self.bundler.add(key, value)
            except Exception as exc:  # noqa: BLE001 - an earlier bundle failed: stop, no PUBACK
                self._fail(exc)
                return
        else:  # dead letters stay single records, keyed by device
            delivered = asyncio.ensure_future(self._send_single(kafka_topic, key, value))
        self._inflight += 1
        self._idle.clear()
        delivered.add_done_callback(functools.partial(self._acknowledge, handler, mid))

    async def _send_single(self, kafka_topic: str, key: bytes, value: bytes) -> None:
        await (await self.producer.send(kafka_topic, value, key=key))

    def _acknowledge(self, handler: Any, mid: int, delivered: asyncio.Future[Any]) -> None:
        """PUBACK ``mid`` if its record was acknowledged by Kafka; else stop without it."""
        self._inflight -= 1
        if not self._inflight:
            self._idle.set()
        exc = asyncio.CancelledError() if delivered.cancelled() else delivered.exception()
        if exc is not None:
            self._fail(exc)
            return
        handler._send_puback(mid)

    def _coalesce_pubacks(self, client: gmqtt.Client) -> None:
        """Send the PUBACKs that become due in one pass of the event loop in one socket write.

        A bundle's Kafka ack releases all its messages at once, and gmqtt writes each PUBACK
        on its own: one send() system call per message, measured at a tenth of the collector's
        CPU. The PUBACKs are gathered and written together by a ``call_soon`` callback, on the
        connection that was current when the first was due; if that connection is gone by
        then they are not sent, as gmqtt would not (the broker redelivers those messages).
        A private gmqtt hook, guarded: without it every PUBACK is written by gmqtt as before.
        """
        handler = getattr(client, "_package_handler", client)
        if getattr(handler, "_send_puback", None) is None or not hasattr(client, "_connection"):
            logger.warning("gmqtt has no PUBACK hook; PUBACKs are written one by one")
            return
        pending: list[tuple[int, int]] = []  # (packet id, reason code)

        def flush(connection: Any) -> None:
            acks = pending.copy()
            pending.clear()
            if connection is None or connection is not client._connection or connection.is_closing():
                return
            version = connection._protocol.proto_ver
            connection.send_package(
                b"".join(
                    CommandWithMidPacket.build_package(
                        MQTTCommands.PUBACK, mid, False, reason_code=code, proto_ver=version
                    )
                    for mid, code in acks
                )
            )

        def send_puback(mid: int, reason_code: int = 0) -> None:
            if not pending:
                asyncio.get_running_loop().call_soon(flush, client._connection)
            pending.append((mid, reason_code))

        handler._send_puback = send_puback

    def _shed_before_task(self, client: gmqtt.Client) -> None:
        """Shed QoS 0 messages over the limits before gmqtt builds a task for each one.

        Measured in the QoS 0 flood test: shedding inside the task handled about 53k
        messages/s while one device published 135k/s, so Mosquitto's queue towards the
        collector filled up and the broker started dropping messages, the other devices'
        QoS 1 ones included. Checking the limits on gmqtt's PUBLISH handler (a private hook,
        so it is guarded: without it the shedding still happens in ``_on_message``) skips
        the property parsing, the task and the coroutine of a message that will be shed.
        """
        handler = getattr(client, "_package_handler", client)  # gmqtt 0.8; before, the client itself
        original = getattr(handler, "_handle_publish_packet", None)
        if original is None:
            logger.warning("gmqtt has no PUBLISH handler hook; QoS 0 shedding happens in the message task")
            return

        def handle_publish(cmd: int, raw_packet: bytes) -> None:
            if cmd & 0x06 or not self._shed_early(raw_packet):  # QoS 1/2, or admitted: as before
                original(cmd, raw_packet)

        handler._handle_publish_packet = handle_publish

    def _shed_early(self, raw_packet: bytes) -> bool:
        """True if this QoS 0 PUBLISH (variable header + payload) was shed here."""
        length = int.from_bytes(raw_packet[:2])
        try:
            mqtt_topic = raw_packet[2 : 2 + length].decode()
        except UnicodeDecodeError:
            return False
        if not mqtt_topic or self._qos0.would_admit(mqtt_topic) or mqtt_topic.startswith("$SYS/"):
            return False
        self._tally.messages += 1
        report = self._shed(mqtt_topic, _publish_payload(raw_packet, 2 + length))
        if report is not None:  # at most once per device every 10 s
            task = asyncio.ensure_future(self._send_report(*report))
            self._reports.add(task)
            task.add_done_callback(self._report_sent)
        return True

    def _report_sent(self, task: asyncio.Future[None]) -> None:
        self._reports.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: _send_report already logged it and stopped the collector

    async def _send_report(self, kafka_topic: str, key: bytes, value: bytes) -> None:
        try:
            await (await self.producer.send(kafka_topic, value, key=key))
        except Exception as exc:
            self._fail(exc)  # logged there; the collector stops
            raise

    # -- MQTT events ---------------------------------------------------------------------

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, properties: Any) -> None:
        filt = shared_filter(self.settings.ingest_share_group, self.settings.ingest_topic_filter)
        client.subscribe([gmqtt.Subscription(filt, qos=1), gmqtt.Subscription(SYS_DROPPED, qos=0)])
        legacy = shared_filter(self.settings.ingest_share_group, LEGACY_FILTER)
        if flags and legacy != filt:
            # A session from before every subtopic was heard still holds devices/+/readings;
            # overlapping it with devices/# would deliver each reading twice (Mosquitto 2).
            client.unsubscribe(legacy)
        metrics.CONNECTED.set(1)
        logger.info(
            "mqtt connected host=%s port=%s filter=%s session_present=%s",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            filt,
            bool(flags),
        )

    def _on_disconnect(self, client: gmqtt.Client, packet: Any, exc: BaseException | None = None) -> None:
        metrics.CONNECTED.set(0)
        if not self._stop.is_set():
            logger.warning("mqtt disconnected reason=%r; reconnecting", exc)

    async def _on_message(
        self, client: gmqtt.Client, topic: str | bytes, payload: bytes, qos: int, properties: Any
    ) -> int:
        """Forward one message to Kafka; returning sends the PUBACK, raising withholds it."""
        mqtt_topic = topic if isinstance(topic, str) else topic.decode("utf-8", "replace")
        if mqtt_topic.startswith("$SYS/"):
            with contextlib.suppress(ValueError):
                dropped = int(bytes(payload))
                metrics.BROKER_DROPPED.set(dropped)
                self._drops.observe(dropped, time.monotonic())
            return PUBACK_SUCCESS
        self._tally.messages += 1
        admitted = False
        out: tuple[str, bytes, bytes] | None = None  # Kafka topic, key, value
        if qos == 0:
            admitted = self._qos0.try_acquire(mqtt_topic)
            if not admitted:
                out = self._shed(mqtt_topic, bytes(payload))
                if out is None:
                    return PUBACK_SUCCESS
        self._inflight += 1
        self._idle.clear()
        try:
            delivered: asyncio.Future[Any] | None
            if out is not None:
                delivered = await self._send(out)
            elif mqtt_topic.endswith(HJ212_SUFFIX):  # the only path that reads the registry
                async with self.hj212.in_order(mqtt_topic):  # a device's frames keep their order
                    await self._prepare_hj212(mqtt_topic, bytes(payload))
                    delivered = await self._route_and_send(mqtt_topic, payload)
            else:
                delivered = await self._route_and_send(mqtt_topic, payload)
            if delivered is not None:  # None: nothing to store (e.g. an HJ 212 state upload)
                await delivered  # the record that carries it, acknowledged by Kafka
        except Exception as exc:
            self._fail(exc)
            raise
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()
            if admitted:
                self._qos0.release(mqtt_topic)
        return PUBACK_SUCCESS

    async def _route_and_send(self, mqtt_topic: str, payload: bytes) -> asyncio.Future[Any] | None:
        """Route one message and queue it for Kafka; None: nothing to store."""
        out = self.route(mqtt_topic, bytes(payload), utcnow())
        return None if out is None else await self._send(out)

    async def _send(self, out: tuple[str, bytes, bytes]) -> asyncio.Future[Any]:
        """Queue one routed message for Kafka (in the order of the calls); its delivery future."""
        kafka_topic, key, value = out
        if kafka_topic == self.raw_topic:
            return self.bundler.add(key, value)  # into its partition's bundle
        sent: asyncio.Future[Any] = await self.producer.send(kafka_topic, value, key=key)
        return sent  # dead letters stay single records, keyed by device

    async def _prepare_hj212(self, mqtt_topic: str, payload: bytes) -> None:
        try:
            device_id = device_id_from_topic(mqtt_topic)
        except RejectedMessage:
            return  # route dead-letters it
        try:
            await self.hj212.prepare(device_id, payload)
        except Exception:  # routing still runs: it checks in memory, or refuses with a reason
            logger.exception("hj212 registry lookup failed device_id=%s", device_id)

    def route(self, mqtt_topic: str, payload: bytes, received_at: Any) -> tuple[str, bytes, bytes] | None:
        """Kafka topic, key and value for one MQTT message; None: nothing to send (never raises)."""
        result = route(mqtt_topic, payload, received_at, limits=self.limits, hj212=self.hj212.context)
        if isinstance(result, Accepted):
            self._tally.readings += len(result.readings)
            if result.unknown_codes:
                self._unknown_codes(result, payload)
            return self.raw_topic, result.key(), result.to_json()
        if isinstance(result, Ignored):
            metrics.IGNORED.labels(mqtt_topic.rsplit("/", 1)[-1][:32]).inc()
            logger.debug("message ignored device_id=%s reason=%s", result.device_id, result.reason)
            return None
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

    def _unknown_codes(self, result: Accepted, payload: bytes) -> None:
        """Count a frame with unknown codes; once an hour per device and code set, log and report it."""
        metrics.HJ212_UNKNOWN_CODES.inc()
        codes, device_id = result.unknown_codes, result.device_id
        if not self.hj212.unknown_codes_due(device_id, codes, time.monotonic()):
            return
        reason = (
            f"codes {list(codes)} are not metrics of the device's type; the frame's other "
            f"{len(result.readings)} readings were stored (reported once an hour per code set)"
        )
        logger.warning("hj212 unknown codes device_id=%s codes=%s", device_id, ",".join(codes))
        letter = DeadLetter.build(
            payload=payload,
            source=result.source[:1029],
            code="hj212_unknown_code",
            reason=reason,
            received_at=result.received_at,
            device_id=device_id,
            max_payload_bytes=self.limits.max_payload_bytes,
        )
        metrics.REJECTED.labels(letter.code).inc()
        task = asyncio.ensure_future(
            self._send_report(self.dead_topic, letter.key(), letter.model_dump_json().encode())
        )
        self._reports.add(task)
        task.add_done_callback(self._report_sent)

    def _shed(self, mqtt_topic: str, payload: bytes) -> tuple[str, bytes, bytes] | None:
        """Count a QoS 0 message over the in-flight limits; at most every 10 s per device, log
        it and return a ``qos0_shed`` dead letter (this message as the sample) to send."""
        try:
            device_id: str | None = device_id_from_topic(mqtt_topic)
        except RejectedMessage:
            device_id = None
        metrics.QOS0_SHED.labels(self._shed_labels.label(device_id)).inc()
        suppressed = self._shed_throttle.allow(mqtt_topic, time.monotonic())
        if suppressed is None:
            return None
        shed, s = suppressed + 1, self.settings
        logger.warning(
            "qos0 messages shed device_id=%s topic=%s shed_since_last=%d device_inflight=%d "
            "qos0_inflight=%d limit_per_device=%d limit=%d reason=collector at its QoS 0 in-flight limit",
            device_id,
            mqtt_topic[:200],
            shed,
            self._qos0.held(mqtt_topic),
            self._qos0.inflight,
            s.ingest_qos0_max_inflight_per_device,
            s.ingest_qos0_max_inflight,
        )
        letter = DeadLetter.build(
            payload=payload,
            source=f"mqtt:{mqtt_topic[:1024]}",
            code="qos0_shed",
            reason=(
                f"{shed} QoS 0 message(s) of this device shed since the previous report (this is one): "
                f"the collector holds at most {s.ingest_qos0_max_inflight_per_device} QoS 0 messages per "
                f"device and {s.ingest_qos0_max_inflight} in all while they wait for Kafka; publish "
                "less often or with QoS 1, which is never shed"
            ),
            received_at=utcnow(),
            device_id=device_id,
            max_payload_bytes=self.limits.max_payload_bytes,
        )
        return self.dead_topic, letter.key(), letter.model_dump_json().encode()

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = KafkaDeliveryError(f"Kafka did not acknowledge a record: {exc!r}")
            logger.error("kafka delivery failed, stopping without acking reason=%r", exc)
        self._stop.set()

    # -- lifetime ----------------------------------------------------------------------

    async def _connect(self) -> None:
        delay = CONNECT_RETRY_INITIAL_S
        while not self._stop.is_set():
            try:
                await self.client.connect(
                    self.settings.mqtt_host, self.settings.mqtt_port, keepalive=KEEPALIVE_S
                )
                return
            except (OSError, gmqtt.MQTTConnectError) as exc:
                logger.warning(
                    "mqtt connect failed host=%s port=%s reason=%s retry_in=%.1fs",
                    self.settings.mqtt_host,
                    self.settings.mqtt_port,
                    exc,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                delay = min(delay * 2, CONNECT_RETRY_MAX_S)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set or Kafka fails; then drain and disconnect."""
        waiter = asyncio.create_task(stop.wait())
        fatal = asyncio.create_task(self._stop.wait())
        follower = asyncio.create_task(self.hj212.follow())
        resumer = asyncio.create_task(self._resume_after_drops())
        try:
            await self.bundler.start()
            await self._connect()
            await asyncio.wait({waiter, fatal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._stop.set()
            await self._drain()
            with contextlib.suppress(Exception):
                await self.client.disconnect()
            for task in (waiter, fatal, follower, resumer):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            with contextlib.suppress(asyncio.CancelledError):
                await resumer
            self.hj212.close()
            metrics.CONNECTED.set(0)
        if self._fatal is not None:
            raise self._fatal

    async def _resume_after_drops(self) -> None:
        """Resume the MQTT session once the broker dropped messages and the drops stopped.

        Mosquitto 2.0.11 can keep QoS 1 messages it acknowledged to devices in a live session
        without ever sending them, after it dropped messages towards this collector; a
        reconnect of the same session makes it resend them (``ingest.resume``).
        """
        next_refresh = time.monotonic() + SYS_REFRESH_S
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=RESUME_CHECK_S)
            if self._stop.is_set() or not self.client.is_connected:
                continue
            now = time.monotonic()
            if now >= next_refresh:
                # Subscribing again brings the counter's retained value: the broker may have
                # dropped its last update (QoS 0, sent only on a change) in the very flood.
                self.client.subscribe(gmqtt.Subscription(SYS_DROPPED, qos=0))
                next_refresh = now + SYS_REFRESH_S
            if not self._drops.due(now):
                continue
            self._drops.resumed()
            metrics.SESSION_RESUMES.inc()
            logger.warning(
                "mqtt session resume broker_dropped=%s inflight=%d reason=the broker dropped messages; "
                "Mosquitto 2.0.11 may hold QoS 1 messages of a live session unsent until the session "
                "reconnects, so the collector reconnects (duplicates are removed downstream)",
                self._drops.dropped,
                self._inflight,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=RESUME_DRAIN_S)
            if not self._stop.is_set():
                # a plain disconnect (no automatic reconnect behind it), then a connect of the
                # same session; gmqtt's reconnect() raced its own automatic one (two connects)
                with contextlib.suppress(Exception):
                    await self.client.disconnect()
                # let gmqtt handle the closed connection while the client is inactive, so its
                # automatic reconnect stands down
                await asyncio.sleep(RECONNECT_DELAY_S)
                await self._connect()

    async def _drain(self) -> None:
        """Let in-flight records reach Kafka so their PUBACKs go out before disconnecting."""
        if self._fatal is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=DRAIN_TIMEOUT_S)
        if self._inflight:
            logger.warning("shutdown with %d messages unacked; the broker keeps them", self._inflight)


def _bundle_sent(documents: int, waited_s: float) -> None:
    """Per acknowledged bundle: count it and its messages, and how long its first one waited."""
    metrics.BUNDLES.inc()
    metrics.BUNDLE_MESSAGES.observe(documents)
    metrics.ACK_SECONDS.observe(waited_s)
