"""The HJ 212 TCP collector against a real Tansu: readings, replies byte for byte, refusals, isolation.

The collector runs in-process on ephemeral ports (``tcp_utils.running_collector``); stations
are asyncio stream clients sending frames built from protocols.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from stationflow.contracts import DeviceRecord, Hj212Link, MetricSpec
from stationflow.passwords import hash_password
from stationflow.stack.components import Component
from tests.integration.tcp_utils import (
    hj212_9014,
    hj212_data,
    hj212_frame,
    qn_of,
    running_collector,
)

CST = ZoneInfo("Asia/Shanghai")
HJ = ("hj212",)
PW = "123456"
PW_HASH = hash_password(PW)
AIR_METRICS = {
    "pm25": MetricSpec(metric="pm25", unit="ug/m3", hj212_code="a34004"),
    "pm10": MetricSpec(metric="pm10", unit="ug/m3", hj212_code="a34002"),
    "co": MetricSpec(metric="co", unit="mg/m3", hj212_code="a21005"),
}


def air(device_id: str, mn: str, **link: object) -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        device_type="air_station",
        domain="air",
        metrics=AIR_METRICS,
        protocol="hj212",
        hj212=Hj212Link(mn=mn, password_hash=PW_HASH, **link),
        updated_at=datetime.now(UTC),
    )


def minute(offset_min: int = 2) -> datetime:
    """Start of a recent minute, station-local."""
    return (datetime.now(CST) - timedelta(minutes=offset_min)).replace(second=0, microsecond=0)


def segment_fields(reply: bytes) -> dict[str, str]:
    """Header fields and CP items of a reply frame (test-side parsing, no decoder)."""
    text = reply[6:-6].decode()
    head, _, cp = text.partition("CP=&&")
    fields = dict(item.split("=", 1) for item in head.rstrip(";").split(";") if item)
    for item in cp.rstrip("&").split(";"):
        if "=" in item:
            key, value = item.split("=", 1)
            fields[f"CP.{key}"] = value
    return fields


async def read_frame(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)


async def test_minute_data_stored_and_acknowledged_byte_for_byte(tansu: Component, topic_prefix: str) -> None:
    records = [air("air-tcp-1", "AIRTCP0001"), air("air-tcp-2", "AIRTCP0002")]
    async with running_collector(tansu.url, topic_prefix, protocols=HJ, records=records) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.hj212_port)
        t = minute()
        frame, qn = hj212_data(
            mn="AIRTCP0001",
            pw=PW,
            cn="2051",
            data_time=t,
            values="a34004-Avg=35.2,a34004-Flag=N;a34002-Avg=61,a34002-Flag=D;a21005-Avg=0.427",
        )
        writer.write(frame)
        assert await read_frame(reader) == hj212_9014(qn=qn, pw=PW, mn="AIRTCP0001")
        (batch,) = await run.wait_raw("air-tcp-1", 1)
        assert batch["source"].startswith("hj212:tcp:127.0.0.1:")
        got = {r["metric"]: r for r in batch["readings"]}
        assert set(got) == {"pm25", "pm10", "co"}
        assert got["pm25"]["value"] == 35.2
        assert got["pm25"]["unit"] == "ug/m3"
        assert got["co"]["unit"] == "mg/m3"
        assert got["pm25"]["quality"] == "N"
        assert got["pm10"]["quality"] == "D"
        ts = datetime.fromisoformat(got["pm25"]["ts"].replace("Z", "+00:00"))
        assert ts == t.astimezone(UTC)  # DataTime is Beijing time, the interval start

        # Flag=4: stored, no reply
        frame2, _ = hj212_data(
            mn="AIRTCP0001", pw=PW, cn="2051", data_time=minute(1), values="a34004-Avg=36", flag=4
        )
        writer.write(frame2)
        await run.wait_raw("air-tcp-1", 2)
        with contextlib.suppress(TimeoutError):
            assert await read_frame(reader, 0.5) == b"", "no reply to Flag=4"

        # a station using the Modbus CRC (byte-swapped) is accepted and answered in its variant
        t3 = minute(3)
        qn3 = qn_of(t3)
        seg = (
            f"QN={qn3};ST=22;CN=2051;PW={PW};MN=AIRTCP0002;Flag=5;"
            f"CP=&&DataTime={t3:%Y%m%d%H%M%S};a34004-Avg=12&&"
        )
        writer.write(hj212_frame(seg, crc="modbus_swapped"))
        expected = hj212_frame(
            f"QN={qn3};ST=91;CN=9014;PW={PW};MN=AIRTCP0002;Flag=4;CP=&&&&", crc="modbus_swapped"
        )
        assert await read_frame(reader) == expected
        assert (await run.wait_raw("air-tcp-2", 1))[0]["readings"][0]["value"] == 12
        writer.close()


async def test_refusals_are_dead_lettered_and_the_connection_keeps_working(
    tansu: Component, topic_prefix: str
) -> None:
    async with running_collector(
        tansu.url, topic_prefix, protocols=HJ, records=[air("air-ref", "AIRREF01")], tcp_frame_timeout_s=1.0
    ) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.hj212_port)

        good, _ = hj212_data(mn="AIRREF01", pw=PW, cn="2051", data_time=minute(5), values="a34004-Avg=1")
        bad_crc = good[:-6] + (b"0000" if good[-6:-2] != b"0000" else b"1111") + b"\r\n"
        unknown, _ = hj212_data(mn="NOBODY99", pw=PW, cn="2051", data_time=minute(5), values="a34004-Avg=1")
        wrong_pw, _ = hj212_data(
            mn="AIRREF01", pw="654321", cn="2051", data_time=minute(5), values="a34004-Avg=1"
        )
        cases = [
            (bad_crc, "hj212_crc"),
            (unknown, "hj212_unknown_mn"),
            (wrong_pw, "hj212_bad_password"),
        ]
        for frame, code in cases:
            writer.write(frame)
            (letter,) = await run.wait_dead(code)
            assert letter["reason"]
            assert base64.b64decode(letter["payload_b64"]) == frame
            assert letter["source"].startswith("tcp:127.0.0.1:")
            # the same connection still takes a good frame, and only that one is answered
            t = minute(10 + len(run.dead()))
            ok, qn = hj212_data(mn="AIRREF01", pw=PW, cn="2051", data_time=t, values="a34004-Avg=2")
            writer.write(ok)
            assert await read_frame(reader) == hj212_9014(qn=qn, pw=PW, mn="AIRREF01")
        assert run.dead("hj212_unknown_mn")[0]["device_id"] is None
        assert run.dead("hj212_bad_password")[0]["device_id"] == "air-ref"

        # a frame cut off: after tcp_frame_timeout_s its bytes are a hj212_truncated dead letter
        partial = good[:50]
        writer.write(partial)
        (letter,) = await run.wait_dead("hj212_truncated", timeout=10)
        assert base64.b64decode(letter["payload_b64"]) == partial
        assert "within 1 s" in letter["reason"]
        ok, qn = hj212_data(mn="AIRREF01", pw=PW, cn="2051", data_time=minute(30), values="a34004-Avg=3")
        writer.write(ok)
        assert await read_frame(reader) == hj212_9014(qn=qn, pw=PW, mn="AIRREF01")
        assert len(await run.wait_raw("air-ref", 4)) == 4
        writer.close()


async def test_pinned_crc_allow_list_and_unknown_codes(tansu: Component, topic_prefix: str) -> None:
    records = [
        air("air-pin", "AIRPIN01", crc="hj212"),
        air("air-net", "AIRNET01", allow_from=["192.0.2.0/24"]),
        air("air-unk", "AIRUNK01"),
    ]
    async with running_collector(tansu.url, topic_prefix, protocols=HJ, records=records) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.hj212_port)
        t = minute(4)
        seg = (
            f"QN={qn_of(t)};ST=22;CN=2051;PW={PW};MN=AIRPIN01;Flag=5;"
            f"CP=&&DataTime={t:%Y%m%d%H%M%S};a34004-Avg=5&&"
        )
        writer.write(hj212_frame(seg, crc="modbus"))  # right CRC, but not the pinned variant
        (letter,) = await run.wait_dead("hj212_crc")
        assert letter["device_id"] == "air-pin"

        frame, _ = hj212_data(mn="AIRNET01", pw=PW, cn="2051", data_time=t, values="a34004-Avg=5")
        writer.write(frame)
        (letter,) = await run.wait_dead("hj212_address_not_allowed")
        assert "127.0.0.1" in letter["reason"]

        for i in range(2):  # an unknown code: the rest is stored; reported once
            frame, qn = hj212_data(
                mn="AIRUNK01", pw=PW, cn="2051", data_time=minute(6 + i), values="a34004-Avg=7;a99999-Avg=1"
            )
            writer.write(frame)
            assert await read_frame(reader) == hj212_9014(qn=qn, pw=PW, mn="AIRUNK01")
        batches = await run.wait_raw("air-unk", 2)
        assert [r["metric"] for b in batches for r in b["readings"]] == ["pm25", "pm25"]
        (letter,) = await run.wait_dead("hj212_unknown_code")
        assert "a99999" in letter["reason"]
        await asyncio.sleep(0.5)
        assert len(run.dead("hj212_unknown_code")) == 1
        writer.close()


async def test_time_calibration(tansu: Component, topic_prefix: str) -> None:
    async with running_collector(
        tansu.url, topic_prefix, protocols=HJ, records=[air("air-clk", "AIRCLK01")], hj212_time_drift_s=60
    ) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.hj212_port)
        now = datetime.now(CST)
        qn = qn_of(now)
        writer.write(hj212_frame(f"QN={qn};ST=22;CN=1013;PW={PW};MN=AIRCLK01;Flag=5;CP=&&&&"))
        ack = await read_frame(reader)
        assert ack == hj212_frame(f"QN={qn};ST=91;CN=9013;PW={PW};MN=AIRCLK01;Flag=4;CP=&&&&")
        set_time = segment_fields(await read_frame(reader))
        assert set_time["CN"] == "1012"
        assert set_time["MN"] == "AIRCLK01"
        station_time = datetime.strptime(set_time["CP.SystemTime"], "%Y%m%d%H%M%S").replace(tzinfo=CST)
        assert abs((station_time - datetime.now(CST)).total_seconds()) < 5

    # a station whose clock is 10 minutes behind: 9014, then a 1012 (once)
    async with running_collector(
        tansu.url,
        topic_prefix + "b.",
        protocols=HJ,
        records=[air("air-clk", "AIRCLK01")],
        hj212_time_drift_s=60,
    ) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.hj212_port)
        for i in range(2):
            behind = datetime.now(CST) - timedelta(minutes=10)
            frame, qn = hj212_data(
                mn="AIRCLK01",
                pw=PW,
                cn="2051",
                data_time=minute(12 + i),
                values="a34004-Avg=1",
                qn=qn_of(behind),
            )
            writer.write(frame)
            assert await read_frame(reader) == hj212_9014(qn=qn, pw=PW, mn="AIRCLK01")
            if i == 0:
                fields = segment_fields(await read_frame(reader))
                assert fields["CN"] == "1012"
        with contextlib.suppress(TimeoutError):
            assert await read_frame(reader, 0.5) == b"", "a second 1012 within 10 minutes"
        writer.close()
        assert len(await run.wait_raw("air-clk", 2)) == 2


async def test_slow_loris_and_flood_do_not_delay_another_station(tansu: Component, topic_prefix: str) -> None:
    records = [air("air-calm", "AIRCALM1"), air("air-flood", "AIRFLOOD")]
    async with running_collector(
        tansu.url,
        topic_prefix,
        protocols=HJ,
        records=records,
        tcp_frames_per_s=5,
        tcp_frames_burst=10,
        tcp_frame_timeout_s=30,
    ) as run:
        stop = asyncio.Event()
        frame_start, _ = hj212_data(
            mn="AIRCALM1", pw=PW, cn="2051", data_time=minute(1), values="a34004-Avg=1"
        )

        async def loris() -> None:
            _, w = await asyncio.open_connection("127.0.0.1", run.hj212_port)
            for byte in frame_start[:-10]:
                if stop.is_set():
                    break
                w.write(bytes([byte]))
                await w.drain()
                await asyncio.sleep(0.05)
            w.close()

        flood_frames = [
            hj212_data(
                mn="AIRFLOOD", pw=PW, cn="2051", data_time=minute(2), values=f"a34004-Avg={i}", flag=4
            )[0]
            for i in range(200)
        ]

        async def flood() -> None:
            _, w = await asyncio.open_connection("127.0.0.1", run.hj212_port)
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    w.writelines(flood_frames)
                    await w.drain()
            w.close()

        tasks = [asyncio.create_task(loris()) for _ in range(5)] + [asyncio.create_task(flood())]
        await asyncio.sleep(1.0)
        reader, writer = await asyncio.open_connection("127.0.0.1", run.hj212_port)
        latencies = []
        loop = asyncio.get_running_loop()
        for i in range(10):
            frame, qn = hj212_data(
                mn="AIRCALM1", pw=PW, cn="2051", data_time=minute(20 + i), values=f"a34004-Avg={i}"
            )
            started = loop.time()
            writer.write(frame)
            assert await read_frame(reader, 5) == hj212_9014(qn=qn, pw=PW, mn="AIRCALM1")
            latencies.append(loop.time() - started)
        stop.set()
        await asyncio.gather(*tasks)
        writer.close()
        assert max(latencies) < 1.0, latencies
        assert len(run.raw("air-calm")) <= 10
        # the flood was refused: the first refusals kept frame by frame, the rest at the frame rate,
        # each kept one after a gap saying how many were counted meanwhile
        limited = await run.wait_dead("hj212_rate_limited", 10)
        assert len(limited) >= 10
        await asyncio.sleep(1.0)
        limited = run.dead("hj212_rate_limited")
        assert any("more such refusal(s) on this connection" in d["reason"] for d in limited), limited[-1]
        assert all(letter["device_id"] == "air-flood" for letter in limited)


async def test_a_peer_spraying_junk_cannot_flood_dead_letters(tansu: Component, topic_prefix: str) -> None:
    """8 MB of bytes that are no frame: the refusals are kept at the frame rate, the rest counted."""
    records = [air("air-junk-ok", "AIRJUNKOK1")]
    async with running_collector(
        tansu.url, topic_prefix, protocols=HJ, records=records, tcp_frames_per_s=5.0, tcp_frames_burst=20
    ) as run:
        loop = asyncio.get_running_loop()
        started = loop.time()
        _, junk_writer = await asyncio.open_connection("127.0.0.1", run.hj212_port)
        chunk = bytes(range(256)).replace(b"#", b"x") * 256  # 64 KiB, never a frame start
        for _ in range(128):
            junk_writer.write(chunk + b"#x")  # a stray '#' too: a refusal of its own in each chunk
            await junk_writer.drain()
        # a good station on another connection is still answered, the junk peer still connected
        frame, qn = hj212_data(mn="AIRJUNKOK1", pw=PW, cn="2051", data_time=minute(), values="a34004-Avg=12")
        reader, writer = await asyncio.open_connection("127.0.0.1", run.hj212_port)
        writer.write(frame)
        assert await read_frame(reader, 10) == hj212_9014(qn=qn, pw=PW, mn="AIRJUNKOK1")
        await run.wait_raw("air-junk-ok", 1)
        elapsed = loop.time() - started
        junk_writer.close()
        writer.close()
        await asyncio.sleep(1.0)  # let the last kept refusals arrive
        kept = [d for d in run.dead() if d["device_id"] is None]
        assert kept, "the junk must be visible in the dead-letter topic"
        assert {d["code"] for d in kept} <= {"hj212_garbage", "hj212_too_long"}, {d["code"] for d in kept}
        # at most the burst plus the rate over the time the junk arrived (and one to report the rest)
        assert len(kept) <= 20 + 5.0 * (elapsed + 1.0) + 1, (len(kept), elapsed)
        counted = sum(base64.b64decode(d["payload_b64"]).count(b"x") > 0 for d in kept)
        assert counted == len(kept)
