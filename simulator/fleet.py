"""Signal models of a small mixed fleet: realistic readings as pure functions of time.

Every model is ``(spec, t, rng) -> list[reading dict]`` in the native MQTT format
(``{"metric", "value", "unit", "ts"}``). Nothing here reads the clock or does I/O.
Slow processes (pollution episodes, storms, door openings) are drawn from generators
seeded by the device or basin and the time slot, so they are the same whenever and
however often a model is asked; ``rng`` only adds the per-reading sensor noise.

Diurnal cycles follow local time (``utc_offset_h``, China Standard Time by default);
seasons follow the northern hemisphere.

A device's ``link`` says how it talks to the center: ``None`` = stationflow JSON over MQTT,
``Hj212Wire`` = HJ 212-2017 over TCP (a data logger) or over MQTT (a DTU), ``Sl651Wire`` =
SL 651-2014 HEX/BCD over TCP (an RTU), ``SenmlWire`` = SenML over MQTT.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

__all__ = [
    "AirStation",
    "Basin",
    "ColdChainLogger",
    "DeviceSpec",
    "Hj212Wire",
    "HydroRtu",
    "Link",
    "RainGauge",
    "ReadingDict",
    "RiverGauge",
    "SenmlWire",
    "Sl651Wire",
    "WaterStation",
    "air_readings",
    "cold_readings",
    "default_fleet",
    "format_ts",
    "hydro_level",
    "hydro_readings",
    "hydro_voltage",
    "rain_readings",
    "rain_tenths",
    "readings",
    "river_readings",
    "shipment_of",
    "water_readings",
]

ReadingDict = dict[str, Any]

_HOUR = 3600.0
_DAY = 86400.0
_CST = 8.0  # China Standard Time, UTC+8
_LOOKBACK_H = 48  # hours of basin rain a river remembers


# ---------------------------------------------------------------- how a device talks


@dataclass(frozen=True, slots=True)
class Hj212Wire:
    """HJ 212-2017: a data logger on TCP (``transport="tcp"``) or a DTU publishing frames on MQTT.

    ``st`` is the system code (22 ambient air, 21 surface water); ``clock_offset_s`` starts the
    station's clock that far off (the center sets it back with CN 1012).
    """

    mn: str
    password: str = "123456"
    transport: Literal["tcp", "mqtt"] = "tcp"
    st: str = "22"
    clock_offset_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Sl651Wire:
    """SL 651-2014 HEX/BCD RTU on TCP: 10-hex-digit address, 4-hex-digit password, center 1-255."""

    address: str
    password: str = "A000"
    center: int = 1
    station_class: str = "H"  # H river station (rain + level)
    clock_offset_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SenmlWire:
    """SenML (RFC 8428) over MQTT; records are named ``<base_prefix><device_id>:<metric>``."""

    base_prefix: str = "urn:dev:stationflow:"


Link = Hj212Wire | Sl651Wire | SenmlWire


# ---------------------------------------------------------------- device specs


@dataclass(frozen=True, slots=True)
class Basin:
    """A catchment: its rain gauges, river gauges and water stations see the same storms."""

    name: str = "basin-a"
    storm_chance: float = 0.012  # per hour, dry -> raining (x0.3 in January, x1.7 in July)


@dataclass(frozen=True, slots=True)
class AirStation:
    """Ambient air monitoring station (PM, SO2, NO2, CO, O3, weather)."""

    device_id: str
    pm25_base: float = 35.0  # ug/m3, mean of an ordinary winter-spring day
    pm10_ratio: float = 1.6  # PM10 / PM2.5, 1.3-2.0 (higher near dust sources)
    utc_offset_h: float = _CST
    link: Link | None = None


@dataclass(frozen=True, slots=True)
class WaterStation:
    """Automatic surface-water station; ``water_class`` is its usual GB 3838 class."""

    device_id: str
    water_class: int = 3
    basin: Basin = Basin()  # storms in the basin raise turbidity
    utc_offset_h: float = _CST
    link: Link | None = None


@dataclass(frozen=True, slots=True)
class RainGauge:
    """Tipping-bucket rain gauge reporting the rain of its last ``interval_s``."""

    device_id: str
    basin: Basin = Basin()
    interval_s: float = 60.0
    link: Link | None = None


@dataclass(frozen=True, slots=True)
class RiverGauge:
    """River stage gauge with a rating curve; the level follows basin rain with a lag."""

    device_id: str
    basin: Basin = Basin()
    base_level_m: float = 20.0  # dry-weather stage above the gauge datum
    stage_gain_m: float = 0.4  # rise per mm/h of routed basin rain
    lag_h: float = 6.0  # time from rain to peak stage
    rating_a: float = 30.0  # flow = a * (level - base + 1) ** b, m3/s
    rating_b: float = 1.6
    link: Link | None = None


@dataclass(frozen=True, slots=True)
class ColdChainLogger:
    """Temperature/humidity logger in a fridge (2-8 degC) or a freezer (-18 degC)."""

    device_id: str
    mode: Literal["fridge", "freezer"] = "fridge"
    ambient_c: float = 22.0
    doors_per_h: float = 4.0
    trip_h: float = 12.0  # a new shipment (id in every reading) every trip_h hours
    link: Link | None = None


@dataclass(frozen=True, slots=True)
class HydroRtu:
    """Hydrological RTU at a river section: a rain gauge, a stage gauge with rating curve, a battery.

    Rain and level follow the basin's storms like ``RainGauge`` and ``RiverGauge``; the battery
    is charged by a solar panel by day. ``interval_s`` is the rain period of ``readings``.
    """

    device_id: str
    basin: Basin = Basin()
    base_level_m: float = 20.0
    stage_gain_m: float = 0.4
    lag_h: float = 6.0
    rating_a: float = 30.0
    rating_b: float = 1.6
    interval_s: float = 60.0
    utc_offset_h: float = _CST
    link: Link | None = None


DeviceSpec = AirStation | WaterStation | RainGauge | RiverGauge | ColdChainLogger | HydroRtu


# ---------------------------------------------------------------- shared helpers


def format_ts(t: datetime) -> str:
    """ISO 8601 UTC with millisecond precision, e.g. ``2026-11-21T08:00:00.123Z``."""
    u = t.astimezone(UTC)
    return f"{u:%Y-%m-%dT%H:%M:%S}.{u.microsecond // 1000:03d}Z"


def _reading(metric: str, value: float, unit: str | None, ts: str, ndigits: int) -> ReadingDict:
    out: ReadingDict = {"metric": metric, "value": float(round(value, ndigits))}
    if unit is not None:
        out["unit"] = unit
    out["ts"] = ts
    return out


def _epoch(t: datetime) -> float:
    if t.tzinfo is None:
        raise ValueError("t must be timezone-aware")
    return t.timestamp()


def _local_hour(t: datetime, offset_h: float) -> float:
    return (_epoch(t) / _HOUR + offset_h) % 24.0


def _peak(hour: float, centre: float, width: float) -> float:
    """Gaussian bump on the 24 h circle, 1.0 at ``centre``."""
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (d / width) ** 2)


def _season(epoch: float, lag_days: float = 0.0) -> float:
    """+1 in mid-January, -1 in mid-July (``lag_days`` later for slow media like water)."""
    return math.cos(2.0 * math.pi * (epoch / _DAY - 14.0 - lag_days) / 365.2425)


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def _seeded(*key: object) -> random.Random:
    """A generator that depends only on ``key`` (stable across processes and runs)."""
    return random.Random(":".join(map(str, key)))


@lru_cache(maxsize=4096)
def _daily_draw(key: str, day: int, sigma: float) -> float:
    return _seeded("daily", key, day).gauss(0.0, sigma)


def _smooth_daily(key: str, t: datetime, offset_h: float, sigma: float) -> float:
    """A N(0, sigma) value per local day, interpolated between local noons."""
    x = (_epoch(t) / _HOUR + offset_h) / 24.0 - 0.5
    day = math.floor(x)
    w = x - day
    return (1.0 - w) * _daily_draw(key, day, sigma) + w * _daily_draw(key, day + 1, sigma)


def _noise(rng: random.Random, rel: float) -> float:
    return math.exp(rng.gauss(0.0, rel))


# ---------------------------------------------------------------- air


def _pm_shape(h: float) -> float:
    """Diurnal PM profile: morning rush, evening peak, afternoon mixing-layer dip."""
    return 0.75 + 0.35 * _peak(h, 8.5, 1.5) + 0.5 * _peak(h, 21.0, 2.5) - 0.15 * _peak(h, 15, 2.5)


def _traffic_shape(h: float) -> float:
    return 0.7 + 0.5 * _peak(h, 8.0, 1.5) + 0.6 * _peak(h, 19.5, 2.0) - 0.2 * _peak(h, 14, 2.5)


def air_readings(spec: AirStation, t: datetime, rng: random.Random) -> list[ReadingDict]:
    """PM2.5/PM10/SO2/NO2/O3 (ug/m3), CO (mg/m3), air temperature and humidity."""
    h = _local_hour(t, spec.utc_offset_h)
    s = _season(_epoch(t))
    haze = math.exp(_smooth_daily(spec.device_id + ":haze", t, spec.utc_offset_h, 0.45))
    pm25 = spec.pm25_base * (1 + 0.35 * s) * haze * _pm_shape(h) * _noise(rng, 0.08)
    pm25 = _clamp(pm25, 2, 800)
    pm10 = pm25 * _clamp(spec.pm10_ratio * _noise(rng, 0.05), 1.3, 2.0)
    so2 = _clamp(10 * (1 + 0.5 * s) * math.sqrt(haze) * _noise(rng, 0.1), 1, 500)
    no2 = _clamp(35 * math.sqrt(haze) * _traffic_shape(h) * _noise(rng, 0.1), 2, 400)
    co = _clamp(0.6 * (1 + 0.3 * s) * haze**0.6 * _pm_shape(h) * _noise(rng, 0.08), 0.1, 10)
    o3_amp = 110 * (1 - 0.4 * s) / math.sqrt(haze)  # hazy days have less sunshine
    o3 = _clamp((15 + o3_amp * _peak(h, 15.0, 3.0)) * _noise(rng, 0.08), 1, 400)
    diurnal = 5 * math.cos(2 * math.pi * (h - 14.5) / 24)
    weather = _smooth_daily(spec.device_id + ":temp", t, spec.utc_offset_h, 2.0)
    temp = 16 - 12 * s + diurnal + weather + rng.gauss(0, 0.2)
    rh = _clamp(65 - 10 * s - 2.5 * (diurnal + weather) + rng.gauss(0, 2), 8, 100)
    ts = format_ts(t)
    return [
        _reading("pm25", pm25, "ug/m3", ts, 1),
        _reading("pm10", pm10, "ug/m3", ts, 1),
        _reading("so2", so2, "ug/m3", ts, 1),
        _reading("no2", no2, "ug/m3", ts, 1),
        _reading("co", co, "mg/m3", ts, 2),
        _reading("o3", o3, "ug/m3", ts, 1),
        _reading("temperature", temp, "degC", ts, 1),
        _reading("humidity", rh, "%", ts, 0),
    ]


# ---------------------------------------------------------------- surface water

# Typical values of a station that usually meets GB 3838 class I..V (index 1..5).
_CODMN = (0.0, 1.5, 3.0, 5.0, 8.0, 12.0)
_NH3N = (0.0, 0.1, 0.3, 0.7, 1.2, 1.7)
_TP = (0.0, 0.015, 0.06, 0.15, 0.25, 0.35)
_DO_SATURATION = (0.0, 0.97, 0.85, 0.72, 0.5, 0.35)


def _do_saturation(temp_c: float) -> float:
    """Oxygen solubility in fresh water at sea level, mg/L (APHA polynomial)."""
    return 14.62 - 0.3898 * temp_c + 0.006969 * temp_c**2 - 0.00005896 * temp_c**3


def water_readings(spec: WaterStation, t: datetime, rng: random.Random) -> list[ReadingDict]:
    """pH, dissolved oxygen (diurnal), CODMn, NH3-N, TP, water temperature, turbidity."""
    k = min(max(spec.water_class, 1), 5)
    h = _local_hour(t, spec.utc_offset_h)
    temp = 17 - 10 * _season(_epoch(t), lag_days=30) + 0.8 * math.cos(2 * math.pi * (h - 16) / 24)
    temp = _clamp(temp + rng.gauss(0, 0.05), 0, 35)
    photo = math.cos(2 * math.pi * (h - 15) / 24)  # photosynthesis: O2 and pH up by day
    do = _do_saturation(temp) * _DO_SATURATION[k] + 1.0 * photo + rng.gauss(0, 0.1)
    ph = 7.6 + 0.25 * photo + rng.gauss(0, 0.03)
    drift = math.exp(_smooth_daily(spec.device_id + ":load", t, spec.utc_offset_h, 0.2))
    wash = _routed_rain(spec.basin, _epoch(t), 3.0)  # runoff after storms
    turbidity = 12 * drift * (1 + 0.8 * wash) * _noise(rng, 0.1)
    ts = format_ts(t)
    return [
        _reading("ph", _clamp(ph, 6.0, 9.5), "pH", ts, 2),
        _reading("do", _clamp(do, 0.2, 20), "mg/L", ts, 2),
        _reading("codmn", _CODMN[k] * drift * _noise(rng, 0.05), "mg/L", ts, 2),
        _reading("nh3n", _NH3N[k] * drift * _noise(rng, 0.08), "mg/L", ts, 3),
        _reading("tp", _TP[k] * drift * (1 + 0.1 * wash) * _noise(rng, 0.08), "mg/L", ts, 3),
        _reading("temperature", temp, "degC", ts, 1),
        _reading("turbidity", _clamp(turbidity, 0.5, 3000), "NTU", ts, 1),
    ]


# ---------------------------------------------------------------- rain and rivers

# Storm grades by peak hourly intensity (mm/h): light, moderate, heavy, rainstorm.
_GRADES = ((0.55, 0.3, 2.5), (0.85, 2.6, 8.0), (0.96, 8.1, 15.9), (1.0, 16.0, 40.0))
_STAY_WET = 0.8  # per hour: a storm lasts 5 h on average


def _storm_peak(rng: random.Random) -> float:
    u = rng.random()
    for upto, lo, hi in _GRADES:
        if u <= upto:
            return rng.uniform(lo, hi)
    return _GRADES[-1][2]


def _rain_chain(basin: str, day: int, chance: float, peak: float) -> tuple[float, ...]:
    """One UTC day of hourly intensities (mm/h) from a wet/dry Markov chain."""
    rng = _seeded("rain", basin, day, chance)
    chance *= 1.0 - 0.7 * _season(day * _DAY)  # wet summers, dry winters
    hours: list[float] = []
    for _ in range(24):
        if peak > 0.0 and rng.random() > _STAY_WET:
            peak = 0.0
        elif peak == 0.0 and rng.random() < chance:
            peak = _storm_peak(rng)
        hours.append(peak * rng.uniform(0.4, 1.2) if peak > 0.0 else 0.0)
    return (*hours, peak)


@lru_cache(maxsize=1024)
def _rain_day(basin: str, day: int, chance: float) -> tuple[float, ...]:
    """Hourly intensities of one UTC day, continuing the previous day's storm."""
    init = _seeded("rain-init", basin, day, chance)
    wet_share = chance / (chance + 1.0 - _STAY_WET)
    peak = _storm_peak(init) if init.random() < wet_share else 0.0
    carried = _rain_chain(basin, day - 1, chance, peak)[-1]
    return _rain_chain(basin, day, chance, carried)[:24]


def _rain_rate(basin: Basin, hour: int) -> float:
    """Basin rain intensity (mm/h) during absolute hour ``hour`` since the epoch."""
    return _rain_day(basin.name, hour // 24, basin.storm_chance)[hour % 24]


def _rain_between(basin: Basin, t0: float, t1: float) -> float:
    """Rain (mm) that fell in the basin between epoch seconds ``t0`` and ``t1``."""
    total = 0.0
    hour = math.floor(t0 / _HOUR)
    for _ in range(int((t1 - t0) // _HOUR) + 2):
        lo, hi = max(t0, hour * _HOUR), min(t1, (hour + 1) * _HOUR)
        if hi > lo:
            total += _rain_rate(basin, hour) * (hi - lo) / _HOUR
        hour += 1
    return total


@lru_cache(maxsize=64)
def _unit_hydrograph(lag_h: float) -> tuple[float, ...]:
    """Gamma-shaped response (shape 3) peaking ``lag_h`` hours after the rain, sum 1."""
    theta = max(lag_h, 0.5) / 2.0
    raw = [k**2 * math.exp(-k / theta) for k in range(_LOOKBACK_H)]
    total = sum(raw)
    return tuple(r / total for r in raw)


def _routed_rain(basin: Basin, epoch: float, lag_h: float) -> float:
    """Basin rain (mm/h) routed through the unit hydrograph, interpolated within the hour."""
    weights = _unit_hydrograph(lag_h)
    hour = math.floor(epoch / _HOUR)
    frac = epoch / _HOUR - hour

    def at(h: int) -> float:
        return sum(w * _rain_rate(basin, h - k) for k, w in enumerate(weights))

    return (1.0 - frac) * at(hour - 1) + frac * at(hour)


def rain_readings(spec: RainGauge, t: datetime, rng: random.Random) -> list[ReadingDict]:
    """Rain (mm) in the ``interval_s`` before ``t``; zero between storms."""
    end = _epoch(t)
    if not 0.0 < spec.interval_s <= _DAY:
        raise ValueError("interval_s must be in (0, 86400]")
    mm = _rain_between(spec.basin, end - spec.interval_s, end)
    if mm > 0.0:
        mm *= _noise(rng, 0.1)
    return [_reading("rain", mm, "mm", format_ts(t), 2)]


def river_readings(spec: RiverGauge, t: datetime, rng: random.Random) -> list[ReadingDict]:
    """Stage (m above datum) lagging basin rain, and flow (m3/s) from a rating curve."""
    routed = _routed_rain(spec.basin, _epoch(t), spec.lag_h)
    level = spec.base_level_m + spec.stage_gain_m * routed + rng.gauss(0, 0.005)
    flow = spec.rating_a * max(level - spec.base_level_m + 1.0, 0.0) ** spec.rating_b
    ts = format_ts(t)
    return [_reading("level", level, "m", ts, 3), _reading("flow", flow, "m3/s", ts, 1)]


# ---------------------------------------------------------------- hydrological RTU


@lru_cache(maxsize=4096)
def _day_total(basin: str, day: int, chance: float) -> float:
    """Rain (mm) of one whole UTC day."""
    return sum(_rain_day(basin, day, chance))


def _rain_since(basin: Basin, t0: float, t1: float) -> float:
    """Rain (mm) between epoch seconds ``t0`` and ``t1``, whole days from a cache."""
    d0, d1 = math.ceil(t0 / _DAY), math.floor(t1 / _DAY)
    if d1 <= d0:
        return _rain_between(basin, t0, t1)
    days = sum(_day_total(basin.name, d, basin.storm_chance) for d in range(d0, d1))
    return _rain_between(basin, t0, d0 * _DAY) + days + _rain_between(basin, d1 * _DAY, t1)


def rain_tenths(spec: HydroRtu, t: datetime) -> int:
    """The RTU's tipping-bucket counter at ``t``: 0.1 mm tips since local January 1 (PT x 10).

    Slot rain (DRP), rain since 08:00 (PJ) and the accumulated rain (PT) are differences of
    this one counter, so they always agree.
    """
    local = datetime.fromtimestamp(_epoch(t) + spec.utc_offset_h * _HOUR, UTC)
    year_start = datetime(local.year, 1, 1, tzinfo=UTC).timestamp() - spec.utc_offset_h * _HOUR
    return math.floor(_rain_since(spec.basin, year_start, _epoch(t)) * 10.0 + 1e-6)


def _hydro_river(spec: HydroRtu) -> RiverGauge:
    return RiverGauge(
        spec.device_id,
        basin=spec.basin,
        base_level_m=spec.base_level_m,
        stage_gain_m=spec.stage_gain_m,
        lag_h=spec.lag_h,
        rating_a=spec.rating_a,
        rating_b=spec.rating_b,
    )


def hydro_level(spec: HydroRtu, t: datetime) -> tuple[float, float]:
    """(stage m, discharge m3/s) at ``t``, without sensor noise (a resent report repeats them)."""
    river = _hydro_river(spec)
    level = river.base_level_m + river.stage_gain_m * _routed_rain(spec.basin, _epoch(t), spec.lag_h)
    # a 2 cm seiche (40 min): a real stage never holds to the centimetre for hours, and the
    # worker's stuck-sensor rule would flag the RTU in dry weather
    level += 0.02 * math.sin(2 * math.pi * _epoch(t) / 2400.0 + zlib.crc32(spec.device_id.encode()) % 7)
    flow = river.rating_a * max(level - river.base_level_m + 1.0, 0.0) ** river.rating_b
    return level, flow


def hydro_voltage(spec: HydroRtu, t: datetime) -> float:
    """Battery voltage (V): 12.3 V at night, up to 13.6 V charging at noon, less on rainy days."""
    h = _local_hour(t, spec.utc_offset_h)
    sun = max(0.0, math.sin(math.pi * (h - 6.0) / 12.0))
    cloud = 1.0 / (1.0 + _rain_rate(spec.basin, math.floor(_epoch(t) / _HOUR)))
    return 12.3 + 1.3 * sun * cloud


def hydro_readings(spec: HydroRtu, t: datetime, rng: random.Random) -> list[ReadingDict]:
    """Rain (mm) in the ``interval_s`` before ``t``, level (m), flow (m3/s), battery voltage (V)."""
    end = _epoch(t)
    if not 0.0 < spec.interval_s <= _DAY:
        raise ValueError("interval_s must be in (0, 86400]")
    mm = _rain_between(spec.basin, end - spec.interval_s, end)
    level, flow = hydro_level(spec, t)
    level += rng.gauss(0, 0.005)
    ts = format_ts(t)
    return [
        _reading("rain", mm, "mm", ts, 2),
        _reading("level", level, "m", ts, 3),
        _reading("flow", flow, "m3/s", ts, 1),
        _reading("voltage", hydro_voltage(spec, t) + rng.gauss(0, 0.01), "V", ts, 2),
    ]


# ---------------------------------------------------------------- cold chain

_TAU_OPEN_MIN = 6.0  # the air near the probe warms while the door is open
_TAU_CLOSE_MIN = 5.0  # and is pulled back by the compressor after it closes
_OPEN_SHARE = 0.5  # with the door open the air settles halfway to ambient


@dataclass(frozen=True, slots=True)
class _Cold:
    setpoint: float
    cycle: float  # compressor cycling amplitude, degC
    humidity: float


_COLD = {"fridge": _Cold(4.0, 0.8, 75.0), "freezer": _Cold(-18.0, 0.6, 60.0)}


@lru_cache(maxsize=1024)
def _door_openings(device_id: str, hour: int, rate: float) -> tuple[tuple[float, float], ...]:
    """(start, duration) in epoch seconds of door openings during one hour."""
    rng = _seeded("door", device_id, hour, rate)
    count = sum(1 for _ in range(20) if rng.random() < rate / 20.0)  # binomial, at most 20
    out = [_opening(rng, hour, rng.lognormvariate(math.log(40), 0.6)) for _ in range(count)]
    if rng.random() < 0.01:  # someone left the door open
        out.append(_opening(rng, hour, rng.uniform(600, 1800)))
    return tuple(out)


def _opening(rng: random.Random, hour: int, duration_s: float) -> tuple[float, float]:
    return (hour * _HOUR + rng.uniform(0, _HOUR), duration_s)


def _door_excursion(spec: ColdChainLogger, epoch: float, gap: float) -> float:
    """Temperature rise (degC) from door openings in the last two hours."""
    rise = 0.0
    hour = math.floor(epoch / _HOUR)
    for h in (hour - 2, hour - 1, hour):
        for start, duration in _door_openings(spec.device_id, h, spec.doors_per_h):
            if epoch <= start:
                continue
            open_s = min(epoch - start, duration)
            peak = gap * (1.0 - math.exp(-open_s / 60.0 / _TAU_OPEN_MIN))
            closed_s = max(epoch - start - duration, 0.0)
            rise += peak * math.exp(-closed_s / 60.0 / _TAU_CLOSE_MIN)
    return min(rise, gap)


def _defrost(device_id: str, epoch: float) -> float:
    """Freezer defrost: 20 min every 8 h (phase per device), up to +2.5 degC."""
    phase = (epoch + zlib.crc32(device_id.encode())) % (8 * _HOUR)
    return 2.5 * math.sin(math.pi * phase / 1200.0) if phase < 1200.0 else 0.0


def cold_readings(spec: ColdChainLogger, t: datetime, rng: random.Random) -> list[ReadingDict]:
    """Air temperature (degC) with compressor cycling and door excursions, and humidity."""
    mode = _COLD[spec.mode]
    epoch = _epoch(t)
    gap = max(spec.ambient_c - mode.setpoint, 0.0) * _OPEN_SHARE
    excursion = _door_excursion(spec, epoch, gap)
    cycle = mode.cycle * math.sin(2 * math.pi * epoch / 1500.0)
    temp = mode.setpoint + cycle + excursion + rng.gauss(0, 0.1)
    if spec.mode == "freezer":
        temp += _defrost(spec.device_id, epoch)
    rh = mode.humidity + 15.0 * excursion / max(gap, 1.0) + rng.gauss(0, 2)
    ts = format_ts(t)
    ship = shipment_of(spec, t)
    out = [
        _reading("temperature", temp, "degC", ts, 2),
        _reading("humidity", _clamp(rh, 5, 100), "%", ts, 1),
    ]
    for r in out:
        r["shipment"] = ship
    return out


def shipment_of(spec: ColdChainLogger, t: datetime) -> str:
    """The shipment a logger travels with at ``t``: ``<device>-<UTC start of the trip>``."""
    period = max(spec.trip_h, 1.0) * _HOUR
    start = datetime.fromtimestamp(_epoch(t) // period * period, UTC)
    return f"{spec.device_id}-{start:%Y%m%dT%H%MZ}"


# ---------------------------------------------------------------- fleet

_MODELS: dict[type, Callable[[Any, datetime, random.Random], list[ReadingDict]]] = {
    AirStation: air_readings,
    WaterStation: water_readings,
    RainGauge: rain_readings,
    RiverGauge: river_readings,
    ColdChainLogger: cold_readings,
    HydroRtu: hydro_readings,
}


def readings(spec: DeviceSpec, t: datetime, rng: random.Random) -> list[ReadingDict]:
    """The readings ``spec`` reports at ``t`` (any device kind)."""
    return _MODELS[type(spec)](spec, t, rng)


# The protocol devices of ``default_fleet`` (ids, MNs, addresses and passwords are stable: the
# README's integrator examples and the tests name them).
AIR_HJ212 = AirStation("air-hj-001", pm25_base=45.0, link=Hj212Wire(mn="440300A0000000000000A001", st="22"))
WATER_HJ212 = WaterStation(
    "water-hj-001", water_class=3, link=Hj212Wire(mn="440300B0000000000000B001", st="21")
)
RTU_SL651 = HydroRtu("rtu-001", base_level_m=15.0, link=Sl651Wire(address="0012345678", password="A000"))
AIR_DTU = AirStation(
    "air-dtu-001",
    pm25_base=30.0,
    pm10_ratio=1.7,
    link=Hj212Wire(mn="440300A0000000000000A002", transport="mqtt"),
)
AIR_SENML = AirStation("air-senml-001", pm25_base=40.0, pm10_ratio=1.4, link=SenmlWire())


def default_fleet(
    n_air: int = 3,
    n_water: int = 2,
    n_rain: int = 2,
    n_river: int = 2,
    n_cold: int = 3,
    *,
    protocols: bool = True,
) -> list[DeviceSpec]:
    """A small mixed fleet with stable ids (``air-001``, ``water-001``, ``rain-001`` ...).

    With ``protocols`` it also has one device per station protocol:

    * ``air-hj-001``: HJ 212 ambient-air station (ST 22) on TCP, MN ``440300A0000000000000A001``,
      PW ``123456``;
    * ``water-hj-001``: HJ 212 surface-water station (ST 21) on TCP, MN ``440300B0000000000000B001``;
    * ``rtu-001``: SL 651 rain-and-level RTU (type ``hydro-rtu``) on TCP, address ``0012345678``,
      password ``A000``, center 1;
    * ``air-dtu-001``: HJ 212 air station behind a DTU, frames on MQTT ``devices/air-dtu-001/hj212``,
      MN ``440300A0000000000000A002``;
    * ``air-senml-001``: low-cost PM / weather sensor speaking SenML on ``devices/air-senml-001/senml``.
    """
    basins = (Basin("basin-a"), Basin("basin-b"))
    fleet: list[DeviceSpec] = []
    for i in range(n_air):
        base, ratio = ((35.0, 1.5), (55.0, 1.8), (25.0, 1.35))[i % 3]
        fleet.append(AirStation(f"air-{i + 1:03d}", pm25_base=base, pm10_ratio=ratio))
    for i in range(n_water):
        fleet.append(WaterStation(f"water-{i + 1:03d}", water_class=(2, 3, 4)[i % 3], basin=basins[i % 2]))
    fleet.extend(RainGauge(f"rain-{i + 1:03d}", basin=basins[i % 2]) for i in range(n_rain))
    for i in range(n_river):
        fleet.append(RiverGauge(f"river-{i + 1:03d}", basin=basins[i % 2], base_level_m=(20.0, 12.5)[i % 2]))
    for i in range(n_cold):
        mode: Literal["fridge", "freezer"] = "freezer" if i % 3 == 2 else "fridge"
        fleet.append(ColdChainLogger(f"cold-{i + 1:03d}", mode=mode, doors_per_h=(4.0, 1.5)[i % 3 == 2]))
    if protocols:
        fleet.extend((AIR_HJ212, WATER_HJ212, RTU_SL651, AIR_DTU, AIR_SENML))
    return fleet
