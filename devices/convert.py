"""Explicit conversions from ORM rows to REST bodies and to the ``DeviceRecord`` wire contract."""

from __future__ import annotations

from typing import Any

from stationflow.contracts import (
    Calibration,
    DeviceRecord,
    DeviceStatus,
    Hj212Link,
    MetricSpec,
    Sl651Link,
    StationInfo,
)

from .models import Device, DeviceType, Station
from .schemas import (
    DeviceBase,
    DevicePublic,
    DeviceTypePublic,
    Hj212LinkIn,
    Hj212LinkPublic,
    MetricDef,
    Sl651LinkIn,
    Sl651LinkPublic,
    StationPublic,
)

__all__ = [
    "device_base",
    "device_public",
    "device_record",
    "hj212_link",
    "metrics_from_json",
    "sl651_link",
    "station_public",
    "type_public",
]


def metrics_from_json(metrics: dict[str, Any]) -> list[MetricSpec]:
    """Stored ``{metric: {unit, min, max, hj212_code, sl651_code}}`` as specs, in stored order."""
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


def hj212_link(row: Device) -> Hj212Link | None:
    """The device's HJ 212 link as the wire contract carries it (with the hash), or None."""
    if row.hj212_mn is None:
        return None
    return Hj212Link(
        mn=row.hj212_mn,
        password_hash=row.hj212_password_hash,
        crc=row.hj212_crc,
        strict=bool(row.hj212_strict),
        allow_from=list(row.hj212_allow_from or []),
    )


def sl651_link(row: Device) -> Sl651Link | None:
    """The device's SL 651 link as the wire contract carries it (with the hash), or None."""
    if row.sl651_address is None:
        return None
    return Sl651Link(
        address=row.sl651_address,
        password_hash=row.sl651_password_hash,
        ack=row.sl651_ack or "eot",
        level_base_m=row.sl651_level_base_m or 0.0,
        allow_from=list(row.sl651_allow_from or []),
    )


def device_public(row: Device) -> DevicePublic:
    """A device row as its REST body: links without their password hashes."""
    hj212, sl651 = hj212_link(row), sl651_link(row)
    return DevicePublic(
        id=row.id,
        type=row.type_name,
        station_id=row.station_id,
        status=DeviceStatus(row.status),
        calibration={k: Calibration(**v) for k, v in row.calibration.items()},
        expected_interval_s=row.expected_interval_s,
        protocol=row.protocol,
        hj212=None
        if hj212 is None
        else Hj212LinkPublic(
            **hj212.model_dump(exclude={"password_hash"}), password_set=hj212.password_hash is not None
        ),
        sl651=None
        if sl651 is None
        else Sl651LinkPublic(
            **sl651.model_dump(exclude={"password_hash"}), password_set=sl651.password_hash is not None
        ),
        updated_at=row.updated_at,
    )


def device_base(row: Device) -> DeviceBase:
    """A device row as a complete write body, links without password (= keep the stored one)."""
    hj212, sl651 = hj212_link(row), sl651_link(row)
    return DeviceBase(
        type=row.type_name,
        station_id=row.station_id,
        status=DeviceStatus(row.status),
        calibration={k: Calibration(**v) for k, v in row.calibration.items()},
        expected_interval_s=row.expected_interval_s,
        protocol=row.protocol,
        hj212=None if hj212 is None else Hj212LinkIn(**hj212.model_dump(exclude={"password_hash"})),
        sl651=None if sl651 is None else Sl651LinkIn(**sl651.model_dump(exclude={"password_hash"})),
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
        public=row.public,
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
        protocol=device.protocol,
        hj212=hj212_link(device),
        sl651=sl651_link(device),
        updated_at=max(stamps),
    )
