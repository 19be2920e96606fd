"""The alert service's consumer asks the broker for short fetch waits (on Tansu an event
reaching an idle consumer waits up to half of ``fetch_max_wait_ms``)."""

from __future__ import annotations

from alerts.consumer import EventConsumer
from alerts.settings import AlertsSettings
from stationflow.kafka import FETCH_MAX_WAIT_MS


def _consumer(**kwargs: int) -> EventConsumer:
    return EventConsumer(
        bootstrap="127.0.0.1:1",
        topic="alerts.events",
        group_id="g",
        sessions=None,  # type: ignore[arg-type]  # not used by kafka_consumer()
        console_url="http://duty.example",
        maintenance=lambda _device: False,
        on_change=lambda _alert: None,
        sync_topic="alerts.sync",
        **kwargs,
    )


async def test_the_event_consumer_uses_the_configured_fetch_wait() -> None:
    consumer = _consumer(fetch_max_wait_ms=40).kafka_consumer()
    try:
        assert consumer._fetch_max_wait_ms == 40
        assert consumer._group_id == "g"
        assert consumer._enable_auto_commit is False  # offsets only after the database commit
    finally:
        await consumer.stop()


async def test_the_default_is_short_and_is_the_setting_default() -> None:
    assert FETCH_MAX_WAIT_MS <= 100
    assert AlertsSettings().alerts_fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    consumer = _consumer().kafka_consumer()
    try:
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    finally:
        await consumer.stop()
