"""Enrichment with the device registry (pure): canonical units, calibration, range flags, tags.

A message is accepted or refused as a whole, like at the collector: a reading of an unknown
device, a retired device, a metric its type does not report, or a unit with no known
conversion makes the whole message a dead letter with a reason an integrator can act on.
Out-of-range values are kept but flagged ``T``; readings from a device in maintenance are
flagged ``M``.

Works on the hot path's msgspec structs (``stationflow.wire``) and returns them; a pydantic
``ReadingBatch`` is accepted too (same attribute names), for tests and tools.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from stationflow.contracts import DeviceRecord, DeviceStatus, Quality, Reading, ReadingBatch
from stationflow.wire import WireBatch, WireReading
from streams.units import converter

__all__ = ["Enriched", "Rejection", "enrich"]


class Rejection(NamedTuple):
    """Why a message was refused."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Enriched:
    """A batch in canonical units with the device's measurement and InfluxDB tags."""

    batch: WireBatch
    domain: str
    tags: tuple[tuple[str, str], ...]


def _tags(record: DeviceRecord) -> tuple[tuple[str, str], ...]:
    station = record.station
    if station is None:
        return ()
    pairs = (("station", station.station_id), ("region", station.region), ("basin", station.basin))
    return tuple((k, v) for k, v in pairs if v)


def enrich(batch: WireBatch | ReadingBatch, record: DeviceRecord | None) -> Enriched | Rejection:
    """Apply the device's registry entry to a batch, or say why the batch is refused."""
    if record is None:
        return Rejection(
            "unknown_device",
            f"device {batch.device_id!r} is not registered; register it in the device registry",
        )
    if record.status is DeviceStatus.RETIRED:
        return Rejection(
            "retired_device", f"device {batch.device_id!r} is retired; readings are not accepted"
        )
    readings: list[WireReading] = []
    given: Sequence[WireReading | Reading] = batch.readings
    for index, reading in enumerate(given):
        result = _reading(index, reading, record)
        if isinstance(result, Rejection):
            return result
        readings.append(result)
    if isinstance(batch, WireBatch) and all(map(operator.is_, readings, given)):
        return Enriched(batch, record.domain, _tags(record))  # nothing changed: the same batch
    enriched = WireBatch(
        device_id=batch.device_id, received_at=batch.received_at, source=batch.source, readings=readings
    )
    return Enriched(enriched, record.domain, _tags(record))


def _reading(index: int, reading: WireReading | Reading, record: DeviceRecord) -> WireReading | Rejection:
    spec = record.metrics.get(reading.metric)
    if spec is None:
        known = ", ".join(sorted(record.metrics)) or "none"
        return Rejection(
            "unknown_metric",
            f"readings[{index}].metric {reading.metric!r} is not reported by device type "
            f"{record.device_type!r} (its metrics: {known})",
        )
    value = reading.value
    if reading.unit is not None:
        convert = converter(reading.unit, spec.unit)
        if convert is None:
            return Rejection(
                "unknown_unit",
                f"readings[{index}] ({reading.metric}): unit {reading.unit!r} cannot be converted "
                f"to the canonical unit {spec.unit!r}",
            )
        value = convert(value)
    calibration = record.calibration.get(reading.metric)
    if calibration is not None:
        value = value * calibration.scale + calibration.offset
    if not math.isfinite(value):
        return Rejection("non_finite", f"readings[{index}] ({reading.metric}) is not finite after conversion")
    quality = reading.quality
    if quality is Quality.NORMAL:
        if record.status is DeviceStatus.MAINTENANCE:
            quality = Quality.MAINTENANCE
        elif (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
            quality = Quality.OVER_RANGE
    if (
        isinstance(reading, WireReading)
        and value == reading.value
        and quality is reading.quality
        and spec.unit == reading.unit
    ):
        return reading  # nothing to change (frozen, so it can be shared)
    return WireReading(
        metric=reading.metric,
        value=value,
        unit=spec.unit,
        ts=reading.ts,
        quality=quality,
        shipment=reading.shipment,
    )
