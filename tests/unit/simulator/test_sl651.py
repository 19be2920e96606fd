"""The simulated SL 651 RTU: builders against the spec's frames, the loop against a fake center."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.fleet import Basin, HydroRtu, Sl651Wire, hydro_level, rain_tenths
from simulator.link import Backoff
from simulator.sl651 import (
    EOT,
    ESC,
    ConfirmationReader,
    Sl651Rtu,
    bcd_element,
    crc16,
    drp_element,
    drz_element,
    hourly_groups,
    keepalive_frame,
    report_frame,
    timed_groups,
)

ADDRESS = "0012345678"
RTU = HydroRtu("rtu-test", basin=Basin("wet", storm_chance=0.3), link=Sl651Wire(ADDRESS, "A000"))


def reference_crc(data: bytes) -> int:
    """CRC-16/MODBUS as protocols.md §2.6 describes it: poly 0x8005 reflected, init FFFF, no xor."""
    crc = 0xFFFF
    for byte in data:
        for bit in range(8):
            mix = (crc ^ (byte >> bit)) & 1
            crc >>= 1
            if mix:
                crc ^= 0xA001
    return crc


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# ------------------------------------------------------------------ builders


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x4B37


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_crc_matches_the_reference(data: bytes) -> None:
    assert crc16(data) == reference_crc(data)


def test_builder_reproduces_the_verified_timed_report() -> None:
    """protocols.md §2.10 A: the 32H report of RTU 1090330853, CRC 5F3C, byte for byte."""
    expected = hexbytes(
        "7E7E 01 1090330853 A000 32 004D 02 009E 260202094021 F1F1 1090330853 50 F0F0 2602020940"
        "2219 000000 272B 0000000000 3923 00000138 371B 000000 302B 0000043000 2019 000000"
        "1F19 000000 2619 000000 1A19 000000 3812 1197 03 5F3C"
    )
    elements = [
        bcd_element(0x22, 0.0, 3, 1),
        bcd_element(0x27, 0.0, 5, 3),
        bcd_element(0x39, 0.138, 4, 3),
        bcd_element(0x37, 0.0, 3, 3),
        bcd_element(0x30, 43.0, 5, 3),
        bcd_element(0x20, 0.0, 3, 1),
        bcd_element(0x1F, 0.0, 3, 1),
        bcd_element(0x26, 0.0, 3, 1),
        bcd_element(0x1A, 0.0, 3, 1),
        bcd_element(0x38, 11.97, 2, 2),
    ]
    frame = report_frame(
        center=1,
        address="1090330853",
        password="A000",
        fc=0x32,
        serial=0x9E,
        sent=datetime(2026, 2, 2, 9, 40, 21),  # noqa: DTZ001 - station-local by the standard
        station_class="P",
        groups=[(datetime(2026, 2, 2, 9, 40), elements)],  # noqa: DTZ001
    )
    assert frame == expected
    assert int.from_bytes(frame[-2:], "big") == reference_crc(frame[:-2])


def test_builder_reproduces_the_verified_keepalive() -> None:
    expected = hexbytes("7E7E 01 1090330853 A000 2F 0008 02 009F 260202094100 03 BDE3")
    sent = datetime(2026, 2, 2, 1, 41, tzinfo=UTC)  # 09:41 in Beijing
    assert (
        keepalive_frame(center=1, address="1090330853", password="A000", serial=0x9F, sent=sent) == expected
    )


@pytest.mark.parametrize(
    ("value", "size", "decimals", "data"),
    [(7.97, 4, 3, "00007970"), (1314.3, 3, 1, "013143"), (-1.5, 4, 3, "FF001500"), (None, 4, 3, "FFFFFFFF")],
)
def test_bcd_elements(value: float | None, size: int, decimals: int, data: str) -> None:
    element = bcd_element(0x39, value, size, decimals)
    assert element[:2] == bytes([0x39, size << 3 | decimals])
    assert element[2:].hex().upper() == data


def test_bcd_element_refuses_a_value_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        bcd_element(0x38, 123.45, 2, 2)


def test_drp_and_drz_elements_match_the_spec_layout() -> None:
    """§2.10 B: F4 60 with 12 HEX bytes in 0.1 mm, F5 C0 with 12 HEX words in cm."""
    assert drp_element([0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]) == hexbytes("F460 000005000000000000000000")
    assert drp_element([None, *[300] + [0] * 10]) == hexbytes("F460 FF FE 00000000000000000000")
    drz = drz_element([724, 724, *[797] * 10])
    assert drz == hexbytes("F5C0 02D4 02D4" + " 031D" * 10)


def test_confirmation_reader_takes_the_verified_esc_confirmation_from_a_noisy_stream() -> None:
    confirmation = hexbytes("7E7E 1090330853 01 A000 32 8008 02 009E 260202094024 1B 8C37")
    broken = confirmation[:-1] + b"\x00"
    stream = b"\x7e" + broken + b"junk\x7e\x7e" + confirmation
    reader = ConfirmationReader()
    got = [c for i in range(0, len(stream), 5) for c in reader.feed(stream[i : i + 5])]
    assert len(got) == 1
    assert (got[0].address, got[0].center, got[0].fc, got[0].serial, got[0].end) == (
        "1090330853",
        1,
        0x32,
        0x9E,
        ESC,
    )
    assert reader.bad >= 1


def test_hourly_report_rain_slots_add_up_to_the_counter_and_drz_ends_at_z() -> None:
    end = datetime(2026, 7, 3, 12, 0, tzinfo=UTC)
    hour_end = next(
        t
        for t in (end + timedelta(hours=h) for h in range(1, 200))
        if rain_tenths(RTU, t) - rain_tenths(RTU, t - timedelta(hours=1)) >= 3
    )
    groups = hourly_groups(RTU, hour_end)
    (t_drp, [drp]), (t_drz, [drz]), (t_end, rest) = groups
    assert t_drp == t_drz == hour_end - timedelta(minutes=55)  # the end of the first 5-minute slot
    assert t_end == hour_end
    slots = list(drp[2:])
    assert sum(slots) == rain_tenths(RTU, hour_end) - rain_tenths(RTU, hour_end - timedelta(hours=1))
    levels = [int.from_bytes(drz[2 + 2 * i : 4 + 2 * i], "big") for i in range(12)]
    assert levels[-1] == round(hydro_level(RTU, hour_end)[0] * 100)
    z = next(e for e in rest if e[0] == 0x39)
    assert int(z[2:].hex()) / 1000 == pytest.approx(hydro_level(RTU, hour_end)[0], abs=0.0006)


def test_timed_report_pj_counts_from_eight_o_clock() -> None:
    t = datetime(2026, 7, 3, 0, 30, tzinfo=UTC)  # 08:30 Beijing: PJ = rain since 08:00
    [(_, elements)] = timed_groups(RTU, t)
    pj = next(e for e in elements if e[0] == 0x20)
    expected = (rain_tenths(RTU, t) - rain_tenths(RTU, datetime(2026, 7, 3, 0, 0, tzinfo=UTC))) / 10
    assert int(pj[2:].hex()) / 10 == pytest.approx(expected)
    assert [e[0] for e in elements] == [0x20, 0x26, 0x39, 0x27, 0x38]


# ------------------------------------------------------------------ the RTU against a fake center


@dataclass(frozen=True)
class Uplink:
    fc: int
    serial: int
    body: bytes
    raw: bytes


def parse_uplink(buf: bytes) -> tuple[Uplink | None, bytes]:
    start = buf.find(b"\x7e\x7e")
    if start < 0 or len(buf) - start < 14:
        return None, buf
    buf = buf[start:]
    word = int.from_bytes(buf[11:13], "big")
    total = 14 + (word & 0xFFF) + 3
    if len(buf) < total:
        return None, buf
    raw = buf[:total]
    assert word >> 12 == 0 and raw[13] == 0x02 and raw[-3] == 0x03
    assert int.from_bytes(raw[-2:], "big") == reference_crc(raw[:-2])
    assert raw[2] == 1 and raw[3:8].hex().upper() == ADDRESS and raw[8:10] == b"\xa0\x00"
    body = raw[14:-3]
    return Uplink(raw[10], int.from_bytes(body[:2], "big"), body, raw), buf[total:]


def confirm(up: Uplink, end: int) -> bytes:
    now = datetime.now(UTC) + timedelta(hours=8)
    body = up.serial.to_bytes(2, "big") + bytes.fromhex(f"{now:%y%m%d%H%M%S}")
    data = b"\x7e\x7e" + bytes.fromhex(ADDRESS) + b"\x01\xa0\x00" + bytes([up.fc, 0x80, len(body), 0x02])
    data += body + bytes([end])
    return data + reference_crc(data).to_bytes(2, "big")


Policy = Callable[["FakeCenter", asyncio.StreamWriter, Uplink], Awaitable[None]]


@dataclass
class FakeCenter:
    policy: Policy
    connections: list[list[Uplink]] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames: list[Uplink] = []
        self.connections.append(frames)
        buf = b""
        try:
            while data := await reader.read(4096):
                buf += data
                while True:
                    up, buf = parse_uplink(buf)
                    if up is None:
                        break
                    frames.append(up)
                    await self.policy(self, writer, up)
        except ConnectionError:
            pass
        finally:
            writer.close()

    def reports(self) -> list[Uplink]:
        return [u for conn in self.connections for u in conn if u.fc != 0x2F]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


def confirming(end: int) -> Policy:
    async def policy(_c: FakeCenter, writer: asyncio.StreamWriter, up: Uplink) -> None:
        if up.fc != 0x2F:
            writer.write(confirm(up, end))
            await writer.drain()

    return policy


async def run_for(rtu: Sl651Rtu, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(rtu.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 5)


def rtu(port: int, **kw: object) -> Sl651Rtu:
    opts: dict[str, object] = {"interval_s": 0.25, "ack_timeout_s": 2.0, "backoff": Backoff(0.05, 0.2)}
    opts.update(kw)
    return Sl651Rtu(RTU, host="127.0.0.1", port=port, **opts)  # type: ignore[arg-type]


async def test_esc_holds_the_link_and_keepalives_follow() -> None:
    center = FakeCenter(confirming(ESC))
    await center.start()
    r = rtu(center.port, interval_s=0.6, keepalive_s=0.15)
    await run_for(r, 1.4)
    await center.stop()
    assert len(center.connections) == 1
    frames = center.connections[0]
    fcs = [u.fc for u in frames]
    assert fcs[0] == 0x34  # the last complete hour first
    assert 0x32 in fcs and 0x2F in fcs
    assert r.counters.keepalives == fcs.count(0x2F) >= 2
    reports = center.reports()
    assert r.counters.acked == r.counters.uploads == len(reports)
    serials = [u.serial for u in reports]
    assert serials == list(range(1, len(reports) + 1))
    for up in frames:
        if up.fc == 0x2F:
            assert len(up.body) == 8 and up.serial <= max(serials)
    hourly = reports[0].body
    assert hourly[8:10] == b"\xf1\xf1" and hourly[15:16] == b"H"
    assert b"\xf4\x60" in hourly and b"\xf5\xc0" in hourly
    assert r.counters.readings == 24 + 5 + 5 * (len(reports) - 1)


async def test_eot_closes_the_link_after_each_confirmation() -> None:
    center = FakeCenter(confirming(EOT))
    await center.start()
    r = rtu(center.port, first_hourly=False, keepalive_s=0.1)
    await run_for(r, 1.2)
    await center.stop()
    assert len(center.connections) >= 3
    assert all(len(conn) == 1 and conn[0].fc == 0x32 for conn in center.connections)
    assert r.counters.keepalives == 0
    assert r.counters.acked == len(center.connections)


async def test_an_unconfirmed_report_is_sent_three_times_with_its_serial_then_the_link_is_given_up() -> None:
    async def silent(*_: object) -> None:
        return None

    center = FakeCenter(silent)
    await center.start()
    r = rtu(center.port, first_hourly=False, interval_s=0.2, ack_timeout_s=0.1)
    await run_for(r, 1.2)
    await center.stop()
    first = center.connections[0]
    assert [u.serial for u in first] == [1, 1, 1]
    assert first[0].raw == first[1].raw == first[2].raw
    assert len(center.connections) >= 2
    assert r.counters.lost >= 1 and r.counters.acked == 0
    assert r.counters.retries >= 2 * r.counters.lost


async def test_a_confirmation_for_another_serial_does_not_count() -> None:
    async def wrong(_c: FakeCenter, writer: asyncio.StreamWriter, up: Uplink) -> None:
        writer.write(confirm(Uplink(up.fc, up.serial + 1, up.body, up.raw), EOT))

    center = FakeCenter(wrong)
    await center.start()
    r = rtu(center.port, first_hourly=False, interval_s=0.25, ack_timeout_s=0.1)
    await run_for(r, 0.9)
    await center.stop()
    assert r.counters.acked == 0 and r.counters.lost >= 1
    assert r.counters.replies >= 3


async def test_stop_does_not_wait_out_the_resends() -> None:
    async def silent(*_: object) -> None:
        return None

    center = FakeCenter(silent)
    await center.start()
    r = rtu(center.port, ack_timeout_s=10.0)
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 3.0)
    await center.stop()
    assert r.counters.uploads == 1 and r.counters.acked == r.counters.lost == r.counters.retries == 0


@settings(max_examples=200)
@given(st.integers(min_value=1, max_value=5), st.integers(min_value=0, max_value=4), st.data())
def test_bcd_elements_round_trip(size: int, decimals: int, data: st.DataObject) -> None:
    limit = 10 ** (2 * (size - 1)) - 1  # leaves room for the FF sign byte
    scaled = data.draw(st.integers(min_value=-limit if size > 1 else 0, max_value=limit))
    element = bcd_element(0x39, scaled / 10**decimals, size, decimals)
    assert len(element) == 2 + size and element[1] == size << 3 | decimals
    raw = element[2:]
    value = -int(raw[1:].hex()) if raw[0] == 0xFF else int(raw.hex())
    assert value == scaled
