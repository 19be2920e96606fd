"""The SL 651 TCP collector against a real Tansu: the spec's report stored and confirmed byte for byte,
keep-alives, resends, refusals that leave the connection working, ack policies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from stationflow.contracts import DeviceRecord, MetricSpec, Sl651Link
from stationflow.passwords import hash_password
from stationflow.stack.components import Component
from tests.integration.tcp_utils import modbus_crc16, running_collector, sl651_frame, sl651_report_body

CST = ZoneInfo("Asia/Shanghai")
SL = ("sl651",)
ADDRESS = "1090330853"
# protocols.md §2.10 A: a 32H timed report (CRC 5F3C) and a 2F keep-alive (CRC BDE3)
REPORT_A = bytes.fromhex(
    "7E7E011090330853A00032004D02009E260202094021F1F1109033085350F0F02602020940"
    "2219000000272B00000000003923000001383 71B000000302B00000430002019000000"
    "1F190000002619000000 1A190000003812119703 5F3C".replace(" ", "")
)
KEEPALIVE = bytes.fromhex("7E7E011090330853A0002F000802009F26020209410003BDE3")
RTU_METRICS = {
    "rain": MetricSpec(metric="rain", unit="mm", sl651_code="PN05"),
    "level": MetricSpec(metric="level", unit="m", sl651_code="Z"),
    "battery": MetricSpec(metric="battery", unit="V", sl651_code="VT"),
}


def rtu(device_id: str, address: str = ADDRESS, **link: object) -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        device_type="rain_level_rtu",
        domain="hydro",
        metrics=RTU_METRICS,
        protocol="sl651",
        sl651=Sl651Link(address=address, **link),
        updated_at=datetime.now(UTC),
    )


def report(serial: int, *, address: str = ADDRESS, pw_hex: str = "A000", level_mm: int = 1234) -> bytes:
    """A fresh 32H report: PN05 0.5 mm, Z level_mm/1000 m, VT 12.08 V, observed a few minutes ago."""
    now = datetime.now(CST)
    observed = (now - timedelta(minutes=5)).replace(second=0, microsecond=0)
    elements = (
        bytes.fromhex("2219000005")
        + bytes.fromhex("3923")
        + bytes.fromhex(f"{level_mm:08d}")
        + bytes.fromhex("38121208")
    )
    body = sl651_report_body(serial=serial, sent=now, address=address, observed=observed, elements=elements)
    return sl651_frame(address=address, fc=0x32, body=body, password=pw_hex)


def check_confirmation(reply: bytes, frame: bytes, end: int) -> None:
    """Byte for byte (§2.10 A, §2.11): addresses swapped, direction 8, length 8, the frame's serial,
    the center's clock (checked against ours), the end char, CRC-16/MODBUS high byte first."""
    head = b"\x7e\x7e" + frame[3:8] + frame[2:3] + frame[8:11] + b"\x80\x08\x02" + frame[14:16]
    assert reply[:16] == head
    stamp = datetime.strptime(reply[16:22].hex(), "%y%m%d%H%M%S").replace(tzinfo=CST)
    assert abs((stamp - datetime.now(CST)).total_seconds()) < 5
    assert reply[22] == end
    assert reply[23:] == modbus_crc16(reply[:23]).to_bytes(2, "big")
    assert len(reply) == 25


async def no_reply(reader: asyncio.StreamReader, wait: float = 0.5) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(1), wait)
        return False
    return True


async def test_spec_report_stored_and_confirmed_keepalive_and_resend(
    tansu: Component, topic_prefix: str
) -> None:
    async with running_collector(tansu.url, topic_prefix, protocols=SL, records=[rtu("rtu-a")]) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.sl651_port)
        writer.write(REPORT_A)
        check_confirmation(await asyncio.wait_for(reader.readexactly(25), 10), REPORT_A, 0x04)
        (batch,) = await run.wait_raw("rtu-a", 1)
        assert batch["source"].startswith("sl651:tcp:127.0.0.1:")
        got = {r["metric"]: r for r in batch["readings"]}
        assert {m: got[m]["value"] for m in got} == {"rain": 0.0, "level": 0.138, "battery": 11.97}
        assert {m: got[m]["unit"] for m in got} == {"rain": "mm", "level": "m", "battery": "V"}
        assert got["level"]["ts"] == "2026-02-02T01:40:00Z"  # 09:40 Beijing time
        assert all(r["quality"] == "N" for r in batch["readings"])
        (letter,) = await run.wait_dead("sl651_unknown_element")  # Q, VJ, QA, PJ, PD, PT: not in this type
        assert "QA" in letter["reason"]

        writer.write(KEEPALIVE)  # 2F: no reply, nothing stored
        assert await no_reply(reader)

        writer.write(REPORT_A)  # the RTU did not get our confirmation: confirmed again, stored once
        check_confirmation(await asyncio.wait_for(reader.readexactly(25), 10), REPORT_A, 0x04)
        await asyncio.sleep(0.5)
        assert len(run.raw("rtu-a")) == 1
        writer.close()


async def test_refusals_are_dead_lettered_and_the_connection_keeps_working(
    tansu: Component, topic_prefix: str
) -> None:
    records = [rtu("rtu-r", "0012345678", password_hash=hash_password("1234"))]
    async with running_collector(
        tansu.url, topic_prefix, protocols=SL, records=records, tcp_frame_timeout_s=1.0
    ) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.sl651_port)
        good = report(1, address="0012345678", pw_hex="1234")
        bad_crc = good[:-1] + bytes([good[-1] ^ 0xFF])
        cases = [
            (bad_crc, "sl651_crc"),
            (report(2, address="0099999999", pw_hex="1234"), "sl651_unknown_station"),
            (report(3, address="0012345678", pw_hex="A000"), "sl651_bad_password"),
        ]
        for serial, (frame, code) in enumerate(cases, start=10):
            writer.write(frame)
            (letter,) = await run.wait_dead(code)
            assert letter["reason"]
            assert base64.b64decode(letter["payload_b64"]) == frame
            assert await no_reply(reader, 0.3)
            ok = report(serial, address="0012345678", pw_hex="1234")
            writer.write(ok)
            check_confirmation(await asyncio.wait_for(reader.readexactly(25), 10), ok, 0x04)
        assert run.dead("sl651_bad_password")[0]["device_id"] == "rtu-r"

        writer.write(good[:20])  # a frame cut off
        (letter,) = await run.wait_dead("sl651_truncated", timeout=10)
        assert base64.b64decode(letter["payload_b64"]) == good[:20]
        ok = report(20, address="0012345678", pw_hex="1234")
        writer.write(ok)
        check_confirmation(await asyncio.wait_for(reader.readexactly(25), 10), ok, 0x04)
        assert len(await run.wait_raw("rtu-r", 4)) == 4
        writer.close()


async def test_ack_policies(tansu: Component, topic_prefix: str) -> None:
    records = [rtu("rtu-esc", "0000000001", ack="esc"), rtu("rtu-m1", "0000000002", ack="none")]
    async with running_collector(tansu.url, topic_prefix, protocols=SL, records=records) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.sl651_port)
        frame = report(7, address="0000000001")
        writer.write(frame)
        check_confirmation(await asyncio.wait_for(reader.readexactly(25), 10), frame, 0x1B)
        writer.write(report(8, address="0000000002"))
        assert (await run.wait_raw("rtu-m1", 1))[0]["readings"]
        assert await no_reply(reader)  # M1: stored, never answered
        writer.close()
