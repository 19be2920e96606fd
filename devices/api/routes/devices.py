"""``/devices``: registered devices, their calibration, and their reporting status."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from devices import crud
from devices.api.deps import (
    IntegratorKey,
    Outbox,
    OutboxDep,
    ProvisionerDep,
    ReaderKey,
    SessionDep,
    TrackerDep,
    invalid,
    merged,
)
from devices.broker import BrokerError
from devices.convert import device_public
from devices.models import Device
from devices.schemas import (
    ERRORS,
    DeviceBase,
    DeviceCreate,
    DeviceCreated,
    DevicePublic,
    DevicesPublic,
    DeviceUpdate,
    Message,
    MqttCredentials,
    Responses,
)
from stationflow.contracts import DeviceStatus, utcnow

router = APIRouter(prefix="/devices", tags=["devices"], responses=ERRORS)
logger = logging.getLogger(__name__)
NOT_FOUND: Responses = {404: {"model": Message, "description": "no such device, type or station"}}
BROKER_FAILED: Responses = {
    502: {"model": Message, "description": "the MQTT broker refused or did not answer"}
}
NO_BROKER: Responses = {409: {"model": Message, "description": "broker provisioning is off"}}


def _broker_failed(device_id: str, exc: BrokerError, outcome: str) -> HTTPException:
    logger.error("broker call failed device_id=%s outcome=%s error=%s", device_id, outcome, exc)
    return HTTPException(status.HTTP_502_BAD_GATEWAY, f"{exc}; {outcome}")


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
def list_devices(
    session: SessionDep,
    _key: ReaderKey,
    station_id: str | None = None,
    type: str | None = None,
    status: DeviceStatus | None = None,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
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
def get_device(device_id: str, session: SessionDep, _key: ReaderKey) -> DevicePublic:
    """One device."""
    return device_public(_get(session, device_id))


@router.post(
    "",
    status_code=201,
    responses={**NOT_FOUND, **BROKER_FAILED, 409: {"model": Message, "description": "id taken"}},
)
async def create_device(
    body: DeviceCreate,
    session: SessionDep,
    outbox: OutboxDep,
    provisioner: ProvisionerDep,
    _key: IntegratorKey,
) -> DeviceCreated:
    """Register a device, issue its MQTT credentials (shown only here) and publish its record."""
    await run_in_threadpool(_register, session, outbox, body)
    try:
        mqtt = await provisioner.issue(session, body.id)
    except BrokerError as exc:
        await provisioner.discard(session, body.id)
        raise _broker_failed(body.id, exc, "the device was not registered") from exc
    await outbox.published()
    public = await run_in_threadpool(_public, session, body.id)
    return DeviceCreated(**public.model_dump(), mqtt=mqtt)


def _register(session: SessionDep, outbox: Outbox, body: DeviceCreate) -> None:
    """Store a new device with its outbox row (one transaction); 409 if the id is taken."""
    if session.get(Device, body.id) is not None:
        raise HTTPException(409, f"device '{body.id}' already exists")
    _check(session, body)
    crud.upsert_device(session, device_id=body.id, data=body)
    outbox.queue(session, [body.id])
    try:
        session.commit()
    except IntegrityError as exc:  # registered concurrently
        session.rollback()
        raise HTTPException(409, f"device '{body.id}' already exists") from exc


def _public(session: SessionDep, device_id: str) -> DevicePublic:
    return device_public(_get(session, device_id))


@router.post("/{device_id}/credentials", responses={**NOT_FOUND, **BROKER_FAILED, **NO_BROKER})
async def rotate_credentials(
    device_id: str, session: SessionDep, provisioner: ProvisionerDep, _key: IntegratorKey
) -> MqttCredentials:
    """A new MQTT password (shown only here): the old one is refused and its session dropped at once."""
    row = _get(session, device_id)
    try:
        mqtt = await provisioner.rotate(session, row)
    except BrokerError as exc:
        raise _broker_failed(device_id, exc, "the password was not changed") from exc
    if mqtt is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "broker provisioning is off: no MQTT credentials issued"
        )
    return mqtt


@router.patch("/{device_id}", responses={**NOT_FOUND, **BROKER_FAILED})
async def update_device(
    device_id: str,
    body: DeviceUpdate,
    session: SessionDep,
    outbox: OutboxDep,
    provisioner: ProvisionerDep,
    _key: IntegratorKey,
) -> DevicePublic:
    """Change a device and publish its new record; retiring disables its MQTT login at once."""
    row, data = await run_in_threadpool(_updated, session, device_id, body)
    try:
        await provisioner.follow_status(row, row.status, data.status.value)
    except BrokerError as exc:
        raise _broker_failed(device_id, exc, "the device was not changed") from exc
    if await run_in_threadpool(_store_update, session, outbox, device_id, data):
        await outbox.published()
    return await run_in_threadpool(_public, session, device_id)


def _updated(session: SessionDep, device_id: str, body: DeviceUpdate) -> tuple[Device, DeviceBase]:
    """The device and its fields after the patch, checked (404 / 422 otherwise)."""
    row = _get(session, device_id)
    data = merged(DeviceBase, device_public(row), body)
    _check(session, data)
    return row, data


def _store_update(session: SessionDep, outbox: Outbox, device_id: str, data: DeviceBase) -> bool:
    """Commit the change with its outbox row; False if nothing changed."""
    if crud.upsert_device(session, device_id=device_id, data=data) == "unchanged":
        return False
    outbox.queue(session, [device_id])
    session.commit()
    return True


@router.delete("/{device_id}", responses={**NOT_FOUND, **BROKER_FAILED})
async def delete_device(
    device_id: str,
    session: SessionDep,
    outbox: OutboxDep,
    provisioner: ProvisionerDep,
    _key: IntegratorKey,
) -> Message:
    """Delete a device and its MQTT account, and publish its tombstone."""
    row = await run_in_threadpool(_get, session, device_id)
    try:
        await provisioner.remove(device_id)
    except BrokerError as exc:
        raise _broker_failed(device_id, exc, "the device was not deleted") from exc
    await run_in_threadpool(_delete, session, outbox, row)
    await outbox.published()
    return Message(detail=f"device '{device_id}' deleted")


def _delete(session: SessionDep, outbox: Outbox, row: Device) -> None:
    session.delete(row)
    outbox.queue(session, [row.id])
    session.commit()


@router.get("/{device_id}/status", responses=NOT_FOUND)
def device_status(
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
