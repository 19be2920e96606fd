"""Scenarios placed in the backfilled history, relative to its end (pure, deterministic).

A backfill of the last hours (``simulator.backfill``) draws every reading from the ordinary
signal models of ``simulator.fleet`` and passes it through :func:`overlay`, which reshapes it
during the episodes of an :class:`EpisodePlan`. The plan is fixed by the backfill's ``end`` and
nothing else, so every backfill shows the same story, at the same distance from "now":

* **pollution episode** (every air station, a little staggered): a clean day after a cold
  front (优), a winter haze building up through 良 / 轻度 / 中度 to 重度污染 with PM2.5
  primary, a dust event with PM10 primary, and an ozone afternoon (the last local afternoon
  before the end) with O3 primary;
* **storm with a flood wave** in ``basin-a``: about 60 mm of rain in 6 h at its rain gauges
  (a rainstorm signal, 暴雨 over 24 h), and a river wave that rises about 3.4 m above its base
  (over the warning level, 2.5 m above base) and falls back below it hours before the end;
* **water section worse than its target class**: ammonia nitrogen of class IV at
  ``water-001`` (target class II) for 16 hours;
* **cold-chain excursion**: ``cold-001``'s fridge compressor fails, about 80 min above 8 °C.

Times are "hours before the end" (``age_h``): an episode that ends ≥ 2 h before the end has
cleared by the time live data starts.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from simulator.fleet import (
    AirStation,
    ColdChainLogger,
    DeviceSpec,
    RainGauge,
    ReadingDict,
    RiverGauge,
    WaterStation,
)

__all__ = [
    "COLD_EXCURSION",
    "DUST",
    "HAZE",
    "POOR_WATER",
    "STORM_BASIN",
    "EpisodePlan",
    "haze_pm25",
    "overlay",
    "river_wave_m",
    "storm_rain_mm_h",
]

_CST = timezone(timedelta(hours=8))
_HOUR = 3600.0

# Pollution episode: (age_h, PM2.5 µg/m³) knots, linear in between, oldest first. The hourly
# AQI of HJ 633-2026 scores the 1-h PM2.5 on the daily column: 35 → 50, 75 → 100, 115 → 150,
# 150 → 200, 250 → 300.
HAZE: tuple[tuple[float, float], ...] = (
    (46.0, 16.0),  # clean air behind a cold front: 优
    (40.0, 18.0),
    (37.0, 60.0),  # 良
    (35.0, 95.0),  # 轻度污染
    (33.0, 130.0),  # 中度污染
    (31.0, 205.0),  # 重度污染
    (28.0, 215.0),
    (26.0, 120.0),
    (24.0, 60.0),
)
DUST = (22.0, 18.0)  # age window (from, to) of the dust event: PM10 primary
DUST_PM10 = 380.0  # µg/m³ 1-h: IAQI ≈ 243 on the daily PM10 column
DUST_PM25 = 70.0  # IAQI ≈ 94
O3_PEAK = 285.0  # µg/m³ 1-h: IAQI ≈ 143 (200 → 100, 300 → 150)
O3_HOURS = (13, 17)  # local afternoon hours of the ozone episode
CLEAN_PM10_RATIO = 1.6
STAGGER_H = 0.7  # each further air station sees the haze this much later

STORM_BASIN = "basin-a"
STORM = (22.0, 16.0)  # rain between these ages
STORM_PEAK_MM_H = 20.0  # triangular: ~60 mm in 6 h (CMA yellow: >= 50 mm in 6 h)
WAVE_PEAK_AGE_H = 14.0
WAVE_PEAK_M = 3.4  # above base; warning level at +2.5, guaranteed at +4.0
WAVE_WIDTH_H = 2.8

POOR_WATER = ("water-001", 36.0, 20.0)  # device, from age, to age
POOR_NH3N = 1.3  # mg/L: GB 3838 class IV (III <= 1.0, IV <= 1.5)

COLD_EXCURSION = ("cold-001", 10.0, 8.5)  # compressor failure: device, from age, to age
COLD_PEAK_C = 11.5
COLD_RAMP_H = 0.25


@dataclass(frozen=True, slots=True)
class EpisodePlan:
    """The episodes of a backfill that ends at ``end``; ``air_ids`` orders the haze stagger."""

    end: datetime
    air_ids: tuple[str, ...] = ()

    def age_h(self, t: datetime) -> float:
        """Hours from ``t`` to the end of the backfill."""
        return (self.end - t).total_seconds() / _HOUR

    def o3_window(self) -> tuple[float, float]:
        """Ages (from, to) of the last local afternoon that ended at least 2 h before the end."""
        local = self.end.astimezone(_CST)
        day = local.replace(hour=O3_HOURS[1], minute=0, second=0, microsecond=0)
        while (local - day).total_seconds() < 2 * _HOUR:
            day -= timedelta(days=1)
        to = self.age_h(day)
        return (to + O3_HOURS[1] - O3_HOURS[0], to)

    def stagger_h(self, device_id: str) -> float:
        """How much later than the first air station this one sees the haze."""
        if device_id in self.air_ids:
            return STAGGER_H * self.air_ids.index(device_id)
        return STAGGER_H * (zlib.crc32(device_id.encode()) % 4)


def _interp(knots: Sequence[tuple[float, float]], age: float) -> float | None:
    """Linear interpolation over (age, value) knots given oldest first; None outside them."""
    if not knots or age > knots[0][0] or age < knots[-1][0]:
        return None
    for (a0, v0), (a1, v1) in itertools.pairwise(knots):
        if a1 <= age <= a0:
            w = (a0 - age) / (a0 - a1) if a0 != a1 else 1.0
            return v0 + w * (v1 - v0)
    return knots[-1][1]


def haze_pm25(age_h: float) -> float | None:
    """PM2.5 (µg/m³) of the haze episode at ``age_h``; None outside it."""
    return _interp(HAZE, age_h)


def storm_rain_mm_h(age_h: float) -> float:
    """Storm intensity (mm/h) in the storm basin: a triangle over ``STORM``, peak in the middle."""
    start, stop = STORM
    if not stop < age_h < start:
        return 0.0
    mid = (start + stop) / 2
    return STORM_PEAK_MM_H * (1.0 - abs(age_h - mid) / (start - mid))


def river_wave_m(age_h: float) -> float:
    """Flood wave (m above the ordinary stage) of the storm basin's rivers at ``age_h``."""
    if age_h < 1.0:
        return 0.0
    return WAVE_PEAK_M * math.exp(-0.5 * ((age_h - WAVE_PEAK_AGE_H) / WAVE_WIDTH_H) ** 2)


def _set(readings: list[ReadingDict], metric: str, value: float, ndigits: int = 1) -> None:
    for r in readings:
        if r["metric"] == metric:
            r["value"] = float(round(value, ndigits))


def _value(readings: list[ReadingDict], metric: str) -> float | None:
    for r in readings:
        if r["metric"] == metric:
            return float(r["value"])
    return None


def _air(plan: EpisodePlan, spec: AirStation, age: float, rs: list[ReadingDict], jitter: float) -> None:
    o3_from, o3_to = plan.o3_window()
    if o3_to <= age <= o3_from:
        mid = (o3_from + o3_to) / 2
        shape = 1.0 - 0.25 * ((age - mid) / ((o3_from - o3_to) / 2)) ** 2
        _set(rs, "o3", O3_PEAK * shape * jitter)
        _set(rs, "pm25", 40.0 * jitter)
        _set(rs, "pm10", 40.0 * CLEAN_PM10_RATIO * jitter)
        return
    if DUST[1] <= age <= DUST[0]:
        _set(rs, "pm10", DUST_PM10 * jitter)
        _set(rs, "pm25", DUST_PM25 * jitter)
        return
    pm25 = haze_pm25(age - plan.stagger_h(spec.device_id))
    if pm25 is not None:
        _set(rs, "pm25", pm25 * jitter)
        _set(rs, "pm10", pm25 * CLEAN_PM10_RATIO * jitter)
        no2 = _value(rs, "no2")
        if no2 is not None:
            _set(rs, "no2", min(no2, 90.0 * jitter))  # NO2 1-h IAQI stays below PM2.5's
        o3 = _value(rs, "o3")
        if o3 is not None:
            _set(rs, "o3", min(o3, 110.0 * jitter))  # jittered: a clamp would flatline


def overlay(
    plan: EpisodePlan, spec: DeviceSpec, t: datetime, readings: list[ReadingDict]
) -> list[ReadingDict]:
    """``readings`` of ``spec`` at ``t`` with the plan's episodes applied (a new list).

    ``jitter`` (±4 %) is drawn from the device and the instant, so the result depends only on
    its arguments.
    """
    out = [dict(r) for r in readings]
    age = plan.age_h(t)
    key = f"{spec.device_id}:{t.astimezone(UTC).timestamp():.0f}"
    jitter = 1.0 + 0.04 * math.sin(zlib.crc32(key.encode()) / 2**32 * 2 * math.pi)
    if isinstance(spec, AirStation):
        _air(plan, spec, age, out, jitter)
    elif isinstance(spec, RainGauge) and spec.basin.name == STORM_BASIN:
        extra = storm_rain_mm_h(age) * spec.interval_s / _HOUR
        if extra > 0:
            _set(out, "rain", (_value(out, "rain") or 0.0) + extra * jitter, 2)
    elif isinstance(spec, RiverGauge) and spec.basin.name == STORM_BASIN:
        wave = river_wave_m(age)
        level = _value(out, "level")
        if level is not None and wave > 0.001:
            _set(out, "level", level + wave, 3)
            flow = spec.rating_a * max(level + wave - spec.base_level_m + 1.0, 0.0) ** spec.rating_b
            _set(out, "flow", flow, 1)
    elif isinstance(spec, WaterStation) and spec.device_id == POOR_WATER[0]:
        if POOR_WATER[2] <= age <= POOR_WATER[1]:
            _set(out, "nh3n", POOR_NH3N * jitter, 3)
    elif isinstance(spec, ColdChainLogger) and spec.device_id == COLD_EXCURSION[0]:
        _cold(age, out, jitter)
    return out


def _cold(age: float, rs: list[ReadingDict], jitter: float) -> None:
    start, stop = COLD_EXCURSION[1], COLD_EXCURSION[2]
    if not stop - COLD_RAMP_H <= age <= start:
        return
    up = min(1.0, (start - age) / COLD_RAMP_H)
    down = min(1.0, (age - (stop - COLD_RAMP_H)) / COLD_RAMP_H)
    temp = _value(rs, "temperature") or 4.0
    warm = COLD_PEAK_C * jitter
    _set(rs, "temperature", temp + (warm - temp) * min(up, down), 2)
