"""SL 651 decoder: CRC, frames and reports of every verified frame in ``specs/protocols.md`` §2."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ingest.decoders import sl651
from ingest.decoders.sl651 import Frame, Report, Sl651Error, parse_frame, parse_report
from tests.unit.ingest import sl651_samples as s

BEIJING = ZoneInfo("Asia/Shanghai")
PW_A000 = "A000"  # RTU password field (not a secret)
PW_0000 = "0000"  # RTU password field (not a secret)


def local(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    """A Beijing wall-clock time as aware UTC."""
    return datetime(year, month, day, hour, minute, second, tzinfo=BEIJING).astimezone(UTC)


def report(raw: bytes) -> Report:
    return parse_report(parse_frame(raw), tz=BEIJING)


def values(rep: Report, name: str) -> list[float | None]:
    return [e.value for e in rep.elements if e.name == name]


def single(rep: Report) -> dict[str, float | None]:
    """Element name -> value for reports where every element appears once."""
    names = [e.name for e in rep.elements]
    assert len(names) == len(set(names)), names
    return {e.name: e.value for e in rep.elements}


def rehex(frame: Frame, body: bytes) -> bytes:
    """The same uplink HEX frame with another body (CRC recomputed)."""
    return sl651.encode_hex_frame(
        center=frame.center, address=frame.address, password=frame.password, fc=frame.fc, body=body
    )


# ------------------------------------------------------------------------------------- CRC


def test_crc16_check_value() -> None:
    assert sl651.crc16(b"123456789") == 0x4B37


@pytest.mark.parametrize(("frame", "crc"), [pytest.param(f, c, id=n) for n, f, c in s.VERIFIED])
def test_every_verified_frame_crc(frame: bytes, crc: str) -> None:
    if frame[0] == sl651.SOH:
        assert frame[-4:].decode() == crc
        assert sl651.crc16(frame[:-4]) == int(crc, 16)
    else:
        assert frame[-2:].hex().upper() == crc  # high byte first
        assert sl651.crc16(frame[:-2]) == int(crc, 16)
    parsed = parse_frame(frame)
    assert parsed.raw == frame


@pytest.mark.parametrize(("frame", "crc"), [pytest.param(f, c, id=n) for n, f, c in s.VERIFIED])
def test_encoders_rebuild_every_verified_frame(frame: bytes, crc: str) -> None:
    f = parse_frame(frame)
    encode = sl651.encode_hex_frame if f.encoding == "hex" else sl651.encode_ascii_frame
    rebuilt = encode(
        center=f.center,
        address=f.address,
        password=f.password,
        fc=f.fc,
        body=f.body,
        upstream=f.upstream,
        end=f.end,
        packet=f.packet,
    )
    assert rebuilt == frame


def test_bad_crc_is_refused() -> None:
    broken = bytearray(s.TIMED_32)
    broken[-1] ^= 0x01
    with pytest.raises(Sl651Error) as err:
        parse_frame(bytes(broken))
    assert err.value.code == "sl651_crc"
    assert "5F3D" in err.value.reason and "5F3C" in err.value.reason


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        pytest.param(s.TIMED_32[:-1], "sl651_length", id="one byte short"),
        pytest.param(s.TIMED_32 + b"\x00", "sl651_length", id="one byte long"),
        pytest.param(b"\x7e\x7e\x01", "sl651_truncated", id="header only"),
        pytest.param(b"##0101QN=", "sl651_format", id="not sl651"),
        pytest.param(s.ASCII_32[:-1], "sl651_length", id="ascii short"),
    ],
)
def test_malformed_frames(raw: bytes, code: str) -> None:
    with pytest.raises(Sl651Error) as err:
        parse_frame(raw)
    assert err.value.code == code


def test_direction_nibble_must_be_0_or_8() -> None:
    raw = bytearray(s.KEEPALIVE_2F[:-2])
    raw[11] = 0x40
    raw += sl651.crc16(bytes(raw)).to_bytes(2, "big")
    with pytest.raises(Sl651Error) as err:
        parse_frame(bytes(raw))
    assert err.value.code == "sl651_format"


# ------------------------------------------------------------------------------ frame fields


def test_timed_report_frame_fields() -> None:
    f = parse_frame(s.TIMED_32)
    assert (f.encoding, f.center, f.address, f.password, f.fc) == ("hex", 1, "1090330853", "A000", 0x32)
    assert f.upstream and f.end == sl651.ETX and f.packet is None and f.deviations == ()
    assert len(f.body) == 0x4D == 77


def test_confirmation_frame_is_a_downlink_with_swapped_addresses() -> None:
    f = parse_frame(s.CONFIRM_32_ESC)
    assert not f.upstream
    assert (f.address, f.center, f.fc, f.end) == ("1090330853", 1, 0x32, sl651.ESC)
    assert f.body == bytes.fromhex("009E260202094024")


def test_ascii_golden_frame() -> None:
    f = parse_frame(s.ASCII_32)
    assert (f.encoding, f.center, f.address, f.password, f.fc) == ("ascii", 1, "5010123456", "0000", 0x32)
    assert len(f.body) == 0x3E == 62
    rep = parse_report(f, tz=BEIJING)
    assert (rep.serial, rep.station, rep.station_class) == (1, "5010123456", "H")
    assert rep.sent == local(2026, 9, 9, 8, 0, 0)
    assert single(rep) == {"Z": 6.38, "VT": 12.5}
    assert {e.observed for e in rep.elements} == {local(2026, 9, 9, 8, 0)}
    assert [e.decimals for e in rep.elements] == [2, 2]


# ----------------------------------------------------------------------------------- reports


def test_timed_report_values() -> None:
    rep = report(s.TIMED_32)
    assert (rep.serial, rep.station, rep.station_class, rep.truncated_at) == (158, "1090330853", "P", None)
    assert rep.sent == local(2026, 2, 2, 9, 40, 21)
    assert single(rep) == {
        "PN05": 0.0,
        "Q": 0.0,
        "Z": 0.138,
        "VJ": 0.0,
        "QA": 43.0,
        "PJ": 0.0,
        "PD": 0.0,
        "PT": 0.0,
        "P1": 0.0,
        "VT": 11.97,
    }
    assert {e.observed for e in rep.elements} == {local(2026, 2, 2, 9, 40)}
    assert {e.name: e.decimals for e in rep.elements}["Z"] == 3


@pytest.mark.parametrize(
    ("raw", "serial", "sent"),
    [
        pytest.param(s.KEEPALIVE_2F, 0x9F, local(2026, 2, 2, 9, 41, 0), id="2F"),
        pytest.param(s.KEEPALIVE_7E08, 0x7E08, local(2022, 10, 11, 10, 7, 47), id="2F serial 7E08"),
    ],
)
def test_keepalive(raw: bytes, serial: int, sent: datetime) -> None:
    rep = report(raw)
    assert (rep.serial, rep.sent, rep.elements, rep.station) == (serial, sent, [], None)


def test_uniform_interval_series_with_missing_values() -> None:
    rep = report(s.UNIFORM_31)
    assert values(rep, "Z") == [None] * 11 + [0.17]
    assert [e.observed for e in rep.elements] == [local(2026, 2, 2, 8, 5 * (i + 1)) for i in range(11)] + [
        local(2026, 2, 2, 9, 0)
    ]


def test_hourly_report_drp_drz_expanded_at_slot_ends() -> None:
    rep = report(s.HOURLY_34)
    assert values(rep, "DRP") == [None] * 11 + [0.0]
    assert values(rep, "DRZ1") == [None] * 11 + [0.17]
    drp = [e.observed for e in rep.elements if e.name == "DRP"]
    assert drp[0] == local(2026, 2, 2, 8, 5) and drp[-1] == local(2026, 2, 2, 9, 0)
    later = {e.name: e.value for e in rep.elements if e.name not in ("DRP", "DRZ1")}
    assert later == {
        "PJ": 0.0,
        "P1": 0.0,
        "PT": 0.0,
        "Q": 0.0,
        "Z": 0.168,
        "VJ": 0.0,
        "QA": 43.0,
        "VT": 11.55,
    }


def test_river_hourly_report_stops_at_the_private_block() -> None:
    f = parse_frame(s.RIVER_34)
    assert (f.address, f.password, len(f.body)) == ("0051107461", "FFFF", 170)
    rep = parse_report(f, tz=BEIJING)
    assert (rep.serial, rep.station_class) == (499, "H")
    assert rep.sent == local(2022, 6, 21, 12, 1, 10)
    assert values(rep, "DRP") == [0.0, 0.0, 0.5] + [0.0] * 9
    drp_times = [e.observed for e in rep.elements if e.name == "DRP"]
    assert drp_times == [local(2022, 6, 21, 11, 5 * (i + 1)) for i in range(11)] + [local(2022, 6, 21, 12, 0)]
    assert values(rep, "DRZ1") == [7.24, 7.24] + [7.97] * 10
    assert values(rep, "PT") == [3.0]
    assert values(rep, "Z") == [7.97]
    assert values(rep, "PJ") == [0.5]
    assert next(e for e in rep.elements if e.name == "Z").observed == local(2022, 6, 21, 12, 0)
    # the 79 79 / 7D 7D / F9 F9 blocks are private: decoding stops there, nothing invented
    assert rep.truncated_at == "79"
    assert not any(e.name.startswith(("X", "FF")) for e in rep.elements)
    # ... and the standard tail after them (VT) is found again
    assert values(rep, "VT") == [12.07]
    assert "time_step_binary" in rep.deviations


def test_query_answer_37() -> None:
    rep = report(s.QUERY_37)
    assert rep.serial == 0xFCA7
    assert single(rep) == {"PJ": 0.0, "PT": 1314.3, "Z": 998.099, "VT": 11.82}
    assert rep.elements[0].observed == local(2017, 2, 6, 16, 36)


def test_test_report_with_vendor_and_extended_identifiers() -> None:
    rep = report(s.TEST_30)
    assert (rep.serial, rep.station, rep.station_class) == (0x40, "0100000001", "H")
    assert rep.sent == local(2020, 11, 26, 14, 27, 46)
    assert single(rep) == {"PJ": 0.0, "PT": 0.0, "Z": 0.075, "VT": 12.08, "X7A": 29.0, "FFA0": 28.8}
    assert rep.truncated_at is None


# ---------------------------------------------------------------------- body rules (HEX/BCD)


def body_with(elements: str, *, fc_frame: bytes = s.TIMED_32, head: str | None = None) -> bytes:
    """A report frame: the 32 frame's serial, time, station and observation time, then ``elements``."""
    head = head or "009E 260202094021 F1F1 1090330853 50 F0F0 2602020940"
    return rehex(parse_frame(fc_frame), bytes.fromhex("".join((head + elements).split())))


def test_marker_deviations_f028_f128_are_accepted_and_named() -> None:
    raw = body_with("3923 00000138", head="009E 260202094021 F128 1090330853 50 F028 2602020940")
    f = parse_frame(raw)
    assert set(f.deviations) == {"obs_time_marker_F028", "station_marker_F128"}
    rep = parse_report(f, tz=BEIJING)
    assert set(rep.deviations) == set(f.deviations)
    assert single(rep) == {"Z": 0.138} and rep.station == "1090330853"


@pytest.mark.parametrize(
    ("elements", "expected"),
    [
        pytest.param("3923 FF000138", {"Z": -0.138}, id="negative: leading FF byte"),
        pytest.param("3923 FFFFFFFF", {"Z": None}, id="missing: all F"),
        pytest.param("391A 000797", {"Z": 7.97}, id="definition obeyed: 3 bytes 2 decimals"),
        pytest.param("3811 0121", {"VT": 12.1}, id="definition obeyed: 2 bytes 1 decimal"),
        pytest.param("4520 00000083", {"ZT": 0x83}, id="ZT status word is HEX"),
        pytest.param("7A08 29 3812 1197", {"X7A": 29.0, "VT": 11.97}, id="unknown guide, sane definition"),
        pytest.param("7A08 2A 3812 1197", {"VT": 11.97}, id="unknown guide, non-BCD data skipped"),
        pytest.param("FF0111 0123", {"FF01": 12.3}, id="FF extension"),
    ],
)
def test_value_encodings(elements: str, expected: dict[str, float | None]) -> None:
    rep = report(body_with(elements))
    assert single(rep) == expected
    assert rep.truncated_at is None


def test_unknown_guide_with_nonsense_definition_stops_and_keeps_what_was_decoded() -> None:
    rep = report(body_with("3923 00000138 9A9A 0102030405 3812 1197"))
    assert rep.truncated_at == "9A"
    assert values(rep, "Z") == [0.138]


def test_several_observation_times() -> None:
    rep = report(body_with("3923 00000138 F0F0 2602020945 3923 00000140"))
    assert [(e.value, e.observed) for e in rep.elements] == [
        (0.138, local(2026, 2, 2, 9, 40)),
        (0.14, local(2026, 2, 2, 9, 45)),
    ]


def test_second_station_in_one_report_is_not_attributed_to_the_first() -> None:
    rep = report(body_with("3923 00000138 F1F1 1090330854 50 F0F0 2602020940 3923 00000999"))
    assert values(rep, "Z") == [0.138]
    assert rep.truncated_at == "F1F1 1090330854"


def test_element_before_observation_time_is_refused() -> None:
    with pytest.raises(Sl651Error) as err:
        report(body_with("3923 00000138", head="009E 260202094021 F1F1 1090330853 50"))
    assert err.value.code == "sl651_format"


def test_invalid_send_time_is_refused() -> None:
    with pytest.raises(Sl651Error) as err:
        report(body_with("", head="009E 261302094021"))
    assert err.value.code == "sl651_format"


def test_short_body_is_refused() -> None:
    with pytest.raises(Sl651Error) as err:
        report(body_with("", head="009E 2602"))
    assert err.value.code == "sl651_truncated"


def test_unsupported_function_code() -> None:
    raw = sl651.encode_hex_frame(
        center=1, address="1090330853", password=PW_A000, fc=0x36, body=bytes.fromhex("009E260202094021")
    )
    with pytest.raises(Sl651Error) as err:
        report(raw)
    assert err.value.code == "sl651_unsupported_fc"


def test_hex_time_step_in_a_31_report_with_two_series() -> None:
    raw = body_with(
        "0418 000005 2219" + " 000001" * 12 + " 3923" + " 00000100" * 12,
        fc_frame=s.UNIFORM_31,
        head="0096 260202090033 F1F1 1090330853 50 F0F0 2602020805",
    )
    rep = report(raw)
    assert values(rep, "PN05") == [0.1] * 12
    assert values(rep, "Z") == [0.1] * 12
    assert [e.observed for e in rep.elements if e.name == "Z"][-1] == local(2026, 2, 2, 9, 0)


# --------------------------------------------------------------------------------- ASCII body


def ascii_frame(body: str, fc: int = 0x32) -> bytes:
    return sl651.encode_ascii_frame(
        center=1, address="5010123456", password=PW_0000, fc=fc, body=body.encode()
    )


def test_ascii_series_missing_values_and_drp() -> None:
    body = "0002260909090000ST 5010123456 H TT 2609090805 DRN05 Z 1.01 M 1.03 DRP 0001FF000000000000000000 "
    rep = parse_report(parse_frame(ascii_frame(body, fc=0x31)), tz=BEIJING)
    assert values(rep, "Z") == [1.01, None, 1.03]
    assert [e.observed for e in rep.elements if e.name == "Z"] == [
        local(2026, 9, 9, 8, m) for m in (5, 10, 15)
    ]
    assert values(rep, "DRP") == [0.0, 0.1, None] + [0.0] * 9


def test_ascii_undecodable_token_stops() -> None:
    body = "0002260909090000ST 5010123456 H TT 2609090805 Z 1.01 ??? VT 12.0 "
    rep = parse_report(parse_frame(ascii_frame(body)), tz=BEIJING)
    assert single(rep) == {"Z": 1.01}
    assert rep.truncated_at == "???"


def test_ascii_huge_number_is_not_a_value() -> None:
    body = "0002260909090000ST 5010123456 H TT 2609090805 Z 1.01 VT " + "9" * 400 + " "
    rep = parse_report(parse_frame(ascii_frame(body)), tz=BEIJING)
    assert single(rep) == {"Z": 1.01}
    assert rep.truncated_at == "VT"


def test_ascii_bad_body_head_is_refused() -> None:
    with pytest.raises(Sl651Error) as err:
        parse_report(parse_frame(ascii_frame("XYZ")), tz=BEIJING)
    assert err.value.code == "sl651_format"


# ---------------------------------------------------------------------------- confirmations


def test_confirmation_reproduces_the_verified_frame() -> None:
    f = parse_frame(s.TIMED_32)
    now = datetime(2026, 2, 2, 9, 40, 24, tzinfo=BEIJING)
    assert sl651.confirmation(f, now, end="esc") == s.CONFIRM_32_ESC


def test_confirmation_eot_ack_and_nak() -> None:
    f = parse_frame(s.TIMED_32)
    now = datetime(2026, 2, 2, 9, 40, 24, tzinfo=BEIJING)
    eot = parse_frame(sl651.confirmation(f, now))
    assert (eot.end, eot.upstream, eot.address, eot.center, eot.fc) == (
        sl651.EOT,
        False,
        "1090330853",
        1,
        0x32,
    )
    assert eot.body == bytes.fromhex("009E260202094024")
    ack = parse_frame(sl651.ack_etb(f, now))
    assert (ack.end, ack.body, ack.packet) == (sl651.ACK, eot.body, None)
    multi = parse_frame(rehex_packet(f, (3, 1)))
    nak = parse_frame(sl651.nak(multi, 2, now))
    assert (nak.end, nak.packet, nak.upstream) == (sl651.NAK, (3, 2), False)


def test_ascii_confirmation() -> None:
    f = parse_frame(s.ASCII_32)
    now = datetime(2026, 9, 9, 8, 0, 5, tzinfo=BEIJING)
    raw = sl651.confirmation(f, now)
    back = parse_frame(raw)
    assert (back.encoding, back.upstream, back.address, back.end) == ("ascii", False, "5010123456", sl651.EOT)
    assert back.body == b"0001260909080005"
    assert raw[1:11] == b"5010123456"  # downlink: RTU address first


def rehex_packet(frame: Frame, packet: tuple[int, int]) -> bytes:
    return sl651.encode_hex_frame(
        center=frame.center,
        address=frame.address,
        password=frame.password,
        fc=frame.fc,
        body=frame.body,
        packet=packet,
    )


def test_m3_frame_fields() -> None:
    f = parse_frame(rehex_packet(parse_frame(s.TIMED_32), (2, 1)))
    assert f.packet == (2, 1)
    assert f.body == parse_frame(s.TIMED_32).body
    assert f.raw[13] == sl651.SYN
