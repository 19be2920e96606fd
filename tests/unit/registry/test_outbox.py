"""The registry outbox and its relay, with an in-memory publisher that can be told Kafka is down.

Runs on SQLite and PostgreSQL (``registry_settings``). Through the real Kafka and the worker:
tests/integration/test_registry_outbox.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from devices import crud
from devices.db import make_engine, upgrade_head
from devices.main import create_app
from devices.models import OutboxEntry
from devices.publisher import MemoryRegistryPublisher
from devices.relay import OutboxRelay
from devices.schemas import DeviceCreate
from devices.settings import RegistrySettings
from stationflow.contracts import DeviceRecord
from tests.unit.registry.conftest import ADMIN_TOKEN

DEADLINE_S = 20.0
FAST = {
    "registry_outbox_retry_base_s": 0.05,
    "registry_outbox_retry_max_s": 0.2,
    "registry_topic_check_s": 0.2,
    "registry_reset_settle_s": 0.05,
    "registry_publish_wait_s": 10.0,
}
GAUGE = {"id": "st-g", "name": "Gauge", "kind": "gauge", "warning_level": 3.0}


@pytest.fixture
def relay_client(
    registry_settings: RegistrySettings, published: MemoryRegistryPublisher
) -> Iterator[TestClient]:
    """The app with a relay that retries and checks the topic every fraction of a second."""
    app = create_app(registry_settings.model_copy(update=FAST), publisher=published)
    with TestClient(app, headers={"X-API-Key": ADMIN_TOKEN}) as client:
        yield client


def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _outbox(client: TestClient) -> dict[str, object]:
    body: dict[str, object] = client.get("/health").json()["outbox"]
    return body


def _last(published: MemoryRegistryPublisher, device_id: str) -> DeviceRecord | None:
    return [record for key, record in published.sent if key == device_id][-1]


def test_changes_while_kafka_is_down_are_kept_and_published_in_order_when_it_returns(
    relay_client: TestClient, published: MemoryRegistryPublisher
) -> None:
    client = relay_client
    assert client.post("/stations", json=GAUGE).status_code == 201
    for device in ("dev-a", "dev-b", "dev-c"):
        assert client.post(
            "/devices", json={"id": device, "type": "level-gauge", "station_id": "st-g"}
        ).is_success
    # 2xx means Kafka acknowledged while it is up: the record is there when the answer comes.
    assert _last(published, "dev-c") is not None
    assert _outbox(client) == {"depth": 0, "oldest_age_s": None, "kafka": "ok", "last_error": None,
                               "failed_attempts": 0}  # fmt: skip

    published.fail = True
    started = time.monotonic()
    assert client.patch("/devices/dev-a", json={"status": "retired"}).status_code == 200
    _until(lambda: _outbox(client)["kafka"] == "unreachable", "relay noticed Kafka is down")
    # Once the relay knows Kafka is down, a change answers without waiting for it.
    assert client.patch(
        "/devices/dev-b", json={"calibration": {"level": {"scale": 1, "offset": 0.5}}}
    ).is_success
    assert client.patch(
        "/devices/dev-b", json={"calibration": {"level": {"scale": 1, "offset": 0.7}}}
    ).is_success
    assert client.delete("/devices/dev-c").status_code == 200
    assert client.patch("/stations/st-g", json={"warning_level": 3.2}).is_success
    assert time.monotonic() - started < FAST["registry_publish_wait_s"]
    down = _outbox(client)
    assert down["depth"] == 1 + 2 + 1 + 2  # one row per device per change, none lost
    assert isinstance(down["oldest_age_s"], float) and down["oldest_age_s"] >= 0
    assert "memory publisher told to fail" in str(down["last_error"])
    assert isinstance(down["failed_attempts"], int) and down["failed_attempts"] >= 1
    metrics = client.get("/metrics").text
    assert "stationflow_registry_outbox_depth 6.0" in metrics
    assert "stationflow_registry_kafka_up 0.0" in metrics

    sent_before = len(published.sent)
    published.fail = False
    _until(lambda: _outbox(client)["depth"] == 0, "outbox drained")
    assert _outbox(client)["kafka"] == "ok"  # reachable again before the rows were deleted
    after = published.sent[sent_before:]
    assert {key for key, _ in after} == {"dev-a", "dev-b", "dev-c"}
    a, b = _last(published, "dev-a"), _last(published, "dev-b")
    assert a is not None and a.status == "retired"
    assert b is not None and b.calibration["level"].offset == 0.7 and b.thresholds["warning_level"] == 3.2
    assert _last(published, "dev-c") is None  # the tombstone
    assert "stationflow_registry_kafka_up 1.0" in client.get("/metrics").text


def test_a_topic_lost_by_the_broker_is_filled_again_with_every_device(
    relay_client: TestClient, published: MemoryRegistryPublisher
) -> None:
    client = relay_client
    for device in ("dev-1", "dev-2"):
        assert client.post("/devices", json={"id": device, "type": "rain-gauge"}).is_success
    # A restarted in-memory broker: the topic is empty again.
    published.sent.clear()
    _until(lambda: {k for k, _ in published.sent} == {"dev-1", "dev-2"}, "full registry republished")
    assert all(record is not None for _, record in published.sent)
    assert "stationflow_registry_snapshots_total" in client.get("/metrics").text
    assert published.ensured >= 1  # the topic was created again (with its partitions) before refilling


def test_outbox_rows_commit_and_roll_back_with_the_change(
    registry_settings: RegistrySettings,
) -> None:
    engine = make_engine(registry_settings.database_url)
    try:
        upgrade_head(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        with sessions() as session:
            crud.queue_changes(session, device_ids=["x", "y", "x"])
            session.commit()
            rows = crud.outbox_batch(session, limit=10)
            assert [d for _, d in rows] == ["x", "y"]  # one row per device per change
            depth, oldest = crud.outbox_depth(session)
            assert depth == 2 and oldest is not None and oldest.tzinfo is not None
            crud.outbox_delete(session, row_ids=[rows[0][0]])
            assert list(session.scalars(select(OutboxEntry.device_id))) == ["y"]
            session.rollback()  # a rolled-back change leaves no row
            crud.queue_changes(session, device_ids=["z"])
            session.rollback()
            assert crud.outbox_depth(session)[0] == 1
    finally:
        engine.dispose()


class _LostTopicUnseen(MemoryRegistryPublisher):
    """A broker whose end offsets never show the loss: only the offsets of new records do."""

    async def end_offsets(self) -> dict[int, int] | None:
        return {0: 10**9}


def test_offsets_going_back_trigger_a_full_republication(registry_settings: RegistrySettings) -> None:
    engine = make_engine(registry_settings.database_url)
    upgrade_head(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions() as session:
        crud.seed_builtin_types(session)
        for device in ("d-1", "d-2", "d-3"):
            crud.upsert_device(session, device_id=device, data=DeviceCreate(id=device, type="rain-gauge"))
        session.commit()
    publisher = _LostTopicUnseen()

    async def scenario() -> None:
        relay = OutboxRelay(sessions, publisher, retry_base_s=0.01, check_s=60, settle_s=0)
        task = asyncio.create_task(relay.run())
        try:
            assert await relay.wait_published(10)  # the start snapshot: offsets 0..2
            publisher.sent.clear()  # the broker lost the topic
            with sessions() as session:
                crud.queue_changes(session, device_ids=["d-2"])
                session.commit()
            assert await relay.wait_published(10)  # d-2 acknowledged at offset 0: went back
            assert await relay.wait_published(10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
    assert [key for key, _ in publisher.sent] == ["d-2", "d-1", "d-2", "d-3"]
