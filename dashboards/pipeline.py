"""Pipeline (Prometheus): ingest rate, consumer lag per group and partition, sink spool depth,
alert and notification counts."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards.panels import prom, stat, timeseries

__all__ = ["UID", "build"]

UID = "stationflow-pipeline"
RATE = "$__rate_interval"


def build() -> Dashboard:
    """The pipeline dashboard."""
    return (
        Dashboard("Pipeline 数据管道")
        .uid(UID)
        .tags(["stationflow", "pipeline"])
        .time("now-1h", "now")
        .refresh("30s")
        .with_panel(
            timeseries(
                "Ingest rate (readings/s)",
                [
                    prom(f"sum(rate(stationflow_ingest_readings_total[{RATE}]))", "MQTT collector"),
                    prom(
                        f"sum by (protocol) (rate(stationflow_tcp_readings_total[{RATE}]))",
                        "TCP {{protocol}}",
                    ),
                    prom(f"sum(rate(stationflow_streams_readings_total[{RATE}]))", "worker written"),
                ],
                unit="reqps",
            )
        )
        .with_panel(
            timeseries(
                "Consumer lag per group and partition (messages)",
                [
                    prom(
                        "max by (group, topic, partition) (stationflow_consumer_lag)",
                        "{{group}} {{topic}}/{{partition}}",
                    )
                ],
                description="True end offset minus the group's committed offset, exported every few seconds "
                "by the worker and the alert service.",
            )
        )
        .with_panel(
            stat(
                "Stalled consumers (partitions)",
                [
                    prom(
                        "max by (group, topic) (stationflow_consumer_stalled_partitions)",
                        "{{group}} {{topic}}",
                    )
                ],
                steps=((None, "green"), (1.0, "red")),
                description="Partitions whose records wait while their group's committed offset has not "
                "moved for a minute: the consumer stopped, hung or is gone (the analytics, and the warnings "
                "behind them, with it). The worker's and the alert service's logs name them: "
                "`consumer stalled`.",
            )
        )
        .with_panel(
            timeseries(
                "InfluxDB sink: spool depth and points written",
                [
                    prom("sum(stationflow_sink_spool_batches)", "spooled batches"),
                    prom(f"sum(rate(stationflow_sink_points_written_total[{RATE}]))", "points/s written"),
                ],
            )
        )
        .with_panel(stat("Sink spool (bytes)", [prom("sum(stationflow_sink_spool_bytes)")], unit="bytes"))
        .with_panel(
            stat(
                "InfluxDB outage",
                [prom("max(stationflow_sink_outage)")],
                steps=((None, "green"), (1.0, "red")),
            )
        )
        .with_panel(
            timeseries(
                "Alert events emitted by the worker",
                [
                    prom(
                        f"sum by (rule, state) (increase(stationflow_alert_events_total[{RATE}]))",
                        "{{rule}} {{state}}",
                    )
                ],
                bars=True,
            )
        )
        .with_panel(
            timeseries(
                "Open alerts and notification outbox",
                [
                    prom("sum by (status) (stationflow_alerts_open)", "open {{status}}"),
                    prom("sum(stationflow_alerts_outbox_depth)", "notifications waiting"),
                ],
            )
        )
        .with_panel(
            timeseries(
                "Notifications sent by channel and result",
                [
                    prom(
                        "sum by (channel, result) "
                        f"(increase(stationflow_alerts_notifications_total[{RATE}]))",
                        "{{channel}} {{result}}",
                    )
                ],
                bars=True,
                width=24,
            )
        )
    )
