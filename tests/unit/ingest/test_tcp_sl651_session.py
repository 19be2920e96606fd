"""The SL 651 session over a real loopback socket with a fake Kafka producer (no broker)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ingest.decoders import sl651 as codec
from ingest.tcp.kafkaout import KafkaOut
from ingest.tcp.server import Context, TcpCollector
from ingest.tcp.settings import TcpSettings
from ingest.tcp.sl651 import Sl651Handler
from stationflow.contracts import DeviceRecord, MetricSpec, Sl651Link
from stationflow.registryview import RegistryView
from tests.unit.ingest.test_tcp_server import FakeProducer

CST = ZoneInfo("Asia/Shanghai")
ADDRESS = "0012345678"
RTU_PW = "0000"  # not checked: the record holds no password hash
RECORD = DeviceRecord(
    device_id="rtu-sess",
    device_type="rain_level_rtu",
    domain="hydro",
    metrics={
        "rain": MetricSpec(metric="rain", unit="mm", sl651_code="PN05"),
        "level": MetricSpec(metric="level", unit="m", sl651_code="Z"),
    },
    protocol="sl651",
    sl651=Sl651Link(address=ADDRESS),
    updated_at=datetime(2026, 1, 1, tzinfo=UTC),
)


def body(serial: int, elements: bytes = bytes.fromhex("2219000005392300001234")) -> bytes:
    now = datetime.now(CST)
    observed = (now - timedelta(minutes=5)).replace(second=0, microsecond=0)
    return (
        serial.to_bytes(2, "big")
        + bytes.fromhex(now.strftime("%y%m%d%H%M%S"))
        + b"\xf1\xf1"
        + bytes.fromhex(ADDRESS)
        + b"\x48\xf0\xf0"
        + bytes.fromhex(observed.strftime("%y%m%d%H%M"))
        + elements
    )


def frame(fc: int, payload: bytes, **kw: Any) -> bytes:
    return codec.encode_hex_frame(center=1, address=ADDRESS, password=RTU_PW, fc=fc, body=payload, **kw)


@contextlib.asynccontextmanager
async def session() -> AsyncIterator[tuple[FakeProducer, asyncio.StreamReader, asyncio.StreamWriter]]:
    view = RegistryView()
    view.apply(RECORD.key(), RECORD.model_dump_json().encode())
    producer = FakeProducer()
    ctx = Context(TcpSettings(tcp_bind="127.0.0.1", topic_prefix="t."), KafkaOut(producer), view)
    collector = TcpCollector(ctx, [Sl651Handler(ctx, port=0)])
    ((_, _, port),) = await collector.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield producer, reader, writer
    finally:
        writer.close()
        await collector.close()


async def reply(reader: asyncio.StreamReader, timeout: float = 2) -> bytes:
    """One downlink HEX frame (length from its length word)."""
    head = await asyncio.wait_for(reader.readexactly(14), timeout)
    length = int.from_bytes(head[11:13]) & 0x0FFF
    return head + await asyncio.wait_for(reader.readexactly(length + 3), timeout)


async def silent(reader: asyncio.StreamReader, wait: float = 0.3) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(1), wait)
        return False
    return True


async def test_confirmation_waits_for_the_kafka_ack() -> None:
    async with session() as (producer, reader, writer):
        producer.auto = False
        writer.write(frame(0x32, body(5)))
        for _ in range(100):
            if producer.sent:
                break
            await asyncio.sleep(0.01)
        assert await silent(reader)
        producer.sent[0][3].set_result(None)
        got = codec.parse_frame(await reply(reader))
        assert (got.upstream, got.fc, got.end, got.body[:2]) == (False, 0x32, 0x04, b"\x00\x05")
        assert {r["metric"]: r["value"] for r in producer.raw()[0]["readings"]} == {
            "rain": 0.5,
            "level": 1.234,
        }


async def test_multi_packet_report_is_confirmed_once_when_complete() -> None:
    async with session() as (producer, reader, writer):
        whole = body(9)
        writer.write(frame(0x33, whole[:10], packet=(2, 1)))
        assert await silent(reader)  # M3: nothing until every packet is in
        writer.write(frame(0x33, whole[10:], packet=(2, 2)))
        got = codec.parse_frame(await reply(reader))
        assert (got.fc, got.end, got.packet) == (0x33, 0x04, (2, 2))
        (batch,) = producer.raw()
        assert {r["metric"] for r in batch["readings"]} == {"rain", "level"}


async def test_etb_frames_get_an_ack_and_the_last_one_eot() -> None:
    async with session() as (producer, reader, writer):
        writer.write(frame(0x34, body(11), end=codec.ETB))
        assert codec.parse_frame(await reply(reader)).end == codec.ACK
        writer.write(frame(0x34, body(12, bytes.fromhex("392300001300"))))
        assert codec.parse_frame(await reply(reader)).end == codec.EOT
        assert len(producer.raw()) == 2


async def test_a_report_of_missing_values_is_confirmed_not_stored() -> None:
    async with session() as (producer, reader, writer):
        writer.write(frame(0x32, body(13, bytes.fromhex("3923FFFFFFFF"))))
        assert codec.parse_frame(await reply(reader)).end == codec.EOT
        assert producer.sent == []
