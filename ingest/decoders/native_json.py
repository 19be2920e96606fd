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
         "quality": "N",                 optional HJ 212 flag: N F M S D C T B (default N)
         "shipment": "SH-42"}            optional (cold chain): the shipment this reading belongs to
      ]
    }

Timestamps without a UTC offset are refused: a device's local clock is ambiguous.

Two paths, one policy. The fast path decodes with msgspec into ``JsonReading`` structs (the
``Reading`` contract's fields and checks; a field the device left out stays ``UNSET`` and is
left out of the record too, where it reads as its default) and is taken only for messages
both decoders read alike: no backslash escape anywhere (msgspec's patterns run on Python's
``re``, whose ``$`` also matches before a final newline), no timestamp with more than six
decimals of a second (msgspec rounds them, pydantic truncates), a non-empty ``readings`` list
of readings with their own ``ts``. Every other message, and every message msgspec refuses,
goes to the pydantic path, which accepts or refuses it exactly as before, with the same codes
and reasons: a refusal's text always comes from pydantic. Measured on a 5-reading message:
about 4 µs instead of 9 µs for decode and duplicate-key test, and the record encodes from
the structs with msgspec (``encode_json_batch``) at a fraction of pydantic's cost.

A key repeated in one object (``{"value": 1, "value": 2}``) is refused as ``invalid_json``:
pydantic-core, like orjson, would silently keep the last value. The hot-path test
(``_may_repeat_a_key``) costs about 1.5 µs on a 5-reading message whose decode takes 5.5 µs
without it, and 20 µs on 100 readings (decode 80 µs); the exact check, a second parse that
keeps every key, would cost 11 µs and 156 µs and runs only when the cheap test cannot rule a
repeat out (``scripts/bench_json_decode.py``).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import UNSET, UnsetType
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from ingest.errors import RejectedMessage
from stationflow.contracts import (
    DEVICE_ID_PATTERN,
    METRIC_PATTERN,
    SCHEMA_VERSION,
    Quality,
    Reading,
    to_utc,
)
from stationflow.tagtext import TAG_TEXT_PATTERN
from stationflow.wire import strict_end

__all__ = ["JsonReading", "decode", "encode_json_batch"]

_MAX_ERRORS_SHOWN = 3
_ZERO = timedelta(0)
_MAX_KEY_SHOWN = 64
# A double quote followed by whitespace: a key may end like that (`"value" :`), see below.
_QUOTE_THEN_SPACE = re.compile(rb'"[ \t\n\r]')
_FIELDS_SET = attrgetter("__pydantic_fields_set__")  # model_fields_set without the property call


_Aware = Annotated[datetime, msgspec.Meta(tz=True)]
# A fraction of a second with more than 6 digits, then a UTC offset (a number is never
# followed by Z, + or -: an exponent starts with e). Starts with a literal: 0.3 µs a message.
_LONG_FRACTION = re.compile(rb"\.[0-9]{7,}[Zz+-]")


_METRIC = re.compile(strict_end(METRIC_PATTERN))
# Metric names the pattern already accepted: a set lookup instead of a regex per reading (the
# patterns were most of msgspec's decode time). Bounded: forgotten all at once when full.
_VALID_METRICS: set[str] = set()
_VALID_METRICS_MAX = 65_536


class JsonReading(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One reading of the fast path: ``Reading``'s fields and checks; fields not sent are ``UNSET``.

    ``metric`` is checked against ``METRIC_PATTERN`` by ``_decode_fast`` (``_metrics_valid``),
    not by msgspec: a name once accepted is not matched again.
    """

    metric: str
    value: float
    unit: Annotated[str, msgspec.Meta(max_length=32)] | UnsetType | None = UNSET
    ts: _Aware
    quality: Quality | UnsetType = UNSET
    shipment: (
        Annotated[str, msgspec.Meta(max_length=64, pattern=strict_end(TAG_TEXT_PATTERN))] | UnsetType | None
    ) = UNSET

    def fields_sent(self) -> int:
        """How many keys the device wrote for this reading (for the duplicate-key test)."""
        return 3 + (self.unit is not UNSET) + (self.quality is not UNSET) + (self.shipment is not UNSET)


class _JsonPayload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    readings: list[JsonReading]
    device_id: str | UnsetType | None = UNSET
    ts: _Aware | UnsetType | None = UNSET


class _JsonBatch(msgspec.Struct, frozen=True, kw_only=True):
    """The ``ReadingBatch`` document, encoded from fast-path readings (same field order)."""

    v: Literal[1] = SCHEMA_VERSION
    device_id: Annotated[str, msgspec.Meta(pattern=strict_end(DEVICE_ID_PATTERN))]
    received_at: datetime
    source: str
    readings: list[JsonReading]


_FAST_DECODER = msgspec.json.Decoder(_JsonPayload)
_FAST_ENCODER = msgspec.json.Encoder()


def encode_json_batch(
    *, device_id: str, received_at: datetime, source: str, readings: list[JsonReading]
) -> bytes:
    """``ReadingBatch`` JSON of fast-path readings (decodes to the same ``ReadingBatch``)."""
    batch = _JsonBatch(device_id=device_id, received_at=received_at, source=source, readings=readings)
    return _FAST_ENCODER.encode(batch)


class _WirePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str | None = None
    ts: AwareDatetime | None = None
    readings: list[Reading]


class _WireHeader(BaseModel):
    """Only the top-level fields, to fill in readings that omit their own ``ts``."""

    model_config = ConfigDict(extra="allow")

    ts: AwareDatetime | None = None


def decode(payload: bytes, *, device_id: str, received_at: datetime) -> list[Reading] | list[JsonReading]:
    """Decode one native JSON message into readings, or raise ``RejectedMessage``."""
    del received_at  # the native format always carries its own timestamps
    fast = _decode_fast(payload, device_id)
    if fast is not None:
        return fast
    return _decode_pydantic(payload, device_id)


def _decode_pydantic(payload: bytes, device_id: str) -> list[Reading]:
    """The reference path: accepts or refuses any message, every refusal with its reason."""
    try:
        wire = _WirePayload.model_validate_json(payload)
    except ValidationError as exc:
        _refuse_duplicate_keys(payload, device_id)  # off the hot path: the exact check
        wire = _with_default_ts(payload, exc, device_id)
    else:
        if _may_repeat_a_key(payload, wire):
            _refuse_duplicate_keys(payload, device_id)
    if wire.device_id is not None and wire.device_id != device_id:
        raise RejectedMessage(
            "topic_mismatch",
            f"payload device_id {wire.device_id!r} differs from the topic's device id "
            f"{device_id!r}; a device may only publish its own readings",
            device_id=device_id,
        )
    if not wire.readings:
        raise RejectedMessage("empty_batch", "'readings' is empty", device_id=device_id)
    return [r if r.ts.utcoffset() == _ZERO else _as_utc(r) for r in wire.readings]


def _decode_fast(payload: bytes, device_id: str) -> list[JsonReading] | None:
    """The readings of a message the fast path reads like pydantic; None: take the pydantic path."""
    if b"\\" in payload or _LONG_FRACTION.search(payload) is not None:
        return None
    try:
        wire = _FAST_DECODER.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    readings = wire.readings
    if not readings or not _metrics_valid(readings):
        return None
    sent = 1 + (wire.device_id is not UNSET) + (wire.ts is not UNSET)
    for reading in readings:
        sent += reading.fields_sent()
    if payload.count(b'":') != sent or _QUOTE_THEN_SPACE.search(payload) is not None:
        return None  # a key may be repeated: the pydantic path runs the exact check
    if isinstance(wire.device_id, str) and wire.device_id != device_id:
        return None  # refused there, with its reason
    try:
        return [r if r.ts.tzinfo is UTC or r.ts.utcoffset() == _ZERO else _struct_as_utc(r) for r in readings]
    except OverflowError:  # a year-1 or year-9999 time with an offset: the pydantic path decides
        return None


def _metrics_valid(readings: list[JsonReading]) -> bool:
    """Every metric matches ``METRIC_PATTERN`` (else the pydantic path refuses it, with its reason)."""
    names = [r.metric for r in readings]
    if _VALID_METRICS.issuperset(names):
        return True
    for name in names:
        if name not in _VALID_METRICS:
            if _METRIC.search(name) is None:
                return False
            if len(_VALID_METRICS) >= _VALID_METRICS_MAX:
                _VALID_METRICS.clear()
            _VALID_METRICS.add(name)
    return True


def _struct_as_utc(reading: JsonReading) -> JsonReading:
    return msgspec.structs.replace(reading, ts=to_utc(reading.ts))


def _may_repeat_a_key(payload: bytes, wire: _WirePayload) -> bool:
    """Cheap test of a valid message: False only if no object in it repeats a key.

    Every key of a valid message is a model field (unknown keys are refused), so the keys
    the device sent are the fields pydantic set, unless one was repeated. If no double quote
    is followed by whitespace, every key ends in ``":``, so the count of ``":`` is at least the
    number of keys sent (``\\":`` inside a string can only add to it). Equal to the fields
    set, it proves there was no repeat; anything else goes to the exact check.
    """
    fields = len(wire.model_fields_set) + sum(map(len, map(_FIELDS_SET, wire.readings)))
    return payload.count(b'":') != fields or _QUOTE_THEN_SPACE.search(payload) is not None


class _Object(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, in order, repeats included."""


def _refuse_duplicate_keys(payload: bytes, device_id: str) -> None:
    """Raise ``invalid_json`` naming the first repeated key and its object; else return."""
    try:
        doc = json.loads(payload.decode("utf-8"), object_pairs_hook=_Object)
    except (ValueError, RecursionError):
        return  # not JSON at all: pydantic's error says where
    found = _first_duplicate(doc)
    if found is not None:
        where, key = found
        raise RejectedMessage(
            "invalid_json",
            f"{where}: duplicate key {json.dumps(key[:_MAX_KEY_SHOWN])}; "
            "a key may appear only once in a JSON object",
            device_id=device_id,
        )


def _first_duplicate(doc: Any) -> tuple[str, str] | None:
    """(path, key) of the first object that repeats a key, depth first in document order."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, path = stack.pop()
        children: list[tuple[Any, str]]
        if isinstance(node, _Object):
            seen: set[str] = set()
            for key, _ in node:
                if key in seen:
                    return path or "payload", key
                seen.add(key)
            children = [(value, f"{path}.{key}" if path else key) for key, value in node]
        elif isinstance(node, list):
            children = [(value, f"{path}[{i}]") for i, value in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))
    return None


def _as_utc(reading: Reading) -> Reading:
    return reading.model_copy(update={"ts": to_utc(reading.ts)})


def _with_default_ts(payload: bytes, exc: ValidationError, device_id: str) -> _WirePayload:
    """Second pass for readings without ``ts``: take the message's top-level ``ts``."""
    missing_ts = [e for e in exc.errors() if e["type"] == "missing" and e["loc"][-1:] == ("ts",)]
    if not missing_ts or len(missing_ts) != exc.error_count():
        raise _rejection(exc, device_id) from exc
    doc: Any = orjson.loads(payload)  # valid JSON: it got as far as a missing field
    try:
        default = _WireHeader.model_validate(doc).ts
    except ValidationError as header_exc:
        raise _rejection(header_exc, device_id) from header_exc
    if default is None:
        index = missing_ts[0]["loc"][1]
        raise RejectedMessage(
            "missing_ts",
            f"readings[{index}] has no 'ts' and the message has no top-level 'ts'",
            device_id=device_id,
        )
    for reading in doc["readings"]:
        if isinstance(reading, dict):
            reading.setdefault("ts", default)
    try:
        return _WirePayload.model_validate(doc)
    except ValidationError as again:
        raise _rejection(again, device_id) from again


def _rejection(exc: ValidationError, device_id: str) -> RejectedMessage:
    errors = exc.errors(include_url=False, include_input=False)
    kinds = {e["type"] for e in errors}
    if "json_invalid" in kinds or "json_type" in kinds:
        detail = errors[0].get("msg", "")
        return RejectedMessage("invalid_json", f"payload is not valid JSON: {detail}", device_id=device_id)
    if "model_type" in kinds and all(not e["loc"] for e in errors):
        return RejectedMessage(
            "invalid_schema", "payload must be a JSON object with a 'readings' list", device_id=device_id
        )
    if "finite_number" in kinds:
        where = next(_where(e) for e in errors if e["type"] == "finite_number")
        return RejectedMessage(
            "non_finite", f"{where} is NaN or Infinity; values must be finite numbers", device_id=device_id
        )
    code = "naive_timestamp" if "timezone_aware" in kinds else "invalid_schema"
    shown = "; ".join(_describe(e) for e in errors[:_MAX_ERRORS_SHOWN])
    more = len(errors) - _MAX_ERRORS_SHOWN
    if more > 0:
        shown += f"; and {more} more"
    return RejectedMessage(code, shown, device_id=device_id)


def _where(error: Any) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    return loc or "payload"


def _describe(error: Any) -> str:
    msg = str(error["msg"])
    if error["type"] == "timezone_aware":
        msg = "timestamp has no UTC offset; add 'Z' or e.g. '+08:00'"
    elif error["type"] == "extra_forbidden":
        msg = "unknown field"
    elif error["type"] == "string_pattern_mismatch" and error["loc"][-1:] == ("shipment",):
        # the pattern itself (stationflow.tagtext) means nothing to a device integrator
        msg = (
            "shipment must not contain control characters or line breaks, nor a backslash "
            'before a comma, "=", a space, a quote or the end'
        )
    elif error["type"] == "string_pattern_mismatch" and error["loc"][-1:] == ("metric",):
        msg = "metric must be a letter then up to 63 letters, digits or _ . - (e.g. pm25, a34004)"
    return f"{_where(error)}: {msg}"
