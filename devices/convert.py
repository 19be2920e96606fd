"""Explicit conversions from ORM rows to REST bodies and to the ``DeviceRecord`` wire contract."""

from __future__ import annotations

from typing import Any

from stationflow.contracts import Calibration, DeviceRecord, DeviceStatus, MetricSpec, StationInfo

from .models import Device, DeviceType, Station
from .schemas import DevicePublic, DeviceTypePublic, MetricDef, StationPublic

__all__ = ["device_public", "device_record", "metrics_from_json", "station_public", "type_public"]


def metrics_from_json(metrics: dict[str, Any]) -> list[MetricSpec]:
    """Stored ``{metric: {unit, min, max, hj212_code}}`` as specs, in stored order."""
    return [MetricSpec(metric=name, **spec) for name, spec in metrics.items()]


def metrics_to_json(metrics: list[MetricDef] | list[MetricSpec]) -> dict[str, Any]:
    """Specs as the stored JSON document."""
    return {m.metric: m.model_dump(exclude={"metric"}) for m in metrics}


def type_public(row: DeviceType) -> DeviceTypePublic:
    """A device type row as its REST body."""
    return DeviceTypePublic(
        name=row.name,
        domain=row.domain,
        description=row.description,
        metrics=[MetricDef(**m.model_dump()) for m in metrics_from_json(row.metrics)],
        builtin=row.builtin,
        updated_at=row.updated_at,
    )


def station_public(row: Station) -> StationPublic:
    """A station row as its REST body."""
    return StationPublic.model_validate(
        {c: getattr(row, c) for c in StationPublic.model_fields}, from_attributes=False
    )


def device_public(row: Device) -> DevicePublic:
    """A device row as its REST body."""
    return DevicePublic(
        id=row.id,
        type=row.type_name,
        station_id=row.station_id,
        status=DeviceStatus(row.status),
        calibration={k: Calibration(**v) for k, v in row.calibration.items()},
        expected_interval_s=row.expected_interval_s,
        updated_at=row.updated_at,
    )


def station_info(row: Station) -> StationInfo:
    """A station as the ``DeviceRecord.station`` part; attributes carry kind and levels."""
    attributes: dict[str, float | str] = {"kind": row.kind}
    for name in ("warning_level", "guaranteed_level", "target_class"):
        value = getattr(row, name)
        if value is not None:
            attributes[name] = value
    return StationInfo(
        station_id=row.id,
        name=row.name,
        lat=row.lat,
        lon=row.lon,
        region=row.region,
        basin=row.basin,
        attributes=attributes,
    )


def device_record(device: Device, device_type: DeviceType, station: Station | None) -> DeviceRecord:
    """The full ``DeviceRecord`` the registry publishes for one device.

    Thresholds are the station's levels (warning/guaranteed) overlaid by its named overrides.
    """
    thresholds: dict[str, float] = {}
    if station is not None:
        for name in ("warning_level", "guaranteed_level"):
            value = getattr(station, name)
            if value is not None:
                thresholds[name] = float(value)
        thresholds.update({k: float(v) for k, v in station.thresholds.items()})
    stamps = [device.updated_at, device_type.updated_at] + ([station.updated_at] if station else [])
    return DeviceRecord(
        device_id=device.id,
        device_type=device_type.name,
        domain=device_type.domain,
        status=DeviceStatus(device.status),
        station=station_info(station) if station is not None else None,
        metrics={m.metric: m for m in metrics_from_json(device_type.metrics)},
        calibration={k: Calibration(**v) for k, v in device.calibration.items()},
        thresholds=thresholds,
        expected_interval_s=device.expected_interval_s,
        updated_at=max(stamps),
    )
