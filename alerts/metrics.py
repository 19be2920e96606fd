"""Prometheus metrics of the alert service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OPEN_ALERTS = Gauge(
    "stationflow_alerts_open", "Alerts not resolved, by status and severity", ["status", "severity"]
)
EVENTS = Counter("stationflow_alerts_events_total", "Alert events consumed", ["result"])
NOTIFICATIONS = Counter(
    "stationflow_alerts_notifications_total", "Notification attempts", ["channel", "result"]
)
NOTIFICATION_LATENCY = Histogram(
    "stationflow_alerts_notification_latency_seconds",
    "From the notification being queued (the event applied) to the channel accepting it",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
OUTBOX_DEPTH = Gauge("stationflow_alerts_outbox_depth", "Notifications waiting to be delivered")
RECONCILED = Counter(
    "stationflow_alerts_reconciled_total",
    "Open alerts resolved because the analytics' active set (AlertSync) no longer holds them",
)
ESCALATIONS = Counter("stationflow_alerts_escalations_total", "Alerts escalated or re-notified")
BOARD_SECONDS = Histogram(
    "stationflow_alerts_board_seconds",
    "Time to build the console's station board (InfluxDB reads and the open-alert count)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
