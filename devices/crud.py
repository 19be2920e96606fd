"""Data access: keyword-only functions; ``None`` means not found; nothing here speaks HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from stationflow.contracts import DeviceRecord, MetricSpec, utcnow
from stationflow.passwords import hash_password, verify_password

from .catalog import BUILTIN_TYPES
from .convert import device_record, metrics_from_json, metrics_to_json
from .models import ApiKey, Device, DeviceType, OutboxEntry, Station
from .schemas import DeviceBase, DeviceTypeCreate, DeviceTypeUpdate, StationBase

__all__ = [
    "Change",
    "Problem",
    "check_device",
    "device_ids",
    "list_rows",
    "outbox_batch",
    "outbox_delete",
    "outbox_depth",
    "queue_changes",
    "seed_builtin_types",
    "set_protocol_password",
    "upsert_device",
    "upsert_station",
    "upsert_type",
]

T = TypeVar("T", DeviceType, Station, Device, ApiKey)
Change = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a device body cannot be stored: an unknown reference, an invalid value, a taken key."""

    kind: Literal["unknown", "invalid", "conflict"]
    field: str
    message: str


def list_rows(
    session: Session, *, model: type[T], offset: int = 0, limit: int = 100, **where: object
) -> tuple[Sequence[T], int]:
    """One page of rows of ``model`` (filtered by equal columns) and the total count."""
    conditions = [getattr(model, k) == v for k, v in where.items() if v is not None]
    total = session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0
    key = model.__mapper__.primary_key[0]
    rows = session.scalars(select(model).where(*conditions).order_by(key).offset(offset).limit(limit))
    return rows.unique().all(), total


def _apply(row: object, values: dict[str, object]) -> bool:
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if changed:
        row.updated_at = utcnow()  # type: ignore[attr-defined]
    return changed


# ---------------------------------------------------------------- device types


def upsert_type(
    session: Session, *, name: str, body: DeviceTypeCreate | DeviceTypeUpdate, builtin: bool = False
) -> Change:
    """Create or update a device type (metrics, when given, replace the list)."""
    row = session.get(DeviceType, name)
    values = body.model_dump(exclude_unset=True, exclude={"name", "metrics"})
    if body.metrics is not None:
        values["metrics"] = metrics_to_json(body.metrics)
    if row is None:
        session.add(DeviceType(name=name, builtin=builtin, **values))
        return "created"
    return "updated" if _apply(row, values) else "unchanged"


def seed_builtin_types(session: Session) -> int:
    """Insert the built-in types that are missing (idempotent); returns how many were added.

    A built-in type already stored gets the protocol codes (HJ 212, SL 651) its catalog entry
    has and its stored metric of the same name lacks (codes an operator set are kept); its
    devices' records are then queued for publication.
    """
    added = 0
    for spec in BUILTIN_TYPES:
        row = session.get(DeviceType, spec.name)
        if row is None:
            body = DeviceTypeCreate.model_validate(
                {
                    "name": spec.name,
                    "domain": spec.domain,
                    "description": spec.description,
                    "metrics": [m.model_dump() for m in spec.metrics],
                }
            )
            upsert_type(session, name=spec.name, body=body, builtin=True)
            added += 1
        elif row.builtin and _fill_codes(row, spec.metrics):
            queue_changes(session, device_ids=device_ids(session, type_name=spec.name))
    session.commit()
    return added


def _fill_codes(row: DeviceType, catalog: Sequence[MetricSpec]) -> bool:
    """Add the catalog's protocol codes the stored metrics lack; True if any was added."""
    metrics = {name: dict(value) for name, value in row.metrics.items()}
    for spec in catalog:
        stored = metrics.get(spec.metric)
        for attr in ("hj212_code", "sl651_code"):
            if stored is not None and stored.get(attr) is None and getattr(spec, attr) is not None:
                stored[attr] = getattr(spec, attr)
    return _apply(row, {"metrics": metrics})


# ---------------------------------------------------------------- stations and devices


def upsert_station(session: Session, *, station_id: str, data: StationBase) -> Change:
    """Create or replace a station's fields (``data`` is the complete, validated station)."""
    values = data.model_dump(exclude={"id", "updated_at"})
    row = session.get(Station, station_id)
    if row is None:
        session.add(Station(id=station_id, **values))
        return "created"
    return "updated" if _apply(row, values) else "unchanged"


def check_device(session: Session, *, data: DeviceBase, device_id: str | None = None) -> Problem | None:
    """The first problem with a device's references, calibration and protocol links, or ``None``.

    ``device_id`` (the device written, when it may exist) fills the protocol fields ``data``
    leaves unset from the stored device, and is not a conflict with itself.
    """
    dtype = session.get(DeviceType, data.type)
    if dtype is None:
        return Problem("unknown", "type", f"unknown device type '{data.type}'")
    if data.station_id is not None and session.get(Station, data.station_id) is None:
        return Problem("unknown", "station_id", f"unknown station '{data.station_id}'")
    metrics = {m.metric for m in metrics_from_json(dtype.metrics)}
    extra = sorted(set(data.calibration) - metrics)
    if extra:
        return Problem(
            "invalid",
            "calibration",
            f"calibration for metric(s) {', '.join(extra)} not reported by type '{data.type}'"
            f" (its metrics: {', '.join(sorted(metrics))})",
        )
    row = None if device_id is None else session.get(Device, device_id)
    protocol = data.protocol if "protocol" in data.model_fields_set or row is None else row.protocol
    if protocol == "hj212" and not any(spec.get("hj212_code") for spec in dtype.metrics.values()):
        return Problem(
            "invalid",
            "protocol",
            f"type '{data.type}' gives none of its metrics an hj212_code: no HJ 212 value could be stored",
        )
    return _check_links(session, data=data, row=row, protocol=protocol)


def _check_links(session: Session, *, data: DeviceBase, row: Device | None, protocol: str) -> Problem | None:
    given = data.model_fields_set
    has_hj212 = data.hj212 is not None if "hj212" in given or row is None else row.hj212_mn is not None
    has_sl651 = data.sl651 is not None if "sl651" in given or row is None else row.sl651_address is not None
    if protocol == "hj212" and not has_hj212:
        return Problem("invalid", "hj212", "protocol 'hj212' needs the hj212 link (its mn at least)")
    if protocol == "sl651" and not has_sl651:
        return Problem("invalid", "sl651", "protocol 'sl651' needs the sl651 link (its address at least)")
    own = None if row is None else row.id
    if data.hj212 is not None and "hj212" in given:
        holder = session.scalar(select(Device.id).where(Device.hj212_mn == data.hj212.mn, Device.id != own))
        if holder is not None:
            return Problem("conflict", "hj212.mn", f"MN '{data.hj212.mn}' belongs to device '{holder}'")
    if data.sl651 is not None and "sl651" in given:
        address = data.sl651.address
        holder = session.scalar(select(Device.id).where(Device.sl651_address == address, Device.id != own))
        if holder is not None:
            return Problem(
                "conflict", "sl651.address", f"RTU address '{address}' belongs to device '{holder}'"
            )
    return None


def _password_hash(current: str | None, password: str | None) -> str | None:
    """The hash to store: the current one if ``password`` is omitted or is what it hashes."""
    if password is None or (current is not None and verify_password(password, current)):
        return current
    return hash_password(password)


def _link_values(data: DeviceBase, row: Device | None) -> dict[str, object]:
    """Columns of the protocol fields ``data`` sets (passwords hashed, omitted ones kept)."""
    given = data.model_fields_set
    values: dict[str, object] = {}
    if "protocol" in given or row is None:
        values["protocol"] = data.protocol
    if "hj212" in given or row is None:
        link = data.hj212
        current = None if row is None or link is None else row.hj212_password_hash
        values |= {
            "hj212_mn": None if link is None else link.mn,
            "hj212_password_hash": None if link is None else _password_hash(current, link.password),
            "hj212_crc": None if link is None else link.crc,
            "hj212_strict": None if link is None else link.strict,
            "hj212_allow_from": None if link is None else link.allow_from,
        }
    if "sl651" in given or row is None:
        rtu = data.sl651
        current = None if row is None or rtu is None else row.sl651_password_hash
        values |= {
            "sl651_address": None if rtu is None else rtu.address,
            "sl651_password_hash": None if rtu is None else _password_hash(current, rtu.password),
            "sl651_ack": None if rtu is None else rtu.ack,
            "sl651_level_base_m": None if rtu is None else rtu.level_base_m,
            "sl651_allow_from": None if rtu is None else rtu.allow_from,
        }
    return values


def upsert_device(session: Session, *, device_id: str, data: DeviceBase) -> Change:
    """Create or replace a device's fields (call ``check_device`` first).

    Protocol fields left unset in ``data`` keep their stored value; a link given without a
    password keeps the stored password (a new link without one has none: not checked).
    """
    values = data.model_dump(exclude={"id", "updated_at", "type", "protocol", "hj212", "sl651"})
    values["type_name"] = data.type
    row = session.get(Device, device_id)
    values |= _link_values(data, row)
    if row is None:
        session.add(Device(id=device_id, **values))
        return "created"
    return "updated" if _apply(row, values) else "unchanged"


def set_protocol_password(
    session: Session, *, row: Device, protocol: Literal["hj212", "sl651"], password: str | None
) -> None:
    """Store the hash of ``password`` (None: no password, not checked) on the device's link."""
    stored = None if password is None else hash_password(password)
    column = "hj212_password_hash" if protocol == "hj212" else "sl651_password_hash"
    _apply(row, {column: stored})


def device_ids(session: Session, *, station_id: str | None = None, type_name: str | None = None) -> list[str]:
    """Ids of the devices at a station or of a type."""
    query = select(Device.id)
    if station_id is not None:
        query = query.where(Device.station_id == station_id)
    if type_name is not None:
        query = query.where(Device.type_name == type_name)
    return list(session.scalars(query.order_by(Device.id)))


def device_records(session: Session, *, ids: list[str]) -> list[DeviceRecord]:
    """The current ``DeviceRecord`` of each existing device among ``ids``."""
    if not ids:
        return []
    rows = session.scalars(select(Device).where(Device.id.in_(ids)).order_by(Device.id)).unique()
    return [device_record(row, row.device_type, row.station) for row in rows]


def all_device_ids(session: Session) -> list[str]:
    """Every registered device id."""
    return list(session.scalars(select(Device.id).order_by(Device.id)))


def calibration_outside(session: Session, *, device_id: str, metrics: set[str]) -> str | None:
    """A message if the device is calibrated for a metric not in ``metrics``."""
    row = session.get(Device, device_id)
    extra = sorted(set(row.calibration) - metrics) if row is not None else []
    if not extra:
        return None
    return f"device '{device_id}' has calibration for {', '.join(extra)}, which the new metrics drop"


# ---------------------------------------------------------------- outbox


def queue_changes(session: Session, *, device_ids: Sequence[str]) -> None:
    """Queue the devices whose record changed (or which were deleted) for publication.

    Call before the commit of the change, so the change and its outbox rows commit together.
    """
    session.add_all(OutboxEntry(device_id=d) for d in dict.fromkeys(device_ids))


def outbox_batch(session: Session, *, limit: int) -> list[tuple[int, str]]:
    """The oldest ``limit`` outbox rows as ``(row id, device id)``."""
    rows = session.execute(
        select(OutboxEntry.id, OutboxEntry.device_id).order_by(OutboxEntry.id).limit(limit)
    )
    return [(row_id, device_id) for row_id, device_id in rows]


def outbox_delete(session: Session, *, row_ids: Sequence[int]) -> None:
    """Forget published rows (exactly these: a row committed meanwhile stays)."""
    session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(row_ids)))
    session.commit()


def outbox_depth(session: Session) -> tuple[int, datetime | None]:
    """How many rows wait, and when the oldest was written."""
    count, oldest = session.execute(select(func.count(), func.min(OutboxEntry.created_at))).one()
    if isinstance(oldest, str):  # SQLite returns the aggregate as stored text
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return int(count or 0), oldest
