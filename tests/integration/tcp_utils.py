"""Helpers for the TCP collector tests: frames built from the specs, an in-process collector, a topic tail.

Frames are built here independently of the decoders (CRC algorithms written out from
protocols.md §1.5 and §2.6), so a reply checked "byte for byte" is checked against the spec,
not against the encoder that produced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ingest.tcp.hj212 import Hj212Handler
from ingest.tcp.kafkaout import KafkaOut
from ingest.tcp.server import Context, ProtocolHandler, TcpCollector
from ingest.tcp.settings import TcpSettings
from stationflow import topics
from stationflow.contracts import DeviceRecord
from stationflow.registryview import RegistryFollower, RegistryView
from stationflow.topics import ensure_topics

# -- HJ 212 (protocols.md §1.2, §1.5) --------------------------------------------------------


def hj212_crc16(data: bytes) -> int:
    """The standard's CRC (§1.5), as written in the spec."""
    reg = 0xFFFF
    for b in data:
        reg = (reg >> 8) ^ b
        for _ in range(8):
            lsb = reg & 1
            reg >>= 1
            if lsb:
                reg ^= 0xA001
    return reg


def modbus_crc16(data: bytes) -> int:
    """CRC-16/MODBUS (reflected 0xA001, init 0xFFFF)."""
    reg = 0xFFFF
    for b in data:
        reg ^= b
        for _ in range(8):
            lsb = reg & 1
            reg >>= 1
            if lsb:
                reg ^= 0xA001
    return reg


def hj212_frame(segment: str, crc: str = "hj212") -> bytes:
    """``##dddd<segment>XXXX\\r\\n`` with the given CRC variant."""
    seg = segment.encode()
    if crc == "hj212":
        value = hj212_crc16(seg)
    elif crc == "modbus":
        value = modbus_crc16(seg)
    else:
        m = modbus_crc16(seg)
        value = ((m & 0xFF) << 8) | (m >> 8)
    return b"##%04d%s%04X\r\n" % (len(seg), seg, value)


def qn_of(t: datetime) -> str:
    """QN for a local time: YYYYMMDDhhmmsszzz."""
    return t.strftime("%Y%m%d%H%M%S") + f"{t.microsecond // 1000:03d}"


def hj212_data(
    *,
    mn: str,
    pw: str,
    cn: str,
    data_time: datetime,
    values: str,
    flag: int = 5,
    qn: str | None = None,
    st: str = "22",
) -> tuple[bytes, str]:
    """A data upload and its QN; ``data_time`` is station-local."""
    qn = qn or qn_of(datetime.now(data_time.tzinfo))  # the station's clock when sending
    segment = (
        f"QN={qn};ST={st};CN={cn};PW={pw};MN={mn};Flag={flag};"
        f"CP=&&DataTime={data_time.strftime('%Y%m%d%H%M%S')};{values}&&"
    )
    return hj212_frame(segment), qn


def hj212_9014(*, qn: str, pw: str, mn: str) -> bytes:
    """The 9014 the standard requires (§1.6 C, Table C.14)."""
    return hj212_frame(f"QN={qn};ST=91;CN=9014;PW={pw};MN={mn};Flag=4;CP=&&&&")


# -- SL 651 (protocols.md §2.3, §2.6) ---------------------------------------------------------


def bcd(text: str) -> bytes:
    """Digits as packed BCD."""
    return bytes.fromhex(text)


def sl651_frame(
    *,
    address: str,
    fc: int,
    body: bytes,
    center: int = 1,
    password: str = "A000",  # noqa: S107 - the password of the spec's example frames
    end: int = 0x03,
) -> bytes:
    """An uplink HEX/BCD frame (single packet, STX) with its CRC (high byte first)."""
    head = b"\x7e\x7e" + bytes([center]) + bytes.fromhex(address) + bytes.fromhex(password) + bytes([fc])
    frame = head + (len(body) & 0x0FFF).to_bytes(2, "big") + b"\x02" + body + bytes([end])
    return frame + modbus_crc16(frame).to_bytes(2, "big")


def sl651_report_body(
    *, serial: int, sent: datetime, address: str, observed: datetime, elements: bytes
) -> bytes:
    """Serial, send time, station (F1F1 + address + class 'P'), observation time (F0F0) and elements."""
    return (
        serial.to_bytes(2, "big")
        + bcd(sent.strftime("%y%m%d%H%M%S"))
        + b"\xf1\xf1"
        + bytes.fromhex(address)
        + b"\x50"
        + b"\xf0\xf0"
        + bcd(observed.strftime("%y%m%d%H%M"))
        + elements
    )


# -- the collector in-process -------------------------------------------------------------------


async def publish_records(bootstrap: str, topic: str, records: list[DeviceRecord]) -> None:
    """Put device records on the registry topic."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(topic, record.model_dump_json().encode(), key=record.key())
    finally:
        await producer.stop()


@dataclass
class TopicTail:
    """Every value of some topics, read from the beginning in the background, as JSON."""

    bootstrap: str
    names: list[str]
    values: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.names, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        self.values = {n: [] for n in self.names}

        async def run() -> None:
            try:
                while True:
                    batch = await consumer.getmany(timeout_ms=200)
                    for tp, records in batch.items():
                        self.values[tp.topic].extend(json.loads(r.value) for r in records)
            finally:
                await consumer.stop()

        self._task = asyncio.create_task(run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(
        self, topic: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.values[topic]):
                return True
            await asyncio.sleep(0.05)
        return predicate(self.values[topic])


@dataclass
class Running:
    """An in-process TCP collector on ephemeral ports, and a tail of readings.raw / readings.deadletter."""

    settings: TcpSettings
    collector: TcpCollector
    hj212_port: int
    sl651_port: int
    tail: TopicTail
    raw_topic: str
    dead_topic: str

    def raw(self, device_id: str) -> list[dict[str, Any]]:
        return [v for v in self.tail.values[self.raw_topic] if v["device_id"] == device_id]

    def dead(self, code: str | None = None) -> list[dict[str, Any]]:
        return [v for v in self.tail.values[self.dead_topic] if code is None or v["code"] == code]

    async def wait_raw(self, device_id: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        await self.tail.wait(self.raw_topic, lambda _: len(self.raw(device_id)) >= count, timeout)
        return self.raw(device_id)

    async def wait_dead(self, code: str, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        await self.tail.wait(self.dead_topic, lambda _: len(self.dead(code)) >= count, timeout)
        return self.dead(code)


@contextlib.asynccontextmanager
async def running_collector(
    bootstrap: str,
    prefix: str,
    *,
    records: list[DeviceRecord],
    protocols: tuple[str, ...] = ("hj212", "sl651"),
    **overrides: Any,
) -> AsyncIterator[Running]:
    """Register ``records``, then run the collector until the block ends (port 0 = a protocol not run)."""
    settings = TcpSettings(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        tcp_bind="127.0.0.1",
        tcp_max_past_s=overrides.pop("tcp_max_past_s", 20 * 365 * 86400.0),
        **overrides,
    )
    await ensure_topics(settings)
    await publish_records(bootstrap, settings.topic(topics.REGISTRY), records)
    view = RegistryView()
    follower = asyncio.create_task(RegistryFollower(settings, view).run())
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=settings.tcp_kafka_linger_ms
    )
    await producer.start()
    tail = TopicTail(bootstrap, [settings.topic(topics.RAW), settings.topic(topics.DEADLETTER)])
    await tail.start()
    try:
        await asyncio.wait_for(view.ready.wait(), 30)
        ctx = Context(settings, KafkaOut(producer), view)
        handlers: list[ProtocolHandler] = []
        if "hj212" in protocols:
            handlers.append(Hj212Handler(ctx, port=0))
        if "sl651" in protocols:
            from ingest.tcp.sl651 import Sl651Handler  # only the SL 651 tests need it

            handlers.append(Sl651Handler(ctx, port=0))
        collector = TcpCollector(ctx, handlers)
        bound = {name: port for name, _, port in await collector.start()}
        try:
            yield Running(
                settings,
                collector,
                bound.get("hj212", 0),
                bound.get("sl651", 0),
                tail,
                settings.topic(topics.RAW),
                settings.topic(topics.DEADLETTER),
            )
        finally:
            await collector.close()
    finally:
        await tail.stop()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower
        await producer.stop()


async def exchange(port: int, frame: bytes, *, expect: int, timeout: float = 10) -> bytes:
    """Open a connection, send one frame, read ``expect`` bytes of reply, close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(expect), timeout) if expect else b""
    finally:
        writer.close()
