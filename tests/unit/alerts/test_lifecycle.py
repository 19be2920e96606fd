"""Alert lifecycle on a real database: events, duplicates, escalation, acknowledgement,
silences, maintenance, re-notification and resolution notices, each checked through the
outbox rows that would be delivered."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts import metrics
from alerts.lifecycle import LifecycleError, acknowledge, apply_event, apply_sync, due_escalations, resolve
from alerts.main import _refresh_gauges
from alerts.models import Alert, History, Outbox, Silence
from stationflow.contracts import AlertEvent, AlertState, AlertSync, Severity
from tests.unit.alerts.conftest import CONSOLE, T0, add_routing, event


def _outbox(session: Session) -> list[tuple[str, str]]:
    return [(o.kind, o.group_name) for o in session.scalars(select(Outbox).order_by(Outbox.id))]


def test_a_raised_event_opens_an_alert_and_notifies_the_first_group(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
        applied = apply_event(s, event(), now=T0, console_url=CONSOLE)
        s.commit()
        assert applied.notifications == 1 and not applied.duplicate
        alert = s.scalars(select(Alert)).one()
        assert (alert.status, alert.severity, alert.escalation_level) == ("open", "moderate", 0)
        assert _outbox(s) == [("raised", "duty-1")]
        row = s.scalars(select(Outbox)).one()
        assert row.payload["alert_id"] == "flood.level:device:lvl-1" and row.payload["value"] == 12.0
        assert "水位" in row.body and "warning level" in row.body and f"{CONSOLE}/console#alert-" in row.body


def test_replayed_and_duplicate_events_change_nothing(sessions: sessionmaker[Session]) -> None:
    events = [event(), event(AlertState.UPDATED, seq=2, severity=Severity.MAJOR, value=13.0)]
    with sessions() as s:
        add_routing(s)
        for e in events:
            apply_event(s, e, now=T0, console_url=CONSOLE)
        s.commit()
        before = (_outbox(s), s.scalar(select(Alert.last_seq)), len(list(s.scalars(select(History)))))
        for e in events * 3:  # the consumer crashed before committing its offsets, three times
            assert apply_event(s, e, now=T0, console_url=CONSOLE).duplicate
        s.commit()
        after = (_outbox(s), s.scalar(select(Alert.last_seq)), len(list(s.scalars(select(History)))))
    assert before == after
    assert before[0] == [("raised", "duty-1"), ("updated", "duty-1")]


def test_a_late_older_event_is_recorded_but_does_not_roll_back(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        apply_event(
            s,
            event(AlertState.UPDATED, seq=3, severity=Severity.CRITICAL, value=14),
            now=T0,
            console_url=CONSOLE,
        )
        apply_event(
            s,
            event(AlertState.UPDATED, seq=2, severity=Severity.MAJOR, value=13),
            now=T0,
            console_url=CONSOLE,
        )
        s.commit()
        alert = s.scalars(select(Alert)).one()
        assert (alert.severity, alert.value, alert.last_seq) == ("critical", 14, 3)
        stale = [h.detail for h in s.scalars(select(History).where(History.what == "event"))]
        assert [d.get("stale", False) for d in stale] == [False, False, True]


def test_cleared_resolves_and_tells_everyone_who_was_notified(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s, ack_timeout_s=60)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        due_escalations(s, now=T0 + timedelta(seconds=61), console_url=CONSOLE)
        apply_event(
            s,
            event(AlertState.CLEARED, seq=2, value=11.5),
            now=T0 + timedelta(seconds=90),
            console_url=CONSOLE,
        )
        s.commit()
        alert = s.scalars(select(Alert)).one()
        assert (alert.status, alert.resolved_by) == ("resolved", "condition cleared")
        assert _outbox(s) == [
            ("raised", "duty-1"),
            ("escalated", "duty-2"),
            ("resolved", "duty-1"),
            ("resolved", "duty-2"),
        ]
        # nothing more happens to a resolved alert
        assert due_escalations(s, now=T0 + timedelta(hours=1), console_url=CONSOLE) == []


def test_escalation_fires_when_nobody_acknowledges_and_stops_at_acknowledgement(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        add_routing(s, groups=3, ack_timeout_s=300)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        s.commit()
        assert due_escalations(s, now=T0 + timedelta(seconds=299), console_url=CONSOLE) == []
        assert len(due_escalations(s, now=T0 + timedelta(seconds=300), console_url=CONSOLE)) == 1
        s.commit()
        alert = s.scalars(select(Alert)).one()
        assert alert.escalation_level == 1
        acknowledge(s, alert, by="officer Li", comment_text="on my way", now=T0 + timedelta(seconds=400))
        s.commit()
        assert due_escalations(s, now=T0 + timedelta(hours=2), console_url=CONSOLE) == []
        s.commit()
        assert _outbox(s) == [("raised", "duty-1"), ("escalated", "duty-2")]
        assert (alert.status, alert.acknowledged_by, alert.ack_comment) == (
            "acknowledged",
            "officer Li",
            "on my way",
        )
        with pytest.raises(LifecycleError):
            acknowledge(s, alert, by="someone", comment_text=None, now=T0)


def test_escalation_walks_every_group_then_stops(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s, groups=3, ack_timeout_s=60)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        for minutes in range(1, 10):
            due_escalations(s, now=T0 + timedelta(minutes=minutes, seconds=1), console_url=CONSOLE)
        s.commit()
        assert _outbox(s) == [("raised", "duty-1"), ("escalated", "duty-2"), ("escalated", "duty-3")]


def test_renotify_repeats_on_the_interval_while_open(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s, groups=1, renotify_s=600)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        for minutes in (5, 10, 15, 20):
            due_escalations(s, now=T0 + timedelta(minutes=minutes), console_url=CONSOLE)
            due_escalations(s, now=T0 + timedelta(minutes=minutes), console_url=CONSOLE)  # twice: no double
        s.commit()
        assert _outbox(s) == [("raised", "duty-1"), ("renotify", "duty-1"), ("renotify", "duty-1")]


def test_a_silence_suppresses_notifications_but_the_alert_is_recorded(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        add_routing(s)
        s.add(
            Silence(
                station_id="gauge-1",
                starts_at=T0 - timedelta(hours=1),
                ends_at=T0 + timedelta(hours=1),
                reason="sensor cleaning",
                created_by="ops",
            )
        )
        s.commit()
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        apply_event(
            s,
            event(alert_id="flood.level:device:other", device="other", station="gauge-2"),
            now=T0,
            console_url=CONSOLE,
        )
        s.commit()
        silenced, other = s.scalars(select(Alert).order_by(Alert.id)).all()
        assert (
            silenced.status == "open"
            and silenced.silenced_by is not None
            and silenced.silenced_by.startswith("silence:")
        )
        assert other.silenced_by is None
        assert [o.payload["device_id"] for o in s.scalars(select(Outbox))] == ["other"]


def test_a_silence_outside_its_window_does_not_apply(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
        s.add(
            Silence(
                rule="flood.*",
                starts_at=T0 + timedelta(hours=1),
                ends_at=T0 + timedelta(hours=2),
                reason="later",
                created_by="ops",
            )
        )
        s.commit()
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        s.commit()
        assert _outbox(s) == [("raised", "duty-1")]


def test_a_silence_created_later_stops_escalation_notices(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s, ack_timeout_s=60)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        s.add(
            Silence(
                region="445100",
                starts_at=T0,
                ends_at=T0 + timedelta(hours=1),
                reason="drill",
                created_by="ops",
            )
        )
        s.commit()
        due_escalations(s, now=T0 + timedelta(seconds=61), console_url=CONSOLE)
        s.commit()
        assert s.scalars(select(Alert)).one().escalation_level == 1  # recorded
        assert _outbox(s) == [("raised", "duty-1")]  # but nobody told


def test_a_device_in_maintenance_is_silenced_automatically(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
        apply_event(s, event(), now=T0, console_url=CONSOLE, maintenance=True)
        s.commit()
        assert s.scalars(select(Alert)).one().silenced_by == "maintenance"
        assert _outbox(s) == []


def test_unrouted_alerts_are_recorded_with_the_reason(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
        apply_event(s, event(severity=Severity.INFO), now=T0, console_url=CONSOLE)  # below min_severity
        s.commit()
        assert _outbox(s) == []
        assert [h.what for h in s.scalars(select(History))] == ["event", "unrouted"]


def test_resolving_by_hand_sends_the_notice_and_later_events_only_record(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        add_routing(s)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        alert = s.scalars(select(Alert)).one()
        resolve(
            s,
            alert,
            by="officer Wang",
            comment_text="false alarm: debris on sensor",
            now=T0,
            console_url=CONSOLE,
        )
        apply_event(s, event(AlertState.UPDATED, seq=2, severity=Severity.MAJOR), now=T0, console_url=CONSOLE)
        s.commit()
        assert (alert.status, alert.resolved_by, alert.last_seq) == ("resolved", "officer Wang", 2)
        assert _outbox(s) == [("raised", "duty-1"), ("resolved", "duty-1")]
        with pytest.raises(LifecycleError):
            resolve(s, alert, by="x", comment_text=None, now=T0, console_url=CONSOLE)


def test_a_new_occurrence_after_clearing_is_a_new_alert(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        apply_event(s, event(AlertState.CLEARED, seq=2), now=T0, console_url=CONSOLE)
        again = event().model_copy(
            update={"raised_at": T0 + timedelta(hours=3), "observed_at": T0 + timedelta(hours=3)}
        )
        apply_event(s, again, now=T0, console_url=CONSOLE)
        s.commit()
        assert [a.status for a in s.scalars(select(Alert).order_by(Alert.id))] == ["resolved", "open"]
        assert [k for k, _ in _outbox(s)] == ["raised", "resolved", "raised"]


def test_an_alert_still_open_when_its_silence_ends_is_routed_then(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
        s.add(
            Silence(
                station_id="gauge-1",
                starts_at=T0,
                ends_at=T0 + timedelta(hours=1),
                reason="works",
                created_by="ops",
            )
        )
        s.commit()
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        assert due_escalations(s, now=T0 + timedelta(minutes=30), console_url=CONSOLE) == []
        s.commit()
        assert _outbox(s) == []
        (alert,) = due_escalations(s, now=T0 + timedelta(hours=1, seconds=1), console_url=CONSOLE)
        s.commit()
        assert alert.silenced_by is None and _outbox(s) == [("raised", "duty-1")]
        whats = [h.what for h in s.scalars(select(History).order_by(History.id))]
        assert whats == ["event", "silenced", "silence_ended", "notified"]
        # and from then on it escalates like any other
        assert due_escalations(s, now=T0 + timedelta(hours=1, minutes=11), console_url=CONSOLE)
        s.commit()
        assert _outbox(s)[-1] == ("escalated", "duty-2")


def test_an_alert_of_a_device_back_from_maintenance_is_routed(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
        apply_event(s, event(), now=T0, console_url=CONSOLE, maintenance=True)
        s.commit()
        in_maintenance = {"lvl-1"}
        assert (
            due_escalations(s, now=T0, console_url=CONSOLE, maintenance=lambda d: d in in_maintenance) == []
        )
        in_maintenance.clear()
        assert (
            len(due_escalations(s, now=T0, console_url=CONSOLE, maintenance=lambda d: d in in_maintenance))
            == 1
        )
        s.commit()
        assert _outbox(s) == [("raised", "duty-1")]
        # a resolved silenced alert is left alone
        apply_event(s, event(AlertState.CLEARED, seq=2), now=T0, console_url=CONSOLE)
        s.commit()


def test_a_time_with_a_utc_offset_keeps_its_instant(sessions: sessionmaker[Session]) -> None:
    """A silence entered in China time (+08:00) covers the right hours on every backend."""
    from datetime import timezone

    cst = timezone(timedelta(hours=8))
    with sessions() as s:
        row = Silence(
            station_id="gauge-1",
            starts_at=T0.astimezone(cst),
            ends_at=(T0 + timedelta(hours=1)).astimezone(cst),
            reason="works",
            created_by="ops",
        )
        s.add(row)
        s.commit()
        silence_id = row.id
    with sessions() as s:
        stored = s.get(Silence, silence_id)
        assert stored is not None and stored.starts_at == T0 and stored.starts_at.utcoffset() == timedelta(0)
        add_routing(s)
        apply_event(s, event(at=timedelta(minutes=30)), now=T0 + timedelta(minutes=30), console_url=CONSOLE)
        s.commit()
        assert _outbox(s) == []  # silenced: the silence is in force at T0 + 30 min


def _reraised(
    hours: int,
    state: AlertState = AlertState.RAISED,
    seq: int = 1,
    severity: Severity = Severity.MODERATE,
    value: float = 12.0,
) -> AlertEvent:
    """An event of a new occurrence ``hours`` after T0 (the analytics lost the first one)."""
    later = T0 + timedelta(hours=hours)
    first = event(state, seq=seq, severity=severity, value=value)
    return first.model_copy(update={"raised_at": later, "observed_at": later})


def test_a_raise_for_an_alert_still_open_updates_it_instead_of_opening_a_second(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        add_routing(s)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        # the analytics lost their state (whole stack killed) and see the condition anew
        again = _reraised(2, value=12.5)
        apply_event(s, again, now=T0, console_url=CONSOLE)
        apply_event(
            s,
            _reraised(2, AlertState.UPDATED, seq=2, severity=Severity.MAJOR, value=13.0),
            now=T0,
            console_url=CONSOLE,
        )
        s.commit()
        alert = s.scalars(select(Alert)).one()
        assert (alert.status, alert.severity, alert.value, alert.last_seq) == ("open", "major", 13.0, 2)
        assert alert.raised_at == again.raised_at
        adopted = s.scalars(select(History).where(History.what == "occurrence_adopted")).one()
        assert adopted.detail["previous_raised_at"] == T0.isoformat()
        # notified once when raised, once for the severity change; never a second "raised"
        assert _outbox(s) == [("raised", "duty-1"), ("updated", "duty-1")]
        # re-delivery of the adopting event is a duplicate
        assert apply_event(s, again, now=T0, console_url=CONSOLE).duplicate


def test_a_clear_of_an_unseen_occurrence_resolves_the_open_alert_of_that_condition(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        add_routing(s)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        apply_event(s, _reraised(1, AlertState.CLEARED, seq=3), now=T0, console_url=CONSOLE)
        s.commit()
        alert = s.scalars(select(Alert)).one()
        assert (alert.status, alert.resolved_by) == ("resolved", "condition cleared")
        assert [k for k, _ in _outbox(s)] == ["raised", "resolved"]
        # a later occurrence after the resolution is a new alert again
        apply_event(s, _reraised(5), now=T0, console_url=CONSOLE)
        s.commit()
        assert [a.status for a in s.scalars(select(Alert).order_by(Alert.id))] == ["resolved", "open"]


def test_a_sync_resolves_open_alerts_the_analytics_no_longer_hold_and_keeps_the_held(
    sessions: sessionmaker[Session],
) -> None:
    grace = timedelta(seconds=30)
    with sessions() as s:
        add_routing(s)
        apply_event(s, event(), now=T0, console_url=CONSOLE)  # held: listed in the sync
        apply_event(
            s, event(rule="flood.rise", alert_id="flood.rise:device:lvl-1"), now=T0, console_url=CONSOLE
        )
        other = event(alert_id="flood.level:device:lvl-2", device="lvl-2")
        apply_event(s, other, now=T0, console_url=CONSOLE)  # a subject the sync does not list
        recent = event(alert_id="nodata:device:lvl-1", rule="nodata")
        apply_event(s, recent, now=T0 + timedelta(minutes=1) - timedelta(seconds=5), console_url=CONSOLE)
        s.commit()
        sync = AlertSync(
            subjects={"device:lvl-1": ["flood.level:device:lvl-1"]}, at=T0 + timedelta(minutes=1)
        )
        resolved = apply_sync(s, sync, now=T0 + timedelta(minutes=1), console_url=CONSOLE, grace=grace)
        s.commit()
        assert [a.alert_id for a in resolved] == ["flood.rise:device:lvl-1"]
        status = {a.alert_id: (a.status, a.resolved_by) for a in s.scalars(select(Alert))}
        assert status == {
            "flood.level:device:lvl-1": ("open", None),
            "flood.rise:device:lvl-1": ("resolved", "reconciled"),
            "flood.level:device:lvl-2": ("open", None),
            # applied 5 s before the snapshot: it may not have been in the analytics' table yet
            "nodata:device:lvl-1": ("open", None),
        }
        reconciled = s.scalars(select(History).where(History.what == "reconciled")).one()
        assert "no longer hold" in reconciled.detail["reason"]
        # the people told of it are told it is resolved
        assert ("resolved", "duty-1") in _outbox(s)
        # the same snapshot again changes nothing
        assert apply_sync(s, sync, now=T0 + timedelta(minutes=2), console_url=CONSOLE, grace=grace) == []


def test_the_tick_counts_the_outbox_for_its_gauge(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        s.commit()
    _refresh_gauges(sessions)
    assert metrics.OUTBOX_DEPTH._value.get() == 1  # one webhook row waiting
    with sessions() as s:
        s.scalars(select(Outbox)).one().status = "sent"
        s.commit()
    _refresh_gauges(sessions)
    assert metrics.OUTBOX_DEPTH._value.get() == 0
