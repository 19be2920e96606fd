"""``/device-types``: built-in and custom device types (changes by admins)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError

from devices import crud
from devices.api.deps import AdminKey, Outbox, OutboxDep, ReaderKey, SessionDep
from devices.convert import type_public
from devices.models import DeviceType
from devices.schemas import (
    ERRORS,
    DeviceTypeCreate,
    DeviceTypePublic,
    DeviceTypesPublic,
    DeviceTypeUpdate,
    Message,
    Responses,
)

router = APIRouter(prefix="/device-types", tags=["device-types"], responses=ERRORS)
NOT_FOUND: Responses = {404: {"model": Message, "description": "no such device type"}}


def _get(session: SessionDep, name: str) -> DeviceType:
    row = session.get(DeviceType, name)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device type '{name}' not found")
    return row


@router.get("")
def list_types(session: SessionDep, _key: ReaderKey) -> DeviceTypesPublic:
    """All device types."""
    rows, total = crud.list_rows(session, model=DeviceType, limit=10_000)
    return DeviceTypesPublic(data=[type_public(r) for r in rows], count=total)


@router.get("/{name}", responses=NOT_FOUND)
def get_type(name: str, session: SessionDep, _key: ReaderKey) -> DeviceTypePublic:
    """One device type."""
    return type_public(_get(session, name))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"model": Message, "description": "name taken"}},
)
def create_type(body: DeviceTypeCreate, session: SessionDep, _key: AdminKey) -> DeviceTypePublic:
    """Create a custom device type."""
    if session.get(DeviceType, body.name) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"device type '{body.name}' already exists")
    crud.upsert_type(session, name=body.name, body=body)
    try:
        session.commit()
    except IntegrityError as exc:  # created concurrently (PostgreSQL: unique violation)
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, f"device type '{body.name}' already exists") from exc
    return type_public(_get(session, body.name))


@router.patch("/{name}", responses=NOT_FOUND)
async def update_type(
    name: str, body: DeviceTypeUpdate, session: SessionDep, outbox: OutboxDep, _key: AdminKey
) -> DeviceTypePublic:
    """Change a device type; every device of the type is republished."""
    public, changed = await run_in_threadpool(_update, session, outbox, name, body)
    if changed:
        await outbox.published()
    return public


def _update(
    session: SessionDep, outbox: Outbox, name: str, body: DeviceTypeUpdate
) -> tuple[DeviceTypePublic, bool]:
    """Commit the change with an outbox row per device of the type; whether anything changed."""
    _get(session, name)
    if body.metrics is not None:
        kept = {m.metric for m in body.metrics}
        for device_id in crud.device_ids(session, type_name=name):
            problem = crud.calibration_outside(session, device_id=device_id, metrics=kept)
            if problem:
                raise HTTPException(status.HTTP_409_CONFLICT, problem)
    changed = crud.upsert_type(session, name=name, body=body) != "unchanged"
    if changed:
        outbox.queue(session, crud.device_ids(session, type_name=name))
        session.commit()
    return type_public(_get(session, name)), changed


@router.delete(
    "/{name}",
    responses={**NOT_FOUND, 409: {"model": Message, "description": "built-in or in use"}},
)
def delete_type(name: str, session: SessionDep, _key: AdminKey) -> Message:
    """Delete a custom device type no device uses."""
    row = _get(session, name)
    if row.builtin:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"device type '{name}' is built in and cannot be deleted"
        )
    users = crud.device_ids(session, type_name=name)
    if users:
        shown = ", ".join(users[:10]) + (" …" if len(users) > 10 else "")
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"device type '{name}' is used by {len(users)} device(s): {shown}"
        )
    session.delete(row)
    session.commit()
    return Message(detail=f"device type '{name}' deleted")
