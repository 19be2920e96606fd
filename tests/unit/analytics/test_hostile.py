"""Hostile input for the analytics engine: whatever readings arrive (extreme values, any
order, any flag, replays), updating never raises, the state survives its JSON round trip,
every line is valid line protocol without NaN/Inf, and every event is a valid AlertEvent."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationflow.contracts import AlertEvent, HourlyValues, Quality, Reading
from streams.analytics.device import AnalyticsConfig, DeviceState, update_device
from streams.analytics.rules import Subject
from streams.analytics.station import StationState, update_station
from tests.analytics_scenarios import gauge_record

T0 = datetime(2026, 5, 1, tzinfo=UTC)
METRICS = ["level", "rain", "pm25", "o3", "co", "temperature", "do", "nh3n", "ph"]
LINE = re.compile(r"^((?:[^ \\]|\\.)+) (.*) (-?\d+)$")  # series, fields, timestamp
FIELD = re.compile(r"^[a-z_0-9]+=(-?[0-9.e+-]+i?|\"[^\"]*\"|true)$")

values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-300, max_value=300),
    st.sampled_from([0.0, -273.15, -273.16, 1e308, -1e308, 5e-324]),
)
readings = st.builds(
    Reading,
    metric=st.sampled_from(METRICS),
    value=values,
    ts=st.integers(min_value=-7200, max_value=30 * 3600).map(lambda s: T0 + timedelta(seconds=s)),
    quality=st.sampled_from(list(Quality)),
    shipment=st.one_of(st.none(), st.sampled_from(["SH-1", "SH-2"])),
)


def _check_lines(lines: list[str]) -> None:
    for line in lines:
        parsed = LINE.match(line)
        assert parsed, line
        fields = parsed[2]
        assert "nan" not in fields.lower() and "inf" not in fields.lower(), line
        for field in re.split(r",(?=[a-z_0-9]+=)", fields):  # no string value here holds ",x="
            assert FIELD.match(field), (field, line)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(readings, min_size=1, max_size=30), min_size=1, max_size=6),
    domain=st.sampled_from(["hydro", "air", "water", "coldchain", "sensor"]),
)
def test_any_readings_never_break_the_device_engine(batches: list[list[Reading]], domain: str) -> None:
    state = DeviceState()
    record = gauge_record("dev-1", "level-gauge")
    station = StationState()
    subject = Subject(kind="station", id="gauge-hj-01", domain=domain, station_id="gauge-hj-01")
    for i, batch in enumerate(batches + batches[:1]):  # the first batch again: a replay
        out = update_device(
            state, "dev-1", batch, record=record, domain=domain, now=1e9 + i, config=AnalyticsConfig()
        )
        state = DeviceState.load(orjson.loads(orjson.dumps(state.dump())))
        _check_lines(out.lines)
        for event in out.events:
            AlertEvent.model_validate_json(event.model_dump_json())
        for hv in out.hourly:
            again = HourlyValues.model_validate_json(hv.model_dump_json())
            res = update_station(
                station, again, subject=subject, attributes={"target_class": 3}, overrides={}
            )
            station = StationState.load(orjson.loads(orjson.dumps(station.dump())))
            _check_lines(res.lines)
