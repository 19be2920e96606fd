"""Response models of the open-data API: what ``/openapi.json`` documents (items are built as
dicts in :mod:`stationview.items`; the unit tests validate them against these models)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AqiItem",
    "AqiList",
    "History",
    "LevelItem",
    "LevelList",
    "Problem",
    "RainItem",
    "RainList",
    "StationItem",
    "StationList",
    "WaterItem",
    "WaterList",
]

Time = str  # ISO 8601 UTC with Z


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    station_id: str
    name: str
    lat: float | None = None
    lon: float | None = None


class StationItem(_Item):
    """A public station."""

    kind: str = Field(description="air, water, gauge, rain, other")
    region: str | None = None
    basin: str | None = None
    domains: list[str] = Field(description="what its devices measure: air, water, hydro, …")


class AqiItem(_Item):
    """An AQI report (HJ 633) of a station: real-time (hourly) or daily."""

    region: str | None = None
    time: Time = Field(description="start of the hour (hourly) or of the China day (daily)")
    aqi: int
    level: int = Field(ge=1, le=6)
    category_zh: str
    category_en: str
    color: str = Field(description="HJ 633 Annex A colour, e.g. #00E400")
    primary: list[str] = Field(description="primary pollutants, e.g. PM2.5")
    iaqi: dict[str, int] = Field(description="sub-index per indicator, e.g. pm2_5_24h")
    standard: str | None = None


class WaterItem(_Item):
    """The latest GB 3838 class of a water section."""

    region: str | None = None
    basin: str | None = None
    time: Time
    class_: int = Field(alias="class", ge=1, le=6, description="1..5 = I..V, 6 = 劣V")
    label: str
    label_zh: str
    quality_zh: str
    quality_en: str
    target: int | None = Field(default=None, ge=1, le=5)
    meets_target: bool | None = None
    deciding: list[str] = Field(description="the parameters that decide the class")
    color: str


class LevelItem(_Item):
    """The latest river level of a gauge against its warning and guaranteed levels."""

    basin: str | None = None
    time: Time
    level_m: float
    warning_level_m: float | None = None
    guaranteed_level_m: float | None = None
    margin_m: float | None = Field(default=None, description="warning − level; negative = above warning")
    state: Literal["normal", "approaching", "above_warning", "above_guaranteed"] | None = None
    rise_m_per_h: float | None = None
    color: str | None = None


class RainItem(_Item):
    """The latest rainfall sums of a rain station (mm) with the GB/T 28592 24 h grade."""

    basin: str | None = None
    time: Time
    sum_1h: float | None = None
    sum_3h: float | None = None
    sum_6h: float | None = None
    sum_12h: float | None = None
    sum_24h: float | None = None
    grade_24h: str | None = None
    grade_24h_zh: str | None = None


class _List(BaseModel):
    count: int
    generated_at: Time


class StationList(_List):
    """Public stations."""

    data: list[StationItem]


class AqiList(_List):
    """AQI reports."""

    data: list[AqiItem]


class WaterList(_List):
    """Water sections."""

    data: list[WaterItem]


class LevelList(_List):
    """River levels."""

    data: list[LevelItem]


class RainList(_List):
    """Rainfall sums."""

    data: list[RainItem]


class History(BaseModel):
    """A station's last hours: hourly values per metric (rain: hourly sums) and its hourly AQI."""

    station_id: str
    name: str
    kind: str
    lat: float | None = None
    lon: float | None = None
    series: dict[str, list[tuple[Time, float]]]
    aqi_hourly: list[AqiItem] = Field(default_factory=list, description="air stations only")
    generated_at: Time


class Problem(BaseModel):
    """An error (RFC 9457 problem details)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
