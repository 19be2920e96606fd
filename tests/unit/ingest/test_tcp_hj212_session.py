"""The HJ 212 session over a real loopback socket with a fake Kafka producer (no broker)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ingest.decoders import hj212 as codec
from ingest.tcp.hj212 import Hj212Handler
from ingest.tcp.kafkaout import KafkaOut
from ingest.tcp.server import Context, TcpCollector
from ingest.tcp.settings import TcpSettings
from stationflow.contracts import DeviceRecord, Hj212Link, MetricSpec
from stationflow.registryview import RegistryView
from tests.unit.ingest.test_tcp_server import FakeProducer

CST = ZoneInfo("Asia/Shanghai")
MN = "SESS0001"
RECORD = DeviceRecord(
    device_id="air-sess",
    device_type="air_station",
    domain="air",
    metrics={
        "pm25": MetricSpec(metric="pm25", unit="ug/m3", hj212_code="a34004"),
        "pm10": MetricSpec(metric="pm10", unit="ug/m3", hj212_code="a34002"),
    },
    protocol="hj212",
    hj212=Hj212Link(mn=MN),
    updated_at=datetime(2026, 1, 1, tzinfo=UTC),
)


def now_qn() -> str:
    now = datetime.now(CST)
    return now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"


def data_time() -> str:
    return (datetime.now(CST) - timedelta(minutes=2)).strftime("%Y%m%d%H%M00")


@contextlib.asynccontextmanager
async def session(
    **overrides: Any,
) -> AsyncIterator[tuple[FakeProducer, asyncio.StreamReader, asyncio.StreamWriter]]:
    view = RegistryView()
    view.apply(RECORD.key(), RECORD.model_dump_json().encode())
    producer = FakeProducer()
    settings = TcpSettings(tcp_bind="127.0.0.1", topic_prefix="t.", **overrides)
    ctx = Context(settings, KafkaOut(producer), view)
    collector = TcpCollector(ctx, [Hj212Handler(ctx, port=0)])
    ((_, _, port),) = await collector.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield producer, reader, writer
    finally:
        writer.close()
        await collector.close()


async def read_frame(reader: asyncio.StreamReader, timeout: float = 2) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)


async def wait_sent(producer: FakeProducer, count: int) -> None:
    for _ in range(100):
        if len(producer.sent) >= count:
            return
        await asyncio.sleep(0.01)


async def test_9014_waits_for_the_kafka_ack() -> None:
    async with session() as (producer, reader, writer):
        producer.auto = False
        seg = f"QN={now_qn()};ST=22;CN=2051;PW=1;MN={MN};Flag=5;CP=&&DataTime={data_time()};a34004-Avg=3&&"
        frame = codec.encode_frame(seg)
        writer.write(frame)
        await wait_sent(producer, 1)
        assert len(producer.raw()) == 1
        with contextlib.suppress(TimeoutError):
            assert await read_frame(reader, 0.3) == b"", "9014 before the Kafka ack"
        producer.sent[0][3].set_result(None)
        assert await read_frame(reader) == codec.reply_9014(codec.parse_frame(frame))


async def test_fragmented_sub_packets_are_merged_and_each_acknowledged() -> None:
    async with session() as (producer, reader, writer):
        producer.auto = False
        qn, dt = now_qn(), data_time()
        head = f"QN={qn};ST=22;CN=2051;PW=1;MN={MN};Flag=7;PNUM=2;"
        first = codec.encode_frame(head + f"PNO=1;CP=&&DataTime={dt};a34004-Av&&")
        second = codec.encode_frame(head + "PNO=2;CP=&&g=3;a34002-Avg=4&&")
        writer.write(first)
        # a fragment held for reassembly is acknowledged at once (the station waits for it)
        assert await read_frame(reader) == codec.reply_9014(codec.parse_frame(first))
        assert producer.sent == []
        writer.write(second)
        await wait_sent(producer, 1)
        (batch,) = producer.raw()
        assert {r["metric"]: r["value"] for r in batch["readings"]} == {"pm25": 3.0, "pm10": 4.0}
        producer.sent[0][3].set_result(None)
        assert await read_frame(reader) == codec.reply_9014(codec.parse_frame(second))


async def test_strict_mode_refuses_a_deviation() -> None:
    async with session(hj212_strict=True) as (producer, reader, writer):
        seg = f"QN={now_qn()};ST=22;CN=2051;MN={MN};PW=1;Flag=5;CP=&&DataTime={data_time()};a34004-Avg=3&&"
        writer.write(codec.encode_frame(seg))  # MN before PW
        await wait_sent(producer, 1)
        (letter,) = producer.dead()
        assert letter["code"].startswith("hj212_")
        assert "mn_before_pw" in letter["reason"]
        assert letter["device_id"] == "air-sess"
        with contextlib.suppress(TimeoutError):
            assert await read_frame(reader, 0.3) == b""
    async with session() as (producer, reader, writer):  # liberal: stored and counted
        writer.write(codec.encode_frame(seg))
        await read_frame(reader)
        assert len(producer.raw()) == 1


async def test_replies_from_the_station_are_not_stored_or_answered() -> None:
    async with session() as (producer, reader, writer):
        writer.write(codec.encode_frame(f"QN={now_qn()};ST=91;CN=9012;PW=1;MN={MN};Flag=4;CP=&&ExeRtn=1&&"))
        seg = f"QN={now_qn()};ST=22;CN=2051;PW=1;MN={MN};Flag=5;CP=&&DataTime={data_time()};a34004-Avg=3&&"
        writer.write(codec.encode_frame(seg))
        reply = await read_frame(reader)
        assert b"CN=9014" in reply
        assert len(producer.sent) == 1


async def test_a_1011_upload_with_a_wrong_clock_gets_a_1012() -> None:
    async with session() as (producer, reader, writer):
        off = (datetime.now(CST) - timedelta(minutes=10)).strftime("%Y%m%d%H%M%S")
        frame = codec.encode_frame(f"QN={now_qn()};ST=22;CN=1011;PW=1;MN={MN};Flag=4;CP=&&SystemTime={off}&&")
        writer.write(frame)
        reply = await read_frame(reader)
        assert b"CN=1012" in reply
        assert producer.sent == []  # nothing to store, nothing refused


async def test_clock_drift_check_can_be_disabled() -> None:
    async with session(hj212_time_drift_s=0) as (_, reader, writer):
        off = (datetime.now(CST) - timedelta(minutes=10)).strftime("%Y%m%d%H%M%S")
        writer.write(
            codec.encode_frame(f"QN={now_qn()};ST=22;CN=1011;PW=1;MN={MN};Flag=4;CP=&&SystemTime={off}&&")
        )
        with contextlib.suppress(TimeoutError):
            assert await read_frame(reader, 0.3) == b""
