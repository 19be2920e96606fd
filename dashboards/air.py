"""Air quality: AQI per station in the standard's category colours, IAQI and pollutant trends,
primary pollutant, hourly (实时报) and daily (日报) reports (HJ 633)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode

from dashboards.influxql import where
from dashboards.panels import Step, alerts_annotation, influx, stat, table, timeseries
from dashboards.variables import place_variables
from streams.analytics.aqi import CATEGORIES

__all__ = ["UID", "build"]

UID = "stationflow-air"
VARS = ("region", "station")
# HJ 633 Table 2 colours from each category's lowest AQI (standards.md §1.5).
AQI_STEPS: tuple[Step, ...] = tuple(
    (None if c.aqi_min == 0 else float(c.aqi_min), c.colour.hex) for c in CATEGORIES
)
POLLUTANTS = (
    ("pm2_5", "PM2.5"),
    ("pm10", "PM10"),
    ("so2", "SO2"),
    ("no2", "NO2"),
    ("co", "CO"),
    ("o3", "O3"),
)
UG = "µg/m³"


def _aqi(report: str) -> str:
    return where(*VARS, extra=(f"\"report\" = '{report}'",))


def _iaqi(period: str, report: str, o3: str) -> str:
    fields = ", ".join(
        f'max("iaqi_{key}_{o3 if key == "o3" else period}") AS "{name}"' for key, name in POLLUTANTS
    )
    return f'SELECT {fields} FROM "aqi" WHERE {_aqi(report)} GROUP BY time($__interval) fill(none)'


def build() -> Dashboard:
    """The air quality dashboard."""
    raw = where(*VARS)
    return (
        Dashboard("Air quality 空气质量")
        .uid(UID)
        .tags(["stationflow", "air"])
        .time("now-48h", "now")
        .refresh("1m")
        .variables(list(place_variables("air", basin=False)))
        .annotation(alerts_annotation("Air alerts", r"^air\.", "orange", *VARS))
        .with_panel(
            stat(
                "AQI now (hourly report)",
                [
                    influx(
                        f'SELECT last("aqi") FROM "aqi" WHERE {_aqi("hourly")} GROUP BY "station"',
                        "$tag_station",
                    )
                ],
                width=24,
                steps=AQI_STEPS,
            )
        )
        .with_panel(
            timeseries(
                "Hourly AQI per station 实时报",
                [
                    influx(
                        f'SELECT "aqi" FROM "aqi" WHERE {_aqi("hourly")} GROUP BY "station"', "$tag_station"
                    )
                ],
                steps=AQI_STEPS,
                style=GraphThresholdsStyleMode.LINE_AND_AREA,
                description="Bands in the HJ 633 category colours: 优 0-50, 良 51-100, 轻度 101-150, "
                "中度 151-200, 重度 201-300, 严重 >300.",
            )
        )
        .with_panel(
            timeseries(
                "Daily AQI per station 日报",
                [influx(f'SELECT "aqi" FROM "aqi" WHERE {_aqi("daily")} GROUP BY "station"', "$tag_station")],
                steps=AQI_STEPS,
                style=GraphThresholdsStyleMode.LINE_AND_AREA,
                bars=True,
            )
        )
        .with_panel(
            timeseries("IAQI per pollutant (hourly, worst station)", [influx(_iaqi("1h", "hourly", "1h"))])
        )
        .with_panel(
            timeseries(
                "PM2.5 and PM10",
                [
                    influx(
                        f'SELECT mean("pm25") AS "PM2.5", mean("pm10") AS "PM10" FROM "air" WHERE {raw} '
                        'GROUP BY time($__interval), "station" fill(none)',
                        "$tag_station $col",
                    )
                ],
                unit=UG,
            )
        )
        .with_panel(
            timeseries(
                "PM2.5 and PM10, 24 h sliding means (≥ 20 of 24 hourly values, GB 3095)",
                [
                    influx(
                        f'SELECT last("pm25_mean_24h") AS "PM2.5 24h", last("pm10_mean_24h") AS "PM10 24h" '
                        f'FROM "windows" WHERE {raw} GROUP BY time(1h), "station" fill(none)',
                        "$tag_station $col",
                    )
                ],
                unit=UG,
            )
        )
        .with_panel(
            timeseries(
                "SO2, NO2, O3",
                [
                    influx(
                        f'SELECT mean("so2") AS "SO2", mean("no2") AS "NO2", mean("o3") AS "O3" FROM "air" '
                        f'WHERE {raw} GROUP BY time($__interval), "station" fill(none)',
                        "$tag_station $col",
                    )
                ],
                unit=UG,
            )
        )
        .with_panel(
            timeseries(
                "CO",
                [
                    influx(
                        f'SELECT mean("co") FROM "air" WHERE {raw} '
                        'GROUP BY time($__interval), "station" fill(none)',
                        "$tag_station",
                    )
                ],
                unit="mg/m³",
            )
        )
        .with_panel(
            table(
                "Latest hourly report: category and primary pollutant 首要污染物",
                [
                    influx(
                        'SELECT last("aqi") AS "AQI", last("category") AS "category", '
                        'last("category_zh") AS "类别", last("primary") AS "primary" '
                        f'FROM "aqi" WHERE {_aqi("hourly")} GROUP BY "station"'
                    )
                ],
                steps=AQI_STEPS,
            )
        )
        .with_panel(
            table(
                "Hourly reports 实时报",
                [
                    influx(
                        'SELECT "aqi", "category", "category_zh", "primary", "standard" '
                        f'FROM "aqi" WHERE {_aqi("hourly")} GROUP BY "station" ORDER BY time DESC LIMIT 48'
                    )
                ],
            )
        )
        .with_panel(
            table(
                "Daily reports 日报",
                [
                    influx(
                        'SELECT "aqi", "category", "category_zh", "primary", "standard" '
                        f'FROM "aqi" WHERE {_aqi("daily")} GROUP BY "station" ORDER BY time DESC'
                    )
                ],
            )
        )
        .with_panel(
            timeseries(
                "Daily IAQI per pollutant (worst station)",
                [influx(_iaqi("24h", "daily", "8h"))],
                bars=True,
                width=24,
            )
        )
    )
