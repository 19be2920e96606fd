"""Decide what one MQTT message becomes: a ``ReadingBatch`` or a ``DeadLetter`` (pure).

This is the whole input policy of the collector in one function that never raises, so it
can be tested with hostile input without a broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from ingest.checks import Limits, check_not_empty, check_readings, check_size
from ingest.decoders import Decoder
from ingest.errors import RejectedMessage
from ingest.topics import device_id_from_topic
from stationflow.contracts import DeadLetter, Reading, encode_batch

__all__ = ["Accepted", "route"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message that passed every check: the parts of its ``ReadingBatch``."""

    device_id: str
    received_at: datetime
    source: str
    readings: list[Reading]

    def key(self) -> bytes:
        """Kafka record key."""
        return self.device_id.encode()

    def to_json(self) -> bytes:
        """The ``ReadingBatch`` record value."""
        return encode_batch(
            device_id=self.device_id, received_at=self.received_at, source=self.source, readings=self.readings
        )


def route(
    mqtt_topic: str, payload: bytes, received_at: datetime, *, limits: Limits, decode: Decoder
) -> Accepted | DeadLetter:
    """Decode and check one message; every failure becomes a dead letter with a reason."""
    device_id: str | None = None
    try:
        device_id = device_id_from_topic(mqtt_topic)
        check_size(payload, limits, device_id)
        check_not_empty(payload, device_id)
        readings = decode(payload, device_id=device_id, received_at=received_at)
        check_readings(readings, received_at=received_at, limits=limits, device_id=device_id)
    except RejectedMessage as exc:
        code, reason = exc.code, exc.reason
    except Exception as exc:  # a decoder bug must not kill the collector: log it, dead-letter it
        logger.exception("decoder failed device_id=%s topic=%s", device_id, mqtt_topic[:200])
        code, reason = "internal_error", f"internal decoder error ({type(exc).__name__}); operators alerted"
    else:
        return Accepted(device_id, received_at, f"mqtt:{mqtt_topic}", readings)
    return DeadLetter.build(
        payload=payload,
        source=f"mqtt:{mqtt_topic[:1024]}",
        code=code,
        reason=reason,
        received_at=received_at,
        device_id=device_id,
        max_payload_bytes=limits.max_payload_bytes,
    )
