"""SL 651 reports → readings (rain without double counting, level, units), dedup key, M3 packets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ingest.decoders import sl651
from ingest.decoders.sl651 import Frame, Packets, parse_frame, parse_report, to_readings
from stationflow.contracts import DeviceRecord, MetricSpec, Quality, Sl651Link
from tests.unit.ingest import sl651_samples as s

BEIJING = ZoneInfo("Asia/Shanghai")
PW_A000 = "A000"  # RTU password field (not a secret)


def local(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    """A Beijing wall-clock time as aware UTC."""
    return datetime(year, month, day, hour, minute, second, tzinfo=BEIJING).astimezone(UTC)


def record(
    codes: dict[str, tuple[str | None, str]], *, base: float = 0.0, address: str = "1090330853"
) -> DeviceRecord:
    """A device whose type maps ``metric -> (sl651 code, unit)``."""
    return DeviceRecord(
        device_id="rtu-1",
        device_type="hydro_rtu",
        domain="hydro",
        metrics={m: MetricSpec(metric=m, unit=u, sl651_code=c) for m, (c, u) in codes.items()},
        protocol="sl651",
        sl651=Sl651Link(address=address, level_base_m=base),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


RAIN_LEVEL = record({"rain": ("DRP", "mm"), "level": ("Z", "m"), "battery": ("VT", "V")})


def decode(raw: bytes, rec: DeviceRecord = RAIN_LEVEL) -> sl651.Decoded:
    return to_readings(parse_report(parse_frame(raw), tz=BEIJING), rec)


def by_metric(decoded: sl651.Decoded) -> dict[str, list[tuple[datetime, float]]]:
    out: dict[str, list[tuple[datetime, float]]] = {}
    for r in decoded.readings:
        out.setdefault(r.metric, []).append((r.ts, r.value))
    return out


def test_hourly_report_rain_from_drp_only_missing_slots_skipped() -> None:
    decoded = decode(s.HOURLY_34)
    got = by_metric(decoded)
    # DRP: 11 invalid slots skipped, the last one (0.0 mm at 09:00); P1 and PJ are not rain
    assert got["rain"] == [(local(2026, 2, 2, 9, 0), 0.0)]
    assert got["level"] == [(local(2026, 2, 2, 9, 0), 0.168)]
    assert got["battery"] == [(local(2026, 2, 2, 9, 0), 11.55)]
    units = {r.metric: r.unit for r in decoded.readings}
    assert units == {"rain": "mm", "level": "m", "battery": "V"}
    assert all(r.quality is Quality.NORMAL for r in decoded.readings)
    # DRZ1 is the level series when level is read from Z (its slot at 09:00 gives way to Z)
    assert set(decoded.unknown) == {"PJ", "PT", "Q", "VJ", "QA"}  # P1 is a rain source, not unknown


def test_river_report_rain_is_the_twelve_drp_slots_not_pt_or_pj() -> None:
    got = by_metric(decode(s.RIVER_34, record({"rain": ("DRP", "mm")}, address="0051107461")))
    assert got["rain"] == [
        (local(2022, 6, 21, 11, 5 * (i + 1)), v) for i, v in enumerate([0.0, 0.0, 0.5] + [0.0] * 8)
    ] + [(local(2022, 6, 21, 12, 0), 0.0)]
    assert sum(v for _, v in got["rain"]) == 0.5  # PJ (0.5) and PT (3.0) are not added on top


def test_timed_report_rain_from_pn05_when_no_drp() -> None:
    got = by_metric(decode(s.TIMED_32))
    assert got["rain"] == [(local(2026, 2, 2, 9, 40), 0.0)]  # PN05, not also P1
    assert got["level"] == [(local(2026, 2, 2, 9, 40), 0.138)]


def test_rain_source_preference_drp_over_pn05() -> None:
    frame = parse_frame(s.TIMED_32)
    body = frame.body + bytes.fromhex("F460 00 05 00 00 00 00 00 00 00 00 00 00".replace(" ", ""))
    raw = sl651.encode_hex_frame(center=1, address=frame.address, password=PW_A000, fc=0x32, body=body)
    got = by_metric(decode(raw))
    assert len(got["rain"]) == 12
    assert sum(v for _, v in got["rain"]) == pytest.approx(0.5)


def test_cumulative_rain_only_under_its_own_metric() -> None:
    rec = record(
        {"rain": ("PN05", "mm"), "rain_today": ("PJ", "mm"), "rain_total": ("PT", "mm")}, address="0040803540"
    )
    got = by_metric(decode(s.QUERY_37, rec))
    assert "rain" not in got  # no period rainfall in this answer: nothing invented from PJ/PT
    assert got["rain_today"] == [(local(2017, 2, 6, 16, 36), 0.0)]
    assert got["rain_total"] == [(local(2017, 2, 6, 16, 36), 1314.3)]


def test_level_from_drz1_plus_the_station_level_base() -> None:
    rec = record({"level": ("DRZ1", "m")}, base=100.0, address="0051107461")
    got = by_metric(decode(s.RIVER_34, rec))
    assert [v for _, v in got["level"]] == pytest.approx([107.24, 107.24] + [107.97] * 10)
    assert got["level"][0][0] == local(2022, 6, 21, 11, 5)


def test_a_type_without_sl651_codes_gets_rain_and_level() -> None:
    got = by_metric(decode(s.TIMED_32, record({"rain": (None, "mm"), "level": (None, "m")})))
    assert got == {"rain": [(local(2026, 2, 2, 9, 40), 0.0)], "level": [(local(2026, 2, 2, 9, 40), 0.138)]}


def test_uniform_interval_missing_values_skipped() -> None:
    got = by_metric(decode(s.UNIFORM_31))
    assert got == {"level": [(local(2026, 2, 2, 9, 0), 0.17)]}


def test_unknown_lists_unmapped_and_vendor_elements_once() -> None:
    decoded = decode(s.TEST_30, record({"level": ("Z", "m")}, address="0100000001"))
    assert decoded.unknown == ("PJ", "PT", "VT", "X7A", "FFA0")


def test_extension_identifiers_can_be_mapped() -> None:
    rec = record({"device_temp": ("FFA0", "degC"), "signal": ("X7A", "1")}, address="0100000001")
    got = by_metric(decode(s.TEST_30, rec))
    assert got == {
        "device_temp": [(local(2020, 11, 26, 14, 27), 28.8)],
        "signal": [(local(2020, 11, 26, 14, 27), 29.0)],
    }


def test_keepalive_has_no_readings() -> None:
    decoded = decode(s.KEEPALIVE_2F)
    assert decoded.readings == [] and decoded.unknown == ()


# ------------------------------------------------------------------------------------ dedup


def test_dedup_key_is_stable_across_a_resend() -> None:
    f1 = parse_frame(s.TIMED_32)
    key = sl651.dedup_key(f1, parse_report(f1, tz=BEIJING))
    assert key == ("1090330853", 0x32, 158, local(2026, 2, 2, 9, 40))
    f2 = parse_frame(s.TIMED_32)
    assert sl651.dedup_key(f2, parse_report(f2, tz=BEIJING)) == key
    keepalive = parse_frame(s.KEEPALIVE_2F)
    assert sl651.dedup_key(keepalive, parse_report(keepalive, tz=BEIJING))[3] is None


# ---------------------------------------------------------------------------------- packets


def split(raw: bytes, parts: int) -> list[Frame]:
    """The frame's body cut into ``parts`` M3 packets (SYN frames)."""
    frame = parse_frame(raw)
    size = -(-len(frame.body) // parts)
    chunks = [frame.body[i * size : (i + 1) * size] for i in range(parts)]
    return [
        parse_frame(
            sl651.encode_hex_frame(
                center=frame.center,
                address=frame.address,
                password=frame.password,
                fc=frame.fc,
                body=chunk,
                end=sl651.ETX,
                packet=(parts, n + 1),
            )
        )
        for n, chunk in enumerate(chunks)
    ]


def test_packets_reassembled_in_packet_order() -> None:
    p1, p2, p3 = split(s.HOURLY_34, 3)
    packets = Packets()
    assert packets.add(p2, 0.0) is None
    assert packets.add(p3, 1.0) is None
    merged = packets.add(p1, 2.0)
    assert merged is not None
    assert merged.body == parse_frame(s.HOURLY_34).body
    assert merged.packet == (3, 3)
    assert merged.raw == p1.raw + p2.raw + p3.raw
    assert (
        parse_report(merged, tz=BEIJING).elements
        == parse_report(parse_frame(s.HOURLY_34), tz=BEIJING).elements
    )
    reply = parse_frame(sl651.confirmation(merged, datetime(2026, 2, 2, 9, 0, 40, tzinfo=BEIJING)))
    assert (reply.packet, reply.end, reply.body[:2]) == ((3, 3), sl651.EOT, bytes.fromhex("0094"))
    assert packets.pending() == 0


def test_single_packet_frames_pass_through() -> None:
    frame = parse_frame(s.TIMED_32)
    assert Packets().add(frame, 0.0) is frame


def test_incomplete_groups_expire() -> None:
    p1, _, p3 = split(s.HOURLY_34, 3)
    packets = Packets(timeout_s=10.0)
    packets.add(p1, 0.0)
    packets.add(p3, 5.0)
    assert packets.expire(9.9) == []
    assert packets.expire(10.0) == [[p1, p3]]
    assert packets.pending() == 0


def test_max_pending_evicts_the_oldest_group() -> None:
    packets = Packets(max_pending=2)
    firsts = []
    for i, address in enumerate(("1090330851", "1090330852", "1090330853")):
        frame = replace(split(s.HOURLY_34, 2)[0], address=address)
        firsts.append(frame)
        packets.add(frame, float(i))
    assert packets.pending() == 2
    assert packets.expire(3.0) == [[firsts[0]]]


def test_a_new_group_replaces_an_unfinished_one() -> None:
    old = split(s.HOURLY_34, 3)
    new = split(s.HOURLY_34, 2)
    packets = Packets()
    packets.add(old[0], 0.0)
    assert packets.add(new[0], 1.0) is None
    assert packets.add(new[1], 2.0) is not None
    assert packets.expire(2.0) == [[old[0]]]


def test_merged_group_carries_the_marker_deviations_of_its_body() -> None:
    frame = parse_frame(s.TIMED_32)
    body = frame.body.replace(b"\xf0\xf0", b"\xf0\x28")
    raw = sl651.encode_hex_frame(center=1, address=frame.address, password=frame.password, fc=0x32, body=body)
    p1, p2 = split(raw, 2)
    packets = Packets()
    packets.add(p1, 0.0)
    merged = packets.add(p2, 0.0)
    assert merged is not None
    assert merged.deviations == ("obs_time_marker_F028",)
