"""Issue 9 items 3-5 in the pure engine: exact means (the GB/T 8170 rounding and the IAQI ceiling
depend only on the data, not on summation order), the HJ 663-2013 daily O3 8-h maximum over the
17 windows inside the day, and one MKT (the spec's) per shipment, kept through enrichment."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.contracts import (
    DeviceRecord,
    DeviceStatus,
    HourlyValues,
    MetricSpec,
    Reading,
    ReadingBatch,
    StationInfo,
)
from streams.analytics import coldchain, validity
from streams.analytics.device import AnalyticsConfig, DeviceState, mkt_c, update_device
from streams.analytics.rules import Subject
from streams.analytics.station import CHINA, StationOutput, StationState, update_station
from streams.enrich import Enriched, enrich

CONFIG = AnalyticsConfig()
HOUR0 = datetime(2026, 7, 1, 2, tzinfo=UTC)  # HJ 633-2026 in force: 1-h PM10 on the daily column
SUBJECT = Subject(kind="station", id="st-1", domain="air", station_id="st-1")


def pm10_readings_with_mean_80_5() -> list[float]:
    """60 one-minute PM10 values (one decimal) whose exact mean is 80.5 µg/m³."""
    rng = random.Random(9)
    half = [round(rng.uniform(78.0, 83.0), 1) for _ in range(30)]
    values = half + [float(Fraction(161) - Fraction(repr(v))) for v in half]  # pairs summing to 161
    rng.shuffle(values)
    assert sum(Fraction(repr(v)) for v in values) / 60 == Fraction(161, 2)
    return values


PM10 = pm10_readings_with_mean_80_5()


def _hourly_pm10(
    order: list[float], station: StationState | None = None
) -> tuple[HourlyValues, StationOutput]:
    state = DeviceState()
    readings = [Reading(metric="pm10", value=v, ts=HOUR0 + timedelta(minutes=i)) for i, v in enumerate(order)]
    # a reading past the hour's end + grace closes it
    readings.append(Reading(metric="pm10", value=80.0, ts=HOUR0 + timedelta(minutes=66)))
    out = update_device(state, "air-1", readings, record=None, domain="air", now=0.0, config=CONFIG)
    (hv,) = out.hourly
    hv = HourlyValues.model_validate_json(hv.model_dump_json())  # as it crosses Kafka
    station_out = update_station(station or StationState(), hv, subject=SUBJECT, attributes={}, overrides={})
    return hv, station_out


def test_float_summation_order_really_flips_the_mean() -> None:
    """The defect this guards against: a float mean of these readings depends on their order."""
    rng = random.Random(3)
    means = set()
    for _ in range(50):
        order = PM10[:]
        rng.shuffle(order)
        means.add(float(np.asarray(order).mean()))
    assert means != {80.5}


@settings(max_examples=40, deadline=None)
@given(st.permutations(PM10))
def test_every_order_of_readings_with_mean_80_5_gives_pm10_80_5_and_aqi_72(order: list[float]) -> None:
    hv, out = _hourly_pm10(order)
    assert hv.means["pm10"] == 80.5 and hv.counts["pm10"] == 60
    assert Fraction(hv.sums["pm10"]) == Fraction(4830)
    assert out.hourly_aqi is not None
    # GB/T 8170: 80.5 → 80 (half to even) → IAQI 50 + 50/70·30 = 71.4 → 72 (81 would give 73)
    assert out.hourly_aqi.iaqi["pm10_1h"] == 72 and out.hourly_aqi.aqi == 72


decimals = st.integers(min_value=0, max_value=5000).map(lambda n: n / 10)


@settings(max_examples=200, deadline=None)
@given(st.lists(decimals, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_exact_mean_does_not_depend_on_order(values: list[float], rnd: random.Random) -> None:
    shuffled = values[:]
    rnd.shuffle(shuffled)
    exact = sum(Fraction(repr(v)) for v in values) / len(values)
    assert validity.exact_mean(shuffled, 1) == exact
    assert validity.mean_if_valid(shuffled, 1) == float(exact)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=3000), min_size=8, max_size=8),
    st.randoms(use_true_random=False),
)
def test_o3_8h_mean_of_exact_half_rounds_one_way_in_every_order(
    tenths: list[int], rnd: random.Random
) -> None:
    # shift the last hour so the 8-h mean is exactly x.5
    total = sum(tenths)
    target = (total // 80) * 80 + 40  # tenths: mean = (target/8)/10 = k + 0.5
    tenths[-1] += target - total if tenths[-1] + target - total >= 0 else target + 80 - total
    hours = [t / 10 for t in tenths]
    expected = Fraction(sum(tenths), 80)
    assert expected.denominator == 2
    for _ in range(5):
        rnd.shuffle(hours)
        mean = validity.o3_8h_moving(hours)
        assert mean == expected
        assert round(mean) == round(expected)  # GB/T 8170 half to even on the exact value


def _hv(hour: datetime, means: dict[str, Fraction], device: str = "air-1") -> HourlyValues:
    """A device-hour as the device stage sends it: exact sums of 3 samples."""
    return HourlyValues(
        station_id="st-1",
        device_id=device,
        domain="air",
        hour=hour,
        means={m: float(v) for m, v in means.items()},
        counts=dict.fromkeys(means, 3),
        sums={m: str(v * 3) for m, v in means.items()},
    )


def test_daily_mean_of_hourly_thirds_is_exact_whatever_the_order() -> None:
    """Hourly means like 80.333… cannot be floats; the 24-h mean of them is still exact."""
    day = date(2026, 7, 2)
    start = datetime(day.year, day.month, day.day, tzinfo=CHINA)
    thirds = [Fraction(241, 3), Fraction(242, 3)] * 6 + [Fraction(80), Fraction(81)] * 6  # mean 80.5
    assert sum(thirds) / 24 == Fraction(161, 2)
    results = set()
    rng = random.Random(5)
    for _ in range(20):
        rng.shuffle(thirds)
        state = StationState()
        out = StationOutput()
        for h, value in enumerate(thirds):
            out = update_station(
                state,
                _hv(start + timedelta(hours=h), {"pm10": value}),
                subject=SUBJECT,
                attributes={},
                overrides={},
            )
            state = StationState.load(orjson.loads(orjson.dumps(state.dump())))  # the Faust table
        assert out.daily_aqi is not None
        results.add((out.daily_aqi.iaqi["pm10_24h"], out.daily_aqi.aqi))
    assert results == {(72, 72)}


def _o3_day(day: date, day_values: list[float | None], evening: float | None) -> StationOutput:
    """Feed the previous evening (17:00-24:00) and the day's 24 O3 hours (China time)."""
    start = datetime(day.year, day.month, day.day, tzinfo=CHINA)
    state = StationState()
    out = StationOutput()
    if evening is not None:
        for h in range(-7, 0):
            update_station(
                state,
                _hv(start + timedelta(hours=h), {"o3": Fraction(evening)}),
                subject=SUBJECT,
                attributes={},
                overrides={},
            )
    for h, value in enumerate(day_values):
        means = {"pm10": Fraction(40)} if value is None else {"o3": Fraction(value), "pm10": Fraction(40)}
        out = update_station(
            state, _hv(start + timedelta(hours=h), means), subject=SUBJECT, attributes={}, overrides={}
        )
    return out


def test_daily_o3_8h_max_takes_only_the_17_windows_inside_the_day() -> None:
    day = date(2026, 7, 2)
    out = _o3_day(day, [100.0] * 24, evening=300.0)
    assert out.daily_aqi is not None
    # windows ending 01:00…07:00 would reach into the 300 µg/m³ evening (e.g. (7·300+100)/8 = 275)
    assert out.daily_aqi.iaqi["o3_8h"] == 50  # 100 µg/m³ → IAQI 50
    assert out.daily_aqi.aqi == 50


def test_daily_o3_8h_max_is_the_largest_of_the_day_windows() -> None:
    values = [50.0] * 24
    values[14:22] = [180.0] * 8  # the window ending 22:00
    out = _o3_day(date(2026, 7, 2), values, evening=None)
    assert out.daily_aqi is not None
    # 180 µg/m³ on the 2026 O3 8-h column (160 → 100, 215 → 150): 100 + 50·20/55 = 118.2 → 119
    assert out.daily_aqi.iaqi["o3_8h"] == 119


def test_daily_o3_8h_needs_14_valid_windows() -> None:
    # hours 00-18 present: windows ending 08:00…20:00 have >= 6 of 8 hours → 14 valid windows
    fourteen = [100.0] * 19 + [None] * 5
    out = _o3_day(date(2026, 7, 2), fourteen, evening=None)
    assert out.daily_aqi is not None and out.daily_aqi.iaqi.get("o3_8h") == 50
    # one hour fewer: 13 valid windows → no daily O3 8-h value (reported missing)
    thirteen = [100.0] * 18 + [None] * 6
    out = _o3_day(date(2026, 7, 2), thirteen, evening=None)
    assert out.daily_aqi is not None and "o3_8h" not in out.daily_aqi.iaqi
    assert "o3_8h" in out.daily_aqi.missing


def test_validity_daily_max_8h_has_17_windows() -> None:
    assert validity.O3_8H_DAY_WINDOWS == 17
    day: list[float | None] = [10.0] * 24
    assert validity.daily_max_8h(day, min_windows=17) == 10
    day[0] = None
    day[1] = None
    day[2] = None  # the window ending 08:00 has 5 hours: 16 valid windows left
    assert validity.daily_max_8h(day, min_windows=17) is None
    assert validity.daily_max_8h(day, min_windows=16) == 10


# --- cold chain: one MKT, per shipment -------------------------------------------------------


@pytest.mark.parametrize(
    ("temps", "expected"),
    [
        ([-18.0, -18.0, -18.0, -18.0], -18.000),
        ([-18.0, -18.0, -18.0, -10.0], -15.017),
        ([2.0, 4.0, 6.0, 8.0], 5.302),
        ([2.0] * 7 + [20.0], 7.503),
    ],
)
def test_mkt_of_equally_spaced_series_is_the_spec_vector(temps: list[float], expected: float) -> None:
    times = [600.0 * i for i in range(len(temps))]
    assert coldchain.mkt_series(times, temps) == pytest.approx(expected, abs=5e-4)
    assert coldchain.mkt_series(times, temps) == pytest.approx(coldchain.mkt(temps), abs=1e-9)


T0 = datetime(2026, 7, 1, tzinfo=UTC)
series = st.lists(
    st.tuples(st.integers(min_value=30, max_value=5400), st.integers(min_value=-250, max_value=250)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(series, st.integers(min_value=1, max_value=7))
def test_the_pipeline_mkt_is_the_spec_function_and_replay_safe(
    steps: list[tuple[int, int]], batch: int
) -> None:
    times = list(np.cumsum([s for s, _ in steps]).astype(float))
    temps = [t / 10 for _, t in steps]
    readings = [
        Reading(metric="temperature", value=temp, ts=T0 + timedelta(seconds=ts), shipment="SH-7")
        for ts, temp in zip(times, temps, strict=True)
    ]
    state = DeviceState()
    for i in range(0, len(readings), batch):
        update_device(
            state, "log-1", readings[i : i + batch], record=None, domain="coldchain", now=0.0, config=CONFIG
        )
        state = DeviceState.load(orjson.loads(orjson.dumps(state.dump())))
        # a replay of everything so far (a restarted worker) changes nothing
        before = state.dump()
        update_device(
            state, "log-1", readings[: i + batch], record=None, domain="coldchain", now=0.0, config=CONFIG
        )
        assert state.dump()["ship"] == before["ship"]
    got = mkt_c(state.shipments["SH-7"])
    assert got == pytest.approx(coldchain.mkt_series(times, temps, max_gap_s=3600.0), abs=1e-9)
    summary = coldchain.excursions(list(zip(times, temps, strict=True)), 0.0, 8.0, 0.0, max_gap_s=3600.0)
    ship = state.shipments["SH-7"]
    assert ship[2] == pytest.approx(summary.time_above_s) and ship[3] == pytest.approx(summary.time_below_s)
    assert ship[4] == summary.breaches


def test_enrichment_keeps_the_shipment() -> None:
    record = DeviceRecord(
        device_id="log-1",
        device_type="coldchain-logger",
        domain="coldchain",
        station=StationInfo(station_id="truck-1", name="Truck 1"),
        metrics={"temperature": MetricSpec(metric="temperature", unit="degC", min=-80, max=60)},
        status=DeviceStatus.ACTIVE,
        updated_at=T0,
    )
    batch = ReadingBatch(
        device_id="log-1",
        received_at=T0,
        source="mqtt:devices/log-1/readings",
        readings=[
            Reading(metric="temperature", value=41.0, unit="°F", ts=T0, shipment="SH-1"),
            Reading(metric="temperature", value=4.0, ts=T0 + timedelta(minutes=1)),
        ],
    )
    result = enrich(batch, record)
    assert isinstance(result, Enriched)
    assert [(r.shipment, r.value) for r in result.batch.readings] == [
        ("SH-1", pytest.approx(5.0)),
        (None, 4.0),
    ]
