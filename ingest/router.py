"""Decide what one MQTT message becomes: a ``ReadingBatch``, a ``DeadLetter``, or nothing (pure).

This is the whole input policy of the collector in one function that never raises, so it
can be tested with hostile input without a broker. The subtopic picks the format
(``ingest.topics.SUBTOPICS``): ``readings`` native JSON, ``senml`` SenML, ``hj212`` one HJ 212
frame decoded with the device's registry record (looked up through ``Hj212Context``, the
only registry work, done for ``hj212`` messages only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol, cast

from ingest.checks import Limits, check_not_empty, check_readings, check_size
from ingest.decoders import DECODERS, Decoder
from ingest.decoders.hj212 import DATA_CNS, decode_mqtt
from ingest.decoders.native_json import JsonReading, encode_json_batch
from ingest.errors import RejectedMessage
from ingest.topics import SUBTOPICS, parse_topic
from stationflow.contracts import DeadLetter, DeviceRecord, Reading, encode_batch

__all__ = ["FORMATS", "Accepted", "Hj212Context", "Ignored", "PasswordVerifier", "route"]

logger = logging.getLogger(__name__)

# Subtopic → decoder name in ``DECODERS`` (``hj212`` needs the registry: see ``_hj212``).
FORMATS: Mapping[str, str] = {"readings": "json", "senml": "senml"}
HJ212 = "hj212"


class PasswordVerifier(Protocol):
    """``stationflow.passwords.PasswordCache`` or anything with its ``verify``."""

    def verify(self, password: str, stored: str) -> bool:
        """True if ``password`` matches the ``stored`` hash."""
        ...


@dataclass(frozen=True, slots=True)
class Hj212Context:
    """What HJ 212 over MQTT needs: the device's registry record and its password check."""

    lookup: Callable[[str], DeviceRecord | None]
    passwords: PasswordVerifier
    tz: tzinfo
    strict: bool = False


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message that passed every check: the parts of its ``ReadingBatch``.

    ``unknown_codes``: HJ 212 codes in the frame that are not metrics of the device's type
    (the other readings are kept; the collector reports the codes). ``readings`` are the native
    JSON fast path's msgspec structs or ``Reading`` models (every other decoder).
    """

    device_id: str
    received_at: datetime
    source: str
    readings: list[Reading] | list[JsonReading]
    unknown_codes: tuple[str, ...] = ()

    def key(self) -> bytes:
        """Kafka record key."""
        return self.device_id.encode()

    def to_json(self) -> bytes:
        """The ``ReadingBatch`` record value."""
        readings = self.readings
        if readings and type(readings[0]) is JsonReading:
            return encode_json_batch(
                device_id=self.device_id,
                received_at=self.received_at,
                source=self.source,
                readings=readings,
            )
        return encode_batch(
            device_id=self.device_id,
            received_at=self.received_at,
            source=self.source,
            readings=cast(list[Reading], readings),
        )


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid message with nothing to store (an HJ 212 state upload or reply): acknowledged, not sent."""

    device_id: str
    source: str
    reason: str


def route(
    mqtt_topic: str,
    payload: bytes,
    received_at: datetime,
    *,
    limits: Limits,
    decoders: Mapping[str, Decoder] = DECODERS,
    hj212: Hj212Context | None = None,
) -> Accepted | Ignored | DeadLetter:
    """Decode and check one message; every failure becomes a dead letter with a reason."""
    device_id: str | None = None
    unknown: tuple[str, ...] = ()
    readings: list[Reading] | list[JsonReading]
    try:
        device_id, subtopic = parse_topic(mqtt_topic)
        check_size(payload, limits, device_id)
        check_not_empty(payload, device_id)
        name = FORMATS.get(subtopic)
        if name is not None:
            readings = decoders[name](payload, device_id=device_id, received_at=received_at)
        elif subtopic == HJ212:
            decoded = _hj212(payload, device_id, received_at, hj212)
            if isinstance(decoded, str):
                return Ignored(device_id, f"mqtt:{mqtt_topic}", decoded)
            readings, unknown = decoded
        else:
            raise _unknown_subtopic(subtopic, device_id)
        check_readings(readings, received_at=received_at, limits=limits, device_id=device_id)
    except RejectedMessage as exc:
        code, reason = exc.code, exc.reason
    except Exception as exc:  # a decoder bug must not kill the collector: log it, dead-letter it
        logger.exception("decoder failed device_id=%s topic=%s", device_id, mqtt_topic[:200])
        code, reason = "internal_error", f"internal decoder error ({type(exc).__name__}); operators alerted"
    else:
        return Accepted(device_id, received_at, f"mqtt:{mqtt_topic}", readings, unknown)
    return DeadLetter.build(
        payload=payload,
        source=f"mqtt:{mqtt_topic[:1024]}",
        code=code,
        reason=reason,
        received_at=received_at,
        device_id=device_id,
        max_payload_bytes=limits.max_payload_bytes,
    )


def _unknown_subtopic(subtopic: str, device_id: str) -> RejectedMessage:
    supported = "; ".join(f"devices/{device_id}/{name} ({what})" for name, what in SUBTOPICS.items())
    return RejectedMessage(
        "unknown_subtopic",
        f"subtopic {subtopic[:200]!r} is not one this platform reads; publish to {supported}",
        device_id=device_id,
    )


def _hj212(
    payload: bytes, device_id: str, received_at: datetime, ctx: Hj212Context | None
) -> tuple[list[Reading], tuple[str, ...]] | str:
    """Readings and unknown codes of one HJ 212 frame, or why there is nothing to store."""
    if ctx is None:
        raise RejectedMessage(
            "hj212_unavailable", "this collector does not decode HJ 212", device_id=device_id
        )
    record = ctx.lookup(device_id)
    if record is None:
        raise RejectedMessage(
            "unknown_device",
            f"device {device_id!r} is not registered; HJ 212 frames are read with the device's registry "
            "record: register it with protocol hj212 and its MN",
            device_id=device_id,
        )
    link = record.hj212
    if link is None:
        raise RejectedMessage(
            "hj212_not_configured",
            f"device {device_id!r} has no HJ 212 settings (MN) in the registry; "
            "add them to publish HJ 212 frames",
            device_id=device_id,
        )
    decoded = decode_mqtt(payload, record=record, received_at=received_at, tz=ctx.tz, strict=ctx.strict)
    frame = decoded.frame
    pw = frame.pw if frame is not None else None
    if link.password_hash is not None and (pw is None or not ctx.passwords.verify(pw, link.password_hash)):
        what = "has no PW field" if pw is None else "PW does not match the password registered"
        raise RejectedMessage(
            "hj212_bad_password", f"the frame {what} for MN {link.mn!r}", device_id=device_id
        )
    if frame is not None and frame.cn not in DATA_CNS:
        return f"CN {frame.cn} carries no readings"
    if not decoded.readings:
        what = f"unknown codes {list(decoded.unknown_codes)}" if decoded.unknown_codes else "no values"
        not_stored = f" (not stored: {list(decoded.not_stored)})" if decoded.not_stored else ""
        raise RejectedMessage(
            "hj212_no_readings",
            f"nothing to store: {what} for device type {record.device_type!r}{not_stored}",
            device_id=device_id,
        )
    return decoded.readings, decoded.unknown_codes
