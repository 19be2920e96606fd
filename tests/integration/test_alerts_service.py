"""The alert service as a process on real Kafka (Tansu) and SQLite, notifying a real local
webhook receiver: a channel down for 60 s, a kill and restart, escalation, acknowledgement
and silences — every notification checked by signature and counted by notification id."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stationflow.bench.receiver import WebhookReceiver
from stationflow.contracts import AlertState
from stationflow.stack.components import Component
from stationflow.stack.pipeline import Pipeline
from stationflow.stack.ports import free_port
from tests.integration.alerts_utils import (
    ALERTS_ENV,
    alert_event,
    alerts_api,
    produce,
    route_to,
    signed_payloads,
)
from tests.integration.pipeline_utils import make_pipeline, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, {**ALERTS_ENV, "STATIONFLOW_ALERTS_REGISTRY": "false"})
    with p:
        p.start("alerts")
        yield p


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(free_port()) as r:
        yield r


def _ids(r: WebhookReceiver) -> Counter[str]:
    return Counter(str(d["notification_id"]) for d in signed_payloads(r.snapshot()))


def _pending(api_status: list[dict[str, object]]) -> int:
    return sum(1 for n in api_status if n["status"] == "pending")


@pytest.mark.slow
def test_channel_down_60s_then_back_and_a_restart_deliver_every_notification_exactly_once(
    pipeline: Pipeline, receiver: WebhookReceiver
) -> None:
    api = alerts_api(pipeline)
    route_to(api, receiver.url, ["duty"])
    receiver.stop()  # the channel is down: connection refused
    first = [alert_event(f"lvl-{i}") for i in range(20)]
    produce(pipeline, first)
    assert wait_for(lambda: _pending(api.get("/notifications").json()) == 20, timeout=30)
    down_until = datetime.now(UTC) + timedelta(seconds=60)
    while datetime.now(UTC) < down_until:  # bounded: 60 s of outage, checked every 5 s
        notes = api.get("/notifications").json()
        assert _pending(notes) == 20 and all(n["status"] != "failed" for n in notes)
        wait_for(lambda: False, timeout=5)
    assert max(n["attempts"] for n in api.get("/notifications").json()) >= 5  # it kept retrying
    receiver.start()
    assert wait_for(lambda: sum(_ids(receiver).values()) >= 20, timeout=30)
    wait_for(lambda: False, timeout=5)  # room for any duplicate to show up
    ids = _ids(receiver)
    assert len(ids) == 20 and set(ids.values()) == {1}
    assert _pending(api.get("/notifications").json()) == 0

    # down again; 20 more alerts wait in the outbox; the service is killed and restarted
    receiver.stop()
    second = [alert_event(f"lvl-b{i}") for i in range(20)]
    produce(pipeline, second)
    assert wait_for(lambda: _pending(api.get("/notifications").json()) == 20, timeout=30)
    pipeline.services["alerts"].signal(signal.SIGKILL)
    assert wait_for(lambda: not pipeline.services["alerts"].running, timeout=10)
    produce(pipeline, first + second)  # replayed events on top: they must change nothing
    pipeline.start("alerts")
    receiver.start()
    assert wait_for(lambda: sum(_ids(receiver).values()) >= 40, timeout=60)
    wait_for(lambda: False, timeout=5)
    ids = _ids(receiver)
    assert len(ids) == 40 and set(ids.values()) == {1}
    alerts = api.get("/alerts", params={"limit": 1000}).json()
    assert len(alerts) == 40


def test_escalation_fires_when_nobody_acknowledges_and_acknowledgement_stops_it(
    pipeline: Pipeline, receiver: WebhookReceiver
) -> None:
    api = alerts_api(pipeline)
    route_to(api, receiver.url, ["duty", "chief", "director"], ack_timeout_s=3)
    produce(pipeline, [alert_event("esc-1")])
    assert wait_for(lambda: [r.path for r in receiver.snapshot()] == ["/duty"], timeout=20)
    assert wait_for(lambda: [r.path for r in receiver.snapshot()] == ["/duty", "/chief"], timeout=20)
    (alert,) = api.get("/alerts").json()
    assert alert["escalation_level"] == 1
    r = api.post(f"/alerts/{alert['id']}/acknowledge", json={"comment": "team dispatched"})
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    wait_for(lambda: False, timeout=8)  # well past the next 3 s deadline
    payloads = signed_payloads(receiver.snapshot())
    assert [(p["kind"], p["group"]) for p in payloads] == [("raised", "duty"), ("escalated", "chief")]
    history = [h["what"] for h in api.get(f"/alerts/{alert['id']}/history").json()]
    assert history[:2] == ["event", "notified"] and "escalated" in history and history[-1] == "acknowledged"
    # a second acknowledgement is a conflict, not a silent success
    assert api.post(f"/alerts/{alert['id']}/acknowledge", json={}).status_code == 409
    # the condition clears: both groups that were told get the resolution notice
    produce(pipeline, [alert_event("esc-1", state=AlertState.CLEARED, seq=2, raised_at=_raised(alert))])
    assert wait_for(lambda: len(receiver.snapshot()) == 4, timeout=20)
    kinds = sorted((str(p["kind"]), str(p["group"])) for p in signed_payloads(receiver.snapshot())[2:])
    assert kinds == [("resolved", "chief"), ("resolved", "duty")]
    assert api.get(f"/alerts/{alert['id']}").json()["status"] == "resolved"


def test_a_silence_suppresses_notifications_but_the_alert_is_recorded(
    pipeline: Pipeline, receiver: WebhookReceiver
) -> None:
    api = alerts_api(pipeline)
    route_to(api, receiver.url, ["duty"])
    ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = api.post("/silences", json={"station_id": "gauge-quiet", "ends_at": ends, "reason": "dredging"})
    assert r.status_code == 201, r.text
    produce(
        pipeline, [alert_event("sil-1", station="gauge-quiet"), alert_event("loud-1", station="gauge-loud")]
    )
    assert wait_for(lambda: len(api.get("/alerts").json()) == 2, timeout=20)
    assert wait_for(lambda: len(receiver.snapshot()) == 1, timeout=20)
    wait_for(lambda: False, timeout=3)
    (only,) = signed_payloads(receiver.snapshot())
    assert only["device_id"] == "loud-1"
    silenced = api.get("/alerts", params={"station_id": "gauge-quiet"}).json()
    assert len(silenced) == 1 and silenced[0]["silenced_by"].startswith("silence:")
    assert silenced[0]["status"] == "open"


def _raised(alert: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(alert["raised_at"]))


def test_garbage_on_the_events_topic_is_counted_and_skipped_and_the_service_goes_on(
    pipeline: Pipeline, receiver: WebhookReceiver
) -> None:
    import asyncio

    import httpx
    from aiokafka import AIOKafkaProducer

    from stationflow.topics import ALERTS

    ep = pipeline.endpoints
    assert ep is not None
    hostile = [
        b"not json",
        b"{}",
        b'{"alert_id": "a", "state": "exploded"}',
        b"\x00\xff" * 100,
        b"[" * 10_000,
        alert_event("ok-0").model_dump_json().replace('"seq":1', '"seq":-5').encode(),
    ]

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=ep.kafka)
        await producer.start()
        try:
            for raw in hostile:
                await producer.send_and_wait(pipeline.topic_prefix + ALERTS, raw, key=b"x")
        finally:
            await producer.stop()

    asyncio.run(send())
    api = alerts_api(pipeline)
    route_to(api, receiver.url, ["duty"])
    produce(pipeline, [alert_event("after-garbage")])
    assert wait_for(lambda: len(receiver.snapshot()) == 1, timeout=30)
    (doc,) = signed_payloads(receiver.snapshot())
    assert doc["device_id"] == "after-garbage"
    metrics = httpx.get(f"{pipeline.alerts_url}/metrics", timeout=5).text
    assert f'stationflow_alerts_events_total{{result="invalid"}} {float(len(hostile))}' in metrics
    log = (pipeline.state_dir / "logs" / "alerts.log").read_text()
    assert log.count("invalid alert event skipped") == len(hostile)
    assert pipeline.services["alerts"].running


def test_a_device_in_maintenance_in_the_registry_is_silenced_automatically(
    tansu: Component, influxd: Component, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    from stationflow.contracts import DeviceRecord, DeviceStatus, StationInfo
    from stationflow.topics import REGISTRY
    from tests.integration.test_enrichment import _publish_records

    p, _ = make_pipeline(tansu, influxd, tmp_path, {**ALERTS_ENV, "STATIONFLOW_ALERTS_REGISTRY": "true"})
    with p:
        p.start("alerts")
        record = DeviceRecord(
            device_id="lvl-maint",
            device_type="level-gauge",
            domain="hydro",
            status=DeviceStatus.MAINTENANCE,
            station=StationInfo(station_id="gauge-m", name="gauge under maintenance"),
            updated_at=datetime.now(UTC),
        )
        _publish_records(tansu.url, p.topic_prefix + REGISTRY, [record])
        api = alerts_api(p)
        route_to(api, receiver.url, ["duty"])
        health = f"{p.alerts_url}/health"
        assert wait_for(lambda: api.get(health).json()["registry_devices"] == 1, timeout=20)
        produce(
            p, [alert_event("lvl-maint", station="gauge-m"), alert_event("lvl-working", station="gauge-w")]
        )
        assert wait_for(lambda: len(api.get("/alerts").json()) == 2, timeout=20)
        assert wait_for(lambda: len(receiver.snapshot()) == 1, timeout=20)
        wait_for(lambda: False, timeout=3)
        (only,) = signed_payloads(receiver.snapshot())
        assert only["device_id"] == "lvl-working"
        (maint,) = api.get("/alerts", params={"device_id": "lvl-maint"}).json()
        assert maint["silenced_by"] == "maintenance" and maint["status"] == "open"
