"""Helpers for the alert service tests: produce alert events, an API client, webhook checks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from alerts.channels.webhook import verify
from stationflow.bench.receiver import Received
from stationflow.contracts import AlertEvent, AlertState, Severity
from stationflow.stack.pipeline import Pipeline
from stationflow.topics import ALERTS

WEBHOOK_SECRET = "test-webhook-secret"  # noqa: S105
ALERTS_ENV = {
    "STATIONFLOW_ALERTS_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "STATIONFLOW_ALERTS_TICK_S": "0.5",
    "STATIONFLOW_ALERTS_RETRY_BASE_S": "0.5",
    "STATIONFLOW_ALERTS_RETRY_MAX_S": "4",
    "STATIONFLOW_ALERTS_SEND_TIMEOUT_S": "3",
}


def alert_event(
    subject: str,
    *,
    state: AlertState = AlertState.RAISED,
    seq: int = 1,
    severity: Severity = Severity.MAJOR,
    station: str = "gauge-1",
    raised_at: datetime | None = None,
    value: float = 12.5,
) -> AlertEvent:
    """A flood level alert event for device ``subject`` at ``station``."""
    at = raised_at or datetime.now(UTC).replace(microsecond=0)
    return AlertEvent(
        alert_id=f"flood.level:device:{subject}",
        state=state,
        seq=seq,
        severity=severity,
        rule="flood.level",
        kind="threshold",
        domain="hydro",
        subject=f"device:{subject}",
        station_id=station,
        device_id=subject,
        region="445100",
        basin="Han",
        metric="level",
        value=value,
        threshold=12.0,
        raised_at=at,
        observed_at=at + timedelta(seconds=seq - 1),
        explanation=f"level {value} m at or above the warning level 12 m",
        explanation_zh=f"水位 {value} 米，超过警戒水位 12 米",
    )


def produce(p: Pipeline, events: Sequence[AlertEvent]) -> None:
    """Send events to the pipeline's alerts topic, as the analytics worker does."""
    ep = p.endpoints
    assert ep is not None

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=ep.kafka, acks="all")
        await producer.start()
        try:
            for e in events:
                await producer.send_and_wait(
                    p.topic_prefix + ALERTS, e.model_dump_json().encode(), key=e.key()
                )
        finally:
            await producer.stop()

    # in a thread of its own: callers may have a loop running (Playwright's sync API does)
    worker = threading.Thread(target=lambda: asyncio.run(send()))
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "producing alert events took over 60 s"


def alerts_api(p: Pipeline) -> httpx.Client:
    """An admin client of the pipeline's alert service."""
    return httpx.Client(base_url=p.alerts_url, headers={"X-API-Key": p.alerts_admin_key}, timeout=10)


def route_to(api: httpx.Client, base_url: str, groups: Sequence[str], *, ack_timeout_s: float = 900) -> None:
    """Contact groups (one webhook each, path /<group>) and a flood policy escalating along them."""
    for g in groups:
        body = {"name": g, "members": [{"channel": "webhook", "target": f"{base_url}/{g}"}]}
        assert api.put(f"/contact-groups/{g}", json=body).status_code == 200
    policy = {"name": "flood duty", "domain": "hydro", "groups": list(groups), "ack_timeout_s": ack_timeout_s}
    r = api.post("/policies", json=policy)
    assert r.status_code == 201, r.text


def signed_payloads(received: Sequence[Received]) -> list[dict[str, object]]:
    """Bodies of the calls, after checking every signature (fails on a bad one)."""
    out = []
    for r in received:
        assert verify(WEBHOOK_SECRET.encode(), r.body, r.headers.get("x-stationflow-signature")), r
        document = orjson.loads(r.body)
        assert r.headers["x-stationflow-notification-id"] == document["notification_id"]
        out.append(document)
    return out
