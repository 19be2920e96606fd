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
from stationflow.passwords import verify_password
from stationflow.registryview import RegistryFollower, RegistryView
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


def test_protocol_links_reach_the_registry_topic_and_a_follower(
    tansu: Component, topic_prefix: str, tmp_path: Path
) -> None:
    """HJ 212 / SL 651 links (hash, never the password) on the topic, found by MN and RTU address."""
    settings = _settings(tansu, topic_prefix, tmp_path)
    link = {"mn": "88888880000001234567", "crc": "modbus", "allow_from": ["10.0.0.0/8"]}
    hj212 = {"id": "air-1", "type": "air-station", "protocol": "hj212", "hj212": link}
    rtu_link = {"address": "0012345678", "password": "a000", "ack": "esc", "level_base_m": 12.5}
    sl651 = {"id": "rtu-1", "type": "hydro-rtu", "protocol": "sl651", "sl651": rtu_link}
    with TestClient(create_app(settings), headers=ADMIN) as client:
        created = client.post("/devices", json=hj212)
        assert created.status_code == 201, created.text
        password = created.json()["hj212_password"]
        assert client.post("/devices", json=sl651).status_code == 201
        patched = client.patch("/devices/air-1", json={"hj212": {**link, "strict": True}})
        assert patched.status_code == 200, patched.text
        new_pw = client.post("/devices/rtu-1/protocol-password").json()["password"]
    sent = asyncio.run(_read_registry(settings, 4))
    air = [v for k, v in sent if k == "air-1"]
    rtu = [v for k, v in sent if k == "rtu-1"]
    assert len(air) == 2 and len(rtu) == 2
    assert all(v is not None and v.protocol == "hj212" and v.hj212 is not None for v in air)
    first, last = air[0].hj212, air[1].hj212  # type: ignore[union-attr]
    assert first is not None and last is not None
    assert (first.strict, last.strict, last.crc, last.allow_from) == (False, True, "modbus", ["10.0.0.0/8"])
    assert last.password_hash == first.password_hash and verify_password(password, last.password_hash or "")
    assert rtu[0] is not None and rtu[0].sl651 is not None and rtu[1] is not None and rtu[1].sl651 is not None
    assert verify_password("A000", rtu[0].sl651.password_hash or "")
    assert verify_password(new_pw, rtu[1].sl651.password_hash or "")
    assert (rtu[1].sl651.ack, rtu[1].sl651.level_base_m) == ("esc", 12.5)
    assert rtu[1].metrics["level"].sl651_code == "Z"
    for _key, value in sent:
        assert (
            value is not None
            and password not in value.model_dump_json()
            and new_pw not in value.model_dump_json()
        )

    async def follow() -> tuple[DeviceRecord | None, DeviceRecord | None]:
        view = RegistryView()
        follower = asyncio.create_task(RegistryFollower(settings, view).run())
        try:
            await asyncio.wait_for(view.ready.wait(), DEADLINE_S)
            return view.by_hj212_mn("88888880000001234567"), view.by_sl651_address("0012345678")
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    by_mn, by_address = asyncio.run(follow())
    assert by_mn is not None and by_mn.device_id == "air-1" and by_mn.hj212 == last
    assert by_address is not None and by_address.device_id == "rtu-1" and by_address.sl651 == rtu[1].sl651
