"""Errors of the ingest service.

``IngestError`` is the root. ``RejectedMessage`` is bad *input*: the message goes to the
dead-letter topic with its ``code`` and ``reason`` and the collector carries on. Everything
else (Kafka unreachable after retries) is infrastructure and stops the service, leaving the
MQTT messages unacknowledged so the broker redelivers them.
"""

from __future__ import annotations

__all__ = ["IngestError", "KafkaDeliveryError", "RejectedMessage"]


class IngestError(Exception):
    """Root of the ingest errors."""

    retriable: bool = False


class RejectedMessage(IngestError):
    """A device message that cannot be accepted; ``reason`` is meant for the integrator."""

    def __init__(self, code: str, reason: str, *, device_id: str | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.device_id = device_id


class KafkaDeliveryError(IngestError):
    """Kafka did not acknowledge a record; the MQTT message stays unacknowledged."""

    retriable = True
