"""China AQI per HJ 633-2012 and HJ 633-2026: sub-indices, AQI, primary pollutant, category (pure).

Source of truth: ``specs/standards.md`` §1 (breakpoints §1.1 and §1.8, formula and rounding §1.2,
special rules §1.3/§1.8, primary pollutant §1.4, categories §1.5, report contents §1.6/§1.8).

Indicators are named ``<pollutant>_<period>``: pollutants ``so2 no2 pm10 pm2_5 co o3`` and periods
``1h 8h 24h`` (``o3_8h`` is the 8-h moving average, or in the daily report the daily max 8-h mean;
``o3_1h`` in the daily report is the daily max 1-h value). Units: µg/m³, CO in mg/m³.

Arithmetic is exact (``fractions.Fraction``; a float is taken at its shortest ``repr``, so 4.2
means 42/10), and every IAQI is rounded *up* (进位取整数), so float error can never move a ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

from streams.analytics.validity import exact

__all__ = [
    "BREAKPOINTS",
    "CATEGORIES",
    "CHINA_TZ",
    "DAILY_INDICATORS",
    "HJ_633_2026_IN_FORCE",
    "IAQI_LEVELS",
    "POLLUTANTS",
    "AqiCategory",
    "AqiResult",
    "Colour",
    "Concentration",
    "OverRange",
    "Period",
    "PmBasis",
    "Standard",
    "category_for",
    "choose_standard",
    "daily_aqi",
    "hourly_aqi",
    "hourly_indicators",
    "iaqi",
]


class Standard(StrEnum):
    """Which HJ 633 edition the numbers follow."""

    HJ_633_2012 = "HJ 633-2012"
    HJ_633_2026 = "HJ 633-2026"


Period = Literal["1h", "8h", "24h"]
OverRange = Literal["cap", "extrapolate"]
PmBasis = Literal["24h", "1h"]
Concentration = float | Decimal | Fraction  # int is accepted as a float

POLLUTANTS: Final = ("so2", "no2", "pm10", "pm2_5", "co", "o3")
CHINA_TZ: Final = timezone(timedelta(hours=8), "CST")
# Both 2026 texts are in force from this (China) calendar day on (spec "READ FIRST" and §1.8).
HJ_633_2026_IN_FORCE: Final = date(2026, 3, 1)

IAQI_LEVELS: Final = (0, 50, 100, 150, 200, 300, 400, 500)

# Concentration breakpoints for the IAQI_LEVELS above, in µg/m³ (CO in mg/m³). Shorter columns
# stop where the standard has "—" (SO2 1h above 800, O3 8h above 800; see _ABOVE_TOP_2026).
_BP_2012: dict[str, tuple[int, ...]] = {
    "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
    "so2_1h": (0, 150, 500, 650, 800),
    "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
    "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    "pm10_24h": (0, 50, 150, 250, 350, 420, 500, 600),
    "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),
    "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 160, 215, 265, 800),
    "pm2_5_24h": (0, 35, 75, 115, 150, 250, 350, 500),
}
# HJ 633-2026 Table 3 changes only the IAQI-100 breakpoints of PM10 (150 -> 120) and PM2.5 (75 -> 60).
_BP_2026: dict[str, tuple[int, ...]] = {
    **_BP_2012,
    "pm10_24h": (0, 50, 120, 250, 350, 420, 500, 600),
    "pm2_5_24h": (0, 35, 60, 115, 150, 250, 350, 500),
}
BREAKPOINTS: Final[Mapping[Standard, Mapping[str, tuple[int, ...]]]] = MappingProxyType(
    {
        Standard.HJ_633_2012: MappingProxyType(_BP_2012),
        Standard.HJ_633_2026: MappingProxyType(_BP_2026),
    }
)

# Above the last breakpoint of a truncated column: 2012 computes no IAQI from it (the other
# averaging period stands in, _REPLACEMENT); 2026 fixes the IAQI (Table 3 notes b and c).
_ABOVE_TOP_2026: Final = {"so2_1h": 200, "o3_8h": 300}
_REPLACEMENT: Final = {"so2_1h": "so2_24h", "o3_8h": "o3_1h"}

# Report contents (§1.6, §1.8). The 2012 real-time PM sub-index comes from the 24-h moving
# average (Table 4) unless PmBasis "1h" is chosen; 2026 always uses the 1-h value.
_HOURLY_2012_PM24: Final = ("so2_1h", "no2_1h", "pm10_24h", "pm2_5_24h", "co_1h", "o3_1h", "o3_8h")
_HOURLY_2012_PM1: Final = ("so2_1h", "no2_1h", "pm10_1h", "pm2_5_1h", "co_1h", "o3_1h", "o3_8h")
_HOURLY_2026: Final = ("so2_1h", "no2_1h", "pm10_1h", "pm2_5_1h", "co_1h", "o3_1h")
DAILY_INDICATORS: Final[Mapping[Standard, tuple[str, ...]]] = MappingProxyType(
    {
        Standard.HJ_633_2012: ("so2_24h", "no2_24h", "pm10_24h", "pm2_5_24h", "co_24h", "o3_1h", "o3_8h"),
        Standard.HJ_633_2026: ("so2_24h", "no2_24h", "pm10_24h", "pm2_5_24h", "co_24h", "o3_8h"),
    }
)
_PERIODS: Final = ("1h", "8h", "24h")


@dataclass(frozen=True, slots=True)
class Colour:
    """A category colour from HJ 633 Annex A Table A.1 (identical in 2012 and 2026)."""

    name: str
    name_cn: str
    rgb: tuple[int, int, int]
    hex: str


@dataclass(frozen=True, slots=True)
class AqiCategory:
    """One AQI level (HJ 633-2012 Table 2); ``aqi_max`` is None for the open top band."""

    level: int
    roman: str
    name_cn: str
    name_en: str
    aqi_min: int
    aqi_max: int | None
    colour: Colour
    advice: str


_LEVEL_ROWS: tuple[tuple[int, str, str, str, int, int | None, str, str, tuple[int, int, int], str], ...] = (
    # level, roman, category CN, category EN, AQI from, AQI to, colour, colour CN, RGB, HEX
    (1, "I", "优", "Excellent", 0, 50, "green", "绿", (0, 228, 0), "#00E400"),
    (2, "II", "良", "Good", 51, 100, "yellow", "黄", (255, 255, 0), "#FFFF00"),
    (3, "III", "轻度污染", "Lightly polluted", 101, 150, "orange", "橙", (255, 126, 0), "#FF7E00"),
    (4, "IV", "中度污染", "Moderately polluted", 151, 200, "red", "红", (255, 0, 0), "#FF0000"),
    (5, "V", "重度污染", "Heavily polluted", 201, 300, "purple", "紫", (153, 0, 76), "#99004C"),
    (6, "VI", "严重污染", "Severely polluted", 301, None, "maroon", "褐红", (126, 0, 35), "#7E0023"),
)  # fmt: skip
_ADVICE: Final = (  # HJ 633-2012 Table 2, summarised (spec §1.5)
    "Satisfactory, essentially no pollution; everyone can carry on normal activities.",
    "Acceptable; a very small number of unusually sensitive people should reduce outdoor activity.",
    "Children, the elderly and people with heart or respiratory disease should reduce long or "
    "high-intensity outdoor exercise.",
    "Sensitive groups should avoid long or high-intensity outdoor exercise; the general public "
    "should cut back somewhat on outdoor exercise.",
    "Children, the elderly and heart or lung patients should stay indoors and stop outdoor "
    "exercise; the general public should reduce outdoor exercise.",
    "Children, the elderly and the sick should stay indoors and avoid physical exertion; the "
    "general public should avoid outdoor activities.",
)
CATEGORIES: Final = tuple(
    AqiCategory(level, roman, cn, en, lo, hi, Colour(colour, colour_cn, rgb, hex_), advice)
    for (level, roman, cn, en, lo, hi, colour, colour_cn, rgb, hex_), advice in zip(
        _LEVEL_ROWS, _ADVICE, strict=True
    )
)


@dataclass(frozen=True, slots=True)
class AqiResult:
    """One daily or real-time AQI report.

    ``iaqi`` holds every indicator that got a sub-index, keyed ``<pollutant>_<period>``.
    ``primary_pollutants`` and ``non_attainment`` are indicator keys from ``iaqi`` (e.g.
    ``"o3_8h"``); ``non_attainment`` is always empty under HJ 633-2026, which dropped it.
    ``missing`` lists report indicators with no sub-index (absent, negative or NaN input);
    ``over_range`` lists indicators above their top breakpoint (IAQI capped or extrapolated).
    ``publishable`` applies HJ 633-2026 §5.3.1: with an indicator missing, AQI, primary pollutant
    and level may be published only if AQI > 100. Under 2012 it is True whenever ``aqi`` is set.
    """

    aqi: int | None
    iaqi: dict[str, int]
    primary_pollutants: tuple[str, ...]
    non_attainment: tuple[str, ...]
    category: AqiCategory | None
    standard: Standard
    missing: tuple[str, ...]
    over_range: tuple[str, ...]
    publishable: bool

    @property
    def level(self) -> int | None:
        """AQI level 1-6, or None without an AQI."""
        return None if self.category is None else self.category.level

    @property
    def colour(self) -> Colour | None:
        """The level's colour, or None without an AQI."""
        return None if self.category is None else self.category.colour


class _Score(NamedTuple):
    iaqi: int | None
    over_range: bool = False
    superseded: bool = False  # 2012: a replacement indicator carries this pollutant instead


def category_for(aqi: int) -> AqiCategory:
    """The level, names, colour and advice for an AQI value (>300, even >500, is level VI)."""
    if aqi < 0:
        raise ValueError(f"AQI must be >= 0, got {aqi}")
    return next(c for c in CATEGORIES if c.aqi_max is None or aqi <= c.aqi_max)


def choose_standard(observed_at: datetime | date) -> Standard:
    """HJ 633-2026 from 2026-03-01 (China Standard Time, UTC+8) on, HJ 633-2012 before.

    A ``date`` is taken as a China calendar day. A ``datetime`` must be timezone-aware; it is
    compared as an instant, so pass an instant inside the averaging period (e.g. its start): an
    hour labelled by its *end* at 2026-03-01T00:00+08:00 belongs to 2026-02-28 but selects 2026.
    """
    if isinstance(observed_at, datetime):
        if observed_at.tzinfo is None or observed_at.utcoffset() is None:
            raise ValueError("observed_at must be timezone-aware")
        day = observed_at.astimezone(CHINA_TZ).date()
    else:
        day = observed_at
    return Standard.HJ_633_2026 if day >= HJ_633_2026_IN_FORCE else Standard.HJ_633_2012


def iaqi(
    pollutant: str,
    period: str,
    concentration: Concentration,
    standard: Standard | str,
    *,
    over_range: OverRange = "cap",
    round_concentration: bool | None = None,
) -> int | None:
    """The sub-index (IAQI) of one concentration, rounded up; None means NA.

    NA for a negative, NaN or infinite concentration, and under HJ 633-2012 for SO2 1h > 800 or
    O3 8h > 800 µg/m³ (the report then uses SO2 24h / O3 1h instead). Under HJ 633-2026 those
    two give 200 and 300. A PM10 or PM2.5 ``"1h"`` value is scored on the daily column (2026
    §4.2.4). Above the top breakpoint, ``over_range="cap"`` gives 500 and ``"extrapolate"`` extends
    the top segment. ``round_concentration`` (default: True for 2026 only) first rounds µg/m³ to an
    integer and CO to 0.1 mg/m³, half to even (GB/T 8170, HJ 633-2026 §4.2.2).
    """
    std = Standard(standard)
    key = f"{pollutant}_{period}"
    _column(key)  # validate before looking at the number
    return _score(key, concentration, std, over_range, round_concentration).iaqi


def hourly_indicators(standard: Standard | str, pm_basis: PmBasis | None = None) -> tuple[str, ...]:
    """The indicators of the real-time report (实时报) under a standard and PM basis."""
    std = Standard(standard)
    if std is Standard.HJ_633_2026:
        if pm_basis == "24h":
            raise ValueError("HJ 633-2026 scores real-time PM from the 1-h value only")
        return _HOURLY_2026
    return _HOURLY_2012_PM1 if pm_basis == "1h" else _HOURLY_2012_PM24


def hourly_aqi(
    concentrations: Mapping[str, Concentration | None],
    observed_at: datetime,
    standard: Standard | str | None = None,
    *,
    pm_basis: PmBasis | None = None,
    over_range: OverRange = "cap",
    round_concentrations: bool | None = None,
    not_monitored: Collection[str] = (),
) -> AqiResult:
    """Real-time (hourly) AQI report, HJ 633-2012 §5.1 / HJ 633-2026 §4.2.3.

    Keys are indicator keys (``"so2_1h"``, ``"o3_8h"``, ``"pm2_5_24h"``…); a bare pollutant
    (``"so2"``) means its 1-h value and ``pm25`` is read as ``pm2_5``. Keys outside the report are
    ignored, except ``so2_24h``, which stands in when 2012 SO2 1h > 800. None, NaN or negative values
    count as missing. 2012 reports SO2/NO2/CO/O3 1h, O3 8h and PM 24h moving averages (``pm_basis``
    "1h" scores the PM 1-h values instead); 2026 reports six 1-h values, PM on the daily column.
    ``standard`` defaults to :func:`choose_standard` of ``observed_at``. ``not_monitored`` names
    pollutants outside the station's monitoring plan ("/"), which are not counted as missing.
    """
    std = Standard(standard) if standard is not None else choose_standard(observed_at)
    values = _indicator_values(concentrations, daily=False)
    indicators = hourly_indicators(std, pm_basis)
    return _report(values, indicators, std, over_range, round_concentrations, not_monitored)


def daily_aqi(
    concentrations: Mapping[str, Concentration | None],
    day: date,
    standard: Standard | str | None = None,
    *,
    over_range: OverRange = "cap",
    round_concentrations: bool | None = None,
    not_monitored: Collection[str] = (),
) -> AqiResult:
    """Daily AQI report (日报), HJ 633-2012 §5.1 / HJ 633-2026 §4.2.2.

    Keys: ``so2_24h no2_24h pm10_24h pm2_5_24h co_24h`` (a bare pollutant means its 24-h mean),
    ``o3_8h`` = daily max 8-h mean and, 2012 only, ``o3_1h`` = daily max 1-h value (ignored under
    2026). A bare ``o3`` is ambiguous and raises ValueError. Otherwise as :func:`hourly_aqi`.
    ``day`` is the natural day in China time; ``standard`` defaults to ``choose_standard(day)``.
    """
    std = Standard(standard) if standard is not None else choose_standard(day)
    values = _indicator_values(concentrations, daily=True)
    indicators = DAILY_INDICATORS[std]
    return _report(values, indicators, std, over_range, round_concentrations, not_monitored)


def _report(
    values: Mapping[str, Concentration],
    indicators: tuple[str, ...],
    std: Standard,
    over_range: OverRange,
    round_concentrations: bool | None,
    not_monitored: Collection[str],
) -> AqiResult:
    """Score the report's indicators and derive AQI, primary pollutants and category."""
    unknown = set(not_monitored) - set(POLLUTANTS)
    if unknown:
        raise ValueError(f"unknown pollutants in not_monitored: {sorted(unknown)}")
    scores: dict[str, int] = {}
    over: list[str] = []
    na: list[str] = []
    for key in indicators:
        score = _scored_value(key, values, std, over_range, round_concentrations)
        scored_key = key
        if score.superseded:
            scored_key = _REPLACEMENT[key]
            if scored_key in indicators:  # O3 8h > 800 (2012): the O3 1h indicator carries O3
                if values.get(scored_key) is None:
                    na.append(key)
                continue
            score = _scored_value(scored_key, values, std, over_range, round_concentrations)
        if score.iaqi is None:
            na.append(key)
            continue
        scores[scored_key] = score.iaqi
        if score.over_range:
            over.append(scored_key)
    missing = tuple(k for k in na if k.rsplit("_", 1)[0] not in not_monitored)
    aqi = max(scores.values()) if scores else None
    primary = tuple(k for k, v in scores.items() if v == aqi) if aqi is not None and aqi > 50 else ()
    non_attainment = tuple(k for k, v in scores.items() if v > 100) if std is Standard.HJ_633_2012 else ()
    publishable = aqi is not None and (std is Standard.HJ_633_2012 or not missing or aqi > 100)
    return AqiResult(
        aqi=aqi,
        iaqi=scores,
        primary_pollutants=primary,
        non_attainment=non_attainment,
        category=None if aqi is None else category_for(aqi),
        standard=std,
        missing=missing,
        over_range=tuple(over),
        publishable=publishable,
    )


def _scored_value(
    key: str,
    values: Mapping[str, Concentration],
    std: Standard,
    over_range: OverRange,
    round_concentrations: bool | None,
) -> _Score:
    value = values.get(key)
    if value is None:
        return _Score(None)
    return _score(key, value, std, over_range, round_concentrations)


def _score(
    key: str, value: Concentration, std: Standard, over_range: OverRange, round_concentration: bool | None
) -> _Score:
    """IAQI of indicator ``key`` (exact arithmetic, ceiling) with the special rules applied."""
    column = _column(key)
    c = exact(value)
    if c is None or c < 0:
        return _Score(None)
    if round_concentration if round_concentration is not None else std is Standard.HJ_633_2026:
        c = round(c, 1 if key.startswith("co_") else 0)  # Fraction rounds half to even
    bps = BREAKPOINTS[std][column]
    if c > bps[-1]:
        if column in _ABOVE_TOP_2026:
            if std is Standard.HJ_633_2026:
                return _Score(_ABOVE_TOP_2026[column])
            return _Score(None, superseded=True)
        if over_range == "cap":
            return _Score(IAQI_LEVELS[-1], over_range=True)
    i = next((i for i in range(1, len(bps)) if c <= bps[i]), len(bps) - 1)
    slope = Fraction(IAQI_LEVELS[i] - IAQI_LEVELS[i - 1], bps[i] - bps[i - 1])
    return _Score(math.ceil(slope * (c - bps[i - 1]) + IAQI_LEVELS[i - 1]), over_range=c > bps[-1])


def _column(key: str) -> str:
    """Breakpoint column for an indicator; PM 1-h values use the daily column."""
    column = {"pm10_1h": "pm10_24h", "pm2_5_1h": "pm2_5_24h"}.get(key, key)
    if column not in _BP_2012:
        raise ValueError(f"no IAQI breakpoints for {key!r}")
    return column


def _indicator_values(
    concentrations: Mapping[str, Concentration | None], *, daily: bool
) -> dict[str, Concentration]:
    """Map input keys to indicator keys; drop None values and keys that are not indicators."""
    out: dict[str, Concentration] = {}
    seen: set[str] = set()
    for raw_key, value in concentrations.items():
        key = _indicator_key(raw_key, daily=daily)
        if key is None:
            continue
        if key in seen:
            raise ValueError(f"{raw_key!r} gives {key!r} a second time")
        seen.add(key)
        if value is not None:
            out[key] = value
    return out


def _indicator_key(raw_key: str, *, daily: bool) -> str | None:
    key = raw_key.strip().lower()
    if key.startswith("pm25"):
        key = "pm2_5" + key[4:]
    if key in POLLUTANTS:
        if daily and key == "o3":
            raise ValueError("'o3' is ambiguous in a daily report: use 'o3_8h' or 'o3_1h'")
        return f"{key}_{'24h' if daily else '1h'}"
    pollutant, _, period = key.rpartition("_")
    return key if pollutant in POLLUTANTS and period in _PERIODS else None
