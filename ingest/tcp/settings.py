"""Settings of the TCP collector (env prefix ``STATIONFLOW_``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from ingest.checks import Limits
from stationflow.settings import CommonSettings

__all__ = ["TcpSettings"]


class TcpSettings(CommonSettings):
    """HJ 212 and SL 651 listeners, their limits and their Kafka producer."""

    tcp_bind: str = "0.0.0.0"  # stations connect from the field
    hj212_port: int = Field(default=9212, ge=0, le=65535, description="0 disables the HJ 212 listener")
    sl651_port: int = Field(default=9651, ge=0, le=65535, description="0 disables the SL 651 listener")
    tcp_max_connections: int = Field(default=5000, ge=1)
    # Pending connections the kernel queues per listener (stations reconnecting all at once
    # after a network outage would otherwise see SYN retries of a second or more).
    tcp_backlog: int = Field(default=1024, ge=1)
    # 0 = unlimited: DTUs behind a carrier NAT share one public address.
    tcp_max_connections_per_ip: int = Field(default=0, ge=0)
    # A frame (HJ 212: segment ≤ 1024 by the standard, devices send more; SL 651: ≤ 4095 + 17)
    # larger than this is refused and its bytes dropped.
    tcp_max_frame_bytes: int = Field(default=16_384, ge=64)
    # No byte for this long closes the connection. HJ 212 has no heartbeat: ≥ 2 × the usual
    # minute / real-time upload interval. SL 651 RTUs on ESC send 2F keep-alives (≤ 255 s).
    hj212_idle_timeout_s: float = Field(default=900.0, gt=0)
    sl651_idle_timeout_s: float = Field(default=300.0, gt=0)
    # A partial frame must be completed within this many seconds (slow-loris guard); its bytes
    # then go to the dead-letter topic as *_truncated and the connection is closed.
    tcp_frame_timeout_s: float = Field(default=60.0, gt=0)
    # Per station token bucket (per connection until the station is known).
    tcp_frames_per_s: float = Field(default=20.0, gt=0)
    tcp_frames_burst: int = Field(default=200, ge=1)
    # Frames of one connection waiting for Kafka before it stops reading (back-pressure).
    tcp_max_pending_per_connection: int = Field(default=64, ge=1)
    hj212_strict: bool = False  # refuse every field deviation, for all stations
    # Set a station's clock (CN 1012) when it is off by more than this; 0 disables.
    hj212_time_drift_s: float = Field(default=60.0, ge=0)
    hj212_tz: str = "Asia/Shanghai"
    sl651_tz: str = "Asia/Shanghai"
    # Incomplete sub-packet (HJ 212 PNUM/PNO) and multi-packet (SL 651 M3) groups expire after.
    hj212_subpacket_timeout_s: float = Field(default=60.0, gt=0)
    sl651_packet_timeout_s: float = Field(default=120.0, gt=0)
    tcp_max_future_s: float = 300.0
    tcp_max_past_s: float = 30 * 86400.0
    tcp_max_readings: int = 10_000
    tcp_metrics_port: int = 9464  # 0 disables the Prometheus endpoint
    tcp_metrics_bind: str = "127.0.0.1"
    tcp_kafka_linger_ms: int = 5
    tcp_client_id: str = "stationflow-tcp"
    # The dead letters keep at most this much of a refused frame.
    tcp_max_deadletter_bytes: int = 64 * 1024

    def limits(self) -> Limits:
        """Plausibility limits applied to the decoded readings of every frame."""
        return Limits(
            max_payload_bytes=self.tcp_max_frame_bytes,
            max_readings=self.tcp_max_readings,
            max_future=timedelta(seconds=self.tcp_max_future_s),
            max_past=timedelta(seconds=self.tcp_max_past_s),
        )
