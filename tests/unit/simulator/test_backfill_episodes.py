"""The backfill's episodes, checked with the project's own AQI, water-class and rain code."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.backfill import BackfillWindow, _plan, _samples, history_devices, hour_messages
from simulator.episodes import EpisodePlan, overlay, river_wave_m, storm_rain_mm_h
from simulator.fleet import (
    AirStation,
    ColdChainLogger,
    DeviceSpec,
    RainGauge,
    ReadingDict,
    RiverGauge,
    default_fleet,
)
from simulator.mqtt import WARNING_ABOVE_BASE_M, station_body
from stationflow.contracts import Reading
from streams.analytics import aqi as aqi_mod
from streams.analytics import water as water_mod
from streams.analytics.device import AnalyticsConfig, DeviceState, update_device
from streams.analytics.station import AQI_METRICS, WATER_METRICS

# Three ends: a Chinese night, a Chinese evening (the ozone afternoon moves a day back), a summer day.
ENDS = [
    datetime(2026, 12, 1, 3, 0, tzinfo=UTC),
    datetime(2026, 12, 1, 10, 37, tzinfo=UTC),
    datetime(2026, 7, 14, 5, 12, tzinfo=UTC),
]
FLEET = default_fleet()
CONFIG = AnalyticsConfig()


def _window(end: datetime) -> BackfillWindow:
    return BackfillWindow(end - timedelta(hours=48), end)


def _hourly_means(spec: DeviceSpec, window: BackfillWindow) -> dict[datetime, dict[str, float]]:
    """Hourly means per metric of a device's backfilled readings (whole hours only)."""
    plan = _plan(window, FLEET)
    out: dict[datetime, dict[str, float]] = {}
    for lo, hi in window.hours:
        if (hi - lo) < timedelta(hours=1):
            continue
        by_metric: dict[str, list[float]] = defaultdict(list)
        for _, rs in _samples(spec, lo, hi, window, plan):
            for r in rs:
                by_metric[r["metric"]].append(r["value"])
        out[lo] = {m: statistics.fmean(v) for m, v in by_metric.items()}
    return out


@pytest.mark.parametrize("end", ENDS, ids=lambda e: e.isoformat())
def test_pollution_episode_has_categories_and_primary_pollutants(end: datetime) -> None:
    window = _window(end)
    categories: set[int] = set()
    primaries: set[str] = set()
    for spec in (s for s in FLEET if isinstance(s, AirStation)):
        for hour, means in _hourly_means(spec, window).items():
            conc = {AQI_METRICS[m]: v for m, v in means.items() if m in AQI_METRICS}
            report = aqi_mod.hourly_aqi(conc, hour + timedelta(hours=1))
            assert report.category is not None
            categories.add(report.category.level)
            if report.aqi is not None and report.aqi > 50:
                primaries.update(p.split("_")[0] + ("_" + p.split("_")[1] if p.startswith("pm2") else "")
                                 for p in report.primary_pollutants)  # fmt: skip
    assert {1, 3, 4, 5} <= categories, categories  # good, light, moderate, heavy
    assert {"pm2_5", "pm10", "o3"} <= primaries, primaries


@pytest.mark.parametrize("end", ENDS, ids=lambda e: e.isoformat())
def test_storm_crosses_the_warning_level_and_falls_back(end: datetime) -> None:
    window = _window(end)
    plan = _plan(window, FLEET)
    assert plan is not None
    river = next(s for s in FLEET if isinstance(s, RiverGauge) and s.basin.name == "basin-a")
    warning = float(str(station_body(river)["warning_level"]))
    assert warning == river.base_level_m + WARNING_ABOVE_BASE_M
    levels = [(t, r["value"]) for t, rs in _series(river, window) for r in rs if r["metric"] == "level"]
    above = [t for t, v in levels if v >= warning]
    assert above, "the flood wave never reached the warning level"
    last_above = max(above)
    after = [v for t, v in levels if t > last_above]
    # flood.level clears 15 min below warning - 0.5 m - 0.05 m hysteresis, before live data starts
    below_clear = [v for v in after if v < warning - 0.55]
    assert len(below_clear) >= 6 and (end - last_above) > timedelta(hours=2)
    gauge = next(s for s in FLEET if isinstance(s, RainGauge) and s.basin.name == "basin-a")
    rain = [(t, r["value"]) for t, rs in _series(gauge, window) for r in rs if r["metric"] == "rain"]
    best_6h = max(sum(v for u, v in rain if t <= u < t + timedelta(hours=6)) for t, _ in rain)
    assert best_6h >= 50.0, best_6h  # CMA yellow rainstorm signal: >= 50 mm in 6 h


def _series(spec: DeviceSpec, window: BackfillWindow) -> list[tuple[datetime, list[ReadingDict]]]:
    plan = _plan(window, FLEET)
    return [s for lo, hi in window.hours for s in _samples(spec, lo, hi, window, plan)]


@pytest.mark.parametrize("end", ENDS, ids=lambda e: e.isoformat())
def test_water_section_worse_than_its_target(end: datetime) -> None:
    window = _window(end)
    spec = next(s for s in FLEET if s.device_id == "water-001")
    target = ["I", "II", "III", "IV", "V"].index(str(station_body(spec)["target_class"])) + 1
    classes = []
    for means in _hourly_means(spec, window).values():
        values = {WATER_METRICS[m]: v for m, v in means.items() if m in WATER_METRICS}
        classes.append(water_mod.water_class(values).klass)
    worse = [k for k in classes if k >= target + 1]
    assert len(worse) >= 10, classes
    assert classes[-1] <= target, "the section is back at its target before the end"


@pytest.mark.parametrize("end", ENDS, ids=lambda e: e.isoformat())
def test_cold_chain_excursion_lasts_over_half_an_hour(end: datetime) -> None:
    window = _window(end)
    spec = next(s for s in FLEET if s.device_id == "cold-001")
    assert isinstance(spec, ColdChainLogger) and spec.mode == "fridge"
    temps = [(t, r["value"]) for t, rs in _series(spec, window) for r in rs if r["metric"] == "temperature"]
    above = [t for t, v in temps if v > 8.0]
    assert above and max(above) - min(above) >= timedelta(minutes=45)
    assert all(v <= 8.0 for t, v in temps if t > max(above))  # back in range afterwards


@pytest.mark.parametrize("end_min", range(0, 24 * 60, 40))
def test_the_analytics_raise_and_clear_the_cold_chain_excursion_whatever_the_hour(end_min: int) -> None:
    """The whole analytics step over cold-001's history, for ends every 40 min of a day: the
    logger's 12-hourly trip change may fall inside the fridge failure (at ~21:00 UTC it does)."""
    end = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=end_min)
    spec = next(s for s in FLEET if s.device_id == "cold-001")
    state = DeviceState()
    events = []
    for t, rs in _series(spec, _window(end)):
        readings = [Reading.model_validate({**r, "ts": t}) for r in rs]
        out = update_device(
            state, "cold-001", readings, record=None, domain="coldchain", now=t.timestamp(), config=CONFIG
        )
        events += [
            e.state.value
            for e in out.events
            if e.rule == "coldchain.excursion" and e.state.value != "updated"
        ]
    assert events and events[-1] == "cleared", events
    assert events == ["raised", "cleared"] * (len(events) // 2), events


def test_episodes_end_before_live_data() -> None:
    """Nothing of the episodes is left in the last hour: live data continues from the models."""
    end = ENDS[0]
    plan = EpisodePlan(end=end, air_ids=("air-001",))
    for spec in FLEET:
        for minutes in (1, 30, 59):
            t = end - timedelta(minutes=minutes)
            rs = [{"metric": "x", "value": 1.0}]
            base = spec_readings(spec, t)
            assert overlay(plan, spec, t, base) == base or spec.device_id == "air-001"
            assert overlay(plan, spec, t, rs) == rs
    assert storm_rain_mm_h(0.5) == 0.0 and river_wave_m(0.5) == 0.0


def spec_readings(spec: DeviceSpec, t: datetime) -> list[ReadingDict]:
    import random

    from simulator.fleet import readings

    return readings(spec, t, random.Random(0))


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=365 * 24 * 60))
def test_hour_messages_are_deterministic_and_in_the_hour(offset_min: int) -> None:
    end = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=offset_min)
    window = _window(end)
    lo, hi = window.hours[-2]
    plan = _plan(window, FLEET)
    for spec in history_devices(FLEET):
        first = hour_messages(spec, lo, hi, window, plan)
        assert first == hour_messages(spec, lo, hi, window, plan)
        for topic, payload, n in first:
            assert topic.startswith(f"devices/{spec.device_id}/") and n > 0
            if topic.endswith("/readings"):
                stamps = {r["ts"] for r in orjson.loads(payload)["readings"]}
                assert all(lo.isoformat()[:13] <= s[:13] < hi.isoformat()[:16] for s in stamps)


def test_air_and_water_have_enough_values_for_valid_hours() -> None:
    """>= 45 values an hour (GB 3095 Table 4 via streams.analytics.device) for air and water."""
    window = _window(ENDS[0])
    lo, hi = window.hours[5]
    for spec in history_devices(FLEET):
        if isinstance(spec, AirStation) or spec.device_id.startswith("water"):
            samples = _samples(spec, lo, hi, window, None)
            assert len(samples) >= 45, spec.device_id


@pytest.mark.parametrize("end", ENDS, ids=lambda e: e.isoformat())
def test_no_metric_flatlines_for_30_steps(end: datetime) -> None:
    """The worker's stuck-sensor rule (30 equal values in a row) must not fire on the history."""
    window = _window(end)
    for spec in history_devices(FLEET):
        run: dict[str, int] = defaultdict(int)
        last: dict[str, object] = {}
        for _, rs in _series(spec, window):
            for r in rs:
                metric = str(r["metric"])
                run[metric] = run[metric] + 1 if last.get(metric) == r["value"] else 0
                last[metric] = r["value"]
                assert metric == "rain" or run[metric] < 30, (spec.device_id, metric, r)
