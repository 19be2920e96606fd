"""``/stations``: where devices are installed, with per-kind attributes and threshold overrides."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError

from devices import crud
from devices.api.deps import IntegratorKey, Outbox, OutboxDep, ReaderKey, SessionDep, merged
from devices.convert import station_public
from devices.models import Station
from devices.schemas import (
    ERRORS,
    Message,
    Responses,
    StationBase,
    StationCreate,
    StationKind,
    StationPublic,
    StationsPublic,
    StationUpdate,
)

router = APIRouter(prefix="/stations", tags=["stations"], responses=ERRORS)
NOT_FOUND: Responses = {404: {"model": Message, "description": "no such station"}}


def _get(session: SessionDep, station_id: str) -> Station:
    row = session.get(Station, station_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"station '{station_id}' not found")
    return row


@router.get("")
def list_stations(
    session: SessionDep,
    _key: ReaderKey,
    kind: StationKind | None = None,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> StationsPublic:
    """Stations, one page at a time, optionally of one kind."""
    rows, total = crud.list_rows(session, model=Station, offset=offset, limit=limit, kind=kind)
    return StationsPublic(data=[station_public(r) for r in rows], count=total)


@router.get("/{station_id}", responses=NOT_FOUND)
def get_station(station_id: str, session: SessionDep, _key: ReaderKey) -> StationPublic:
    """One station."""
    return station_public(_get(session, station_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"model": Message, "description": "id taken"}},
)
def create_station(body: StationCreate, session: SessionDep, _key: IntegratorKey) -> StationPublic:
    """Register a station."""
    if session.get(Station, body.id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"station '{body.id}' already exists")
    crud.upsert_station(session, station_id=body.id, data=body)
    try:
        session.commit()
    except IntegrityError as exc:  # registered concurrently (PostgreSQL: unique violation)
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, f"station '{body.id}' already exists") from exc
    return station_public(_get(session, body.id))


@router.patch("/{station_id}", responses=NOT_FOUND)
async def update_station(
    station_id: str, body: StationUpdate, session: SessionDep, outbox: OutboxDep, _key: IntegratorKey
) -> StationPublic:
    """Change a station (the result is validated whole); its devices are republished."""
    public, changed = await run_in_threadpool(_update, session, outbox, station_id, body)
    if changed:
        await outbox.published()
    return public


def _update(
    session: SessionDep, outbox: Outbox, station_id: str, body: StationUpdate
) -> tuple[StationPublic, bool]:
    """Commit the change with an outbox row per device there; whether anything changed."""
    data = merged(StationBase, station_public(_get(session, station_id)), body)
    changed = crud.upsert_station(session, station_id=station_id, data=data) != "unchanged"
    if changed:
        outbox.queue(session, crud.device_ids(session, station_id=station_id))
        session.commit()
    return station_public(_get(session, station_id)), changed


@router.delete(
    "/{station_id}",
    responses={**NOT_FOUND, 409: {"model": Message, "description": "devices are installed there"}},
)
def delete_station(station_id: str, session: SessionDep, _key: IntegratorKey) -> Message:
    """Delete a station without devices."""
    row = _get(session, station_id)
    users = crud.device_ids(session, station_id=station_id)
    if users:
        shown = ", ".join(users[:10]) + (" …" if len(users) > 10 else "")
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"station '{station_id}' still has {len(users)} device(s): {shown}; move or delete them first",
        )
    session.delete(row)
    session.commit()
    return Message(detail=f"station '{station_id}' deleted")
