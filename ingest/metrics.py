"""Prometheus metrics of the collector.

The two per-message counters (messages, readings) are plain integers in ``TALLY``, read at
scrape time: a prometheus-client ``Counter.inc()`` takes a lock and was measurable per message
on the hot path. Everything else is counted where it happens (rare) or per bundle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


@dataclass(slots=True)
class Tally:
    """Hot-path counts, incremented as plain ints by the collector (one event loop thread)."""

    messages: int = 0  # MQTT messages received
    readings: int = 0  # readings accepted and handed to the bundler


class _TallyCollector(Collector):
    """Exposes ``TALLY`` as the counters ``stationflow_ingest_messages_total`` and ``_readings_total``."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The counters' current values."""
        yield CounterMetricFamily(
            "stationflow_ingest_messages", "MQTT messages received", value=self.tally.messages
        )
        yield CounterMetricFamily(
            "stationflow_ingest_readings", "Readings accepted and sent to Kafka", value=self.tally.readings
        )


TALLY = Tally()
REGISTRY.register(_TallyCollector(TALLY))
BUNDLES = Counter("stationflow_ingest_bundles_total", "readings.raw records sent (each a bundle of messages)")
BUNDLE_MESSAGES = Histogram(
    "stationflow_ingest_bundle_messages",
    "Device messages per readings.raw record (bundle)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
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
SESSION_RESUMES = Counter(
    "stationflow_ingest_mqtt_session_resumes_total",
    "MQTT session resumes after the broker dropped messages (it then resends what it holds in flight)",
)
ACK_SECONDS = Histogram(
    "stationflow_ingest_ack_seconds",
    "MQTT receive to Kafka acknowledgement, once per bundle (from its first message: the longest wait in it)",
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
