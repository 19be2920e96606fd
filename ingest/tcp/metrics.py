"""Prometheus metrics of the TCP collector (``protocol`` is ``hj212`` or ``sl651``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS_OPEN = Gauge("stationflow_tcp_connections_open", "Open station connections", ["protocol"])
CONNECTIONS_TOTAL = Counter("stationflow_tcp_connections_total", "Connections accepted", ["protocol"])
CONNECTIONS_REFUSED = Counter(
    "stationflow_tcp_connections_refused_total",
    "Connections refused (reason: max_connections, max_connections_per_ip)",
    ["protocol", "reason"],
)
CONNECTIONS_CLOSED = Counter(
    "stationflow_tcp_connections_closed_total",
    "Connections closed (reason: peer, idle, frame_timeout, shutdown, error)",
    ["protocol", "reason"],
)
BYTES = Counter("stationflow_tcp_bytes_received_total", "Bytes received from stations", ["protocol"])
FRAMES = Counter(
    "stationflow_tcp_frames_total",
    "Frames by outcome (stored, duplicate, keepalive, reply, held, refused, command)",
    ["protocol", "outcome"],
)
READINGS = Counter("stationflow_tcp_readings_total", "Readings sent to readings.raw", ["protocol"])
DEADLETTERS = Counter("stationflow_tcp_deadletters_total", "Dead letters sent, by code", ["protocol", "code"])
DEADLETTERS_SUPPRESSED = Counter(
    "stationflow_tcp_deadletters_suppressed_total",
    "Refusals of a flooding connection counted but not sent (over the frame rate), by code",
    ["protocol", "code"],
)
REPLIES = Counter("stationflow_tcp_replies_total", "Replies sent to stations, by kind", ["protocol", "kind"])
INFLIGHT = Gauge("stationflow_tcp_inflight", "Kafka records waiting for their acknowledgement")
ACK_SECONDS = Histogram(
    "stationflow_tcp_kafka_ack_seconds",
    "Frame complete to Kafka acknowledgement",
    ["protocol"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HJ212_CRC_VARIANT = Gauge(
    "stationflow_hj212_crc_variant",
    "1 for the CRC variant the station's last frame matched (hj212, modbus, modbus_swapped)",
    ["device", "variant"],
)
HJ212_DEVIATIONS = Counter(
    "stationflow_hj212_deviations_total", "Tolerated deviations from HJ 212-2017", ["device", "deviation"]
)
HJ212_UNKNOWN_CODES = Counter(
    "stationflow_hj212_unknown_codes_total", "Frames carrying codes the device type does not map", ["device"]
)
HJ212_CLOCK_SET = Counter("stationflow_hj212_clock_set_total", "CN 1012 time settings sent", ["device"])
SL651_DEVIATIONS = Counter(
    "stationflow_sl651_deviations_total", "Tolerated deviations from SL 651-2014", ["device", "deviation"]
)
SL651_DUPLICATES = Counter(
    "stationflow_sl651_duplicates_total", "Resent reports confirmed again but not stored twice", ["device"]
)
SL651_UNKNOWN_ELEMENTS = Counter(
    "stationflow_sl651_unknown_elements_total",
    "Reports carrying elements the device type does not map",
    ["device"],
)
