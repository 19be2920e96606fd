"""``/devices``: registered devices, their calibration, and their reporting status."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, TypeVar

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
from devices.convert import device_base, device_public
from devices.linkpasswords import LinkProtocol, checked_password, new_password
from devices.models import Device
from devices.schemas import (
    ERRORS,
    DeviceBase,
    DeviceChanged,
    DeviceCreate,
    DeviceCreated,
    DevicePublic,
    DevicesPublic,
    DeviceUpdate,
    Message,
    MqttCredentials,
    ProtocolPassword,
    ProtocolPasswordSet,
    Responses,
)
from stationflow.contracts import DeviceStatus, utcnow

router = APIRouter(prefix="/devices", tags=["devices"], responses=ERRORS)
logger = logging.getLogger(__name__)
D = TypeVar("D", bound=DeviceBase)
NOT_FOUND: Responses = {404: {"model": Message, "description": "no such device, type or station"}}
BROKER_FAILED: Responses = {
    502: {"model": Message, "description": "the MQTT broker refused or did not answer"}
}
NO_BROKER: Responses = {409: {"model": Message, "description": "broker provisioning is off"}}
TAKEN: Responses = {409: {"model": Message, "description": "id, HJ 212 MN or SL 651 address taken"}}


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


def _check(session: SessionDep, data: DeviceBase, device_id: str | None = None) -> None:
    problem = crud.check_device(session, data=data, device_id=device_id)
    if problem is None:
        return
    if problem.kind == "unknown":
        raise HTTPException(status.HTTP_404_NOT_FOUND, problem.message)
    if problem.kind == "conflict":
        raise HTTPException(status.HTTP_409_CONFLICT, problem.message)
    raise invalid(problem.field, problem.message)


def _with_passwords(data: D, row: Device | None) -> tuple[D, dict[str, str]]:
    """``data`` with the protocol passwords the registry chooses, and those passwords by answer field.

    HJ 212: a new link (none stored before) without a password gets one. SL 651: only when
    ``generate_password`` asks (without one, the RTU's password is not checked).
    """
    generated: dict[str, str] = {}
    hj212, sl651 = data.hj212, data.sl651
    if hj212 is not None and hj212.password is None and (row is None or row.hj212_mn is None):
        generated["hj212_password"] = new_password("hj212")
        hj212 = hj212.model_copy(update={"password": generated["hj212_password"]})
    if sl651 is not None and sl651.generate_password:
        generated["sl651_password"] = new_password("sl651")
        sl651 = sl651.model_copy(update={"password": generated["sl651_password"], "generate_password": False})
    if not generated:
        return data, generated
    return data.model_copy(update={"hj212": hj212, "sl651": sl651}), generated


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
    responses={**NOT_FOUND, **BROKER_FAILED, **TAKEN},
)
async def create_device(
    body: DeviceCreate,
    session: SessionDep,
    outbox: OutboxDep,
    provisioner: ProvisionerDep,
    _key: IntegratorKey,
) -> DeviceCreated:
    """Register a device, issue its MQTT credentials (shown only here) and publish its record.

    An HJ 212 link without a password, or an SL 651 link with ``generate_password``, gets a
    password chosen by the registry: returned only in this answer, stored hashed.
    """
    generated = await run_in_threadpool(_register, session, outbox, body)
    try:
        mqtt = await provisioner.issue(session, body.id)
    except BrokerError as exc:
        await provisioner.discard(session, body.id)
        raise _broker_failed(body.id, exc, "the device was not registered") from exc
    await outbox.published()
    public = await run_in_threadpool(_public, session, body.id)
    return DeviceCreated(**public.model_dump(), mqtt=mqtt, **generated)


def _register(session: SessionDep, outbox: Outbox, body: DeviceCreate) -> dict[str, str]:
    """Store a new device with its outbox row (one transaction); 409 if the id or a link key is taken.

    Returns the protocol passwords the registry generated, by answer field.
    """
    if session.get(Device, body.id) is not None:
        raise HTTPException(409, f"device '{body.id}' already exists")
    _check(session, body)
    body, generated = _with_passwords(body, None)
    crud.upsert_device(session, device_id=body.id, data=body)
    outbox.queue(session, [body.id])
    _commit(session, body.id, creating=True)
    return generated


def _commit(session: SessionDep, device_id: str, *, creating: bool = False) -> None:
    """Commit; a unique key taken concurrently (id, MN, RTU address) is a 409."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        logger.info("registry write conflict device_id=%s error=%s", device_id, exc.orig)
        if creating and session.get(Device, device_id) is not None:
            raise HTTPException(409, f"device '{device_id}' already exists") from exc
        raise HTTPException(
            409, f"device '{device_id}': its MN or RTU address was registered concurrently by another device"
        ) from exc


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


@router.patch("/{device_id}", responses={**NOT_FOUND, **BROKER_FAILED, **TAKEN})
async def update_device(
    device_id: str,
    body: DeviceUpdate,
    session: SessionDep,
    outbox: OutboxDep,
    provisioner: ProvisionerDep,
    _key: IntegratorKey,
) -> DeviceChanged:
    """Change a device and publish its new record; retiring disables its MQTT login at once.

    A link given replaces the stored one; its password omitted keeps the stored password (a
    new HJ 212 link gets a generated one, returned only in this answer).
    """
    row, data = await run_in_threadpool(_updated, session, device_id, body)
    try:
        await provisioner.follow_status(row, row.status, data.status.value)
    except BrokerError as exc:
        raise _broker_failed(device_id, exc, "the device was not changed") from exc
    generated = await run_in_threadpool(_store_update, session, outbox, device_id, data)
    if generated is not None:
        await outbox.published()
    public = await run_in_threadpool(_public, session, device_id)
    return DeviceChanged(**public.model_dump(), **(generated or {}))


def _updated(session: SessionDep, device_id: str, body: DeviceUpdate) -> tuple[Device, DeviceBase]:
    """The device and its fields after the patch, checked (404 / 409 / 422 otherwise)."""
    row = _get(session, device_id)
    data = merged(DeviceBase, device_base(row), body)
    _check(session, data, device_id)
    return row, data


def _store_update(
    session: SessionDep, outbox: Outbox, device_id: str, data: DeviceBase
) -> dict[str, str] | None:
    """Commit the change with its outbox row: the generated passwords, None if nothing changed."""
    data, generated = _with_passwords(data, session.get(Device, device_id))
    if crud.upsert_device(session, device_id=device_id, data=data) == "unchanged":
        return None
    outbox.queue(session, [device_id])
    _commit(session, device_id)
    return generated


@router.post("/{device_id}/protocol-password", responses=NOT_FOUND)
async def set_protocol_password(
    device_id: str,
    session: SessionDep,
    outbox: OutboxDep,
    _key: IntegratorKey,
    body: ProtocolPasswordSet | None = None,
) -> ProtocolPassword:
    """Set, generate (no password given; shown only here) or clear the HJ 212 / SL 651 password."""
    answer = await run_in_threadpool(_set_password, session, outbox, device_id, body or ProtocolPasswordSet())
    await outbox.published()
    return answer


def _link_protocol(row: Device, asked: LinkProtocol | None) -> LinkProtocol:
    """Which link a password request is about (422 if the device has no such link)."""
    links: list[LinkProtocol] = []
    if row.hj212_mn is not None:
        links.append("hj212")
    if row.sl651_address is not None:
        links.append("sl651")
    if asked is None:
        for link in links:
            if row.protocol == link:
                return link
        if len(links) != 1:
            raise invalid("protocol", f"device '{row.id}' has {len(links)} protocol links: name one")
        return links[0]
    if asked not in links:
        raise invalid("protocol", f"device '{row.id}' has no {asked} link")
    return asked


def _set_password(
    session: SessionDep, outbox: Outbox, device_id: str, body: ProtocolPasswordSet
) -> ProtocolPassword:
    row = _get(session, device_id)
    protocol = _link_protocol(row, body.protocol)
    generated: str | None = None
    if body.clear:
        password = None
    elif body.password is not None:
        try:
            password = checked_password(protocol, body.password)
        except ValueError as exc:
            raise invalid("password", str(exc)) from exc
    else:
        password = generated = new_password(protocol)
    crud.set_protocol_password(session, row=row, protocol=protocol, password=password)
    outbox.queue(session, [device_id])
    session.commit()
    logger.info(
        "protocol password set device_id=%s protocol=%s how=%s",
        device_id,
        protocol,
        "cleared" if body.clear else "generated" if generated else "given",
    )
    return ProtocolPassword(
        device_id=device_id, protocol=protocol, password_set=password is not None, password=generated
    )


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
