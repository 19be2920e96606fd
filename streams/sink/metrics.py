"""Prometheus metrics of the InfluxDB sink (default registry, one set per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "DRAINED_POINTS",
    "DROPPED_POINTS",
    "OUTAGE",
    "POINTS_WRITTEN",
    "REJECTED_DISCARDED",
    "REJECTED_KEPT",
    "REJECTED_POINTS",
    "SPOOLED_POINTS",
    "SPOOL_BATCHES",
    "SPOOL_BYTES",
    "WRITE_ERRORS",
    "WRITE_SECONDS",
]

POINTS_WRITTEN = Counter(
    "stationflow_sink_points_written_total",
    "Points InfluxDB accepted (direct writes and drained batches).",
)
WRITE_SECONDS = Histogram(
    "stationflow_sink_write_seconds",
    "Duration of one batch write request, successful or not.",
    # Healthy 5k-point batches take 10-50 ms; the tail shows overload up to the 10 s timeout.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WRITE_ERRORS = Counter(
    "stationflow_sink_write_errors_total",
    "Failed batch writes by kind (unavailable: retried later; rejected: refused by the server).",
    ["kind"],
)
SPOOL_BYTES = Gauge("stationflow_sink_spool_bytes", "Bytes of batches waiting in the disk spool.")
SPOOL_BATCHES = Gauge("stationflow_sink_spool_batches", "Batches waiting in the disk spool.")
SPOOLED_POINTS = Counter(
    "stationflow_sink_spooled_points_total", "Points written to the disk spool during outages."
)
DRAINED_POINTS = Counter(
    "stationflow_sink_drained_points_total", "Spooled points later delivered to InfluxDB."
)
DROPPED_POINTS = Counter(
    "stationflow_sink_dropped_points_total",
    "Points lost because InfluxDB was unreachable and the disk spool was full.",
)
REJECTED_POINTS = Counter(
    "stationflow_sink_rejected_points_total",
    "Points in batches InfluxDB refused (bad line protocol, auth, missing database), by reason.",
    ["reason"],
)
REJECTED_KEPT = Counter(
    "stationflow_sink_rejected_kept_total",
    "Refused points kept with their device and InfluxDB's reason in <spool>/rejected/ "
    "(see `stationflow rejected`).",
)
REJECTED_DISCARDED = Counter(
    "stationflow_sink_rejected_discarded_total",
    "Kept refused points discarded, oldest first, to keep the rejected store within its bound.",
)
OUTAGE = Gauge("stationflow_sink_outage", "1 while InfluxDB is unreachable or the spool drains.")
