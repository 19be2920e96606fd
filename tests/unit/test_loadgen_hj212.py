"""The HJ 212 bench's stations: frames byte for byte, and the ack/resend bookkeeping over real TCP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from simulator.hj212 import crc16, encode
from stationflow.bench.hj212bench import verdict
from stationflow.bench.hj212load import POLLUTANTS, Hj212Scenario, run_stations

END = datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)


def test_scenario_frames_are_minute_data_in_beijing_time_with_the_standard_crc() -> None:
    sc = Hj212Scenario(connections=3, minutes=4, end=END)
    assert sc.frames == 12 and sc.readings == 12 * len(POLLUTANTS)
    qn = sc.qn(int(END.timestamp() * 1000) + 7)
    assert qn == "20261130200030007"  # Asia/Shanghai is UTC+8, milliseconds last
    frames = {sc.frame(i, k, qn) for i in range(3) for k in range(4)}
    assert len(frames) == 12
    for frame in frames:
        seg = frame[6:-6]
        assert frame.startswith(b"##%04d" % len(seg)) and frame.endswith(b"%04X\r\n" % crc16(seg))
        assert seg.startswith(f"QN={qn};ST=22;CN=2051;PW=123456;MN=HJBENCH".encode())
        assert b";Flag=5;CP=&&DataTime=" in seg and seg.count(b"-Avg=") == len(POLLUTANTS)
        assert seg.count(b"-Flag=N") == len(POLLUTANTS) and seg.endswith(b"&&")
    # 11:56 UTC is the first record (4 minutes before 12:00)
    assert b"DataTime=20261130195600;" in sc.frame(0, 0, qn)
    assert b"DataTime=20261130195900;" in sc.frame(2, 3, qn)
    assert b";MN=HJBENCH00003;" in sc.frame(2, 3, qn)


Handler = Callable[[bytes, asyncio.StreamWriter, int], None]


def _ack_for(frame: bytes) -> bytes:
    fields = dict(f.split(b"=", 1) for f in frame[6:].split(b";CP=")[0].split(b";"))
    qn, pw, mn = (fields[k].decode() for k in (b"QN", b"PW", b"MN"))
    seg = f"QN={qn};ST=91;CN=9014;PW={pw};MN={mn};Flag=4;CP=&&&&"
    return encode(seg)


@asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[int]:
    """A loopback TCP server calling ``handler(frame, writer, n)`` for the n-th frame it reads."""
    seen = {"n": 0}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readuntil(b"\r\n"):
                seen["n"] += 1
                handler(line, writer, seen["n"])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_every_frame_acknowledged() -> None:
    sc = Hj212Scenario(connections=20, minutes=3, end=END)
    counts = {"sent": 0, "acked": 0}

    def count(s: int, a: int) -> None:
        counts["sent"] += s
        counts["acked"] += a

    async with _server(lambda frame, w, _n: w.write(_ack_for(frame))) as port:
        report = await run_stations("127.0.0.1", port, sc, on_frame=count)
    assert report.connections == 20 and report.connect_failures == 0
    assert report.frames_sent == report.frames_acked == 60 == counts["sent"] == counts["acked"]
    assert report.frames_resent == 0 and not report.errors
    assert len(report.latencies_ms) == 60 and report.frames_per_s > 0


async def test_a_lost_ack_is_resent_and_stale_acks_are_skipped() -> None:
    sc = Hj212Scenario(connections=1, minutes=2, end=END)

    def handler(frame: bytes, w: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            w.write(b"##garbage\r\n")  # not an ack: ignored
            return  # the first send gets no answer: the station resends
        w.write(_ack_for(frame))

    async with _server(handler) as port:
        report = await run_stations("127.0.0.1", port, sc, ack_timeout_s=0.2)
    assert (report.frames_sent, report.frames_acked, report.frames_resent) == (2, 2, 1)


async def test_a_station_never_acknowledged_is_reported() -> None:
    sc = Hj212Scenario(connections=2, minutes=2, end=END)

    def handler(frame: bytes, w: asyncio.StreamWriter, _n: int) -> None:
        if re.search(rb"MN=HJBENCH00001;", frame) is None:
            w.write(_ack_for(frame))

    async with _server(handler) as port:
        report = await run_stations("127.0.0.1", port, sc, ack_timeout_s=0.1)
    assert report.frames_acked == 2 and report.frames_sent == 3  # station 1 gave up on its first frame
    assert report.frames_resent == 3
    assert len(report.errors) == 1 and "HJBENCH00001" in report.errors[0] and "no 9014" in report.errors[0]


async def test_a_refused_connection_is_counted() -> None:
    async with _server(lambda *_: None) as port:
        pass  # closed again: nothing listens there now
    report = await run_stations("127.0.0.1", port, Hj212Scenario(connections=2, minutes=1, end=END))
    assert report.connections == 0 and report.connect_failures == 2 and len(report.errors) == 2


@pytest.mark.parametrize(
    ("acked", "stored", "fails"),
    [(10, 60, False), (10, 59, True), (9, 54, True)],
)
def test_verdict_fails_on_loss_or_missing_acks(acked: int, stored: int, fails: bool) -> None:
    result = {
        "connect_failures": 0,
        "frames_expected": 10,
        "frames_acked": acked,
        "readings_sent": acked * 6,
        "readings_stored": stored,
        "lost": acked * 6 - stored,
    }
    problems = verdict(result)
    assert bool(problems) is fails
    if stored < acked * 6:
        assert "not in InfluxDB" in problems[-1]
