"""SenML JSON (RFC 8428) on ``devices/<device_id>/senml``.

A pack is a JSON array of records; base fields (``bn`` name, ``bt`` time, ``bu`` unit, ``bv``
value, ``bs`` sum, ``bver`` version) apply to their own record and every later one until they
appear again. Each record resolves to one reading::

    [{"bn": "urn:dev:stationflow:air-001:", "bt": 1.7645e9, "bu": "ug/m3", "n": "pm25", "v": 35},
     {"n": "pm10", "v": 61, "t": -60},
     {"n": "temperature", "u": "Cel", "v": 21.5}]

Names (the stationflow convention): the resolved name ``bn`` + ``n`` is
``[<device part>(: or /)]<metric>``. The metric is the text after the last ``:`` or ``/`` and
must be a stationflow metric name (``pm25``, ``level``, ``a34004``); the device part, when
there is one, must be the topic's device id or end with ``:<device_id>`` or ``/<device_id>``
(``urn:dev:stationflow:air-001:pm25``, ``air-001/pm25``). A name without a device part
(``pm25``) is the topic's device. A record naming another device is refused
(``senml_other_device``): a device publishes only its own readings.

Times: ``bt`` + ``t`` (missing parts are 0) is absolute Unix seconds when ≥ 2^28, else
seconds relative to the time the message was received (0 = now, -60 = a minute ago).

Values: ``bv`` + ``v``, numbers only; the pipeline stores numbers, so ``vs``/``vb``/``vd``
are refused (``senml_non_numeric``) and sums (``s``/``bs``) are not stored (a record with
only a sum is refused; a sum beside a value is ignored). ``ut`` is ignored.

Units: the SenML unit (``u``, else ``bu``) is mapped to the catalog's spelling (``UNITS``);
the worker converts it to the metric's canonical unit. A record without a unit takes the
metric's canonical unit; an unknown unit is refused with the list of the accepted ones.

Version and labels: ``bver`` above 10 is refused, as is a label ending in ``_`` (an RFC 8428
must-understand extension); other unknown labels are ignored, as the RFC requires. A key
repeated in one record, NaN/Infinity and numbers out of range are refused.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.errors import RejectedMessage
from stationflow.contracts import METRIC_PATTERN, Reading
from stationflow.wire import strict_end

__all__ = ["MAX_VERSION", "UNITS", "decode"]

MAX_VERSION = 10
# RFC 8428 §4.5.3: a resolved time below 2^28 s is relative to "now".
RELATIVE_LIMIT = 2**28

# SenML unit (RFC 8428 / RFC 8798 registries, plus the water-quality units the registries lack)
# → the unit as stationflow writes it (streams.units converts it to the metric's canonical unit).
UNITS: dict[str, str] = {
    "Cel": "degC",
    "K": "K",
    "%RH": "%",
    "m": "m",
    "cm": "cm",
    "mm": "mm",
    "m/s": "m/s",
    "m3/s": "m3/s",
    "l/s": "L/s",
    "Pa": "Pa",
    "hPa": "hPa",
    "ug/m3": "ug/m3",
    "mg/m3": "mg/m3",
    "mg/L": "mg/L",
    "pH": "pH",
    "NTU": "NTU",
    "V": "V",
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-:./_]{0,255}$")
_METRIC = re.compile(strict_end(METRIC_PATTERN))
_SEPARATORS = re.compile(r"[:/]")
_NUMBER_FIELDS = ("bt", "bv", "bs", "t", "v", "s", "ut")
_TEXT_FIELDS = ("bn", "bu", "n", "u")
_OTHER_VALUES = ("vs", "vb", "vd")
_SHOWN = 80


class _Refused(ValueError):
    """Raised inside the JSON parser (repeated key, NaN literal)."""


def decode(payload: bytes, *, device_id: str, received_at: datetime) -> list[Reading]:
    """Resolve one SenML pack into readings of ``device_id``, or raise ``RejectedMessage``."""
    pack = _parse(payload, device_id)
    if not isinstance(pack, list):
        raise RejectedMessage(
            "senml_not_a_pack",
            f"a SenML pack is a JSON array of records, got a JSON {_kind(pack)}",
            device_id=device_id,
        )
    if not pack:
        raise RejectedMessage("empty_batch", "the SenML pack has no records", device_id=device_id)
    return _Resolver(device_id, received_at).resolve(pack)


def _parse(payload: bytes, device_id: str) -> Any:
    try:
        return json.loads(payload.decode("utf-8"), object_pairs_hook=_object, parse_constant=_constant)
    except _Refused as exc:
        raise RejectedMessage("invalid_json", str(exc), device_id=device_id) from None
    except UnicodeDecodeError as exc:
        raise RejectedMessage(
            "invalid_json", f"payload is not UTF-8 (byte {exc.start})", device_id=device_id
        ) from None
    except json.JSONDecodeError as exc:
        raise RejectedMessage(
            "invalid_json", f"payload is not valid JSON: {exc.msg} at byte {exc.pos}", device_id=device_id
        ) from None
    except RecursionError:
        raise RejectedMessage("invalid_json", "payload is nested too deeply", device_id=device_id) from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _Refused(
                f"duplicate key {json.dumps(key[:_SHOWN])}; a key may appear only once in a record"
            )
        obj[key] = value
    return obj


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number; values must be finite numbers")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "number" if isinstance(value, int | float) else type(value).__name__


class _Resolver:
    """Carries the base fields from record to record (RFC 8428 §4.6)."""

    def __init__(self, device_id: str, received_at: datetime) -> None:
        self.device_id = device_id
        self.received_at = received_at
        self.bn = ""
        self.bt = 0.0
        self.bu: str | None = None
        self.bv = 0.0
        self.has_bs = False
        self.bver: int | None = None

    def refuse(self, code: str, reason: str) -> RejectedMessage:
        return RejectedMessage(code, reason, device_id=self.device_id)

    def resolve(self, pack: list[Any]) -> list[Reading]:
        return [self.record(i, record) for i, record in enumerate(pack)]

    def record(self, i: int, record: Any) -> Reading:
        where = f"records[{i}]"
        if not isinstance(record, dict):
            raise self.refuse(
                "senml_not_a_pack", f"{where} is a JSON {_kind(record)}, not a SenML record (object)"
            )
        self._check_labels(where, record)
        self._apply_base(record)
        metric = self._metric(where, record)
        value = self._value(where, record)
        return Reading(
            metric=metric, value=value, unit=self._unit(where, record), ts=self._time(where, record)
        )

    def _check_labels(self, where: str, record: dict[str, Any]) -> None:
        for key in record:
            if key.endswith("_"):
                raise self.refuse(
                    "senml_must_understand",
                    f"{where}: label {json.dumps(key[:_SHOWN])} ends in '_', a must-understand extension "
                    "(RFC 8428 §4.4) that this platform does not implement",
                )
        for key in _TEXT_FIELDS:
            if key in record and not isinstance(record[key], str):
                raise self.refuse(
                    "senml_bad_field", f"{where}.{key} must be a string, got {_kind(record[key])}"
                )
        for key in _NUMBER_FIELDS:
            if key in record:
                value = record[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise self.refuse(
                        "senml_bad_field", f"{where}.{key} must be a number, got {_kind(value)}"
                    )
                if not math.isfinite(_float(value)):
                    raise self.refuse(
                        "non_finite", f"{where}.{key} is out of range; values must be finite numbers"
                    )
        if "bver" in record:
            self._check_version(where, record["bver"])

    def _check_version(self, where: str, bver: Any) -> None:
        if isinstance(bver, bool) or not isinstance(bver, int) or bver < 1:
            raise self.refuse("senml_version", f"{where}.bver must be a positive integer, got {_kind(bver)}")
        if bver > MAX_VERSION:
            raise self.refuse(
                "senml_version",
                f"{where}.bver is {bver}; this platform reads SenML up to version {MAX_VERSION}",
            )
        if self.bver is not None and bver != self.bver:
            raise self.refuse(
                "senml_version",
                f"{where}.bver is {bver} but an earlier record has {self.bver}; a pack has one version",
            )
        self.bver = bver

    def _apply_base(self, record: dict[str, Any]) -> None:
        if "bn" in record:
            self.bn = record["bn"]
        if "bt" in record:
            self.bt = _float(record["bt"])
        if "bu" in record:
            self.bu = record["bu"]
        if "bv" in record:
            self.bv = _float(record["bv"])
        if "bs" in record:
            self.has_bs = True

    def _metric(self, where: str, record: dict[str, Any]) -> str:
        name = self.bn + record.get("n", "")
        if not _NAME.match(name):
            raise self.refuse(
                "senml_bad_name",
                f"{where}: name (bn + n) {json.dumps(name[:_SHOWN])} must be 1-256 characters of letters, "
                "digits and - : . / _ starting with a letter or digit",
            )
        parts = _SEPARATORS.split(name)
        metric = parts[-1]
        device_part = name[: len(name) - len(metric) - 1] if len(parts) > 1 else ""
        if device_part and not (
            device_part == self.device_id
            or device_part.endswith(":" + self.device_id)
            or device_part.endswith("/" + self.device_id)
        ):
            raise self.refuse(
                "senml_other_device",
                f"{where}: name {json.dumps(name[:_SHOWN])} names device {json.dumps(device_part[:_SHOWN])}, "
                f"not {self.device_id!r} of the topic; a device may only publish its own readings "
                f"(name records '<prefix>:{self.device_id}:<metric>', '{self.device_id}/<metric>' or "
                "just '<metric>')",
            )
        if not _METRIC.match(metric):
            raise self.refuse(
                "senml_bad_name",
                f"{where}: metric {json.dumps(metric[:_SHOWN])} (the name after its last ':' or '/') must be "
                "a letter then up to 63 letters, digits or _ . - (e.g. pm25, level)",
            )
        return metric

    def _value(self, where: str, record: dict[str, Any]) -> float:
        present = [key for key in ("v", *_OTHER_VALUES) if key in record]
        if len(present) > 1:
            raise self.refuse(
                "senml_bad_record", f"{where} has {', '.join(present)}; a record has exactly one value field"
            )
        if not present:
            if "s" in record or self.has_bs:
                raise self.refuse(
                    "senml_no_value",
                    f"{where} carries only a sum (s/bs), which is not stored; send the value as 'v'",
                )
            raise self.refuse("senml_no_value", f"{where} has no value ('v')")
        if present[0] != "v":
            raise self.refuse(
                "senml_non_numeric",
                f"{where} has a {present[0]!r} value; the pipeline stores numbers, send them as 'v'",
            )
        value = self.bv + _float(record["v"])
        if not math.isfinite(value):
            raise self.refuse("non_finite", f"{where}: bv + v is out of range; values must be finite numbers")
        return value

    def _unit(self, where: str, record: dict[str, Any]) -> str | None:
        unit = record.get("u", self.bu)
        if unit is None:
            return None
        mapped = UNITS.get(unit)
        if mapped is None:
            raise self.refuse(
                "senml_unknown_unit",
                f"{where}: unit {json.dumps(unit[:_SHOWN])} is not accepted; SenML units accepted: "
                f"{', '.join(UNITS)}",
            )
        return mapped

    def _time(self, where: str, record: dict[str, Any]) -> datetime:
        t = self.bt + _float(record.get("t", 0))
        try:
            if t >= RELATIVE_LIMIT:
                return datetime.fromtimestamp(t, UTC)
            return self.received_at + timedelta(seconds=t)
        except (OverflowError, OSError, ValueError):
            raise self.refuse(
                "senml_bad_time",
                f"{where}: time bt + t = {t:g} s is out of range (absolute Unix seconds from 2^28, "
                "smaller values are relative to now)",
            ) from None


def _float(value: int | float) -> float:
    """A JSON number as a float; integers too large for a float become infinity (refused)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf
