"""Open-data items built from InfluxQL rows and registry stations (pure: no I/O).

Category names and colours come from the analytics' own tables (``streams.analytics.aqi``
``CATEGORIES``, ``water.LABELS``/``QUALITY``, ``rain.rain_grade``, ``flood.APPROACH_MARGIN_M``),
so the public numbers say exactly what the alerts and dashboards say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from stationview.stations import StationEntry
from streams.analytics import aqi as aqi_mod
from streams.analytics import flood, rain, water

__all__ = [
    "LEVEL_COLOURS",
    "WATER_COLOURS",
    "aqi_item",
    "iso",
    "level_item",
    "level_state",
    "primary_names",
    "rain_item",
    "water_item",
]

LevelState = Literal["normal", "approaching", "above_warning", "above_guaranteed"]

# Hex for the GB 3838 quality colour names of water.QUALITY (blue 优, green 良好, yellow, orange, red).
WATER_COLOURS: Mapping[str, str] = {
    "blue": "#1E90FF",
    "green": "#00B050",
    "yellow": "#FFD700",
    "orange": "#FF7E00",
    "red": "#FF0000",
}
# River level against the station's levels, in the colours of the flood signals
# (flood.SIGNALS: blue approaching, yellow at warning, orange at guaranteed); normal is green.
LEVEL_COLOURS: Mapping[str, str] = {
    "normal": "#00B050",
    "approaching": WATER_COLOURS["blue"],
    "above_warning": WATER_COLOURS["yellow"],
    "above_guaranteed": WATER_COLOURS["orange"],
}
_POLLUTANT_NAMES = {"so2": "SO2", "no2": "NO2", "pm10": "PM10", "pm2_5": "PM2.5", "co": "CO", "o3": "O3"}


def iso(epoch_s: float | int | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with ``Z`` (None stays None)."""
    if epoch_s is None:
        return None
    moment = datetime.fromtimestamp(float(epoch_s), UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def primary_names(primary: str | None) -> list[str]:
    """Stored primary indicators (``"pm2_5_24h,o3_8h"``) as pollutant names (``["PM2.5", "O3"]``)."""
    names: list[str] = []
    for key in (primary or "").split(","):
        pollutant = key.strip().rsplit("_", 1)[0] if key.strip() else ""
        name = _POLLUTANT_NAMES.get(pollutant)
        if name is not None and name not in names:
            names.append(name)
    return names


def aqi_item(station: StationEntry, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """An ``aqi`` row (hourly or daily report) as the public item; None without an AQI."""
    value = _int(row.get("aqi"))
    if value is None or value < 0:
        return None
    category = aqi_mod.category_for(value)
    iaqi = {
        k.removeprefix("iaqi_"): v for k, v in row.items() if k.startswith("iaqi_") and _int(v) is not None
    }
    return {
        "station_id": station.station_id,
        "name": station.name,
        "lat": station.lat,
        "lon": station.lon,
        "region": station.region,
        "time": iso(row.get("time")),
        "aqi": value,
        "level": category.level,
        "category_zh": category.name_cn,
        "category_en": category.name_en,
        "color": category.colour.hex,
        "primary": primary_names(row.get("primary")),
        "iaqi": {k: int(v) for k, v in sorted(iaqi.items())},
        "standard": row.get("standard"),
    }


def water_item(station: StationEntry, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``water_quality`` row as the public item; the target class is the registry's."""
    klass = _int(row.get("class"))
    if klass is None or not 1 <= klass <= water.WORSE_THAN_V:
        return None
    quality = water.QUALITY[klass - 1]
    label = water.LABELS[klass - 1]
    target = station.target
    deciding = [p for p in str(row.get("deciding") or "").split(",") if p]
    return {
        **station.describe(),
        "time": iso(row.get("time")),
        "class": klass,
        "label": label,
        "label_zh": f"{label}类",
        "quality_zh": quality.zh,
        "quality_en": quality.en,
        "target": target,
        "meets_target": None if target is None else klass <= target,
        "deciding": deciding,
        "color": WATER_COLOURS[quality.colour],
    }


def level_state(level_m: float, warning_m: float | None, guaranteed_m: float | None) -> LevelState | None:
    """Where a level stands against the station's levels; None without a warning level.

    "approaching": within ``flood.APPROACH_MARGIN_M`` below the warning level, as the flood
    rule's blue signal.
    """
    if guaranteed_m is not None and level_m >= guaranteed_m:
        return "above_guaranteed"
    if warning_m is None:
        return None
    if level_m >= warning_m:
        return "above_warning"
    if level_m >= warning_m - flood.APPROACH_MARGIN_M:
        return "approaching"
    return "normal"


def level_item(station: StationEntry, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The latest level (``level`` in m, ``rise`` in m/h, ``time``) as the public item."""
    level = _float(row.get("level"))
    if level is None:
        return None
    warning, guaranteed = station.warning_level_m, station.guaranteed_level_m
    state = level_state(level, warning, guaranteed)
    return {
        "station_id": station.station_id,
        "name": station.name,
        "lat": station.lat,
        "lon": station.lon,
        "basin": station.basin,
        "time": iso(row.get("time")),
        "level_m": round(level, 3),
        "warning_level_m": warning,
        "guaranteed_level_m": guaranteed,
        "margin_m": None if warning is None else round(warning - level, 3),
        "state": state,
        "rise_m_per_h": None if (r := _float(row.get("rise"))) is None else round(r, 3),
        "color": LEVEL_COLOURS[state] if state is not None else None,
    }


def rain_item(station: StationEntry, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``rainfall_sum`` row as the public item, with the GB/T 28592 24 h grade (zh and en)."""
    sums = {f"sum_{h}h": _float(row.get(f"sum_{h}h")) for h in rain.WINDOWS_H}
    if sums["sum_24h"] is None:
        return None
    grade = rain.rain_grade(sums["sum_24h"], 24) if sums["sum_24h"] >= 0 else None
    return {
        "station_id": station.station_id,
        "name": station.name,
        "lat": station.lat,
        "lon": station.lon,
        "basin": station.basin,
        "time": iso(row.get("time")),
        **{k: None if v is None else round(v, 1) for k, v in sums.items()},
        "grade_24h": None if grade is None else grade.name_en,
        "grade_24h_zh": None if grade is None else grade.name_zh,
    }
