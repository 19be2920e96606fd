"""Water quality: GB 3838-2002 class per section against its target, parameters against class limits."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode

from dashboards.influxql import where
from dashboards.panels import Step, alerts_annotation, influx, stat, table, timeseries
from dashboards.variables import place_variables
from streams.analytics.water import DO_LIMITS, LABELS, LIMITS, PH_RANGE

__all__ = ["UID", "build"]

UID = "stationflow-water"
VARS = ("region", "basin", "station")
# Class colours in the customary order of Chinese water-quality maps: I, II, III, IV, V, 劣V.
CLASS_COLOURS = ("#1F6FB4", "#4FA3E0", "#2CA02C", "#F2CC0C", "#FF7F0E", "#D62728")
# Class number (1 … 6) coloured as its class.
CLASS_STEPS: tuple[Step, ...] = tuple(
    (None if i == 0 else float(i + 1), colour) for i, colour in enumerate(CLASS_COLOURS)
)
# (field in "water", GB 3838 key, title, unit)
PARAMETERS = (
    ("codmn", "codmn", "Permanganate index CODMn 高锰酸盐指数", "mg/L"),
    ("nh3n", "nh3_n", "Ammonia nitrogen NH3-N 氨氮", "mg/L"),
    ("tp", "tp", "Total phosphorus TP 总磷 (rivers)", "mg/L"),
)


def limit_steps(limits: tuple[float, ...], *, lower_is_worse: bool = False) -> tuple[Step, ...]:
    """Threshold steps coloured by the class a value falls in (limits of classes I … V)."""
    if lower_is_worse:  # dissolved oxygen: >= limit[k] is class k+1
        worst_first: list[Step] = [(None, CLASS_COLOURS[5])]
        worst_first += [(float(lim), CLASS_COLOURS[4 - i]) for i, lim in enumerate(reversed(limits))]
        return tuple(worst_first)
    steps: list[Step] = [(None, CLASS_COLOURS[0])]
    for i, lim in enumerate(limits):  # above class k's limit: class k+1 (or 劣V)
        if steps[-1][0] != float(lim):
            steps.append((float(lim), CLASS_COLOURS[i + 1]))
        else:
            steps[-1] = (float(lim), CLASS_COLOURS[i + 1])
    return tuple(steps)


def build() -> Dashboard:
    """The water quality dashboard."""
    wq = where(*VARS)
    dash = (
        Dashboard("Water quality 水质")
        .uid(UID)
        .tags(["stationflow", "water"])
        .time("now-48h", "now")
        .refresh("1m")
        .variables(list(place_variables("water", basin=True)))
        .annotation(alerts_annotation("Water alerts", r"^water\.", "blue", *VARS))
        .with_panel(
            stat(
                "Class now 当前水质类别 (1 = I … 6 = 劣V)",
                [
                    influx(
                        f'SELECT last("class") FROM "water_quality" WHERE {wq} GROUP BY "station"',
                        "$tag_station",
                    )
                ],
                width=24,
                steps=CLASS_STEPS,
                description="GB 3838-2002 single-factor class: "
                + ", ".join(f"{i + 1} = {n}" for i, n in enumerate(LABELS)),
            )
        )
        .with_panel(
            timeseries(
                "Class per section against its target 目标类别",
                [
                    influx(
                        f'SELECT "class" AS "class", "target_class" AS "target" FROM "water_quality" '
                        f'WHERE {wq} GROUP BY "station"',
                        "$tag_station $col",
                    )
                ],
                steps=CLASS_STEPS,
                style=GraphThresholdsStyleMode.AREA,
                description="A class line above its target line is worse than the section's target.",
            )
        )
        .with_panel(
            table(
                "Latest class and deciding parameters 定类因子",
                [
                    influx(
                        'SELECT last("label") AS "class", last("target_class") AS "target", '
                        'last("deciding") AS "deciding" '
                        f'FROM "water_quality" WHERE {wq} GROUP BY "station"'
                    )
                ],
            )
        )
    )
    raw = where(*VARS)
    series = ("dissolved oxygen DO 溶解氧", "do", "mg/L", limit_steps(DO_LIMITS, lower_is_worse=True))
    panels = [series] + [(t, f, u, limit_steps(LIMITS[k])) for f, k, t, u in PARAMETERS]
    panels.append(
        (
            "pH",
            "ph",
            "",
            ((None, CLASS_COLOURS[5]), (PH_RANGE[0], CLASS_COLOURS[2]), (PH_RANGE[1], CLASS_COLOURS[5])),
        )
    )
    for title, field, unit, steps in panels:
        dash = dash.with_panel(
            timeseries(
                title,
                [
                    influx(
                        f'SELECT mean("{field}") FROM "water" WHERE {raw} '
                        'GROUP BY time($__interval), "station" fill(none)',
                        "$tag_station",
                    )
                ],
                unit=unit,
                steps=steps,
                style=GraphThresholdsStyleMode.DASHED_AND_AREA,
                description="Bands: GB 3838-2002 class limits (I blue … 劣V red).",
            )
        )
    return dash.with_panel(
        timeseries(
            "Turbidity 浊度",
            [
                influx(
                    f'SELECT mean("turbidity") FROM "water" WHERE {raw} '
                    'GROUP BY time($__interval), "station" fill(none)',
                    "$tag_station",
                )
            ],
            unit="NTU",
        )
    )
