"""The protocol-independent TCP server with a toy line protocol and a fake Kafka producer.

The fake producer hands out futures the test resolves, so "the reply leaves only after Kafka
acknowledged" is observable without a broker. Real sockets on the loopback interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from ingest.errors import RejectedMessage
from ingest.tcp.kafkaout import KafkaOut
from ingest.tcp.server import Connection, Context, TcpCollector
from ingest.tcp.settings import TcpSettings
from stationflow.contracts import Reading
from stationflow.registryview import RegistryView

TS = datetime(2026, 1, 1, tzinfo=UTC)


class FakeProducer:
    """``send`` returns a future; ``auto`` resolves it at once, else the test does."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, asyncio.Future[Any]]] = []
        self.auto = True

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.auto:
            fut.set_result(None)
        self.sent.append((topic, key or b"", value, fut))
        return fut

    def dead(self) -> list[dict[str, Any]]:
        return [json.loads(v) for t, _, v, _ in self.sent if t.endswith("readings.deadletter")]

    def raw(self) -> list[dict[str, Any]]:
        return [json.loads(v) for t, _, v, _ in self.sent if t.endswith("readings.raw")]


class LineError(RejectedMessage):
    def __init__(self, payload: bytes) -> None:
        super().__init__("line_garbage", "line starts with '!'")
        self.payload = payload


class LineFramer:
    """Frames end with LF; a frame starting with '!' is reported as garbage."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> Sequence[bytes | RejectedMessage]:
        self.buf += data
        out: list[bytes | RejectedMessage] = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            out.append(LineError(line) if line.startswith(b"!") else line)
        return out

    def pending(self) -> int:
        return len(self.buf)

    def flush(self) -> bytes:
        data, self.buf = self.buf, b""
        return data


@dataclass
class LineSession:
    conn: Connection
    framer: LineFramer = field(default_factory=LineFramer)
    ticks: int = 0

    async def on_frame(self, raw: bytes, now: float) -> None:
        device = raw.split(b":", 1)[0].decode()
        self.conn.device_id = device
        reading = Reading(metric="m", value=1.0, ts=TS)
        await self.conn.publish(
            device, [reading], source="line", received_at=TS, replies=[("ok", b"OK " + raw + b"\n")]
        )

    async def tick(self, now: float) -> None:
        self.ticks += 1


@dataclass
class LineHandler:
    idle_timeout_s: float = 5.0
    name: str = "line"
    port: int = 0

    def session(self, conn: Connection) -> LineSession:
        return LineSession(conn)


@dataclass
class Harness:
    producer: FakeProducer
    collector: TcpCollector
    port: int

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


async def _start(**overrides: Any) -> Harness:
    idle = overrides.pop("idle", 5.0)
    settings = TcpSettings(tcp_bind="127.0.0.1", topic_prefix="t.", **overrides)
    producer = FakeProducer()
    ctx = Context(settings, KafkaOut(producer), RegistryView())
    collector = TcpCollector(ctx, [LineHandler(idle_timeout_s=idle)])
    bound = await collector.start()
    return Harness(producer, collector, bound[0][2])


@contextlib.asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[Harness]:
    h = await _start(**overrides)
    try:
        yield h
    finally:
        await h.collector.close()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running() as h:
        yield h


async def _read_line(reader: asyncio.StreamReader, timeout: float = 2.0) -> bytes:
    return await asyncio.wait_for(reader.readline(), timeout)


async def test_reply_only_after_kafka_ack(harness: Harness) -> None:
    harness.producer.auto = False
    reader, writer = await harness.connect()
    writer.write(b"d1:a\n")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await _read_line(reader, 0.3)
    assert len(harness.producer.sent) == 1
    harness.producer.sent[0][3].set_result(None)
    assert await _read_line(reader) == b"OK d1:a\n"
    assert harness.producer.raw()[0]["device_id"] == "d1"
    writer.close()


async def test_replies_keep_frame_order_when_acks_come_out_of_order(harness: Harness) -> None:
    harness.producer.auto = False
    reader, writer = await harness.connect()
    writer.write(b"d1:a\nd1:b\nd1:c\n")
    await writer.drain()
    for _ in range(50):
        if len(harness.producer.sent) == 3:
            break
        await asyncio.sleep(0.02)
    harness.producer.sent[2][3].set_result(None)
    harness.producer.sent[1][3].set_result(None)
    with pytest.raises(TimeoutError):
        await _read_line(reader, 0.2)
    harness.producer.sent[0][3].set_result(None)
    assert [await _read_line(reader) for _ in range(3)] == [b"OK d1:a\n", b"OK d1:b\n", b"OK d1:c\n"]
    writer.close()


async def test_a_connection_waiting_for_kafka_does_not_delay_another(harness: Harness) -> None:
    harness.producer.auto = False
    slow_reader, slow_writer = await harness.connect()
    slow_writer.write(b"slow:a\n")
    await slow_writer.drain()
    reader, writer = await harness.connect()
    writer.write(b"fast:a\n")
    await writer.drain()
    for _ in range(50):
        if len(harness.producer.sent) == 2:
            break
        await asyncio.sleep(0.02)
    fast = next(s for s in harness.producer.sent if s[1] == b"fast")
    fast[3].set_result(None)
    assert await _read_line(reader) == b"OK fast:a\n"
    harness.producer.auto = True
    next(s for s in harness.producer.sent if s[1] == b"slow")[3].set_result(None)
    assert await _read_line(slow_reader) == b"OK slow:a\n"
    slow_writer.close()
    writer.close()


async def test_framer_errors_are_dead_lettered_with_their_bytes(harness: Harness) -> None:
    reader, writer = await harness.connect()
    writer.write(b"!junk\nd1:a\n")
    await writer.drain()
    assert await _read_line(reader) == b"OK d1:a\n"
    dead = harness.producer.dead()
    assert [d["code"] for d in dead] == ["line_garbage"]
    assert dead[0]["payload_b64"] == "IWp1bms="  # b"!junk"
    assert dead[0]["source"].startswith("tcp:127.0.0.1:")
    writer.close()


async def test_idle_timeout_closes_and_dead_letters_the_partial_frame() -> None:
    async with running(idle=0.3) as harness:
        reader, writer = await harness.connect()
        writer.write(b"d1:a\nd1:par")
        await writer.drain()
        assert await _read_line(reader) == b"OK d1:a\n"
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the server
        dead = harness.producer.dead()
        assert [d["code"] for d in dead] == ["line_truncated"]
        assert dead[0]["payload_b64"] == "ZDE6cGFy"  # b"d1:par"
        assert dead[0]["device_id"] == "d1"
        assert "no byte for" in dead[0]["reason"]


async def test_idle_timeout_without_partial_frame_sends_nothing() -> None:
    async with running(idle=0.3) as harness:
        reader, _ = await harness.connect()
        assert await asyncio.wait_for(reader.read(), 2) == b""
        assert harness.producer.sent == []


async def test_slow_loris_is_cut_at_the_frame_timeout() -> None:
    async with running(tcp_frame_timeout_s=0.5) as harness:
        reader, writer = await harness.connect()

        async def trickle() -> None:
            with contextlib.suppress(OSError):
                for _ in range(100):  # one byte every 50 ms, never a complete frame
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.05)

        loop = asyncio.get_running_loop()
        started = loop.time()
        sender = asyncio.create_task(trickle())
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 3) == b""
        assert loop.time() - started < 2.5  # three frame timeouts in a row, then closed
        sender.cancel()
        dead = harness.producer.dead()
        assert [d["code"] for d in dead] == ["line_truncated"] * 3
        assert "within 0.5 s" in dead[0]["reason"]
        assert "connection closed" in dead[2]["reason"]
        assert "connection closed" not in dead[0]["reason"]


async def test_a_truncated_frame_is_dead_lettered_and_the_connection_keeps_working() -> None:
    async with running(tcp_frame_timeout_s=0.3) as harness:
        reader, writer = await harness.connect()
        writer.write(b"d1:a\nd1:cut")
        assert await _read_line(reader) == b"OK d1:a\n"
        await asyncio.sleep(0.6)
        dead = harness.producer.dead()
        assert [d["code"] for d in dead] == ["line_truncated"]
        assert dead[0]["payload_b64"] == "ZDE6Y3V0"  # b"d1:cut"
        writer.write(b"d1:b\n")
        assert await _read_line(reader) == b"OK d1:b\n"
        writer.close()


async def test_frames_over_the_rate_are_dead_lettered_not_dropped() -> None:
    async with running(tcp_frames_per_s=0.1, tcp_frames_burst=2) as harness:
        reader, writer = await harness.connect()
        writer.write(b"d1:0\n")  # identifies the station (until then the connection has its own bucket)
        assert await _read_line(reader) == b"OK d1:0\n"
        writer.write(b"d1:1\nd1:2\nd1:3\nd1:4\nd1:5\n")
        await writer.drain()
        assert [await _read_line(reader) for _ in range(2)] == [b"OK d1:1\n", b"OK d1:2\n"]
        for _ in range(50):
            if len(harness.producer.sent) == 5:
                break
            await asyncio.sleep(0.02)
        assert len(harness.producer.raw()) == 3
        # two refusals kept (the connection's dead-letter budget is the frame rate), the third counted
        dead = harness.producer.dead()
        assert [d["code"] for d in dead] == ["line_rate_limited"] * 2
        suppressed = REGISTRY.get_sample_value(
            "stationflow_tcp_deadletters_suppressed_total", {"protocol": "line", "code": "line_rate_limited"}
        )
        assert suppressed is not None and suppressed >= 1
        assert dead[0]["device_id"] == "d1"
        assert dead[0]["payload_b64"] == "ZDE6Mw=="  # b"d1:3": the refused frame itself
        # another station is not limited by d1's bucket
        reader2, writer2 = await harness.connect()
        writer2.write(b"d2:1\n")
        assert await _read_line(reader2) == b"OK d2:1\n"
        writer.close()
        writer2.close()


async def test_connections_over_the_limit_are_refused() -> None:
    async with running(tcp_max_connections=1) as harness:
        reader, writer = await harness.connect()
        writer.write(b"d1:a\n")
        assert await _read_line(reader) == b"OK d1:a\n"
        reader2, _ = await harness.connect()
        assert await asyncio.wait_for(reader2.read(), 2) == b""
        writer.close()
        await asyncio.sleep(0.1)
        reader3, writer3 = await harness.connect()  # the slot was released
        writer3.write(b"d1:b\n")
        assert await _read_line(reader3) == b"OK d1:b\n"
        writer3.close()


async def test_shutdown_writes_queued_replies_then_closes() -> None:
    h = await _start()
    h.producer.auto = False
    reader, writer = await h.connect()
    writer.write(b"d1:a\n")
    await writer.drain()
    await asyncio.sleep(0.1)
    closing = asyncio.create_task(h.collector.close())
    await asyncio.sleep(0.1)
    h.producer.sent[0][3].set_result(None)
    assert await _read_line(reader) == b"OK d1:a\n"
    await asyncio.wait_for(closing, 5)
    assert await asyncio.wait_for(reader.read(), 2) == b""


async def test_kafka_failure_stops_the_collector_without_replying() -> None:
    h = await _start()
    h.producer.auto = False
    reader, writer = await h.connect()
    writer.write(b"d1:a\n")
    await writer.drain()
    await asyncio.sleep(0.1)
    stop = asyncio.Event()
    running = asyncio.create_task(h.collector.run(stop))
    h.producer.sent[0][3].set_exception(RuntimeError("broker gone"))
    with pytest.raises(Exception, match="did not acknowledge"):
        await asyncio.wait_for(running, 15)
    assert await asyncio.wait_for(reader.read(), 2) == b""  # no OK


async def test_a_partial_frame_at_end_of_stream_is_dead_lettered(harness: Harness) -> None:
    reader, writer = await harness.connect()
    writer.write(b"d1:a\nd1:half")
    assert await _read_line(reader) == b"OK d1:a\n"
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 2) == b""
    dead = harness.producer.dead()
    assert [d["code"] for d in dead] == ["line_truncated"]
    assert "closed in the middle of a frame" in dead[0]["reason"]
    writer.close()


async def test_a_session_bug_is_dead_lettered_and_the_connection_carries_on(harness: Harness) -> None:
    reader, writer = await harness.connect()
    writer.write(b"\xff:boom\nd1:a\n")  # the toy session cannot decode a non-UTF-8 device id
    assert await _read_line(reader) == b"OK d1:a\n"
    dead = harness.producer.dead()
    assert [d["code"] for d in dead] == ["internal_error"]
    writer.close()
