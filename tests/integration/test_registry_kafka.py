"""The registry against a real Kafka (Tansu): published records, tombstones, snapshot, device status."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi.testclient import TestClient

from devices.main import create_app
from devices.settings import RegistrySettings
from stationflow import topics
from stationflow.contracts import DeadLetter, DeviceRecord, Reading, ReadingBatch, utcnow
from stationflow.stack import Component

ADMIN = {"X-API-Key": "integration-admin"}
DEADLINE_S = 30.0


def _settings(tansu: Component, topic_prefix: str, tmp_path: Path) -> RegistrySettings:
    return RegistrySettings(
        kafka_bootstrap=tansu.url,
        topic_prefix=topic_prefix,
        topic_partitions=2,
        state_dir=tmp_path,
        registry_admin_key=ADMIN["X-API-Key"],  # type: ignore[arg-type]
        registry_group_id=f"{topic_prefix}registry",
    )


async def _read_registry(settings: RegistrySettings, want: int) -> list[tuple[str, DeviceRecord | None]]:
    consumer = AIOKafkaConsumer(
        settings.topic(topics.REGISTRY),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[tuple[str, DeviceRecord | None]] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(out) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in sorted(records, key=lambda r: r.offset):
                    value = None if r.value is None else DeviceRecord.model_validate_json(r.value)
                    out.append((r.key.decode(), value))
    finally:
        await consumer.stop()
    return out


async def _produce(bootstrap: str, items: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, value in items:
            await producer.send_and_wait(topic, key=b"dev-1", value=value)
    finally:
        await producer.stop()


def test_device_changes_are_published(tansu: Component, topic_prefix: str, tmp_path: Path) -> None:
    settings = _settings(tansu, topic_prefix, tmp_path)
    with TestClient(create_app(settings), headers=ADMIN) as client:
        station = {"id": "st-1", "name": "S1", "kind": "gauge", "warning_level": 3.0}
        assert client.post("/stations", json=station).status_code == 201
        assert client.post(
            "/devices", json={"id": "dev-1", "type": "level-gauge", "station_id": "st-1"}
        ).is_success
        assert client.patch("/stations/st-1", json={"warning_level": 3.5}).is_success
        assert client.delete("/devices/dev-1").is_success
        assert client.post("/devices", json={"id": "dev-2", "type": "rain-gauge"}).is_success
    sent = asyncio.run(_read_registry(settings, 4))
    dev1 = [value for key, value in sent if key == "dev-1"]  # one key stays in order on its partition
    assert [None if v is None else v.thresholds for v in dev1] == [
        {"warning_level": 3.0},
        {"warning_level": 3.5},
        None,
    ]
    # A restart publishes a snapshot of every device.
    with TestClient(create_app(settings), headers=ADMIN):
        pass
    again = [value for key, value in asyncio.run(_read_registry(settings, 5)) if key == "dev-2"]
    assert len(again) == 2
    assert again[-1] is not None and again[-1].domain == "hydro"


def test_device_status_from_clean_and_deadletter(tansu: Component, topic_prefix: str, tmp_path: Path) -> None:
    settings = _settings(tansu, topic_prefix, tmp_path)
    now = utcnow()
    readings = [Reading(metric="rain", value=0.5, ts=now - timedelta(seconds=i)) for i in range(3)]
    batch = ReadingBatch(
        device_id="dev-1", received_at=now, source="mqtt:devices/dev-1/readings", readings=readings
    )
    old = batch.model_copy(update={"received_at": now - timedelta(hours=2)})
    letter = DeadLetter.build(payload=b"{", source="mqtt:devices/dev-1/readings", code="invalid_json",
                              reason="line 1 column 2: EOF", received_at=now, device_id="dev-1")  # fmt: skip
    with TestClient(create_app(settings), headers=ADMIN) as client:
        assert client.post("/devices", json={"id": "dev-1", "type": "rain-gauge"}).is_success
        asyncio.run(
            _produce(
                settings.kafka_bootstrap,
                [
                    (settings.topic(topics.CLEAN), old.model_dump_json().encode()),
                    (settings.topic(topics.CLEAN), batch.model_dump_json().encode()),
                    (settings.topic(topics.CLEAN), batch.model_dump_json().encode()),
                    (settings.topic(topics.DEADLETTER), letter.model_dump_json().encode()),
                ],
            )
        )
        deadline = time.monotonic() + DEADLINE_S
        body = client.get("/devices/dev-1/status").json()
        while body["rejected_total"] < 1 or body["readings_last_hour"] < 6:
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
            body = client.get("/devices/dev-1/status").json()
        assert body["readings_last_hour"] == 6
        assert body["rejected_last_hour"] == 1
        assert body["last_rejection"]["code"] == "invalid_json"
        assert body["last_rejection"]["reason"] == "line 1 column 2: EOF"
        assert body["last_seen"].startswith(now.strftime("%Y-%m-%dT%H:%M:%S"))
        assert client.get("/devices/nope/status").status_code == 404
