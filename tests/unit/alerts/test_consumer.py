"""The event consumer's database step: a poisoned event in a batch is skipped with a reason,
the others are applied (on PostgreSQL a 300-character id is refused; SQLite stores it)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.consumer import EventConsumer
from alerts.models import Alert
from tests.unit.alerts.conftest import CONSOLE, event


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
