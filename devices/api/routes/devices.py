"""``/devices``: registered devices, their calibration, and their reporting status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from devices import crud
from devices.api.deps import IntegratorKey, PublisherDep, ReaderKey, SessionDep, TrackerDep, invalid, merged
from devices.convert import device_public
from devices.models import Device
from devices.schemas import (
    ERRORS,
    DeviceBase,
    DeviceCreate,
    DevicePublic,
    DevicesPublic,
    DeviceUpdate,
    Message,
    Responses,
)
from stationflow.contracts import DeviceStatus, utcnow

router = APIRouter(prefix="/devices", tags=["devices"], responses=ERRORS)
NOT_FOUND: Responses = {404: {"model": Message, "description": "no such device, type or station"}}


class RejectionPublic(BaseModel):
    """The last refused message of a device."""

    at: datetime
    code: str
    reason: str


class DeviceStatusPublic(BaseModel):
    """Traffic of a device as seen on ``readings.clean`` / ``readings.deadletter`` (kept in memory)."""

    device_id: str
    last_seen: datetime | None
    readings_last_hour: int
    rejected_last_hour: int
    rejected_total: int
    last_rejection: RejectionPublic | None
    counting_since: datetime


def _get(session: SessionDep, device_id: str) -> Device:
    row = session.get(Device, device_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device '{device_id}' not found")
    return row


def _check(session: SessionDep, data: DeviceBase) -> None:
    problem = crud.check_device(session, data=data)
    if problem is None:
        return
    if problem.kind == "unknown":
        raise HTTPException(status.HTTP_404_NOT_FOUND, problem.message)
    raise invalid(problem.field, problem.message)


@router.get("")
async def list_devices(
    session: SessionDep,
    _key: ReaderKey,
    station_id: str | None = None,
    type: str | None = None,
    status: DeviceStatus | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DevicesPublic:
    """Devices, one page at a time, filtered by station, type or status."""
    rows, total = crud.list_rows(
        session,
        model=Device,
        offset=offset,
        limit=limit,
        station_id=station_id,
        type_name=type,
        status=status,
    )
    return DevicesPublic(data=[device_public(r) for r in rows], count=total)


@router.get("/{device_id}", responses=NOT_FOUND)
async def get_device(device_id: str, session: SessionDep, _key: ReaderKey) -> DevicePublic:
    """One device."""
    return device_public(_get(session, device_id))


@router.post(
    "",
    status_code=201,
    responses={**NOT_FOUND, 409: {"model": Message, "description": "id taken"}},
)
async def create_device(
    body: DeviceCreate, session: SessionDep, publisher: PublisherDep, _key: IntegratorKey
) -> DevicePublic:
    """Register a device and publish its record."""
    if session.get(Device, body.id) is not None:
        raise HTTPException(409, f"device '{body.id}' already exists")
    _check(session, body)
    crud.upsert_device(session, device_id=body.id, data=body)
    session.commit()
    await publisher.publish(crud.device_records(session, ids=[body.id]))
    return device_public(_get(session, body.id))


@router.patch("/{device_id}", responses=NOT_FOUND)
async def update_device(
    device_id: str, body: DeviceUpdate, session: SessionDep, publisher: PublisherDep, _key: IntegratorKey
) -> DevicePublic:
    """Change a device and publish its new record."""
    data = merged(DeviceBase, device_public(_get(session, device_id)), body)
    _check(session, data)
    if crud.upsert_device(session, device_id=device_id, data=data) != "unchanged":
        session.commit()
        await publisher.publish(crud.device_records(session, ids=[device_id]))
    return device_public(_get(session, device_id))


@router.delete("/{device_id}", responses=NOT_FOUND)
async def delete_device(
    device_id: str, session: SessionDep, publisher: PublisherDep, _key: IntegratorKey
) -> Message:
    """Delete a device and publish its tombstone."""
    session.delete(_get(session, device_id))
    session.commit()
    await publisher.delete([device_id])
    return Message(detail=f"device '{device_id}' deleted")


@router.get("/{device_id}/status", responses=NOT_FOUND)
async def device_status(
    device_id: str, session: SessionDep, tracker: TrackerDep, _key: ReaderKey
) -> DeviceStatusPublic:
    """Last seen, readings and rejections in the last hour, and the last rejection."""
    _get(session, device_id)
    counters = tracker.get(device_id)
    readings, rejected = counters.last_hour(utcnow())
    last = None
    if counters.last_rejection_at is not None:
        last = RejectionPublic(
            at=counters.last_rejection_at,
            code=counters.last_rejection_code or "",
            reason=counters.last_rejection_reason or "",
        )
    return DeviceStatusPublic(
        device_id=device_id,
        last_seen=counters.last_seen,
        readings_last_hour=readings,
        rejected_last_hour=rejected,
        rejected_total=counters.rejected_total,
        last_rejection=last,
        counting_since=tracker.since,
    )
