"""Prometheus metrics of the collector."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("stationflow_ingest_messages_total", "MQTT messages received")
READINGS = Counter("stationflow_ingest_readings_total", "Readings accepted and sent to Kafka")
REJECTED = Counter("stationflow_ingest_rejected_total", "Messages sent to the dead-letter topic", ["code"])
QOS0_SHED = Counter(
    "stationflow_ingest_qos0_shed_total",
    "QoS 0 messages shed while the collector was at its QoS 0 in-flight limit (per device; "
    "'_other' once 1000 devices are labelled)",
    ["device"],
)
QOS0_INFLIGHT = Gauge("stationflow_ingest_qos0_inflight", "QoS 0 messages waiting for their Kafka ack")
INFLIGHT = Gauge("stationflow_ingest_inflight", "MQTT messages waiting for their Kafka ack")
CONNECTED = Gauge("stationflow_ingest_mqtt_connected", "1 while connected to the MQTT broker")
BROKER_DROPPED = Gauge(
    "stationflow_mqtt_broker_dropped_messages",
    "Mosquitto's $SYS/broker/publish/messages/dropped (messages the broker gave up on)",
)
ACK_SECONDS = Histogram(
    "stationflow_ingest_ack_seconds",
    "MQTT receive to Kafka acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
IGNORED = Counter(
    "stationflow_ingest_ignored_total",
    "Valid messages with nothing to store (HJ 212 state uploads, replies), acknowledged",
    ["subtopic"],
)
HJ212_UNKNOWN_CODES = Counter(
    "stationflow_ingest_hj212_unknown_codes_total",
    "HJ 212 frames over MQTT with codes that are not metrics of the device's type (other readings kept)",
)
