"""Flood: river levels against warning (警戒) and guaranteed (保证) levels, rise rate, rainfall
bars, and 1/3/6/12/24 h rainfall sums against the GB/T 28592-2012 grades and CMA rainstorm signals."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode
from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

from dashboards.influxql import where
from dashboards.panels import Step, alerts_annotation, influx, stat, table, timeseries
from dashboards.variables import place_variables
from streams.analytics.rain import GRADES, RAINSTORM_SIGNALS

__all__ = ["UID", "build"]

UID = "stationflow-flood"
VARS = ("region", "basin", "station")
# CMA precipitation colour scale: light, moderate, heavy, rainstorm, heavy and extreme rainstorm.
GRADE_COLOURS = ("#A6F28F", "#3DBA3D", "#61B8FF", "#0000FE", "#FA00FA", "#800040")
SIGNAL_COLOURS = {"blue": "#1F60C4", "yellow": "#FADE2A", "orange": "#FF7E00", "red": "#E02F44"}
DASHED = DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})


def grade_steps(hours: int) -> tuple[Step, ...]:
    """Steps at each grade's lower bound (GB/T 28592-2012; 1 h: the common convention)."""
    steps: list[Step] = [(None, "transparent")]
    steps += [(g.low_mm, GRADE_COLOURS[g.rank - 1]) for g in GRADES[hours]]
    return tuple(steps)


def signal_steps(hours: int) -> tuple[Step, ...]:
    """Steps at the CMA rainstorm-signal amounts over ``hours`` (3 h: orange, red; 6 h: yellow)."""
    rows = sorted((mm, colour) for colour, _, window, mm in RAINSTORM_SIGNALS if window == hours)
    return ((None, "transparent"), *((mm, SIGNAL_COLOURS[colour]) for mm, colour in rows))


def build() -> Dashboard:
    """The flood dashboard."""
    flt = where(*VARS)
    level = timeseries(
        "River level against warning and guaranteed levels 水位",
        [
            influx(
                f'SELECT mean("level") FROM "hydro" WHERE {flt} '
                'GROUP BY time($__interval), "station" fill(none)',
                "$tag_station level",
            ),
            influx(
                'SELECT last("warning_level") AS "warning 警戒", '
                'last("guaranteed_level") AS "guaranteed 保证" '
                f'FROM "level_trend" WHERE {flt} GROUP BY time($__interval), "station" fill(none)',
                "$tag_station $col",
            ),
        ],
        unit="m",
        width=24,
        height=9,
    ).override_by_regexp(".*(warning|guaranteed).*", [DASHED])
    dash = (
        Dashboard("Flood 防汛")
        .uid(UID)
        .tags(["stationflow", "flood"])
        .time("now-48h", "now")
        .refresh("1m")
        .variables(list(place_variables("hydro", basin=True)))
        .annotation(alerts_annotation("Flood and rain alerts", r"^(flood|rain)\.", "red", *VARS))
        .with_panel(level)
        .with_panel(
            stat(
                "Margin to warning level 距警戒水位",
                [
                    influx(
                        f'SELECT last("margin_warning") FROM "level_trend" WHERE {flt} GROUP BY "station"',
                        "$tag_station",
                    )
                ],
                unit="m",
                width=12,
                steps=((None, "red"), (0.0, "orange"), (0.5, "green")),
                description="Warning level minus the latest level: negative = above the warning level.",
            )
        )
        .with_panel(
            timeseries(
                "Rise rate 涨率",
                [
                    influx(
                        f'SELECT mean("rise_per_h") FROM "level_trend" WHERE {flt} '
                        'GROUP BY time($__interval), "station" fill(none)',
                        "$tag_station",
                    )
                ],
                unit="m/h",
            )
        )
        .with_panel(
            timeseries(
                "Hourly rainfall 小时雨量",
                [
                    influx(
                        f'SELECT sum("rain") FROM "hydro" WHERE {flt} '
                        'GROUP BY time(1h), "station" fill(none)',
                        "$tag_station",
                    )
                ],
                unit="mm",
                bars=True,
                width=24,
                steps=grade_steps(1),
                style=GraphThresholdsStyleMode.DASHED,
            )
        )
    )
    sums = (
        (1, grade_steps(1), "grades (1 h convention)"),
        (3, signal_steps(3), "CMA rainstorm signals orange 50 / red 100 mm"),
        (6, signal_steps(6), "CMA rainstorm signal yellow 50 mm"),
        (12, grade_steps(12), "GB/T 28592-2012 12 h grades"),
        (24, grade_steps(24), "GB/T 28592-2012 24 h grades"),
    )
    for hours, steps, what in sums:
        dash = dash.with_panel(
            timeseries(
                f"Rainfall {hours} h sum {hours} 小时累计雨量",
                [
                    influx(
                        f'SELECT max("sum_{hours}h") FROM "rainfall_sum" WHERE {flt} '
                        'GROUP BY time($__interval), "station" fill(none)',
                        "$tag_station",
                    )
                ],
                unit="mm",
                width=12 if hours != 24 else 24,
                steps=steps,
                style=GraphThresholdsStyleMode.DASHED_AND_AREA,
                description=f"Bands: {what}.",
            )
        )
    return dash.with_panel(
        table(
            "Latest rainfall grade and rainstorm signal 雨量等级",
            [
                influx(
                    'SELECT last("sum_24h") AS "24 h mm", last("grade_24h") AS "24 h grade", '
                    'last("storm_signal") AS "signal (0-4)" '
                    f'FROM "rainfall_sum" WHERE {flt} GROUP BY "station"'
                )
            ],
            width=24,
        )
    )
