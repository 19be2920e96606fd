"""The event consumer's database step: a poisoned event in a batch is skipped with a reason,
the others are applied (on PostgreSQL a 300-character id is refused; SQLite stores it)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels import Notification
from alerts.consumer import EventConsumer
from alerts.dispatcher import Dispatcher
from alerts.models import Alert, Outbox
from tests.unit.alerts.conftest import CONSOLE, add_routing, event


def _consumer(sessions: sessionmaker[Session]) -> EventConsumer:
    return EventConsumer(
        bootstrap="unused:9092",
        topic="alerts.events",
        group_id="g",
        sessions=sessions,
        console_url=CONSOLE,
        maintenance=lambda _device: False,
        on_change=lambda _alert: None,
    )


def _failed() -> float:
    return REGISTRY.get_sample_value("stationflow_alerts_events_total", {"result": "failed"}) or 0.0


def test_a_poisoned_event_does_not_stop_the_batch(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    poisoned = event(alert_id="x" * 300, device="d-poison")
    batch = [event(alert_id="a:1", device="d1"), poisoned, event(alert_id="a:2", device="d2")]
    before = _failed()
    with caplog.at_level(logging.ERROR, logger="alerts.consumer"):
        changed = _consumer(sessions).apply(batch)
    with sessions() as s:
        stored = set(s.scalars(select(Alert.alert_id)))
    assert {"a:1", "a:2"} <= stored
    postgres = sessions.kw["bind"].dialect.name == "postgresql"
    if postgres:
        assert len(changed) == 2 and poisoned.alert_id not in stored
        assert _failed() == before + 1
        assert "could not be applied, skipped alert_id=xxx" in caplog.text and "DataError" in caplog.text
    else:
        assert len(changed) == 3
    # applying the same batch again (a re-delivery) changes nothing
    assert _consumer(sessions).apply(batch[:1]) == []


class _Recorder:
    """A channel that records what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, note: Notification) -> None:
        self.sent.append(note)

    async def aclose(self) -> None:
        return None


def _dispatcher(sessions: sessionmaker[Session], channel: _Recorder) -> Dispatcher:
    return Dispatcher(
        sessions,
        {"webhook": channel},  # type: ignore[dict-item]
        retry_base_s=1,
        retry_max_s=10,
        max_attempts=3,
        send_timeout_s=5,
        concurrency=4,
    )


def test_handed_off_notifications_are_claimed_in_the_events_transaction_and_sent_once(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        add_routing(s)
    channel = _Recorder()
    dispatcher = _dispatcher(sessions, channel)

    async def scenario() -> tuple[list[Outbox], int, int]:
        handed: list[Outbox] = []
        consumer = _consumer(sessions)
        consumer.hand_off = (dispatcher.claim_s, handed.extend)
        before = datetime.now(UTC)
        consumer.apply([event(alert_id="a:1", device="d1")])
        rows, consumer._handed = consumer._handed, []
        assert [r.kind for r in rows] == ["raised"] and rows[0].id is not None
        # claimed by the event's own transaction: a dispatcher round leaves it alone
        with sessions() as s:
            stored = s.get(Outbox, rows[0].id)
            assert stored is not None and stored.status == "pending"
            due = stored.next_attempt_at.replace(tzinfo=stored.next_attempt_at.tzinfo or UTC)
            assert due >= before + timedelta(seconds=dispatcher.claim_s - 1)
        in_round = await dispatcher.run_once()
        dispatcher.dispatch(rows)
        while dispatcher._handed:
            await asyncio.sleep(0.01)
        return handed, in_round, len(channel.sent)

    _, in_round, sent = asyncio.run(scenario())
    assert in_round == 0 and sent == 1
    with sessions() as s:
        assert [(o.status, o.attempts) for o in s.scalars(select(Outbox))] == [("sent", 1)]
    assert channel.sent[0].kind == "raised"


def test_without_hand_off_the_dispatcher_round_sends_them(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
    channel = _Recorder()
    dispatcher = _dispatcher(sessions, channel)
    consumer = _consumer(sessions)
    consumer.apply([event(alert_id="a:1", device="d1")])
    assert consumer._handed == []
    assert asyncio.run(dispatcher.run_once()) == 1 and len(channel.sent) == 1


class _Stuck(_Recorder):
    """A channel whose sends never finish."""

    async def send(self, note: Notification) -> None:
        await asyncio.Event().wait()


def test_stopping_the_dispatcher_cancels_the_handed_off_sends(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        add_routing(s)
    dispatcher = _dispatcher(sessions, _Stuck())
    consumer = _consumer(sessions)
    consumer.hand_off = (dispatcher.claim_s, dispatcher.dispatch)
    consumer.apply([event(alert_id="a:1", device="d1")])

    async def scenario() -> bool:
        run = asyncio.create_task(dispatcher.run(tick_s=60))
        dispatcher.dispatch(consumer._handed)
        await asyncio.sleep(0.1)
        (send,) = dispatcher._handed
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        return send.cancelled()

    assert asyncio.run(scenario())
    with sessions() as s:  # not sent: still pending, claimed, and due again later
        assert [o.status for o in s.scalars(select(Outbox))] == ["pending"]
