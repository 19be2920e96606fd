"""Alert lifecycle on the database: events in, acknowledgement, resolution, escalation.

Every function takes a session and commits nothing: the caller commits once, so the alert's
new state, its history entry and the notifications it causes (outbox rows) land together
or not at all. Re-applying an event that was already applied (same ``alert_id``,
``raised_at`` and ``seq``) changes nothing, because its history ``event_key`` is unique.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.models import Alert, ContactGroup, History, Outbox, Policy, Silence
from alerts.routing import AlertView, PolicyView, SilenceView, active_silence, match_policy, render
from stationflow.contracts import AlertEvent, AlertState, AlertSync

__all__ = [
    "HAND_OFF",
    "Applied",
    "HandOff",
    "LifecycleError",
    "acknowledge",
    "apply_event",
    "apply_sync",
    "comment",
    "due_escalations",
    "resolve",
    "view",
]

TREND_POINTS = 60

logger = logging.getLogger(__name__)


class LifecycleError(Exception):
    """A request that does not fit the alert's state (e.g. acknowledging a resolved alert)."""


HAND_OFF = "stationflow.alerts.hand_off"
"""``Session.info`` key of a :class:`HandOff`: the session's caller sends its notifications."""


@dataclass(slots=True)
class HandOff:
    """Outbox rows a session queued already claimed until ``claim_until``, for its caller to
    send right after the commit (the event consumer): no dispatcher round, no claim
    transaction between an alert stored and its notifications sent. A row whose send never
    happened (the service stopped) is due at ``claim_until`` and goes out as any other."""

    claim_until: datetime
    rows: list[Outbox] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one event did."""

    alert: Alert | None
    duplicate: bool
    notifications: int


def view(alert: Alert) -> AlertView:
    """The routing view of an alert row."""
    return AlertView(
        id=alert.id,
        alert_id=alert.alert_id,
        severity=alert.severity,
        rule=alert.rule,
        domain=alert.domain,
        station_id=alert.station_id,
        device_id=alert.device_id,
        region=alert.region,
        basin=alert.basin,
        metric=alert.metric,
        value=alert.value,
        threshold=alert.threshold,
        explanation=alert.explanation,
        explanation_zh=alert.explanation_zh,
        status=alert.status,
        raised_at=alert.raised_at,
        observed_at=alert.observed_at,
    )


def _policies(session: Session) -> list[PolicyView]:
    return [
        PolicyView(
            id=p.id,
            name=p.name,
            priority=p.priority,
            domain=p.domain,
            min_severity=p.min_severity,
            region=p.region,
            basin=p.basin,
            station_id=p.station_id,
            rule=p.rule,
            groups=list(p.groups),
        )
        for p in session.scalars(select(Policy))
    ]


def _silences(session: Session, now: datetime) -> list[SilenceView]:
    rows = session.scalars(select(Silence).where(Silence.ends_at > now))
    return [
        SilenceView(
            id=s.id,
            station_id=s.station_id,
            device_id=s.device_id,
            rule=s.rule,
            region=s.region,
            starts_at=s.starts_at,
            ends_at=s.ends_at,
        )
        for s in rows
    ]


def _history(
    session: Session, alert: Alert, what: str, actor: str, detail: dict[str, Any], key: str | None = None
) -> None:
    session.add(History(alert=alert.id, what=what, actor=actor, detail=detail, event_key=key))


def _silenced(session: Session, alert: Alert, now: datetime, maintenance: bool) -> str | None:
    if maintenance:
        return "maintenance"
    silence = active_silence(view(alert), _silences(session, now), now)
    return f"silence:{silence.id}" if silence is not None else None


def _enqueue(
    session: Session,
    alert: Alert,
    kind: str,
    group: str,
    *,
    round_key: str,
    console_url: str,
    level: int = 0,
) -> int:
    """Outbox rows for every member of ``group``; one per (alert, kind, round, recipient)."""
    contacts = session.get(ContactGroup, group)
    if contacts is None:
        _history(
            session, alert, "routing_error", "system", {"reason": f"contact group {group!r} does not exist"}
        )
        return 0
    title, title_zh, body, payload = render(view(alert), kind, console_url=console_url, level=level)
    added = 0
    for member in contacts.members:
        channel, target = member.get("channel", ""), member.get("target", "")
        key = f"{alert.id}|{kind}|{round_key}|{group}|{channel}|{target}"
        if session.scalar(select(Outbox.id).where(Outbox.dedupe_key == key)) is not None:
            continue
        notification_id = uuid.uuid5(uuid.NAMESPACE_URL, f"stationflow:{key}").hex
        row = Outbox(
            notification_id=notification_id,
            dedupe_key=key,
            alert=alert.id,
            kind=kind,
            channel=channel,
            target=target,
            group_name=group,
            title=title,
            title_zh=title_zh,
            body=body,
            payload={**payload, "notification_id": notification_id, "group": group},
            event_observed_at=alert.observed_at,
        )
        hand_off = session.info.get(HAND_OFF)
        if isinstance(hand_off, HandOff):
            row.next_attempt_at = hand_off.claim_until
            hand_off.rows.append(row)
        session.add(row)
        added += 1
    if added:
        _history(session, alert, "notified", "system", {"kind": kind, "group": group, "recipients": added})
    return added


def apply_event(
    session: Session,
    event: AlertEvent,
    *,
    now: datetime,
    console_url: str,
    maintenance: bool = False,
) -> Applied:
    """Apply one alert event; return the alert row (None if the event changes nothing)."""
    key = f"{event.alert_id}|{event.raised_at.isoformat()}|{event.seq}"
    if session.scalar(select(History.id).where(History.event_key == key)) is not None:
        return Applied(None, True, 0)
    alert = session.scalar(
        select(Alert).where(Alert.alert_id == event.alert_id, Alert.raised_at == event.raised_at)
    )
    if alert is None:
        alert = _adopt_open(session, event)
    if alert is None:
        if event.state is AlertState.CLEARED:
            # the occurrence was never seen open (e.g. raised before this service existed):
            # nothing to resolve, but keep the record
            alert = _new_alert(event, now)
            alert.status, alert.resolved_at, alert.resolved_by = "resolved", now, "condition cleared"
            session.add(alert)
            session.flush()
            _history(session, alert, "event", "pipeline", _event_detail(event), key)
            return Applied(alert, False, 0)
        alert = _new_alert(event, now)
        session.add(alert)
        session.flush()
        _history(session, alert, "event", "pipeline", _event_detail(event), key)
        return Applied(alert, False, _route_new(session, alert, now, console_url, maintenance))
    if event.seq <= alert.last_seq:
        # an older event of this occurrence, delivered late: history only
        _history(session, alert, "event", "pipeline", {**_event_detail(event), "stale": True}, key)
        return Applied(alert, False, 0)
    _history(session, alert, "event", "pipeline", _event_detail(event), key)
    before = alert.severity
    _update_from(alert, event, now)
    if alert.status == "resolved":
        return Applied(alert, False, 0)  # resolved by hand: later events are recorded only
    added = 0
    if event.state is AlertState.CLEARED:
        alert.status, alert.resolved_at, alert.resolved_by = "resolved", now, "condition cleared"
        alert.next_escalation_at = alert.next_renotify_at = None
        added = _notify_resolved(session, alert, console_url)
    elif event.severity.value != before and not alert.silenced_by:
        policy = session.get(Policy, alert.policy_id) if alert.policy_id else None
        if policy is None:  # a severity change may now match a policy
            return Applied(alert, False, _route_new(session, alert, now, console_url, maintenance))
        group = policy.groups[min(alert.escalation_level, len(policy.groups) - 1)]
        added = _enqueue(
            session,
            alert,
            "updated",
            group,
            round_key=f"seq{event.seq}",
            console_url=console_url,
            level=alert.escalation_level,
        )
    return Applied(alert, False, added)


def _adopt_open(session: Session, event: AlertEvent) -> Alert | None:
    """The still-open alert of ``event.alert_id`` when the event names another occurrence.

    The analytics lost the rule's state (a crash of the whole stack: the archived state is
    a few seconds old, or gone) and announce the condition as a new occurrence. The open
    alert is that same condition: it takes over the new occurrence (``raised_at`` and
    ``seq``), so its later events update it and its clearing resolves it; no second alert.
    """
    alert = session.scalar(
        select(Alert)
        .where(Alert.alert_id == event.alert_id, Alert.status != "resolved")
        .order_by(Alert.id.desc())
        .limit(1)
    )
    if alert is None:
        return None
    previous = alert.raised_at
    _history(
        session,
        alert,
        "occurrence_adopted",
        "pipeline",
        {"previous_raised_at": previous.isoformat(), "raised_at": event.raised_at.isoformat()},
    )
    alert.raised_at = event.raised_at
    alert.last_seq = 0  # the new occurrence's events all count, from its seq 1
    logger.warning(
        "open alert takes over a new occurrence alert_id=%s station=%s device=%s state=%s "
        "previous_raised_at=%s raised_at=%s reason=analytics state lost",
        event.alert_id,
        event.station_id,
        event.device_id,
        event.state.value,
        previous.isoformat(),
        event.raised_at.isoformat(),
    )
    return alert


def apply_sync(
    session: Session, sync: AlertSync, *, now: datetime, console_url: str, grace: timedelta
) -> list[Alert]:
    """Resolve the open alerts of the listed subjects the analytics no longer hold raised.

    Only alerts untouched since ``grace`` before the snapshot: an event on its way while the
    snapshot was taken (other partition, other worker) must not be overtaken. Returns the
    alerts resolved.
    """
    if not sync.subjects:
        return []
    cutoff = sync.at - grace
    rows = session.scalars(
        select(Alert)
        .where(
            Alert.status != "resolved",
            Alert.subject.in_(list(sync.subjects)),
            Alert.updated_at < cutoff,
            Alert.opened_at < cutoff,
        )
        .with_for_update(skip_locked=True)
    )
    resolved: list[Alert] = []
    for alert in rows:
        if alert.alert_id in sync.subjects[alert.subject]:
            continue
        alert.status, alert.resolved_at, alert.resolved_by = "resolved", now, "reconciled"
        alert.next_escalation_at = alert.next_renotify_at = None
        alert.updated_at = now
        reason = "the analytics no longer hold this condition raised (their state was lost)"
        _history(session, alert, "reconciled", "system", {"sync_at": sync.at.isoformat(), "reason": reason})
        _notify_resolved(session, alert, console_url)
        logger.warning(
            "open alert resolved by reconciliation alert_id=%s station=%s device=%s reason=%s",
            alert.alert_id,
            alert.station_id,
            alert.device_id,
            reason,
        )
        resolved.append(alert)
    return resolved


def _event_detail(event: AlertEvent) -> dict[str, Any]:
    return {
        "state": event.state.value,
        "seq": event.seq,
        "severity": event.severity.value,
        "value": event.value,
        "threshold": event.threshold,
        "observed_at": event.observed_at.isoformat(),
        "explanation": event.explanation,
    }


def _new_alert(event: AlertEvent, now: datetime) -> Alert:
    alert = Alert(
        alert_id=event.alert_id,
        raised_at=event.raised_at,
        status="open",
        condition=event.state.value,
        severity=event.severity.value,
        rule=event.rule,
        kind=event.kind,
        domain=event.domain,
        subject=event.subject,
        station_id=event.station_id,
        device_id=event.device_id,
        region=event.region,
        basin=event.basin,
        metric=event.metric,
        value=event.value,
        threshold=event.threshold,
        window=event.window,
        explanation=event.explanation,
        explanation_zh=event.explanation_zh,
        last_seq=event.seq,
        observed_at=event.observed_at,
        opened_at=now,
        updated_at=now,
        escalation_level=0,
        trend=[],
    )
    _add_trend(alert, event)
    return alert


def _add_trend(alert: Alert, event: AlertEvent) -> None:
    if event.value is not None:
        alert.trend = [*list(alert.trend or []), [event.observed_at.isoformat(), event.value]][-TREND_POINTS:]


def _update_from(alert: Alert, event: AlertEvent, now: datetime) -> None:
    alert.last_seq = event.seq
    alert.condition = event.state.value
    if event.state is not AlertState.CLEARED:
        alert.severity = event.severity.value
        alert.threshold = event.threshold
        alert.explanation, alert.explanation_zh = event.explanation, event.explanation_zh
    alert.value = event.value
    alert.observed_at = event.observed_at
    alert.updated_at = now
    _add_trend(alert, event)


def _route_new(session: Session, alert: Alert, now: datetime, console_url: str, maintenance: bool) -> int:
    silenced = _silenced(session, alert, now, maintenance)
    if silenced is not None:
        alert.silenced_by = silenced
        _history(session, alert, "silenced", "system", {"by": silenced})
        return 0
    policy = match_policy(view(alert), _policies(session))
    if policy is None or not policy.groups:
        _history(session, alert, "unrouted", "system", {"reason": "no notification policy matches"})
        return 0
    row = session.get(Policy, policy.id)
    assert row is not None  # noqa: S101 - just listed
    alert.policy_id = policy.id
    alert.escalation_level = 0
    alert.next_escalation_at = now + timedelta(seconds=row.ack_timeout_s) if len(policy.groups) > 1 else None
    alert.next_renotify_at = now + timedelta(seconds=row.renotify_s) if row.renotify_s else None
    return _enqueue(session, alert, "raised", policy.groups[0], round_key="0", console_url=console_url)


def _notify_resolved(session: Session, alert: Alert, console_url: str) -> int:
    if alert.silenced_by or not alert.policy_id:
        return 0
    policy = session.get(Policy, alert.policy_id)
    if policy is None or not policy.notify_resolved:
        return 0
    added = 0
    for group in policy.groups[: alert.escalation_level + 1]:  # everyone who was told
        added += _enqueue(session, alert, "resolved", group, round_key="0", console_url=console_url)
    return added


def acknowledge(session: Session, alert: Alert, *, by: str, comment_text: str | None, now: datetime) -> None:
    """open → acknowledged; stops escalation and re-notification."""
    if alert.status != "open":
        raise LifecycleError(f"alert {alert.id} is {alert.status}; only an open alert can be acknowledged")
    alert.status = "acknowledged"
    alert.acknowledged_at, alert.acknowledged_by, alert.ack_comment = now, by, comment_text
    alert.next_escalation_at = alert.next_renotify_at = None
    alert.updated_at = now
    _history(session, alert, "acknowledged", by, {"comment": comment_text})


def resolve(
    session: Session, alert: Alert, *, by: str, comment_text: str | None, now: datetime, console_url: str
) -> int:
    """open/acknowledged → resolved by hand; sends the resolution notice."""
    if alert.status == "resolved":
        raise LifecycleError(f"alert {alert.id} is already resolved")
    alert.status, alert.resolved_at, alert.resolved_by = "resolved", now, by
    alert.next_escalation_at = alert.next_renotify_at = None
    alert.updated_at = now
    _history(session, alert, "resolved", by, {"comment": comment_text})
    return _notify_resolved(session, alert, console_url)


def comment(session: Session, alert: Alert, *, by: str, text: str, now: datetime) -> None:
    """Add a comment to the alert's history."""
    alert.updated_at = now
    _history(session, alert, "comment", by, {"text": text})


def _unsilence(
    session: Session, now: datetime, console_url: str, maintenance: Callable[[str | None], bool]
) -> list[Alert]:
    rows = session.scalars(
        select(Alert)
        .where(Alert.status == "open", Alert.silenced_by.is_not(None), Alert.policy_id.is_(None))
        .with_for_update(skip_locked=True)
    )
    changed: list[Alert] = []
    for alert in rows:
        if _silenced(session, alert, now, maintenance(alert.device_id)) is not None:
            continue
        _history(session, alert, "silence_ended", "system", {"was": alert.silenced_by})
        alert.silenced_by = None
        alert.updated_at = now
        _route_new(session, alert, now, console_url, maintenance=False)
        changed.append(alert)
    return changed


def due_escalations(
    session: Session,
    *,
    now: datetime,
    console_url: str,
    maintenance: Callable[[str | None], bool] = lambda _device: False,
) -> list[Alert]:
    """Escalate unacknowledged alerts past their deadline; re-notify those due. Return the changed.

    While a silence covers an alert (created after it was raised, or its device now in
    maintenance) it still escalates in its record, but nobody is notified. An alert that was
    silenced when raised and is still open when its silence ends (or its device leaves
    maintenance) is routed then, as if just raised: the people on duty learn of it.
    """
    changed: list[Alert] = _unsilence(session, now, console_url, maintenance)
    rows = session.scalars(
        select(Alert)
        .where(Alert.status == "open", Alert.next_escalation_at.is_not(None), Alert.next_escalation_at <= now)
        .with_for_update(skip_locked=True)
    )
    for alert in rows:
        policy = session.get(Policy, alert.policy_id) if alert.policy_id else None
        if policy is None or alert.escalation_level + 1 >= len(policy.groups):
            alert.next_escalation_at = None
            continue
        alert.escalation_level += 1
        level = alert.escalation_level
        alert.next_escalation_at = (
            now + timedelta(seconds=policy.ack_timeout_s) if level + 1 < len(policy.groups) else None
        )
        _history(session, alert, "escalated", "system", {"level": level, "group": policy.groups[level]})
        changed.append(alert)
        if _silenced(session, alert, now, maintenance(alert.device_id)) is None:
            _enqueue(
                session,
                alert,
                "escalated",
                policy.groups[level],
                round_key=str(level),
                console_url=console_url,
                level=level,
            )
    rows = session.scalars(
        select(Alert)
        .where(Alert.status == "open", Alert.next_renotify_at.is_not(None), Alert.next_renotify_at <= now)
        .with_for_update(skip_locked=True)
    )
    for alert in rows:
        policy = session.get(Policy, alert.policy_id) if alert.policy_id else None
        if policy is None or not policy.renotify_s:
            alert.next_renotify_at = None
            continue
        due = alert.next_renotify_at or now
        alert.next_renotify_at = now + timedelta(seconds=policy.renotify_s)
        changed.append(alert)
        if _silenced(session, alert, now, maintenance(alert.device_id)) is None:
            group = policy.groups[min(alert.escalation_level, len(policy.groups) - 1)]
            _enqueue(
                session,
                alert,
                "renotify",
                group,
                round_key=due.isoformat(),
                console_url=console_url,
                level=alert.escalation_level,
            )
    return changed
