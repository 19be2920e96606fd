"""Prometheus metrics of the stream worker (the sink has its own in ``streams.sink.metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter("stationflow_streams_records_total", "Kafka records consumed from readings.raw")
DOCUMENTS = Counter(
    "stationflow_streams_documents_total",
    "ReadingBatch documents (device messages) in the records of readings.raw (a record is a bundle)",
)
READINGS = Counter("stationflow_streams_readings_total", "Readings written after normalisation")
DUPLICATES = Counter("stationflow_streams_duplicates_total", "Duplicate readings dropped")
REJECTED = Counter("stationflow_streams_rejected_total", "Records sent to the dead-letter topic", ["code"])
BATCH_SECONDS = Histogram(
    "stationflow_streams_batch_seconds",
    "Processing time of one batch (parse, InfluxDB write, produce)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_RECORDS = Histogram(
    "stationflow_streams_batch_records",
    "Records per processing batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)

ANALYTICS_RECORDS = Counter("stationflow_analytics_records_total", "readings.clean records analysed")
ANALYTICS_DONE_AT = Gauge(
    "stationflow_analytics_last_batch_done_timestamp_seconds",
    "Unix time the last analysed batch of readings.clean records was done: its points written, "
    "its records and state changes acknowledged by Kafka",
)
ANALYTICS_HANDOFF = Counter(
    "stationflow_analytics_handoff_total",
    "readings.clean records the analytics took decoded from this worker's raw stage (hit) or "
    "decoded themselves (miss); records remembered and never taken (expired) or not remembered "
    "because the handoff was full (full): streams.handoff",
    ["result"],
)
ANALYTICS_STATES = Counter(
    "stationflow_analytics_states_total",
    "Device updates that took the state kept decoded from the device's previous update (kept) or "
    "decoded the table value (decoded): streams.livestates",
    ["result"],
)
ANALYTICS_INVALID = Counter(
    "stationflow_analytics_invalid_total", "Records the analytics agents could not parse"
)
LATE_READINGS = Counter(
    "stationflow_analytics_late_readings_total",
    "Readings older than their hour's grace period: stored, but left out of the windows",
)
ALERT_EVENTS = Counter("stationflow_alert_events_total", "Alert events emitted", ["rule", "state"])
ALERT_SYNCS = Counter(
    "stationflow_analytics_alert_syncs_total",
    "AlertSync records sent (the alerts held raised, per partition)",
)
ANALYTICS_ENGINE = Gauge(
    "stationflow_analytics_engine",
    "1 for the engine running this worker's analytics: mypyc (compiled by scripts/build_native.py) or python",
    ["engine"],
)
ANALYTICS_REPLAYED = Counter(
    "stationflow_analytics_replayed_total",
    "readings.clean documents skipped because the device's state already held them (replays after a restart)",
)
ANALYTICS_REGISTRY_WAITS = Counter(
    "stationflow_analytics_registry_waits_total",
    "analytics batches that waited for the registry view to read a device it did not know yet",
)
ANALYTICS_BATCH_SECONDS = Histogram(
    "stationflow_analytics_batch_seconds",
    "Time to analyse one batch of clean records (state, rules, InfluxDB, Kafka, changelog)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ANALYTICS_ERRORS = Counter(
    "stationflow_analytics_errors_total",
    "Device batches or station hours the analytics could not process (logged)",
)
LINEPROTOCOL_REPLACED = Counter(
    "stationflow_lineprotocol_replaced_total",
    "Line-protocol names or values with characters InfluxDB cannot store, replaced by U+FFFD "
    "(logged with the device), by position",
    ["position"],
)
