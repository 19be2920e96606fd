"""HJ 212 data area (§1.9) and readings (§1.10): ``CP`` text → ``Reading`` of the device's type.

The data area is ``key=value`` items separated by ``;`` (different items) and ``,`` (values
of one pollutant)::

    DataTime=20220513162600;a34004-Avg=14,a34004-Flag=N;a21005-Avg=0.427,a21005-Flag=N

A pollutant field is ``<code>-<suffix>``: ``Rtd`` real-time value, ``Avg``/``Min``/``Max``
interval statistics, ``Cou`` cumulative, ``Flag`` data flag (``hj212_codes.FLAG_QUALITY``), …
``DataTime`` is station local time: the sampling instant (2011) or the interval start (2051,
2061, 2031). Units are never transmitted: they come from the device type's ``MetricSpec``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from math import isfinite
from typing import Final

from ingest.decoders.hj212_codes import canonical_code, quality_of_flag
from ingest.decoders.hj212_frame import Frame, Hj212Error, parse_frame
from stationflow.contracts import DeviceRecord, MetricSpec, Quality, Reading

__all__ = [
    "DATA_CNS",
    "CpValue",
    "Decoded",
    "decode_mqtt",
    "is_self_contained",
    "local_time",
    "parse_cp",
    "to_readings",
]

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BLANK = b"\r\n\t \x00"

# The data area (§1.9)


@dataclass(frozen=True, slots=True)
class CpValue:
    """One pollutant field ``<code>-<suffix>=<value>``, e.g. ``("a34004", "Avg", "35.2")``."""

    code: str
    suffix: str
    value: str


def parse_cp(cp: str) -> tuple[dict[str, str], list[CpValue]]:
    """Split a data area into plain parameters (``DataTime``, ``QnRtn``…) and pollutant fields.

    Items are separated by ``;`` and ``,``; each splits at its first ``=``, and a key with a
    ``-`` at its first ``-`` (code, suffix). Log text between ``//`` delimiters (``-Info``) may
    contain separators. Whitespace around items is ignored.
    """
    params: dict[str, str] = {}
    values: list[CpValue] = []
    for key, value in _cp_items(cp):
        code, dash, suffix = key.partition("-")
        if dash and code and suffix:
            values.append(CpValue(code, suffix, value))
        else:
            params[key] = value
    return params, values


def _cp_items(cp: str) -> Iterable[tuple[str, str]]:
    pos, size = 0, len(cp)
    while pos < size:
        eq = _next_of(cp, "=;,", pos)
        if eq == size or cp[eq] != "=":
            token = cp[pos:eq].strip()
            if token:
                raise Hj212Error("hj212_cp_format", f"data area item {token[:40]!r} has no '='")
            pos = eq + 1
            continue
        key = cp[pos:eq].strip()
        if not key:
            raise Hj212Error("hj212_cp_format", f"data area item without a name at {cp[pos : pos + 20]!r}")
        start = eq + 1
        if cp.startswith("//", start):
            close = cp.find("//", start + 2)
            end = size if close < 0 else close + 2
        else:
            end = start
        end = _next_of(cp, ";,", end)
        yield key, cp[start:end].strip()
        pos = end + 1


def _next_of(text: str, chars: str, pos: int) -> int:
    """Index of the first of ``chars`` at or after ``pos``, or ``len(text)``."""
    best = len(text)
    for ch in chars:
        at = text.find(ch, pos, best)
        if at >= 0:
            best = at
    return best


# Readings (§1.9, §1.10)

# Data uploads and the suffix whose value is the metric itself (the others become
# "<metric>_<suffix>" when the device type declares such a metric).
DATA_CNS: Final[dict[str, str]] = {"2011": "Rtd", "2051": "Avg", "2061": "Avg", "2031": "Avg"}
# Uploads and notifications that are not measurements: no readings, no error (the collector
# answers them: 1013 wants 9013 + 1012; 1011 carries SystemTime; 2021/2041/2081/3020 are
# equipment state, running time, restart time and field-device information).
_NON_DATA_CNS: Final = frozenset({"1011", "1013", "2021", "2041", "2081", "3015", "3020"})
_NOT_A_VALUE: Final = frozenset({"Flag"})


@dataclass(frozen=True, slots=True)
class Decoded:
    """The readings of one frame and what was left out."""

    readings: list[Reading]
    data_time: datetime | None  # UTC
    unknown_codes: tuple[str, ...] = ()
    not_stored: tuple[str, ...] = ()  # e.g. "a34004-Min": parsed, but the type has no such metric
    frame: Frame | None = None


def to_readings(frame: Frame, record: DeviceRecord, *, tz: tzinfo) -> Decoded:
    """The readings of a data upload (CN 2011/2051/2061/2031) for the device's type.

    ``ts`` is ``DataTime`` (station local time in ``tz``; for 2051/2061/2031 the interval
    start) converted to UTC. Codes map to metrics through ``MetricSpec.hj212_code`` (2005 codes
    through their 2017 alias). Replies (9xxx) and non-measurement uploads give no readings;
    other CNs are refused as ``hj212_unsupported_cn``. A frame whose values are all unknown
    gives an empty ``readings`` with ``unknown_codes`` set (the caller decides).
    """
    primary = DATA_CNS.get(frame.cn)
    if primary is None:
        return _non_data(frame)
    params, values = parse_cp(frame.cp)
    data_time = _data_time(params, tz)
    metrics = _code_index(record.metrics)
    default_flag = params.get("Flag")
    flags = {v.code: v.value for v in values if v.suffix == "Flag"}
    readings: list[Reading] = []
    unknown: dict[str, None] = {}
    not_stored: list[str] = []
    for item in values:
        if item.suffix in _NOT_A_VALUE:
            continue
        name = _metric_name(item, primary, metrics, record.metrics)
        if name is None:
            if _lookup(metrics, item.code) is None:
                unknown[item.code] = None
            else:
                not_stored.append(f"{item.code}-{item.suffix}")
            continue
        if not item.value:
            not_stored.append(f"{item.code}-{item.suffix}")
            continue
        spec = record.metrics[name]
        quality = _quality(item.code, flags.get(item.code, default_flag))
        readings.append(
            Reading(
                metric=name,
                value=_number(item),
                unit=spec.unit,
                ts=data_time,
                quality=quality,
            )
        )
    return Decoded(readings, data_time, tuple(unknown), tuple(not_stored), frame)


def _non_data(frame: Frame) -> Decoded:
    if frame.cn.startswith("9") or frame.cn in _NON_DATA_CNS:
        try:
            _, values = parse_cp(frame.cp)
        except Hj212Error:
            values = []
        return Decoded([], None, (), tuple(f"{v.code}-{v.suffix}" for v in values), frame)
    raise Hj212Error(
        "hj212_unsupported_cn",
        f"CN {frame.cn} is not a data upload this platform handles (2011, 2051, 2061, 2031)",
    )


def _code_index(metrics: dict[str, MetricSpec]) -> dict[str, str]:
    """2017 code (and its lowercase) → metric name; a base metric wins over "<metric>_<suffix>"."""
    index: dict[str, str] = {}
    for name, spec in metrics.items():
        if not spec.hj212_code:
            continue
        code = canonical_code(spec.hj212_code)
        for key in (code, code.lower()):
            if key not in index or len(name) < len(index[key]):
                index[key] = name
    return index


def _lookup(index: dict[str, str], code: str) -> str | None:
    canonical = canonical_code(code)
    return index.get(canonical) or index.get(canonical.lower())


def _metric_name(
    item: CpValue, primary: str, index: dict[str, str], metrics: dict[str, MetricSpec]
) -> str | None:
    base = _lookup(index, item.code)
    if base is None:
        return None
    if item.suffix == primary:
        return base
    derived = f"{base}_{item.suffix.lower()}"
    return derived if derived in metrics else None


def _data_time(params: dict[str, str], tz: tzinfo) -> datetime:
    text = params.get("DataTime")
    if text is None:
        raise Hj212Error("hj212_datatime", "the data area has no DataTime")
    return local_time(text, "DataTime", tz).astimezone(UTC)


def local_time(text: str, name: str, tz: tzinfo | None = None) -> datetime:
    """``YYYYMMDDhhmmss`` (or with ``zzz`` milliseconds) → aware datetime (naive if tz None)."""
    if len(text) not in (14, 17) or not text.isdigit() or not text.isascii():
        raise Hj212Error("hj212_datatime", f"{name} {text[:20]!r} is not YYYYMMDDhhmmss")
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
            int(text[14:17] or 0) * 1000,
            tzinfo=tz,
        )
    except ValueError as exc:
        raise Hj212Error("hj212_datatime", f"{name} {text!r} is not a valid time ({exc})") from exc


def _quality(code: str, flag: str | None) -> Quality:
    if flag is None or not flag.strip():
        return Quality.NORMAL
    quality = quality_of_flag(flag)
    if quality is None:
        raise Hj212Error("hj212_flag", f"{code}-Flag {flag[:12]!r} is not a data flag (N F M S D C T B)")
    return quality


def _number(item: CpValue) -> float:
    text = item.value.replace(" ", "")
    if not _NUMBER.fullmatch(text):
        raise Hj212Error("hj212_value", f"{item.code}-{item.suffix} {item.value[:20]!r} is not a number")
    value = float(text)
    if not isfinite(value):
        raise Hj212Error("hj212_value", f"{item.code}-{item.suffix} {item.value[:20]!r} is not finite")
    return value


def is_self_contained(frame: Frame) -> bool:
    """Whether the frame's data area parses on its own and has a valid ``DataTime``."""
    try:
        params, _ = parse_cp(frame.cp)
        local_time(params["DataTime"], "DataTime")
    except (Hj212Error, KeyError):
        return False
    return True


# HJ 212 over MQTT (DTU gateways publishing the frame text)


def decode_mqtt(
    payload: bytes, *, record: DeviceRecord, received_at: datetime, tz: tzinfo, strict: bool = False
) -> Decoded:
    """One HJ 212 frame as an MQTT payload (CR LF optional) → readings of ``record``.

    The MN must be the device's (``hj212_mn_mismatch``); the CRC variant and strict mode follow
    the registry (``record.hj212``). The password is not checked here (the caller holds the
    ``PasswordCache``: ``decoded.frame.pw``).
    """
    del received_at  # HJ 212 frames carry their own DataTime
    link = record.hj212
    try:
        if link is None:
            raise Hj212Error("hj212_not_configured", "the device has no HJ 212 settings (MN) in the registry")
        data = payload.strip(_BLANK) + b"\r\n"
        frame = parse_frame(data, strict=strict or link.strict, crc=link.crc)
        if frame.mn != link.mn:
            raise Hj212Error(
                "hj212_mn_mismatch", f"MN {frame.mn!r} in the frame is not the device's MN {link.mn!r}"
            )
        if frame.pnum is not None and frame.pnum > 1 and not is_self_contained(frame):
            raise Hj212Error(
                "hj212_subpacket",
                "over MQTT every sub-packet must be complete in itself (its own DataTime and whole fields)",
            )
        return to_readings(frame, record, tz=tz)
    except Hj212Error as exc:
        exc.device_id = record.device_id
        raise
