"""REST API of the alert service: alerts (list, filter, acknowledge, resolve, comment,
history), silences, contact groups, policies, the outbox, API keys and a live SSE stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts import lifecycle
from alerts.auth import TOKEN_PREFIX, AdminKey, OperatorKey, ReaderKey, RuntimeDep, SessionDep
from alerts.models import Alert, ApiKey, ContactGroup, History, Outbox, Policy, Silence
from alerts.runtime import Runtime
from alerts.schemas import (
    AckBody,
    AlertOut,
    ApiKeyIn,
    CommentBody,
    ContactGroupIn,
    HistoryOut,
    PolicyIn,
    SilenceIn,
    Utc,
)
from stationflow.apikeys import Message, create_key, invalid

__all__ = ["SEVERITY_ORDER", "router"]


def _answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {
        400: "the request body is not valid JSON",
        401: "missing or unknown API key",
        403: "role too low",
        404: "not found",
        409: "conflict",
    }
    return {code: {"model": Message, "description": words[code]} for code in codes}


router = APIRouter(responses=_answers(400, 401, 403))
RowId = Annotated[int, Path(ge=1, le=2**31 - 1, description="numeric id")]
SEVERITY_ORDER = {"critical": 0, "major": 1, "moderate": 2, "minor": 3, "info": 4}
HEARTBEAT_S = 15.0


def _actor(key: ApiKey) -> str:
    return key.name


def _alert(session: Session, alert_id: int, *, lock: bool = False) -> Alert:
    stmt = select(Alert).where(Alert.id == alert_id)
    if lock:
        stmt = stmt.with_for_update()
    alert = session.scalar(stmt)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert_id} not found")
    return alert


# --- alerts ---------------------------------------------------------------------------------


class WhoAmI(BaseModel):
    """The calling key."""

    name: str
    role: str


@router.get("/whoami", tags=["keys"])
def whoami(key: ReaderKey) -> WhoAmI:
    """Name and role of the calling API key (the console uses it to show or hide buttons)."""
    return WhoAmI(name=key.name, role=key.role)


@router.get("/alerts", tags=["alerts"])
def list_alerts(
    session: SessionDep,
    _key: ReaderKey,
    status_: Annotated[
        list[str] | None,
        Query(alias="status", description="open, acknowledged, resolved; 'active' = open + acknowledged"),
    ] = None,
    severity: Annotated[list[str] | None, Query()] = None,
    domain: str | None = None,
    station_id: str | None = None,
    device_id: str | None = None,
    region: str | None = None,
    basin: str | None = None,
    rule: Annotated[str | None, Query(description="exact rule id, or a prefix ending in '*'")] = None,
    since: Annotated[datetime | None, Query(description="raised at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> list[AlertOut]:
    """Alerts, most severe first and then oldest first (the order an officer works them)."""
    stmt = select(Alert)
    statuses = set(status_ or [])
    if "active" in statuses:
        statuses = (statuses - {"active"}) | {"open", "acknowledged"}
    if statuses:
        stmt = stmt.where(Alert.status.in_(statuses))
    if severity:
        stmt = stmt.where(Alert.severity.in_(severity))
    for column, value in (
        (Alert.domain, domain),
        (Alert.station_id, station_id),
        (Alert.device_id, device_id),
        (Alert.region, region),
        (Alert.basin, basin),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if rule is not None:
        stmt = stmt.where(Alert.rule.startswith(rule[:-1]) if rule.endswith("*") else Alert.rule == rule)
    if since is not None:
        stmt = stmt.where(Alert.raised_at >= since)
    order = case(SEVERITY_ORDER, value=Alert.severity, else_=9)
    stmt = stmt.order_by(order, Alert.raised_at, Alert.id).limit(limit).offset(offset)
    return [AlertOut.model_validate(a) for a in session.scalars(stmt)]


@router.get("/alerts/{alert_id}", tags=["alerts"], responses=_answers(404))
def get_alert(alert_id: RowId, session: SessionDep, _key: ReaderKey) -> AlertOut:
    """One alert."""
    return AlertOut.model_validate(_alert(session, alert_id))


@router.get("/alerts/{alert_id}/history", tags=["alerts"], responses=_answers(404))
def alert_history(alert_id: RowId, session: SessionDep, _key: ReaderKey) -> list[HistoryOut]:
    """Everything that happened to an alert, oldest first."""
    _alert(session, alert_id)
    rows = session.scalars(select(History).where(History.alert == alert_id).order_by(History.id))
    return [HistoryOut.model_validate(h) for h in rows]


def _lifecycle_call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except lifecycle.LifecycleError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.post("/alerts/{alert_id}/acknowledge", tags=["alerts"], responses=_answers(404, 409))
def acknowledge(
    alert_id: RowId, body: AckBody, session: SessionDep, key: OperatorKey, rt: RuntimeDep
) -> AlertOut:
    """I am on it: stops escalation and re-notification (409 unless the alert is open)."""
    alert = _alert(session, alert_id, lock=True)
    now = datetime.now(UTC)
    _lifecycle_call(
        lambda: lifecycle.acknowledge(session, alert, by=_actor(key), comment_text=body.comment, now=now)
    )
    session.commit()
    rt.live.publish(alert.id)
    return AlertOut.model_validate(alert)


@router.post("/alerts/{alert_id}/resolve", tags=["alerts"], responses=_answers(404, 409))
def resolve(
    alert_id: RowId, body: AckBody, session: SessionDep, key: OperatorKey, rt: RuntimeDep
) -> AlertOut:
    """Resolve by hand; the people notified get a resolution notice (409 if already resolved)."""
    alert = _alert(session, alert_id, lock=True)
    now, url = datetime.now(UTC), rt.settings.alerts_public_url
    _lifecycle_call(
        lambda: lifecycle.resolve(
            session, alert, by=_actor(key), comment_text=body.comment, now=now, console_url=url
        )
    )
    session.commit()
    rt.live.publish(alert.id)
    return AlertOut.model_validate(alert)


@router.post(
    "/alerts/{alert_id}/comments",
    tags=["alerts"],
    status_code=status.HTTP_201_CREATED,
    responses=_answers(404),
)
def add_comment(
    alert_id: RowId, body: CommentBody, session: SessionDep, key: OperatorKey, rt: RuntimeDep
) -> HistoryOut:
    """Add a comment to the alert's history."""
    alert = _alert(session, alert_id, lock=True)
    lifecycle.comment(session, alert, by=_actor(key), text=body.text, now=datetime.now(UTC))
    session.commit()
    rt.live.publish(alert.id)
    entry = session.scalar(
        select(History).where(History.alert == alert.id).order_by(History.id.desc()).limit(1)
    )
    return HistoryOut.model_validate(entry)


class Summary(BaseModel):
    """Counts of active alerts by status and severity."""

    counts: dict[str, dict[str, int]]


@router.get("/summary", tags=["alerts"])
def summary(session: SessionDep, _key: ReaderKey) -> Summary:
    """Active alerts counted by status and severity."""
    rows = session.execute(
        select(Alert.status, Alert.severity, func.count())
        .where(Alert.status != "resolved")
        .group_by(Alert.status, Alert.severity)
    )
    counts: dict[str, dict[str, int]] = {}
    for st, sev, n in rows:
        counts.setdefault(st, {})[sev] = n
    return Summary(counts=counts)


# --- live stream ----------------------------------------------------------------------------


def _load(rt: Runtime, alert_id: RowId) -> str | None:
    with rt.sessions() as session:
        alert = session.get(Alert, alert_id)
        return None if alert is None else AlertOut.model_validate(alert).model_dump_json()


@router.get("/stream", tags=["alerts"], response_class=StreamingResponse)
async def stream(rt: RuntimeDep, request: Request, _key: ReaderKey) -> StreamingResponse:
    """Server-sent events: ``event: alert`` with the alert as JSON whenever one changes."""

    async def events() -> AsyncIterator[str]:
        async with rt.live.listen() as queue:
            yield "retry: 2000\nevent: hello\ndata: {}\n\n"
            while not await request.is_disconnected():
                try:
                    alert_id = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                data = await asyncio.to_thread(_load, rt, alert_id)
                if data is not None:
                    yield f"event: alert\ndata: {data}\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


# --- silences -------------------------------------------------------------------------------


class SilenceOut(BaseModel):
    """A silence."""

    id: int
    station_id: str | None
    device_id: str | None
    rule: str | None
    region: str | None
    starts_at: Utc
    ends_at: Utc
    reason: str
    created_by: str
    created_at: Utc

    model_config = {"from_attributes": True}


@router.get("/silences", tags=["silences"])
def list_silences(
    session: SessionDep,
    _key: ReaderKey,
    active: Annotated[bool, Query(description="only those in force now")] = False,
) -> list[SilenceOut]:
    """Silences, newest first."""
    stmt = select(Silence).order_by(Silence.id.desc())
    if active:
        now = datetime.now(UTC)
        stmt = stmt.where(Silence.starts_at <= now, Silence.ends_at > now)
    return [SilenceOut.model_validate(s) for s in session.scalars(stmt)]


@router.post("/silences", tags=["silences"], status_code=status.HTTP_201_CREATED)
def create_silence(body: SilenceIn, session: SessionDep, key: OperatorKey) -> SilenceOut:
    """Silence notifications (alerts are still recorded) by station, device, rule or region."""
    now = datetime.now(UTC)
    starts = body.starts_at or now
    if body.ends_at <= starts:
        raise invalid("ends_at", "must be after starts_at (default: now)")
    row = Silence(
        station_id=body.station_id,
        device_id=body.device_id,
        rule=body.rule,
        region=body.region,
        starts_at=starts,
        ends_at=body.ends_at,
        reason=body.reason,
        created_by=_actor(key),
    )
    session.add(row)
    session.commit()
    return SilenceOut.model_validate(row)


@router.delete("/silences/{silence_id}", tags=["silences"], responses=_answers(404))
def expire_silence(silence_id: RowId, session: SessionDep, _key: OperatorKey) -> SilenceOut:
    """End a silence now (it stays listed)."""
    row = session.get(Silence, silence_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"silence {silence_id} not found")
    now = datetime.now(UTC)
    row.ends_at = max(now, row.starts_at)
    session.commit()
    return SilenceOut.model_validate(row)


# --- contact groups and policies -------------------------------------------------------------


@router.get("/contact-groups", tags=["routing"])
def list_groups(session: SessionDep, _key: ReaderKey) -> list[ContactGroupIn]:
    """Contact groups."""
    rows = session.scalars(select(ContactGroup).order_by(ContactGroup.name))
    return [ContactGroupIn.model_validate({"name": g.name, "members": g.members}) for g in rows]


@router.put("/contact-groups/{name}", tags=["routing"])
def put_group(name: str, body: ContactGroupIn, session: SessionDep, _key: AdminKey) -> ContactGroupIn:
    """Create or replace a contact group (the name in the path and the body must agree)."""
    if body.name != name:
        raise invalid("name", f"body name {body.name!r} differs from the path's {name!r}")
    row = session.get(ContactGroup, name)
    members = [m.model_dump() for m in body.members]
    if row is None:
        session.add(ContactGroup(name=name, members=members))
    else:
        row.members = members
    session.commit()
    return body


@router.delete(
    "/contact-groups/{name}",
    tags=["routing"],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_answers(404, 409),
)
def delete_group(name: str, session: SessionDep, _key: AdminKey) -> None:
    """Delete a contact group no policy uses (409 otherwise)."""
    row = session.get(ContactGroup, name)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"contact group {name!r} not found")
    users = [p.name for p in session.scalars(select(Policy)) if name in p.groups]
    if users:
        raise HTTPException(status.HTTP_409_CONFLICT, f"contact group {name!r} is used by policies {users}")
    session.delete(row)
    session.commit()


class PolicyOut(PolicyIn):
    """A stored policy."""

    id: int


def _policy_out(p: Policy) -> PolicyOut:
    return PolicyOut.model_validate(
        {
            "id": p.id,
            "name": p.name,
            "priority": p.priority,
            "domain": p.domain,
            "min_severity": p.min_severity,
            "region": p.region,
            "basin": p.basin,
            "station_id": p.station_id,
            "rule": p.rule,
            "groups": p.groups,
            "ack_timeout_s": p.ack_timeout_s,
            "renotify_s": p.renotify_s,
            "notify_resolved": p.notify_resolved,
        }
    )


def _check_groups(session: Session, groups: list[str]) -> None:
    missing = [g for g in groups if session.get(ContactGroup, g) is None]
    if missing:
        raise invalid("groups", f"contact groups {missing} do not exist; create them first")


def _policy_fields(body: PolicyIn) -> dict[str, Any]:
    data = body.model_dump()
    data["min_severity"] = body.min_severity.value if body.min_severity is not None else None
    return data


@router.get("/policies", tags=["routing"])
def list_policies(session: SessionDep, _key: ReaderKey) -> list[PolicyOut]:
    """Policies in matching order (priority, then id)."""
    return [_policy_out(p) for p in session.scalars(select(Policy).order_by(Policy.priority, Policy.id))]


@router.post("/policies", tags=["routing"], status_code=status.HTTP_201_CREATED, responses=_answers(409))
def create_policy(body: PolicyIn, session: SessionDep, _key: AdminKey) -> PolicyOut:
    """A notification policy: the first (by priority) whose set matchers all match routes the alert."""
    _check_groups(session, body.groups)
    row = Policy(**_policy_fields(body))
    session.add(row)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, f"a policy named {body.name!r} exists") from exc
    return _policy_out(row)


@router.put("/policies/{policy_id}", tags=["routing"], responses=_answers(404, 409))
def replace_policy(policy_id: RowId, body: PolicyIn, session: SessionDep, _key: AdminKey) -> PolicyOut:
    """Replace a policy (alerts already routed keep their position in its escalation)."""
    row = session.get(Policy, policy_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"policy {policy_id} not found")
    _check_groups(session, body.groups)
    for field, value in _policy_fields(body).items():
        setattr(row, field, value)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, f"a policy named {body.name!r} exists") from exc
    return _policy_out(row)


@router.delete(
    "/policies/{policy_id}", tags=["routing"], status_code=status.HTTP_204_NO_CONTENT, responses=_answers(404)
)
def delete_policy(policy_id: RowId, session: SessionDep, _key: AdminKey) -> None:
    """Delete a policy; alerts it routed stop escalating."""
    row = session.get(Policy, policy_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"policy {policy_id} not found")
    session.delete(row)
    session.commit()


# --- outbox ---------------------------------------------------------------------------------


class OutboxOut(BaseModel):
    """A notification and its delivery state."""

    notification_id: str
    alert: int
    kind: str
    channel: str
    target: str
    group_name: str
    title: str
    status: str
    attempts: int
    last_error: str | None
    created_at: Utc
    sent_at: Utc | None
    next_attempt_at: Utc

    model_config = {"from_attributes": True}


@router.get("/notifications", tags=["notifications"])
def list_notifications(
    session: SessionDep,
    _key: ReaderKey,
    status_: Annotated[str | None, Query(alias="status", description="pending, sent or failed")] = None,
    alert: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[OutboxOut]:
    """The outbox, newest first: what was sent, what waits for a channel, what failed and why."""
    stmt = select(Outbox).order_by(Outbox.id.desc()).limit(limit)
    if status_ is not None:
        stmt = stmt.where(Outbox.status == status_)
    if alert is not None:
        stmt = stmt.where(Outbox.alert == alert)
    return [OutboxOut.model_validate(o) for o in session.scalars(stmt)]


# --- API keys -------------------------------------------------------------------------------


class ApiKeyOut(BaseModel):
    """A key (the token is only in the creation response)."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: Utc
    token: str | None = None

    model_config = {"from_attributes": True}


@router.get("/api-keys", tags=["keys"])
def list_keys(session: SessionDep, _key: AdminKey) -> list[ApiKeyOut]:
    """API keys (without tokens)."""
    return [ApiKeyOut.model_validate(k) for k in session.scalars(select(ApiKey).order_by(ApiKey.id))]


@router.post("/api-keys", tags=["keys"], status_code=status.HTTP_201_CREATED)
def create_api_key(body: ApiKeyIn, session: SessionDep, _key: AdminKey) -> ApiKeyOut:
    """A new key; its token is shown in this response only."""
    row, token = create_key(session, model=ApiKey, name=body.name, role=body.role, token_prefix=TOKEN_PREFIX)
    session.commit()
    return ApiKeyOut.model_validate(row).model_copy(update={"token": token})


@router.delete(
    "/api-keys/{key_id}", tags=["keys"], status_code=status.HTTP_204_NO_CONTENT, responses=_answers(404, 409)
)
def delete_api_key(key_id: RowId, session: SessionDep, key: AdminKey) -> None:
    """Revoke a key (not the one making the request)."""
    if key.id == key_id:
        raise HTTPException(status.HTTP_409_CONFLICT, "a key cannot revoke itself")
    row = session.get(ApiKey, key_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"API key {key_id} not found")
    session.delete(row)
    session.commit()
