"""Device health: last report per device (offline), stuck (flat) and out-of-range readings,
spikes and late readings, and dead letters by reason (Prometheus)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards.influxql import where
from dashboards.panels import alerts_annotation, influx, prom, table, timeseries
from dashboards.variables import place_variables

__all__ = ["UID", "build"]

UID = "stationflow-health"
VARS = ("region", "basin", "station")
# Dead-letter counters of the three places that refuse messages, told apart by a "source" label.
DEAD_LETTERS = " or ".join(
    f'label_replace(sum by (code) (increase({metric}[1h])), "source", "{source}", "", "")'
    for metric, source in (
        ("stationflow_ingest_rejected_total", "mqtt"),
        ("stationflow_tcp_deadletters_total", "tcp"),
        ("stationflow_streams_rejected_total", "worker"),
    )
)


def build() -> Dashboard:
    """The device health dashboard."""
    flt = where(*VARS)
    per = 'GROUP BY time($__interval), "device" fill(none)'
    dash = (
        Dashboard("Device health 设备状态")
        .uid(UID)
        .tags(["stationflow", "health"])
        .time("now-48h", "now")
        .refresh("1m")
        .variables(list(place_variables("data_quality", basin=True)))
        .annotation(
            alerts_annotation("Device alerts (offline, stuck, out of range)", r"^health\.", "yellow", *VARS)
        )
        .with_panel(
            table(
                "Last report per device (an old time = offline) 最近上报",
                [
                    influx(
                        'SELECT last("excluded") AS "excluded", last("out_of_range") AS "out of range", '
                        f'last("flat_intervals") AS "flat intervals" FROM "data_quality" WHERE {flt} '
                        'GROUP BY "device", "station"'
                    )
                ],
                width=24,
                description="The time column is each device's last analysed reading: a device whose "
                "time lags is silent (the offline alert fires after its interval plus grace).",
            )
        )
    )
    for field, title, unit in (
        ("flat_intervals", "Stuck: identical consecutive readings 恒值", ""),
        ("out_of_range", "Out of range readings (total) 超量程", ""),
        ("spikes", "Spikes removed (total) 突变", ""),
        ("late", "Late readings left out of windows (total)", ""),
    ):
        dash = dash.with_panel(
            timeseries(
                title,
                [influx(f'SELECT max("{field}") FROM "data_quality" WHERE {flt} {per}', "$tag_device")],
                unit=unit,
            )
        )
    return dash.with_panel(
        timeseries(
            "Dead letters by reason, last hour 死信 (Prometheus)",
            [prom(DEAD_LETTERS, "{{source}} {{code}}")],
            width=24,
            bars=True,
        )
    )
