"""The water-class rule fires for a target class stored as the registry stores it ("I".."V")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stationflow.contracts import AlertState, HourlyValues
from streams.analytics.rules import Subject
from streams.analytics.station import StationState, update_station

T0 = datetime(2026, 11, 30, 8, tzinfo=UTC)


@pytest.mark.parametrize("target", ["II", "ii", 2])
def test_class_iv_against_target_ii_raises(target: str | int) -> None:
    subject = Subject(kind="station", id="ws-1", domain="water", station_id="ws-1")
    means = {"do": 7.0, "nh3n": 1.3, "codmn": 3.0, "tp": 0.05, "ph": 7.5}  # NH3-N 1.3: class IV
    hv = HourlyValues(station_id="ws-1", device_id="w-1", domain="water", hour=T0, means=means)
    out = update_station(
        StationState(), hv, subject=subject, attributes={"target_class": target}, overrides={}
    )
    (event,) = [e for e in out.events if e.rule == "water.class"]
    assert event.state is AlertState.RAISED and event.value == 4.0 and event.threshold == 3.0


def test_class_at_its_target_raises_nothing() -> None:
    subject = Subject(kind="station", id="ws-1", domain="water", station_id="ws-1")
    means = {"do": 7.0, "nh3n": 0.4, "codmn": 3.0, "tp": 0.05, "ph": 7.5}  # class II
    hv = HourlyValues(station_id="ws-1", device_id="w-1", domain="water", hour=T0, means=means)
    out = update_station(StationState(), hv, subject=subject, attributes={"target_class": "II"}, overrides={})
    assert not [e for e in out.events if e.rule == "water.class"]
