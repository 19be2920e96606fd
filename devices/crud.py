"""Data access: keyword-only functions; ``None`` means not found; nothing here speaks HTTP."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from stationflow.contracts import DeviceRecord

from .catalog import BUILTIN_TYPES
from .convert import device_record, metrics_from_json, metrics_to_json
from .models import ApiKey, Device, DeviceType, OutboxEntry, Station, utcnow
from .schemas import DeviceBase, DeviceTypeCreate, DeviceTypeUpdate, Role, StationBase

__all__ = [
    "Change",
    "Problem",
    "check_device",
    "create_api_key",
    "device_ids",
    "get_api_key_by_token",
    "hash_token",
    "list_rows",
    "outbox_batch",
    "outbox_delete",
    "outbox_depth",
    "queue_changes",
    "seed_builtin_types",
    "upsert_device",
    "upsert_station",
    "upsert_type",
]

T = TypeVar("T", DeviceType, Station, Device, ApiKey)
Change = Literal["created", "updated", "unchanged"]
TOKEN_PREFIX = "sfk_"  # noqa: S105  (a marker to recognise our tokens, not a secret)


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a device body cannot be stored: an unknown reference or an invalid value."""

    kind: Literal["unknown", "invalid"]
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
    """Insert the built-in types that are missing (idempotent); returns how many were added."""
    added = 0
    for spec in BUILTIN_TYPES:
        if session.get(DeviceType, spec.name) is None:
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
    session.commit()
    return added


# ---------------------------------------------------------------- stations and devices


def upsert_station(session: Session, *, station_id: str, data: StationBase) -> Change:
    """Create or replace a station's fields (``data`` is the complete, validated station)."""
    values = data.model_dump(exclude={"id", "updated_at"})
    row = session.get(Station, station_id)
    if row is None:
        session.add(Station(id=station_id, **values))
        return "created"
    return "updated" if _apply(row, values) else "unchanged"


def check_device(session: Session, *, data: DeviceBase) -> Problem | None:
    """The first problem with a device's references and calibration, or ``None``."""
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
    return None


def upsert_device(session: Session, *, device_id: str, data: DeviceBase) -> Change:
    """Create or replace a device's fields (call ``check_device`` first)."""
    values = data.model_dump(exclude={"id", "updated_at", "type"})
    values["type_name"] = data.type
    row = session.get(Device, device_id)
    if row is None:
        session.add(Device(id=device_id, **values))
        return "created"
    return "updated" if _apply(row, values) else "unchanged"


def device_ids(session: Session, *, station_id: str | None = None, type_name: str | None = None) -> list[str]:
    """Ids of the devices at a station or of a type."""
    query = select(Device.id)
    if station_id is not None:
        query = query.where(Device.station_id == station_id)
    if type_name is not None:
        query = query.where(Device.type_name == type_name)
    return list(session.scalars(query.order_by(Device.id)))


# ---------------------------------------------------------------- API keys


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_key(
    session: Session, *, name: str, role: Role, token: str | None = None
) -> tuple[ApiKey, str]:
    """Store a new key (a random token unless given) and return it with its token."""
    token = token or TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, role=role.value, key_hash=hash_token(token), prefix=token[:10])
    session.add(row)
    session.commit()
    return row, token


def get_api_key_by_token(session: Session, *, token: str) -> ApiKey | None:
    """The key whose token this is."""
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_token(token)))


def ensure_bootstrap_key(session: Session, *, token: str) -> bool:
    """Make the configured bootstrap admin token valid (idempotent); True if it was added."""
    if get_api_key_by_token(session, token=token) is not None:
        return False
    create_api_key(session, name="bootstrap-admin", role=Role.ADMIN, token=token)
    return True


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
