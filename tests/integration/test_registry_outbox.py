"""Registry changes made while Kafka is down reach the worker once it is back, without a restart
of the registry: the outbox relay keeps them, retries, and republishes the whole registry when
the restarted (in-memory) Tansu has lost the topic."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from stationflow import topics
from stationflow.contracts import DeadLetter, DeviceRecord
from stationflow.registryview import RegistryFollower, RegistryView
from stationflow.settings import CommonSettings
from stationflow.stack.components import Component, influx_query, start_tansu
from stationflow.stack.pipeline import Pipeline
from tests.integration.pipeline_utils import Publisher, iso, make_pipeline, read_topic, wait_for

FAST_RELAY = {
    "STATIONFLOW_STREAMS_REGISTRY": "true",
    "STATIONFLOW_ANALYTICS_ENABLED": "false",
    "STATIONFLOW_REGISTRY_OUTBOX_RETRY_MAX_S": "2",
    "STATIONFLOW_REGISTRY_KAFKA_TIMEOUT_S": "3",
    "STATIONFLOW_REGISTRY_TOPIC_CHECK_S": "2",
    "STATIONFLOW_REGISTRY_PUBLISH_WAIT_S": "3",
}


@pytest.fixture
def own_tansu(tmp_path: Path) -> Iterator[Component]:
    """A Tansu this test may stop and start again (on the same port)."""
    component = start_tansu(tmp_path / "tansu")
    try:
        yield component
    finally:
        component.stop()


@pytest.fixture
def pipeline(own_tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(own_tansu, influxd, tmp_path, FAST_RELAY)
    with p:
        p.start("devices")
        p.start("ingest")
        p.start("streams")
        yield p


def _api(p: Pipeline) -> httpx.Client:
    return httpx.Client(base_url=p.registry_url, headers={"X-API-Key": p.registry_admin_key}, timeout=30)


def _stored(p: Pipeline, device: str) -> list[float]:
    ep = p.endpoints
    assert ep is not None
    query = f"SELECT temperature FROM coldchain WHERE device='{device}'"  # noqa: S608 - test ids
    series = influx_query(ep.influx_url, ep.influx_db, query)
    return [row[1] for row in series[0]["values"]] if series else []


def _health(api: httpx.Client) -> dict[str, object]:
    answer = api.get("/health")
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()["outbox"]
    return body


def _dead_letters(p: Pipeline, device: str, code: str) -> list[DeadLetter]:
    ep = p.endpoints
    assert ep is not None

    def matching(values: list[bytes]) -> list[DeadLetter]:
        letters = [DeadLetter.model_validate_json(v) for v in values]
        return [d for d in letters if d.device_id == device and d.code == code]

    values = read_topic(
        ep.kafka, f"{p.topic_prefix}{topics.DEADLETTER}", until=lambda v: bool(matching(v)), timeout=5
    )
    return matching(values)


def _recreate_topics(p: Pipeline) -> None:
    """What the stack does at start: create every topic with its partition count."""
    ep = p.endpoints
    assert ep is not None
    settings = CommonSettings(kafka_bootstrap=ep.kafka, topic_prefix=p.topic_prefix)
    asyncio.run(topics.ensure_topics(settings))


def test_changes_made_while_kafka_is_down_reach_the_worker(pipeline: Pipeline, own_tansu: Component) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    api = _api(pipeline)
    assert api.post("/stations", json={"id": "wh-o", "name": "Warehouse O", "kind": "coldchain"}).is_success
    for device in ("keep-o", "retire-o", "steady-o"):
        body = {"id": device, "type": "coldchain-logger", "station_id": "wh-o", "expected_interval_s": 60}
        assert api.post("/devices", json=body).status_code == 201

    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    now = datetime.now(UTC)
    sent = iter(range(600, 0, -1))  # a fresh timestamp per message: a repeated one is a duplicate

    def send(device: str, value: float) -> None:
        ts = iso(now - timedelta(seconds=next(sent)))
        body = {"readings": [{"metric": "temperature", "value": value, "unit": "degC", "ts": ts}]}
        pub.publish(f"devices/{device}/readings", json.dumps(body)).wait_for_publish(30)

    for device in ("keep-o", "retire-o", "steady-o"):
        assert wait_for(lambda d=device: (send(d, 5.0), bool(_stored(pipeline, d)))[1], 60, 1.0), device
    assert set(_stored(pipeline, "keep-o")) == {5.0}

    # Some history on the topic: the worker's positions are now past what a refilled topic holds.
    for interval in range(61, 67):
        for device in ("keep-o", "retire-o"):
            assert api.patch(f"/devices/{device}", json={"expected_interval_s": interval}).is_success

    own_tansu.stop()
    retire = api.patch("/devices/retire-o", json={"status": "retired"})
    recalibrate = api.patch(
        "/devices/keep-o", json={"calibration": {"temperature": {"scale": 1.0, "offset": 10.0}}}
    )
    assert retire.status_code == 200, retire.text
    assert recalibrate.status_code == 200, recalibrate.text
    assert retire.json()["status"] == "retired"
    assert wait_for(lambda: _health(api)["kafka"] == "unreachable", 30, 0.5), _health(api)
    down = _health(api)
    assert down["depth"] == 2, down  # both changes kept, none lost
    assert isinstance(down["oldest_age_s"], float) and down["last_error"]

    own_tansu.start()  # same port, empty: every topic is gone
    _recreate_topics(pipeline)
    assert pipeline.services["devices"].running, "the registry must survive a Kafka outage"
    for kind in ("ingest", "streams"):
        if not pipeline.services[kind].running:  # died with its broker: restarted, as a supervisor would
            pipeline.start(kind)
    assert wait_for(lambda: _health(api) == {**_health(api), "depth": 0, "kafka": "ok"}, 60, 0.5), _health(
        api
    )

    # The recalibration reaches the worker: new readings are stored with the offset.
    assert wait_for(lambda: (send("keep-o", 5.0), 15.0 in _stored(pipeline, "keep-o"))[1], 90, 1.0), _stored(
        pipeline, "keep-o"
    )
    # The retirement too: the device's readings are dead-lettered as retired_device.
    before = len(_stored(pipeline, "retire-o"))

    def retired_refused() -> bool:
        send("retire-o", 6.0)
        return bool(_dead_letters(pipeline, "retire-o", "retired_device"))

    assert wait_for(retired_refused, 90, 1.0)
    letter = _dead_letters(pipeline, "retire-o", "retired_device")[0]
    assert letter.stage == "streams" and "retired" in letter.reason
    assert 6.0 not in _stored(pipeline, "retire-o") and len(_stored(pipeline, "retire-o")) == before

    # A worker started now knows only what the new topic holds: the relay republished every
    # device, so one that did not change during the outage is still known.
    pipeline.services["streams"].stop()
    pipeline.start("streams")
    assert wait_for(lambda: (send("steady-o", 7.0), 7.0 in _stored(pipeline, "steady-o"))[1], 90, 1.0)
    assert wait_for(lambda: (send("keep-o", 6.0), 16.0 in _stored(pipeline, "keep-o"))[1], 90, 1.0)
    assert not _dead_letters(pipeline, "steady-o", "unknown_device")
    pub.close()
    # Nothing was restarted on the registry side: the same process answered throughout.
    assert pipeline.services["devices"].running


def _record(device_id: str, interval: int) -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        device_type="rain-gauge",
        domain="hydro",
        expected_interval_s=interval,
        updated_at=datetime.now(UTC),
    )


async def _produce(bootstrap: str, topic: str, records: list[DeviceRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(
                topic, record.model_dump_json().encode(), key=record.key(), partition=0
            )
    finally:
        await producer.stop()


async def _until_view(view: RegistryView, predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def test_follower_rewinds_when_the_broker_lost_the_topic(own_tansu: Component, topic_prefix: str) -> None:
    """Tansu answers a fetch past a refilled topic's end with nothing: the follower must rewind."""
    settings = CommonSettings(kafka_bootstrap=own_tansu.url, topic_prefix=topic_prefix, topic_partitions=1)
    topic = settings.topic(topics.REGISTRY)

    async def scenario() -> None:
        await topics.ensure_topics(settings, (topics.REGISTRY,))
        await _produce(own_tansu.url, topic, [_record(f"dev-{i}", 60) for i in range(6)])
        view = RegistryView()
        follower = asyncio.create_task(RegistryFollower(settings, view).run())
        try:
            await asyncio.wait_for(view.ready.wait(), 60)
            assert len(view) == 6
            await asyncio.to_thread(own_tansu.stop)
            await asyncio.to_thread(own_tansu.start)  # empty again
            await topics.ensure_topics(settings, (topics.REGISTRY,))
            # Two records: the topic's end (2) stays below the follower's position (6).
            await _produce(own_tansu.url, topic, [_record("dev-0", 120), _record("dev-new", 60)])

            def refilled() -> bool:
                old = view.get("dev-0")
                return view.get("dev-new") is not None and old is not None and old.expected_interval_s == 120

            assert await _until_view(view, refilled, 30), {k: view.get(k) for k in ("dev-0", "dev-new")}
            assert len(view) == 7  # devices not republished yet are kept, not forgotten
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    asyncio.run(scenario())
