"""Cold chain: temperature per logger and shipment against the 2–8 °C and −18 °C limits,
excursions and mean kinetic temperature (MKT)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode

from dashboards.influxql import where
from dashboards.panels import Step, alerts_annotation, influx, table, timeseries
from dashboards.variables import place_variables

__all__ = ["UID", "build"]

UID = "stationflow-coldchain"
VARS = ("region", "station")
FRIDGE_C = (2.0, 8.0)  # refrigerated goods band
FREEZER_C = -18.0  # frozen goods: at or below
LIMIT_STEPS: tuple[Step, ...] = (
    (None, "transparent"),
    (FREEZER_C, "purple"),
    (FRIDGE_C[0], "blue"),
    (FRIDGE_C[1], "red"),
)


def build() -> Dashboard:
    """The cold chain dashboard."""
    flt = where(*VARS)
    per = 'GROUP BY time($__interval), "device" fill(none)'
    return (
        Dashboard("Cold chain 冷链")
        .uid(UID)
        .tags(["stationflow", "coldchain"])
        .time("now-48h", "now")
        .refresh("1m")
        .variables(list(place_variables("coldchain", basin=False)))
        .annotation(alerts_annotation("Cold-chain excursions", r"^coldchain\.", "purple", *VARS))
        .with_panel(
            timeseries(
                "Temperature per logger against limits 温度",
                [influx(f'SELECT mean("temperature") FROM "coldchain" WHERE {flt} {per}', "$tag_device")],
                unit="celsius",
                width=24,
                height=9,
                steps=LIMIT_STEPS,
                style=GraphThresholdsStyleMode.DASHED,
                description="Dashed lines: −18 °C (frozen goods, at or below), "
                "2 °C and 8 °C (refrigerated band).",
            )
        )
        .with_panel(
            timeseries(
                "Mean kinetic temperature per shipment MKT",
                [
                    influx(
                        f'SELECT last("mkt_c") FROM "coldchain_summary" WHERE {flt} '
                        'GROUP BY time($__interval), "device", "shipment" fill(none)',
                        "$tag_device $tag_shipment",
                    )
                ],
                unit="celsius",
                steps=LIMIT_STEPS,
                style=GraphThresholdsStyleMode.DASHED,
            )
        )
        .with_panel(
            timeseries(
                "Current excursion length 超温时长",
                [
                    influx(
                        f'SELECT max("excursion_s") FROM "coldchain_summary" WHERE {flt} '
                        'GROUP BY time($__interval), "device", "shipment" fill(none)',
                        "$tag_device $tag_shipment",
                    )
                ],
                unit="s",
            )
        )
        .with_panel(
            table(
                "Shipments: excursions, time outside limits, MKT 运单",
                [
                    influx(
                        'SELECT last("excursions") AS "excursions", last("time_above_s") AS "above (s)", '
                        'last("time_below_s") AS "below (s)", last("longest_s") AS "longest (s)", '
                        f'last("mkt_c") AS "MKT (°C)" FROM "coldchain_summary" WHERE {flt} '
                        'GROUP BY "device", "shipment"'
                    )
                ],
                width=24,
            )
        )
        .with_panel(
            timeseries(
                "Humidity 湿度",
                [influx(f'SELECT mean("humidity") FROM "coldchain" WHERE {flt} {per}', "$tag_device")],
                unit="percent",
                width=24,
            )
        )
    )
