"""The native JSON format of stationflow devices.

Topic ``devices/<device_id>/readings``, payload (UTF-8 JSON object)::

    {
      "device_id": "air-001",            optional; must equal the id in the topic
      "ts": "2026-11-21T08:00:00+08:00", optional; default for readings without "ts"
      "readings": [                      required, 1..N readings
        {"metric": "pm25",               required, [A-Za-z][A-Za-z0-9_.-]{0,63}
         "value": 35.2,                  required, a finite JSON number
         "unit": "ug/m3",                optional
         "ts": "2026-11-21T08:00:00Z",   ISO 8601 with a UTC offset, or epoch seconds / ms
         "quality": "N"}                 optional HJ 212 flag: N F M S D C T B (default N)
      ]
    }

Timestamps without a UTC offset are refused: a device's local clock is ambiguous.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ingest.errors import RejectedMessage
from stationflow.contracts import METRIC_PATTERN, Quality, Reading, to_utc

__all__ = ["decode"]

_MAX_ERRORS_SHOWN = 3


class _WireReading(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(pattern=METRIC_PATTERN)
    value: float = Field(strict=True)
    unit: str | None = Field(default=None, max_length=32)
    ts: AwareDatetime | None = None
    quality: Quality = Quality.NORMAL


class _WirePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str | None = None
    ts: AwareDatetime | None = None
    readings: list[_WireReading]


def decode(payload: bytes, *, device_id: str, received_at: datetime) -> list[Reading]:
    """Decode one native JSON message into readings, or raise ``RejectedMessage``."""
    del received_at  # the native format always carries its own timestamps
    try:
        wire = _WirePayload.model_validate_json(payload)
    except ValidationError as exc:
        raise _rejection(exc, device_id) from exc
    if wire.device_id is not None and wire.device_id != device_id:
        raise RejectedMessage(
            "topic_mismatch",
            f"payload device_id {wire.device_id!r} differs from the topic's device id "
            f"{device_id!r}; a device may only publish its own readings",
            device_id=device_id,
        )
    if not wire.readings:
        raise RejectedMessage("empty_batch", "'readings' is empty", device_id=device_id)
    return [_to_reading(i, r, wire.ts, device_id) for i, r in enumerate(wire.readings)]


def _to_reading(index: int, wire: _WireReading, default_ts: datetime | None, device_id: str) -> Reading:
    if not math.isfinite(wire.value):
        raise RejectedMessage(
            "non_finite",
            f"readings[{index}].value is {wire.value!r}; values must be finite numbers",
            device_id=device_id,
        )
    ts = wire.ts or default_ts
    if ts is None:
        raise RejectedMessage(
            "missing_ts",
            f"readings[{index}] has no 'ts' and the message has no top-level 'ts'",
            device_id=device_id,
        )
    # Validated above; skip a second validation pass on the hot path.
    return Reading.model_construct(
        metric=wire.metric, value=wire.value, unit=wire.unit, ts=to_utc(ts), quality=wire.quality
    )


def _rejection(exc: ValidationError, device_id: str) -> RejectedMessage:
    errors = exc.errors(include_url=False, include_input=False)
    kinds = {e["type"] for e in errors}
    if "json_invalid" in kinds or "json_type" in kinds:
        detail = errors[0].get("msg", "")
        return RejectedMessage("invalid_json", f"payload is not valid JSON: {detail}", device_id=device_id)
    if "model_type" in kinds and all(not e["loc"] for e in errors):
        return RejectedMessage(
            "invalid_schema",
            "payload must be a JSON object with a 'readings' list",
            device_id=device_id,
        )
    code = "naive_timestamp" if "timezone_aware" in kinds else "invalid_schema"
    shown = "; ".join(_describe(e) for e in errors[:_MAX_ERRORS_SHOWN])
    more = len(errors) - _MAX_ERRORS_SHOWN
    if more > 0:
        shown += f"; and {more} more"
    return RejectedMessage(code, shown, device_id=device_id)


def _describe(error: Any) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    msg = str(error["msg"])
    if error["type"] == "timezone_aware":
        msg = "timestamp has no UTC offset; add 'Z' or e.g. '+08:00'"
    elif error["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"{loc or 'payload'}: {msg}"
