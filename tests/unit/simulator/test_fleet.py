"""Signal models of the simulated fleet: valid, realistic, deterministic readings."""

from __future__ import annotations

import random
import re
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from simulator.fleet import (
    AirStation,
    Basin,
    ColdChainLogger,
    DeviceSpec,
    RainGauge,
    RiverGauge,
    cold_readings,
    default_fleet,
    readings,
)
from simulator.mqtt import _model_fleet, render, topic_for
from stationflow.contracts import DEVICE_ID_PATTERN, Reading

WINTER = datetime(2026, 1, 5, tzinfo=UTC)
SUMMER = datetime(2026, 7, 1, tzinfo=UTC)

# Physically plausible bounds per (kind, metric), wider than what the models aim for.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("air", "pm25"): (1, 1000),
    ("air", "pm10"): (1, 2000),
    ("air", "so2"): (0, 800),
    ("air", "no2"): (0, 500),
    ("air", "co"): (0, 20),
    ("air", "o3"): (0, 500),
    ("air", "temperature"): (-30, 45),
    ("air", "humidity"): (0, 100),
    ("water", "ph"): (6, 9.5),
    ("water", "do"): (0, 20),
    ("water", "codmn"): (0, 30),
    ("water", "nh3n"): (0, 5),
    ("water", "tp"): (0, 2),
    ("water", "temperature"): (0, 35),
    ("water", "turbidity"): (0, 5000),
    ("rain", "rain"): (0, 60),  # mm per minute; 60 mm/min is beyond any record
    ("river", "level"): (0, 100),
    ("river", "flow"): (0, 20000),
    ("cold", "temperature"): (-25, 25),
    ("cold", "humidity"): (0, 100),
    ("rtu", "rain"): (0, 60),
    ("rtu", "level"): (0, 100),
    ("rtu", "flow"): (0, 20000),
    ("rtu", "voltage"): (11.5, 14.5),
}
UNITS = {
    "pm25": "ug/m3",
    "pm10": "ug/m3",
    "so2": "ug/m3",
    "no2": "ug/m3",
    "o3": "ug/m3",
    "co": "mg/m3",
    "humidity": "%",
    "temperature": "degC",
    "do": "mg/L",
    "codmn": "mg/L",
    "nh3n": "mg/L",
    "tp": "mg/L",
    "turbidity": "NTU",
    "ph": "pH",
    "rain": "mm",
    "level": "m",
    "flow": "m3/s",
    "voltage": "V",
}


def series(
    spec: DeviceSpec, start: datetime, days: float, step_min: float, seed: int = 1
) -> list[tuple[datetime, dict[str, float]]]:
    """(t, {metric: value}) sampled every ``step_min`` minutes."""
    rng = random.Random(seed)
    out = []
    for i in range(int(days * 24 * 60 / step_min)):
        t = start + timedelta(minutes=i * step_min)
        out.append((t, {r["metric"]: r["value"] for r in readings(spec, t, rng)}))
    return out


def test_default_fleet_has_stable_unique_ids() -> None:
    fleet = default_fleet()
    ids = [spec.device_id for spec in fleet]
    assert len(ids) == len(set(ids)) == 17
    assert ids[:3] == ["air-001", "air-002", "air-003"]
    assert ids[12:] == ["air-hj-001", "water-hj-001", "rtu-001", "air-dtu-001", "air-senml-001"]
    assert {i.split("-")[0] for i in ids} == {"air", "water", "rain", "river", "cold", "rtu"}
    assert len(default_fleet(protocols=False)) == 12
    assert all(re.match(DEVICE_ID_PATTERN, i) for i in ids)
    assert [s.device_id for s in default_fleet(1, 0, 0, 0, 4, protocols=False)] == ["air-001"] + [
        f"cold-00{i}" for i in range(1, 5)
    ]


@pytest.mark.parametrize("start", [WINTER, SUMMER])
def test_every_reading_is_valid_and_in_range(start: datetime) -> None:
    rng = random.Random(3)
    for spec in default_fleet():
        kind = spec.device_id.split("-")[0]
        for i in range(0, 3 * 24 * 60, 7):
            t = start + timedelta(minutes=i)
            out = readings(spec, t, rng)
            assert [r["metric"] for r in out] == list(dict.fromkeys(r["metric"] for r in out))
            for raw in out:
                reading = Reading.model_validate(raw)
                assert reading.ts == t
                assert isinstance(raw["value"], float)
                assert raw["unit"] == UNITS[reading.metric]
                lo, hi = RANGES[(kind, reading.metric)]
                assert lo <= reading.value <= hi, (spec.device_id, raw)


def test_same_seed_same_readings_other_seed_other_noise() -> None:
    t = SUMMER + timedelta(hours=9, minutes=17)
    a = [readings(s, t, random.Random(42)) for s in default_fleet()]
    b = [readings(s, t, random.Random(42)) for s in default_fleet()]
    c = [readings(s, t, random.Random(43)) for s in default_fleet()]
    assert a == b
    assert a != c


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        readings(AirStation("air-001"), datetime(2026, 1, 1), random.Random(1))  # noqa: DTZ001


def _hourly_mean(data: list[tuple[datetime, dict[str, float]]], metric: str, hours: set[int]) -> float:
    # Local time is UTC+8 for the default stations.
    return statistics.mean(v[metric] for t, v in data if (t.hour + 8) % 24 in hours)


def test_pm25_has_rush_hour_peaks_and_pm10_follows() -> None:
    data = series(AirStation("air-001"), WINTER, days=30, step_min=20)
    night = _hourly_mean(data, "pm25", {3, 4})
    assert _hourly_mean(data, "pm25", {20, 21, 22}) > 1.3 * night
    assert _hourly_mean(data, "pm25", {8, 9}) > 1.15 * night
    ratios = [v["pm10"] / v["pm25"] for _, v in data]
    assert min(ratios) >= 1.25
    assert max(ratios) <= 2.05


def test_ozone_and_dissolved_oxygen_peak_in_the_afternoon() -> None:
    air = series(AirStation("air-001"), SUMMER, days=10, step_min=30)
    assert _hourly_mean(air, "o3", {14, 15, 16}) > 2 * _hourly_mean(air, "o3", {2, 3, 4})
    water = series(default_fleet(0, 1, 0, 0, 0)[0], SUMMER, days=5, step_min=30)
    assert _hourly_mean(water, "do", {14, 15, 16}) > _hourly_mean(water, "do", {4, 5, 6}) + 1


def test_rain_comes_in_storms_and_rivers_follow_with_a_lag() -> None:
    basin = Basin("test-basin", storm_chance=0.03)
    rain = series(RainGauge("rain-001", basin=basin, interval_s=600), SUMMER, days=60, step_min=10)
    level = series(RiverGauge("river-001", basin=basin), SUMMER, days=60, step_min=10)
    amounts = [v["rain"] for _, v in rain]
    wet = [a for a in amounts if a > 0]
    assert 0.02 < len(wet) / len(amounts) < 0.5  # mostly dry, storms now and then
    assert max(amounts) * 6 >= 8.0  # at least one heavy-rain hour (mm/h)
    peak_rain = max(range(len(amounts)), key=amounts.__getitem__)
    window = level[peak_rain : peak_rain + 6 * 48]
    peak_level = max(range(len(window)), key=lambda i: window[i][1]["level"])
    assert 6 <= peak_level <= 6 * 36  # the river peaks 1-36 h after the rain
    assert window[peak_level][1]["level"] > level[peak_rain][1]["level"] + 0.3
    assert window[peak_level][1]["flow"] > level[peak_rain][1]["flow"]


def test_rain_totals_do_not_depend_on_the_reporting_interval() -> None:
    basin = Basin("test-basin", storm_chance=0.05)
    rng = random.Random(1)
    day = SUMMER + timedelta(days=3)

    def total(interval_min: int) -> float:
        gauge = RainGauge("rain-001", basin=basin, interval_s=interval_min * 60)
        steps = range(interval_min, 24 * 60 + 1, interval_min)
        return sum(float(readings(gauge, day + timedelta(minutes=m), rng)[0]["value"]) for m in steps)

    hourly, five_min = total(60), total(5)
    assert hourly > 0
    assert five_min == pytest.approx(hourly, rel=0.15)  # same storm, only noise differs


def test_cold_chain_holds_its_band_with_door_excursions() -> None:
    fridge = series(ColdChainLogger("cold-001"), WINTER, days=14, step_min=2)
    temps = [v["temperature"] for _, v in fridge]
    assert 2.0 <= statistics.median(temps) <= 8.0
    assert sum(2.0 <= x <= 8.0 for x in temps) / len(temps) > 0.9
    assert max(temps) > 8.0  # doors are opened, sometimes left open
    freezer = series(ColdChainLogger("cold-003", mode="freezer", doors_per_h=1.5), WINTER, 7, 2)
    cold = [v["temperature"] for _, v in freezer]
    assert -19.5 <= statistics.median(cold) <= -16.5
    assert sum(x <= -15.0 for x in cold) / len(cold) > 0.9


def test_simulator_render_stamps_wall_time_on_model_readings() -> None:
    spec = AirStation("air-002")
    model_t, wall_t = SUMMER + timedelta(hours=5), SUMMER + timedelta(seconds=1, milliseconds=250)
    payload, count = render(spec, model_t, wall_t, random.Random(1))
    body = orjson.loads(payload)
    parsed = [Reading.model_validate(r) for r in body["readings"]]
    assert count == len(parsed) == 8
    assert {r.ts for r in parsed} == {wall_t}
    assert [r.metric for r in parsed][:2] == ["pm25", "pm10"]
    assert topic_for("air-002") == "devices/air-002/readings"


def test_simulator_rain_gauges_integrate_over_the_model_step() -> None:
    fleet = _model_fleet(default_fleet(), step_s=600.0)
    assert {s.interval_s for s in fleet if isinstance(s, RainGauge)} == {600.0}
    assert [s.device_id for s in fleet] == [s.device_id for s in default_fleet()]


def test_readings_of_a_fleet_vary_by_station() -> None:
    t = WINTER + timedelta(hours=13)
    pm = defaultdict(list)
    for spec in default_fleet(n_air=3, n_water=0, n_rain=0, n_river=0, n_cold=0, protocols=False):
        for _, v in series(spec, t, days=1, step_min=60):
            pm[spec.device_id].append(v["pm25"])
    means = {k: statistics.mean(v) for k, v in pm.items()}
    assert means["air-002"] > means["air-001"] > means["air-003"]


def test_a_logger_names_its_shipment_and_starts_a_new_one_each_trip() -> None:
    spec = ColdChainLogger("cold-002", trip_h=12.0)
    t0 = datetime(2026, 11, 21, 11, 59, tzinfo=UTC)
    rng = random.Random(1)
    first = cold_readings(spec, t0, rng)
    later = cold_readings(spec, t0 + timedelta(minutes=2), rng)
    assert {r["shipment"] for r in first} == {"cold-002-20261121T0000Z"}
    assert {r["shipment"] for r in later} == {"cold-002-20261121T1200Z"}
    for r in first + later:  # the contract takes it, and it is tag-safe
        assert Reading.model_validate(r).shipment == r["shipment"]
