"""Prometheus metrics of the device registry (served on its API at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OUTBOX_DEPTH = Gauge("stationflow_registry_outbox_depth", "Registry changes waiting to reach Kafka")
OUTBOX_AGE = Gauge(
    "stationflow_registry_outbox_oldest_age_seconds", "Age of the oldest change waiting (0 when none)"
)
PUBLISHED = Counter(
    "stationflow_registry_published_total", "Records Kafka acknowledged on the registry topic", ["kind"]
)
PUBLISH_FAILURES = Counter(
    "stationflow_registry_publish_failures_total", "Publish attempts that failed (Kafka unreachable)"
)
SNAPSHOTS = Counter("stationflow_registry_snapshots_total", "Full registry republications", ["reason"])
KAFKA_UP = Gauge("stationflow_registry_kafka_up", "1 while the outbox relay reaches Kafka, else 0")
