"""Settings of the MQTT collector (env prefix ``STATIONFLOW_``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from ingest.checks import Limits
from stationflow.settings import CommonSettings

__all__ = ["IngestSettings"]


class IngestSettings(CommonSettings):
    """MQTT collector settings."""

    # A stable client id plus a persistent session lets a restarted collector receive the
    # QoS 1 messages it had not acknowledged before it died.
    ingest_client_id: str = "stationflow-ingest-1"
    # Collectors subscribe as $share/<group>/<filter> and split the load. "" = a plain
    # subscription for a single collector: Mosquitto 2.0.11 persists it across a broker
    # restart, but not a shared one (see README, "When the broker restarts").
    ingest_share_group: str = "stationflow-ingest"
    # Every device subtopic: readings (JSON), senml, hj212; others are dead-lettered as
    # unknown_subtopic (see ingest.topics). The broker's collector role must allow it (devices.dynsec).
    ingest_topic_filter: str = "devices/#"
    ingest_session_expiry_s: int = 24 * 3600
    # MQTT v5 Receive Maximum: how many unacknowledged QoS 1 messages the broker may have
    # in flight to us. Acks wait for Kafka, so the window must cover rate x Kafka ack latency
    # (2000 capped the bench at ~19k readings/s, 20000 gave ~24k); it also bounds the
    # collector's memory at about this many messages (typically ~0.5 KB each).
    ingest_receive_maximum: int = 20_000
    # QoS 0 has no Receive Maximum: at most this many QoS 0 messages wait for Kafka at once,
    # overall and per device; past either limit a QoS 0 message is shed (QoS 0 promises no
    # delivery), counted per device (stationflow_ingest_qos0_shed_total{device}), logged at
    # most once per device every 10 s with the count, and reported in a qos0_shed dead letter.
    # About 2 KB each while in flight (payload, decoded readings, task): 2000 is ~4 MB.
    ingest_qos0_max_inflight: int = Field(default=2_000, ge=1)
    ingest_qos0_max_inflight_per_device: int = Field(default=200, ge=1)
    ingest_max_payload_bytes: int = 256 * 1024
    ingest_max_readings: int = 10_000
    ingest_max_future_s: float = 300.0
    ingest_max_past_s: float = 30 * 86400.0
    ingest_metrics_port: int = 9461  # 0 disables the Prometheus endpoint
    # Loopback by default; 0.0.0.0 in a container, so Prometheus can scrape it (compose).
    ingest_metrics_bind: str = "127.0.0.1"
    # Longer linger = fewer, larger produce requests; acks wait for it, so keep it short.
    ingest_kafka_linger_ms: int = 20
    # HJ 212 over MQTT (devices/<id>/hj212): frames are read with the device's registry record.
    # A frame arriving before the registry is loaded waits this long, then is dead-lettered.
    ingest_registry_wait_s: float = Field(default=30.0, gt=0)
    # Same settings (and environment variables) as the TCP collector's.
    hj212_strict: bool = False  # refuse every field deviation, for all stations
    hj212_tz: str = "Asia/Shanghai"  # stations write DataTime in local time

    def limits(self) -> Limits:
        """Message limits from settings."""
        return Limits(
            max_payload_bytes=self.ingest_max_payload_bytes,
            max_readings=self.ingest_max_readings,
            max_future=timedelta(seconds=self.ingest_max_future_s),
            max_past=timedelta(seconds=self.ingest_max_past_s),
        )
