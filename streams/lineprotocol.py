"""Readings → InfluxDB line protocol (pure), and the one escaping every line builder uses.

One line per (measurement, device, timestamp): all metrics a device reported at one
instant become fields of one point, so a 5-metric message is one point, not five::

    air,device=air-001 pm25=35.2,pm10=61.0 1795248000000000000

A reading whose quality flag is not ``N`` also gets a string field ``<metric>_q`` with the
HJ 212 letter, so suspect values stay visible next to the value itself. Timestamps are
nanoseconds; the same series + timestamp overwrites, which makes replays idempotent.

Escaping (checked by experiment against InfluxDB 1.6, ``tests/integration/test_lineprotocol_influx.py``):

- tag keys, tag values and field keys: ``,``, ``=`` and space get a backslash; a backslash
  itself is stored literally (1.x has no ``\\\\`` escape in names), but one just before ``,``,
  ``=``, space, ``"`` or the end would escape our escape, the separator after it or (in field
  keys, which 1.x reads differently from tags) the quote, so that backslash is replaced;
- measurements: ``,`` and space get a backslash; 1.x unescapes measurement names twice, so a
  backslash in a measurement is replaced, and so is a leading ``#`` (a comment line);
- string field values: ``\\`` and ``"`` get a backslash;
- a newline cannot be escaped anywhere in 1.x: control characters (C0 including tab and
  newline, DEL, C1), the Unicode line / paragraph separators and unpaired surrogates are
  replaced by U+FFFD everywhere, string values included, so every point is exactly one line
  (the sink relies on that to find refused points) and no input can start a second point or
  another measurement (InfluxDB also echoes a refused line in an HTTP header, where control
  characters would break the response);
- an empty tag value drops the tag; an empty name becomes U+FFFD; the key ``time`` (which 1.x
  refuses) becomes ``time_``.

Every replacement is counted (``stationflow_lineprotocol_replaced_total{position}``) and logged
with the device or station of the point.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import orjson

from stationflow.contracts import Quality, Reading, ReadingBatch
from stationflow.wire import WireBatch, WireReading
from streams import metrics
from streams.catalog import domain_of
from streams.normalize import Normalized, ts_ns

__all__ = [
    "REPLACEMENT",
    "FieldValue",
    "batch_lines",
    "encode",
    "escape_key",
    "escape_measurement",
    "escape_string",
    "escape_tag",
    "float_texts",
    "format_fields",
    "line",
    "parse_series",
]

logger = logging.getLogger(__name__)

REPLACEMENT = "\ufffd"
FieldValue = float | int | bool | str

# Characters no name or tag value may carry: C0 controls (newline, tab, NUL …), DEL, C1
# controls (NEL U+0085 …), the Unicode line and paragraph separators, unpaired surrogates.
_UNSAFE_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# A backslash just before a character we escape, or at the end, cannot be stored in a name.
_BAD_BACKSLASH = re.compile(r"\\(?=[,= \"]|\Z)")
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_RESERVED_KEYS = frozenset({"time"})
_NORMAL = Quality.NORMAL


def _safe_name(value: str, *, measurement: bool = False) -> tuple[str, bool]:
    """``value`` with what no name can carry replaced; and whether anything was."""
    cleaned = _UNSAFE_NAME.sub(REPLACEMENT, value)
    if measurement:
        cleaned = cleaned.replace("\\", REPLACEMENT)
        if cleaned.startswith("#"):
            cleaned = REPLACEMENT + cleaned[1:]
    else:
        cleaned = _BAD_BACKSLASH.sub(REPLACEMENT, cleaned)
    if not cleaned:
        cleaned = REPLACEMENT
    return cleaned, cleaned != value


def _measurement(name: str) -> tuple[str, bool]:
    cleaned, replaced = _safe_name(name, measurement=True)
    return cleaned.translate(_MEASUREMENT_ESCAPES), replaced


def _key(key: str) -> tuple[str, bool]:
    cleaned, replaced = _safe_name(key)
    if cleaned in _RESERVED_KEYS:
        cleaned, replaced = cleaned + "_", True
    return cleaned.translate(_TAG_ESCAPES), replaced


def _tag_value(value: str) -> tuple[str, bool]:
    cleaned, replaced = _safe_name(value)
    return cleaned.translate(_TAG_ESCAPES), replaced


def _string(value: str) -> tuple[str, bool]:
    cleaned = _UNSAFE_NAME.sub(REPLACEMENT, value)
    return f'"{cleaned.translate(_STRING_ESCAPES)}"', cleaned != value


def _count(position: str, original: str, subject: str = "-") -> None:
    metrics.LINEPROTOCOL_REPLACED.labels(position=position).inc()
    logger.warning(
        "line protocol: replaced characters InfluxDB cannot store subject=%s position=%s value=%r",
        subject,
        position,
        original,
    )


def escape_measurement(name: str) -> str:
    """A measurement name as written (replacements counted and logged)."""
    escaped, replaced = _measurement(name)
    if replaced:
        _count("measurement", name)
    return escaped


def escape_tag(value: str) -> str:
    """A tag value as written (replacements counted and logged); use :func:`line` for whole points."""
    escaped, replaced = _tag_value(value)
    if replaced:
        _count("tag_value", value)
    return escaped


def escape_key(key: str) -> str:
    """A tag key or field key as written (replacements counted and logged)."""
    escaped, replaced = _key(key)
    if replaced:
        _count("key", key)
    return escaped


def escape_string(value: str) -> str:
    """A string field value, quoted (replacements counted and logged)."""
    escaped, replaced = _string(value)
    if replaced:
        _count("string_value", value)
    return escaped


def _field_value(value: FieldValue) -> tuple[str | None, bool]:
    """The written form of a field value (None: a non-finite float, left out); replaced?"""
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool):
        return ("true" if value else "false"), False
    if isinstance(value, int):
        return f"{value}i", False
    return (repr(float(value)) if math.isfinite(value) else None), False


def float_texts(values: list[float]) -> list[str]:
    """The shortest text that reads back as each float, as line-protocol field values.

    orjson (ryu) instead of ``repr``: the same digits for a fraction of the CPU (measured: six
    one-decimal readings 2.5 against 1.1 µs; compiled, a six-metric station's derived lines with
    30 window fields 41-46 against 16-20 µs per device and minute). Only the exponent is written
    differently (``1.5e-7`` and ``0.00001`` where repr writes ``1.5e-07`` and ``1e-05``), which
    InfluxDB reads as the same float64 (``tests/integration/test_lineprotocol_influx.py``).
    orjson writes a non-finite float as ``null``: then every value is written by ``repr``, as
    before (InfluxDB refuses ``nan`` and ``inf``, and the sink reports the refused point).
    """
    if not values:
        return []
    text = orjson.dumps(values)[1:-1].decode()
    if "n" in text:  # "null": no float's text has an n
        return [repr(v) for v in values]
    return text.split(",")


def format_fields(values: Mapping[str, FieldValue], subject: str = "-") -> str:
    """The field set of a point; non-finite floats are left out (InfluxDB refuses them)."""
    parts: dict[str, str] = {}
    for k, v in values.items():
        written, replaced_value = _field_value(v)
        if written is None:
            continue
        key, replaced_key = _key(k)
        if replaced_key:
            _count("field_key", k, subject)
        if replaced_value:
            _count("string_value", str(v), subject)
        parts[key] = written  # a key that two names map to keeps the last value
    return ",".join(f"{k}={v}" for k, v in parts.items())


def line(
    measurement: str,
    tags: Mapping[str, str | None] | Iterable[tuple[str, str | None]],
    fields: Mapping[str, FieldValue],
    ts: int,
) -> str | None:
    """One point; None when no field is left to write (all non-finite)."""
    pairs = tags.items() if isinstance(tags, Mapping) else tags
    tag_map = {k: v for k, v in pairs if v}
    subject = tag_map.get("device") or tag_map.get("station") or "-"
    name, replaced = _measurement(measurement)
    if replaced:
        _count("measurement", measurement, subject)
    written: dict[str, str] = {}
    for k, v in tag_map.items():
        key, key_replaced = _key(k)
        value, value_replaced = _tag_value(v)
        if key_replaced:
            _count("tag_key", k, subject)
        if value_replaced:
            _count("tag_value", v, subject)
        written[key] = value
    field_set = format_fields(fields, subject)
    if not field_set:
        return None
    tag_set = "".join(f",{k}={v}" for k, v in sorted(written.items()))
    return f"{name}{tag_set} {field_set} {ts}"


@lru_cache(maxsize=65_536)
def _series(measurement: str, device_id: str, extra: tuple[tuple[str, str], ...]) -> tuple[str, bool]:
    """The ``measurement,tags `` prefix of a device's points; whether anything was replaced."""
    name, replaced = _measurement(measurement)
    device, device_replaced = _tag_value(device_id)
    replaced |= device_replaced
    tags = f"device={device}"
    for k, v in extra:
        if not v:
            continue
        key, key_replaced = _key(k)
        value, value_replaced = _tag_value(v)
        replaced |= key_replaced or value_replaced
        tags += f",{key}={value}"
    if replaced:
        logger.warning(
            "line protocol: replaced characters InfluxDB cannot store device=%s measurement=%r tags=%r",
            device_id,
            measurement,
            extra,
        )
    return f"{name},{tags} ", replaced


_FIELD_KEYS: dict[str, str] = {}
_FIELD_KEYS_MAX = 65_536


def _field_key(metric: str) -> str:
    """A metric's field key as written (remembered: a plain dict is cheaper than lru_cache)."""
    key = _FIELD_KEYS.get(metric)
    if key is None:
        key, replaced = _key(metric)
        if replaced:
            _count("field_key", metric)
        if len(_FIELD_KEYS) >= _FIELD_KEYS_MAX:
            _FIELD_KEYS.clear()
        _FIELD_KEYS[metric] = key
    return key


def _unpack(
    batch: WireBatch | ReadingBatch | Normalized[WireBatch] | Normalized[ReadingBatch],
) -> tuple[str, Sequence[WireReading | Reading], list[int]]:
    if isinstance(batch, Normalized):
        return batch.batch.device_id, batch.batch.readings, batch.ts_ns
    return batch.device_id, batch.readings, [ts_ns(r) for r in batch.readings]


def batch_lines(
    batch: WireBatch | ReadingBatch | Normalized[WireBatch] | Normalized[ReadingBatch],
    extra_tags: Mapping[str, str] | tuple[tuple[str, str], ...] | None = None,
    measurement: str | None = None,
) -> list[str]:
    """Line-protocol lines for one batch (readings grouped by timestamp; msgspec or pydantic)."""
    device_id, readings, stamps = _unpack(batch)
    if extra_tags and type(extra_tags) is not tuple and isinstance(extra_tags, Mapping):
        extra_tags = tuple(extra_tags.items())  # (the ABC check alone cost ~0.3 us a message)
    extra = tuple(sorted(extra_tags)) if extra_tags else ()
    domain = measurement or domain_of([r.metric for r in readings])
    prefix, replaced = _series(domain, device_id, extra)
    if stamps and stamps.count(stamps[0]) == len(stamps):
        # one instant (the usual message): one point, fields in reading order
        keys = _FIELD_KEYS
        point: list[str] = []
        for r, text in zip(readings, float_texts([r.value for r in readings]), strict=True):
            key = keys.get(r.metric) or _field_key(r.metric)
            point.append(f"{key}={text}")
            if r.quality is not _NORMAL:
                point.append(f'{key}_q="{r.quality.value}"')
        if replaced:
            metrics.LINEPROTOCOL_REPLACED.labels(position="series").inc(1)
        return [f"{prefix}{','.join(point)} {stamps[0]}"]
    by_ts: dict[int, list[str]] = {}
    texts = float_texts([r.value for r in readings])
    for r, ns, text in zip(readings, stamps, texts, strict=True):
        fields = by_ts.get(ns)
        if fields is None:
            fields = by_ts[ns] = []
        key = _field_key(r.metric)
        fields.append(f"{key}={text}")
        if r.quality is not _NORMAL:
            fields.append(f'{key}_q="{r.quality.value}"')
    if replaced:
        metrics.LINEPROTOCOL_REPLACED.labels(position="series").inc(len(by_ts))
    return [f"{prefix}{','.join(fields)} {ns}" for ns, fields in by_ts.items()]


def encode(lines: Iterable[str]) -> bytes:
    """Join lines into a write body (one point per line: no line contains a newline)."""
    return "\n".join(lines).encode()


def _unescape(token: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(token):
        ch = token[i]
        if ch == "\\" and i + 1 < len(token) and token[i + 1] in ",= ":
            out.append(token[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for i, ch in enumerate(text):
        if ch == sep and (i == 0 or text[i - 1] != "\\"):
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_series(point: str) -> tuple[str, dict[str, str]]:
    """Measurement and tags of one written line (for reports on refused points; best effort)."""
    key = _split_unescaped(point, " ")[0]
    measurement, *tag_parts = _split_unescaped(key, ",")
    tags: dict[str, str] = {}
    for part in tag_parts:
        k, _, v = part.partition("=") if "\\=" not in part else _partition_unescaped(part)
        tags[_unescape(k)] = _unescape(v)
    return _unescape(measurement), tags


def _partition_unescaped(part: str) -> tuple[str, str, str]:
    pieces = _split_unescaped(part, "=")
    return pieces[0], "=", "=".join(pieces[1:])
