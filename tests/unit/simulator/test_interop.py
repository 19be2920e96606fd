"""The simulator's frames, read by the center's decoders: two independent readings of the standards agree."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from devices.catalog import BUILTIN_TYPES
from ingest.decoders import hj212 as center_hj212
from ingest.decoders import senml as center_senml
from ingest.decoders import sl651 as center_sl651
from simulator.fleet import (
    AIR_DTU,
    AIR_HJ212,
    AIR_SENML,
    RTU_SL651,
    WATER_HJ212,
    AirStation,
    Hj212Wire,
    Sl651Wire,
    WaterStation,
    hydro_level,
    rain_tenths,
)
from simulator.hj212 import AIR_CODES, WATER_CODES, data_frame, station_values
from simulator.link import BEIJING
from simulator.mqtt import message
from simulator.sl651 import FC_HOURLY, FC_TIMED, Group, hourly_groups, report_frame, timed_groups
from stationflow.contracts import DeviceRecord, Hj212Link, MetricSpec, Quality, Sl651Link

NOW = datetime(2026, 7, 3, 1, 0, tzinfo=UTC)  # 09:00 in Beijing
TYPES = {t.name: t for t in BUILTIN_TYPES}


def record(device_id: str, type_name: str, **link: object) -> DeviceRecord:
    spec = TYPES[type_name]
    return DeviceRecord(
        device_id=device_id,
        device_type=type_name,
        domain=spec.domain,
        metrics={m.metric: m for m in spec.metrics},
        updated_at=NOW,
        **link,
    )


@pytest.mark.parametrize(
    ("spec", "type_name", "codes"),
    [(AIR_HJ212, "air-station", AIR_CODES), (WATER_HJ212, "water-station", WATER_CODES)],
)
def test_hj212_minute_upload_decodes_to_the_catalog_metrics(
    spec: AirStation | WaterStation, type_name: str, codes: dict[str, str]
) -> None:
    start = datetime(2026, 7, 2, 18, 1, tzinfo=UTC)  # 02:01 Beijing: the water station calibrates
    fields = station_values(spec, start, 60.0)
    link = spec.link
    assert isinstance(link, Hj212Wire)
    frame = data_frame(
        mn=link.mn,
        pw=link.password,
        cn="2051",
        data_time=start,
        fields=fields,
        st=link.st,
        qn="20260703020200000",
    )
    parsed = center_hj212.parse_frame(frame, strict=True)
    assert parsed.crc_variant == "hj212" and parsed.deviations == ()
    rec = record(spec.device_id, type_name, protocol="hj212", hj212=Hj212Link(mn=link.mn))
    decoded = center_hj212.to_readings(parsed, rec, tz=BEIJING)
    by_metric = {r.metric: r for r in decoded.readings}
    assert set(by_metric) == set(codes)
    for metric, code in codes.items():
        assert by_metric[metric].value == pytest.approx(fields[code]["Avg"], abs=0.001)
        assert by_metric[metric].ts == start
        assert by_metric[metric].quality == (
            Quality.CALIBRATION if type_name == "water-station" else Quality.NORMAL
        )


def test_hj212_over_mqtt_from_the_dtu() -> None:
    _, frame, count = message(AIR_DTU, NOW, NOW, random.Random(2))
    link = AIR_DTU.link
    assert isinstance(link, Hj212Wire)
    rec = record("air-dtu-001", "air-station", protocol="hj212", hj212=Hj212Link(mn=link.mn))
    decoded = center_hj212.decode_mqtt(frame, record=rec, received_at=NOW, tz=BEIJING)
    assert len(decoded.readings) == count == 8
    assert {r.ts for r in decoded.readings} == {NOW}


def test_senml_pack_decodes_to_the_devices_readings() -> None:
    _, pack, count = message(AIR_SENML, NOW, NOW, random.Random(3), step_s=60.0)
    readings = center_senml.decode(pack, device_id="air-senml-001", received_at=NOW)
    assert len(readings) == count == 16
    assert {r.ts for r in readings} == {NOW, NOW - timedelta(seconds=30)}
    assert {r.metric: r.unit for r in readings}["temperature"] == "degC"


def hydro_rtu_record() -> DeviceRecord:
    metrics = {
        "rain": MetricSpec(metric="rain", unit="mm", min=0, max=300, sl651_code="DRP"),
        "level": MetricSpec(metric="level", unit="m", min=-100, max=6000, sl651_code="Z"),
        "flow": MetricSpec(metric="flow", unit="m3/s", min=0, max=500000, sl651_code="Q"),
        "voltage": MetricSpec(metric="voltage", unit="V", min=0, max=30, sl651_code="VT"),
    }
    return DeviceRecord(
        device_id="rtu-001",
        device_type="hydro-rtu",
        domain="hydro",
        metrics=metrics,
        updated_at=NOW,
        protocol="sl651",
        sl651=Sl651Link(address="0012345678"),
    )


def rtu_frame(fc: int, groups: list[Group]) -> bytes:
    link = RTU_SL651.link
    assert isinstance(link, Sl651Wire)
    return report_frame(
        center=1,
        address=link.address,
        password=link.password,
        fc=fc,
        serial=7,
        sent=NOW,
        station_class="H",
        groups=groups,
    )


def test_sl651_hourly_report_gives_twelve_rain_slots_and_the_stage() -> None:
    end = next(
        t
        for t in (NOW + timedelta(hours=h) for h in range(1, 2000))
        if rain_tenths(RTU_SL651, t) - rain_tenths(RTU_SL651, t - timedelta(hours=1)) >= 5
    )
    frame = center_sl651.parse_frame(rtu_frame(FC_HOURLY, hourly_groups(RTU_SL651, end)))
    assert frame.deviations == () and frame.address == "0012345678" and frame.fc == FC_HOURLY
    report = center_sl651.parse_report(frame, tz=BEIJING)
    assert report.truncated_at is None
    decoded = center_sl651.to_readings(report, hydro_rtu_record())
    rain = sorted((r.ts, r.value) for r in decoded.readings if r.metric == "rain")
    assert [ts for ts, _ in rain] == [end - timedelta(minutes=55 - 5 * i) for i in range(12)]
    hour_mm = (rain_tenths(RTU_SL651, end) - rain_tenths(RTU_SL651, end - timedelta(hours=1))) / 10
    assert sum(v for _, v in rain) == pytest.approx(hour_mm)
    # the stage every 5 minutes from DRZ1 (cm), the slot at the hour given way to Z (mm)
    levels = sorted((r.ts, r.value) for r in decoded.readings if r.metric == "level")
    assert [ts for ts, _ in levels] == [end - timedelta(minutes=55 - 5 * i) for i in range(12)]
    assert levels[-1][1] == pytest.approx(hydro_level(RTU_SL651, end)[0], abs=0.001)
    assert {r.metric for r in decoded.readings} == {"rain", "level", "flow", "voltage"}


def test_sl651_timed_report_gives_stage_flow_and_voltage() -> None:
    frame = center_sl651.parse_frame(rtu_frame(FC_TIMED, timed_groups(RTU_SL651, NOW)))
    decoded = center_sl651.to_readings(center_sl651.parse_report(frame, tz=BEIJING), hydro_rtu_record())
    assert sorted(r.metric for r in decoded.readings) == ["flow", "level", "voltage"]
    assert {r.ts for r in decoded.readings} == {NOW}
