"""Derived measurements carry the station's region and basin (the dashboards' variables), the
level trend its warning and guaranteed levels, water_quality the section's target class, and
the alerts point region and basin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stationflow.contracts import AlertEvent, AlertState, HourlyValues, Reading, Severity
from streams.analytics.device import AnalyticsConfig, DeviceState, update_device
from streams.analytics.rules import Subject
from streams.analytics.station import StationState, update_station
from streams.analytics.water import class_number
from streams.analyticsworker import _alert_line
from streams.lineprotocol import parse_series
from tests.analytics_scenarios import GUARANTEED_LEVEL, WARNING_LEVEL, gauge_record

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _lines_of(measurement: str, lines: list[str]) -> list[str]:
    return [line for line in lines if parse_series(line)[0] == measurement]


def test_device_measurements_carry_station_region_and_basin_and_the_level_lines() -> None:
    readings = [
        Reading(metric="level", value=10.0 + i / 100, ts=T0 + timedelta(minutes=5 * i)) for i in range(30)
    ]
    out = update_device(
        DeviceState(),
        "lvl-1",
        readings,
        record=gauge_record("lvl-1", "level-gauge"),
        domain="hydro",
        now=1e9,
        config=AnalyticsConfig(window_points="minute"),  # every rolling value, each minute
    )
    for measurement in ("level_trend", "data_quality", "windows"):
        (line, *_) = _lines_of(measurement, out.lines)
        assert parse_series(line)[1] == {
            "device": "lvl-1",
            "station": "gauge-hj-01",
            "region": "445100",
            "basin": "Han",
        }
    (windows,) = _lines_of("windows", out.lines)  # one point per device: <metric>_<stat> fields
    assert {"level_mean_1h", "level_min_1h", "level_max_1h", "level_rise_per_h"} <= {
        field.split("=")[0] for field in windows.split(" ")[1].split(",")
    }
    # every level signal but the margins is a window field, at its exact value
    window_fields = dict(field.split("=") for field in windows.split(" ")[1].split(","))
    level = {k.removeprefix("level."): v for k, v in out.signals.items() if k.startswith("level.")}
    assert window_fields == {f"level_{k}": repr(v) for k, v in level.items() if not k.startswith("margin")}
    (trend,) = _lines_of("level_trend", out.lines)
    trend_fields = dict(field.split("=") for field in trend.split(" ")[1].split(","))
    assert {k: repr(v) for k, v in level.items()}.items() <= trend_fields.items()
    assert {"margin_warning", "margin_guaranteed"} <= trend_fields.keys()
    assert f"warning_level={float(WARNING_LEVEL)!r}" in trend
    assert f"guaranteed_level={float(GUARANTEED_LEVEL)!r}" in trend


def _water_hour(hour: datetime) -> HourlyValues:
    means = {"do": 4.0, "nh3n": 0.4, "codmn": 3.0, "tp": 0.05, "ph": 7.5}
    return HourlyValues(station_id="ws-1", device_id="w-1", domain="water", hour=hour, means=means)


def test_station_measurements_carry_region_basin_and_the_target_class() -> None:
    subject = Subject(
        kind="station", id="ws-1", domain="water", station_id="ws-1", region="440300", basin="b a"
    )
    out = update_station(
        StationState(), _water_hour(T0), subject=subject, attributes={"target_class": "III"}, overrides={}
    )
    (line,) = _lines_of("water_quality", out.lines)
    assert parse_series(line)[1] == {"station": "ws-1", "region": "440300", "basin": "b a"}
    assert "class=4i" in line and "target_class=3i" in line


def test_station_without_region_or_target_writes_only_what_it_knows() -> None:
    subject = Subject(kind="station", id="ws-1", domain="water", station_id="ws-1")
    out = update_station(StationState(), _water_hour(T0), subject=subject, attributes={}, overrides={})
    (line,) = _lines_of("water_quality", out.lines)
    assert parse_series(line)[1] == {"station": "ws-1"} and "target_class" not in line


@pytest.mark.parametrize(
    ("value", "expected"), [("III", 3), ("v", 5), (2, 2), (2.0, 2), ("VI", None), (0, None), ("x", None)]
)
def test_target_class(value: str | float, expected: int | None) -> None:
    assert class_number(value) == expected


def test_alert_point_carries_region_and_basin() -> None:
    event = AlertEvent(
        alert_id="flood.level:device:lvl-1",
        state=AlertState.RAISED,
        seq=1,
        severity=Severity.MODERATE,
        rule="flood.level",
        kind="threshold",
        domain="flood",
        subject="device:lvl-1",
        station_id="gauge-1",
        device_id="lvl-1",
        region="440300",
        basin="basin-a",
        metric="level",
        value=14.2,
        threshold=14.0,
        raised_at=T0,
        observed_at=T0,
        explanation="above the warning level",
    )
    measurement, tags = parse_series(_alert_line(event))
    assert measurement == "alerts"
    assert tags["region"] == "440300" and tags["basin"] == "basin-a" and tags["station"] == "gauge-1"
