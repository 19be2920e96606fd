"""The worker's Faust consumer lets the broker hold an empty fetch only ``analytics_fetch_max_wait_ms``
(Faust hard-codes 1500 ms; on Tansu an idle consumer saw a record up to half of that late)."""

from __future__ import annotations

from pathlib import Path

from streams.app import create_app
from streams.settings import StreamsSettings


async def test_the_faust_consumer_fetches_with_the_configured_max_wait(tmp_path: Path) -> None:
    settings = StreamsSettings(
        state_dir=tmp_path,
        kafka_bootstrap="127.0.0.1:1",  # never contacted: the consumer is built, not started
        streams_registry=False,
        analytics_fetch_max_wait_ms=37,
    )
    app = create_app(settings)
    app.finalize()
    thread = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == 37
        assert consumer._group_id == settings.streams_app_id  # still Faust's own group member
    finally:
        await consumer.stop()


def test_the_tables_standby_replicas_are_a_setting(tmp_path: Path) -> None:
    base = {"state_dir": tmp_path, "kafka_bootstrap": "127.0.0.1:1", "streams_registry": False}
    # off unless asked (Faust's own default is 1): a standby doubled the analytics' CPU
    assert create_app(StreamsSettings(**base)).conf.table_standby_replicas == 0
    app = create_app(StreamsSettings(**base, analytics_standby_replicas=1))
    assert app.conf.table_standby_replicas == 1


async def test_every_worker_uses_faust_s_assignor_even_without_tables(tmp_path: Path) -> None:
    """A raw-stage-only worker (no tables) with no standby replicas: Faust would give it a
    round-robin assignor, and the group would refuse the analytics worker beside it."""
    settings = StreamsSettings(
        state_dir=tmp_path,
        kafka_bootstrap="127.0.0.1:1",  # never contacted: the consumer is built, not started
        streams_registry=False,
        analytics_enabled=False,
        analytics_standby_replicas=0,
    )
    app = create_app(settings)
    app.finalize()
    assert not app.tables.changelog_topics
    thread = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert list(consumer._partition_assignment_strategy) == [app.assignor]
        assert thread._assignor is app.assignor
    finally:
        await consumer.stop()
