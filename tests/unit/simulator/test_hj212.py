"""The simulated HJ 212 station: builders against the spec's frames, the loop against a fake center."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.fleet import AirStation, Hj212Wire, WaterStation
from simulator.hj212 import (
    AIR_CODES,
    WATER_CODES,
    Hj212Station,
    ReplyReader,
    crc16,
    format_value,
    station_values,
    upload_frame,
)
from simulator.link import BEIJING, Backoff, StationClock

MN = "440300A0000000000000A001"
PW = "654321"
SPEC = AirStation("air-hj-test", link=Hj212Wire(MN, PW))
Fields = dict[str, str]
Writer = asyncio.StreamWriter


def reference_crc(data: bytes) -> int:
    """protocols.md §1.5, typed again from the spec: the byte meets the register's high byte."""
    reg = 0xFFFF
    for b in data:
        reg = (reg >> 8) ^ b
        for _ in range(8):
            lsb = reg & 1
            reg >>= 1
            if lsb:
                reg ^= 0xA001
    return reg


def build(segment: str) -> bytes:
    data = segment.encode()
    return b"##%04d%s%04X\r\n" % (len(data), data, reference_crc(data))


FRAME = re.compile(rb"##(\d{4})(.*?)([0-9A-F]{4})\r\n", re.S)


def parse(frame: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """Check length and CRC, return (header, cp items) of one frame."""
    m = FRAME.fullmatch(frame)
    assert m, frame
    seg = m.group(2)
    assert int(m.group(1)) == len(seg)
    assert int(m.group(3), 16) == reference_crc(seg)
    text = seg.decode()
    head, _, cp = text.partition("CP=&&")
    assert cp.endswith("&&")
    header = dict(kv.split("=", 1) for kv in head.rstrip(";").split(";"))
    items = dict(kv.split("=", 1) for kv in re.split("[;,]", cp[:-2]) if kv)
    return header, items


# ------------------------------------------------------------------ builders


def test_crc_check_value_and_not_modbus() -> None:
    assert crc16(b"123456789") == 0x2F80  # the spec's check value (Modbus would be 4B37)


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=300))
def test_crc_matches_the_reference_algorithm(data: bytes) -> None:
    assert crc16(data) == reference_crc(data)
    assert crc16(data) & 0xFF in {0x00, 0x01, 0x40, 0x41, 0x80, 0x81, 0xC0, 0xC1}


def test_builder_reproduces_the_verified_air_minute_frame() -> None:
    """protocols.md §1.6-B, byte for byte (length 0411, CRC D641)."""
    expected = (
        b"##0411QN=20220513162608370;ST=22;CN=2051;PW=123456;MN=JLYP01_AIR01_0001;Flag=4;CP=&&"
        b"DataTime=20220513162600;a21004-Avg=4,a21004-Flag=N;a05024-Avg=63,a05024-Flag=N;"
        b"a21026-Avg=6,a21026-Flag=N;a21005-Avg=0.427,a21005-Flag=N;a34004-Avg=14,a34004-Flag=N;"
        b"a34002-Avg=31,a34002-Flag=N;a01007-Avg=1,a01007-Flag=N;a01008-Avg=11,a01008-Flag=N;"
        b"a01001-Avg=17,a01001-Flag=N;a01002-Avg=85,a01002-Flag=N;a01006-Avg=95,a01006-Flag=N&&D641\r\n"
    )
    values = {
        "a21004": 4.0,
        "a05024": 63.0,
        "a21026": 6.0,
        "a21005": 0.427,
        "a34004": 14.0,
        "a34002": 31.0,
        "a01007": 1.0,
        "a01008": 11.0,
        "a01001": 17.0,
        "a01002": 85.0,
        "a01006": 95.0,
    }
    frame = upload_frame(
        mn="JLYP01_AIR01_0001",
        pw="123456",
        cn="2051",
        data_time=datetime(2022, 5, 13, 16, 26),  # noqa: DTZ001 - station-local by the standard
        values=values,
        suffix="Avg",
        qn="20220513162608370",
        flag=4,
    )
    assert frame == expected


def test_upload_frame_fields_flags_and_local_time() -> None:
    t = datetime(2026, 7, 1, 2, 3, 4, tzinfo=UTC)  # 10:03:04 in Beijing
    frame = upload_frame(
        mn=MN,
        pw="123456",
        cn="2011",
        data_time=t,
        values={"a34004": 35.25, "a21005": 0.5},
        flags={"a21005": "C"},
        qn="20260701100304123",
        st="22",
    )
    header, items = parse(frame)
    assert header == {
        "QN": "20260701100304123",
        "ST": "22",
        "CN": "2011",
        "PW": "123456",
        "MN": MN,
        "Flag": "5",
    }
    assert items == {
        "DataTime": "20260701100304",
        "a34004-Rtd": "35.25",
        "a34004-Flag": "N",
        "a21005-Rtd": "0.5",
        "a21005-Flag": "C",
    }


def test_a_segment_over_1024_bytes_is_refused() -> None:
    values = {f"a{i:05d}": 123456.789 for i in range(60)}
    with pytest.raises(ValueError, match="exceeds 1024"):
        upload_frame(mn=MN, pw="1", cn="2011", data_time=datetime(2026, 1, 1), values=values)  # noqa: DTZ001


@pytest.mark.parametrize(("value", "text"), [(14.0, "14"), (0.427, "0.427"), (-0.0001, "0"), (12.5, "12.5")])
def test_values_are_written_as_stations_write_them(value: float, text: str) -> None:
    assert format_value(value) == text


def test_minute_values_cover_the_models_codes_with_consistent_statistics() -> None:
    start = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)
    air = station_values(SPEC, start, 60.0)
    assert set(air) == set(AIR_CODES.values())
    for v in air.values():
        assert isinstance(v["Min"], float) and isinstance(v["Max"], float) and isinstance(v["Avg"], float)
        assert v["Min"] <= v["Avg"] <= v["Max"]
        assert v["Flag"] == "N"
    assert station_values(SPEC, start, 60.0) == air  # resends repeat the values
    water = WaterStation("water-hj-test", link=Hj212Wire(mn="W1", st="21"))
    calibrating = datetime(2026, 7, 1, 2, 1, tzinfo=BEIJING)
    values = station_values(water, calibrating, 60.0)
    assert set(values) == set(WATER_CODES.values())
    assert {v["Flag"] for v in values.values()} == {"C"}


def test_reply_reader_takes_the_spec_frames_from_a_stream_with_junk() -> None:
    ack = b"##0083QN=20230803171130538;ST=91;CN=9014;PW=123456;MN=88888880000001234567;Flag=4;CP=&&&&5D80\r\n"
    req = (
        b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
        b"CP=&&RtdInterval=30&&1C80\r\n"
    )
    bad = ack.replace(b"5D80", b"5D81")
    stream = b"AT+OK\r\n" + ack + b"#" + bad + req
    reader = ReplyReader()
    got = [f for i in range(0, len(stream), 7) for f in reader.feed(stream[i : i + 7])]
    assert [f.cn for f in got] == ["9014", "1062"]
    assert got[0].qn == "20230803171130538" and not got[0].wants_answer
    assert got[1].cp == {"RtdInterval": "30"} and got[1].wants_answer
    assert reader.bad >= 1


# ------------------------------------------------------------------ the station against a fake center


@dataclass
class FakeCenter:
    """An HJ 212 center in a few lines: records frames per connection, answers by a policy."""

    answer: Callable[[FakeCenter, asyncio.StreamWriter, dict[str, str], dict[str, str]], Awaitable[None]]
    connections: list[list[tuple[dict[str, str], dict[str, str]]]] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames: list[tuple[dict[str, str], dict[str, str]]] = []
        self.connections.append(frames)
        buf = b""
        try:
            while data := await reader.read(4096):
                buf += data
                while m := FRAME.search(buf):
                    buf = buf[m.end() :]
                    header, items = parse(m.group(0))
                    frames.append((header, items))
                    await self.answer(self, writer, header, items)
        except ConnectionError:
            pass
        finally:
            writer.close()

    def uploads(self) -> list[tuple[dict[str, str], dict[str, str]]]:
        return [f for conn in self.connections for f in conn if f[0]["CN"] in ("2011", "2051", "2061")]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


def ack_of(header: dict[str, str]) -> bytes:
    return build(f"QN={header['QN']};ST=91;CN=9014;PW={header['PW']};MN={header['MN']};Flag=4;CP=&&&&")


async def always_ack(center: FakeCenter, writer: Writer, h: Fields, _i: Fields) -> None:
    if h["CN"] in ("2011", "2051", "2061") and int(h["Flag"]) & 1:
        writer.write(ack_of(h))
        await writer.drain()


NEVER_S = 1e12  # a report period whose next boundary is some 30,000 years away


async def run_for(station: Hj212Station, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(station.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 5)


def station(port: int, **kw: object) -> Hj212Station:
    # No minute or hour report unless a test asks for one: they fall on the wall clock's minutes
    # and hours, and a minute boundary inside a 1.3 s run added a CN 2051 frame (failed CI once).
    opts: dict[str, object] = {
        "interval_s": 0.2,
        "ack_timeout_s": 2.0,
        "backoff": Backoff(0.05, 0.2),
        "minute_s": NEVER_S,
        "hour_s": NEVER_S,
    }
    opts.update(kw)
    return Hj212Station(SPEC, host="127.0.0.1", port=port, **opts)  # type: ignore[arg-type]


async def test_uploads_real_time_data_and_counts_the_acks() -> None:
    center = FakeCenter(always_ack)
    await center.start()
    s = station(center.port)
    await run_for(s, 1.3)
    await center.stop()
    uploads = center.uploads()
    assert len(uploads) >= 4
    assert s.counters.acked == s.counters.uploads == len(uploads)
    assert s.counters.lost == s.counters.retries == 0
    assert s.counters.readings == len(AIR_CODES) * len(uploads)
    qns = [h["QN"] for h, _ in uploads]
    assert len(set(qns)) == len(qns)
    for header, items in uploads:
        assert header["CN"] == "2011" and header["Flag"] == "5" and header["ST"] == "22"
        assert header["MN"] == MN and header["PW"] == "654321"
        assert {f"{code}-Rtd" for code in AIR_CODES.values()} <= set(items)
        assert {items[f"{code}-Flag"] for code in AIR_CODES.values()} == {"N"}
        data_time = datetime.strptime(items["DataTime"], "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
        assert abs((data_time - datetime.now(UTC)).total_seconds()) < 10


async def test_minute_and_hour_data_carry_avg_min_max() -> None:
    center = FakeCenter(always_ack)
    await center.start()
    s = station(center.port, interval_s=5.0, minute_s=0.25, hour_s=1.0)
    await run_for(s, 1.6)
    await center.stop()
    by_cn: dict[str, list[dict[str, str]]] = {}
    for header, items in center.uploads():
        by_cn.setdefault(header["CN"], []).append(items)
    assert len(by_cn["2051"]) >= 3 and len(by_cn["2061"]) >= 1
    for items in by_cn["2051"] + by_cn["2061"]:
        for code in AIR_CODES.values():
            low, avg, high = (float(items[f"{code}-{s}"]) for s in ("Min", "Avg", "Max"))
            assert low <= avg <= high
    assert s.counters.acked == s.counters.uploads


async def test_resends_the_same_frame_until_the_9014_comes() -> None:
    seen: dict[str, int] = {}

    async def ack_third(center: FakeCenter, writer: Writer, h: Fields, i: Fields) -> None:
        seen[h["QN"]] = seen.get(h["QN"], 0) + 1
        if seen[h["QN"]] == 3:
            await always_ack(center, writer, h, i)

    center = FakeCenter(ack_third)
    await center.start()
    s = station(center.port, interval_s=0.5, ack_timeout_s=0.25)
    await run_for(s, 1.6)
    await center.stop()
    assert len(center.connections) == 1
    assert s.counters.acked >= 1 and s.counters.lost == 0
    acked = [qn for qn, n in seen.items() if n >= 3]
    assert len(acked) == s.counters.acked
    assert all(seen[qn] == 3 for qn in acked)  # the same QN three times, no fourth once acknowledged
    assert s.counters.retries >= 2 * s.counters.acked


async def test_after_four_unanswered_sends_it_reconnects() -> None:
    async def silent(*_: object) -> None:
        return None

    center = FakeCenter(silent)
    await center.start()
    s = station(center.port, interval_s=0.05, ack_timeout_s=0.1)
    await run_for(s, 1.2)
    await center.stop()
    assert len(center.connections) >= 2
    first = center.connections[0]
    assert len(first) == 4  # 1 send + 3 retries, then the link is dropped
    assert len({h["QN"] for h, _ in first}) == 1
    assert s.counters.lost >= 1 and s.counters.acked == 0
    assert s.counters.connects == len(center.connections)


async def test_reconnects_with_back_off_when_the_center_hangs_up() -> None:
    async def ack_then_close(center: FakeCenter, writer: Writer, h: Fields, i: Fields) -> None:
        await always_ack(center, writer, h, i)
        writer.close()

    center = FakeCenter(ack_then_close)
    await center.start()
    s = station(center.port, interval_s=0.1)
    await run_for(s, 1.2)
    await center.stop()
    assert len(center.connections) >= 3
    assert all(len(conn) == 1 for conn in center.connections[:-1])
    assert s.counters.acked >= len(center.connections) - 1


async def test_the_station_reconnects_when_the_center_comes_up_late() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    s = station(port)
    stop = asyncio.Event()
    task = asyncio.create_task(s.run(stop))
    await asyncio.sleep(0.3)  # refused meanwhile
    center = FakeCenter(always_ack)
    center.server = await asyncio.start_server(center._serve, "127.0.0.1", port)
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.wait_for(task, 5)
    await center.stop()
    assert s.counters.connects == 1 and s.counters.acked >= 1


async def test_a_1012_is_answered_9011_then_9012_and_sets_the_clock() -> None:
    requests: list[str] = []

    async def set_clock(center: FakeCenter, writer: Writer, h: Fields, i: Fields) -> None:
        await always_ack(center, writer, h, i)
        station_time = datetime.strptime(h["QN"][:14], "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
        drift = abs((station_time - datetime.now(UTC)).total_seconds())
        if h["CN"] == "2011" and drift > 60 and not requests:
            qn = "20260101000000001"
            requests.append(qn)
            now = datetime.now(BEIJING)
            writer.write(
                build(
                    f"QN={qn};ST=22;CN=1012;PW={h['PW']};MN={h['MN']};Flag=5;CP=&&SystemTime={now:%Y%m%d%H%M%S}&&"
                )
            )
            await writer.drain()

    center = FakeCenter(set_clock)
    await center.start()
    s = station(center.port, clock=StationClock(-3600.0))  # an hour slow
    await run_for(s, 1.2)
    await center.stop()
    frames = center.connections[0]
    answers = [(h, i) for h, i in frames if h["CN"] in ("9011", "9012")]
    assert [(h["CN"], h["QN"], h["ST"], h["Flag"]) for h, _ in answers] == [
        ("9011", requests[0], "91", "4"),
        ("9012", requests[0], "91", "4"),
    ]
    assert answers[0][1] == {"QnRtn": "1"} and answers[1][1] == {"ExeRtn": "1"}
    assert s.counters.time_sets == 1
    assert abs(s.clock.offset_s) < 2.0
    last = center.uploads()[-1][0]["QN"]
    assert abs(datetime.strptime(last[:14], "%Y%m%d%H%M%S").replace(tzinfo=BEIJING) - datetime.now(UTC)) < (
        timedelta(seconds=5)
    )


async def test_an_unsupported_request_is_rejected_with_qnrtn_2() -> None:
    async def ask(center: FakeCenter, writer: Writer, h: Fields, i: Fields) -> None:
        await always_ack(center, writer, h, i)
        if h["CN"] == "2011" and len(center.uploads()) == 1:
            writer.write(
                build(f"QN=20260101000000002;ST=22;CN=1062;PW=x;MN={h['MN']};Flag=5;CP=&&RtdInterval=30&&")
            )

    center = FakeCenter(ask)
    await center.start()
    s = station(center.port)
    await run_for(s, 0.8)
    await center.stop()
    answers = [(h["CN"], i) for h, i in center.connections[0] if h["CN"].startswith("9")]
    assert answers == [("9011", {"QnRtn": "2"})]


async def test_stop_does_not_wait_out_the_retries() -> None:
    async def silent(*_: object) -> None:
        return None

    center = FakeCenter(silent)
    await center.start()
    s = station(center.port, interval_s=0.1, ack_timeout_s=10.0)
    stop = asyncio.Event()
    task = asyncio.create_task(s.run(stop))
    await asyncio.sleep(0.4)
    stop.set()
    await asyncio.wait_for(task, 3.0)  # the 2 s grace for the last 9014, not 4 x 10 s
    await center.stop()
    assert s.counters.uploads == 1 and s.counters.acked == s.counters.lost == s.counters.retries == 0


@settings(max_examples=100)
@given(
    st.dictionaries(
        st.sampled_from(sorted(AIR_CODES.values())),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        min_size=1,
    )
)
def test_upload_values_round_trip_to_three_decimals(values: dict[str, float]) -> None:
    frame = upload_frame(mn=MN, pw=PW, cn="2011", data_time=datetime(2026, 1, 1), values=values)  # noqa: DTZ001
    _, items = parse(frame)
    for code, value in values.items():
        assert float(items[f"{code}-Rtd"]) == pytest.approx(value, abs=0.0005)


async def test_uploads_due_together_get_distinct_qns() -> None:
    s = station(1, interval_s=1.0, minute_s=1.0, hour_s=1.0)
    s._next_rtd = s._next_minute = s._next_hour = s.clock.utc().timestamp() - 0.5  # all three due now
    uploads = s._due()
    assert [u.cn for u in uploads] == ["2011", "2051", "2061"]
    assert len({u.qn for u in uploads}) == 3
    assert [u.qn for u in uploads] == sorted(u.qn for u in uploads)
