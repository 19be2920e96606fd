"""End to end through the running services: a reading published over MQTT that crosses a
flood threshold becomes a signed webhook call to a local receiver and an MQTT message for
the station's siren, and the alert is in the alert service's API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from stationflow.bench.receiver import WebhookReceiver
from stationflow.stack.components import Component
from stationflow.stack.pipeline import Pipeline
from stationflow.stack.ports import free_port
from tests.integration.alerts_utils import ALERTS_ENV, alerts_api, signed_payloads
from tests.integration.pipeline_utils import Publisher, iso, make_pipeline, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, {**ALERTS_ENV, "STATIONFLOW_STREAMS_REGISTRY": "true"})
    with p:
        for kind in ("devices", "alerts", "ingest", "streams"):
            p.start(kind)
        yield p


class Siren:
    """Subscribes where the station's siren would."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[dict[str, object]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.append(orjson.loads(msg.payload))
        self.client.connect(host, port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_reading_over_the_flood_threshold_reaches_the_webhook_signed(pipeline: Pipeline) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    registry = httpx.Client(
        base_url=pipeline.registry_url, headers={"X-API-Key": pipeline.registry_admin_key}, timeout=10
    )
    station = {
        "id": "gauge-e2e",
        "name": "Han River at Xiangyang",
        "kind": "gauge",
        "region": "420600",
        "basin": "Han",
        "warning_level": 12.0,
        "guaranteed_level": 13.5,
    }
    assert registry.post("/stations", json=station).status_code == 201
    device = {"id": "lvl-e2e", "type": "level-gauge", "station_id": "gauge-e2e", "expected_interval_s": 300}
    assert registry.post("/devices", json=device).status_code == 201

    api = alerts_api(pipeline)
    with WebhookReceiver(free_port()) as hook:
        group = {
            "name": "flood-duty",
            "members": [
                {"channel": "webhook", "target": f"{hook.url}/flood"},
                {"channel": "mqtt", "target": "stations/{station}/alerts"},
            ],
        }
        assert api.put("/contact-groups/flood-duty", json=group).status_code == 200
        policy = {"name": "flood", "domain": "hydro", "min_severity": "minor", "groups": ["flood-duty"]}
        assert api.post("/policies", json=policy).status_code == 201
        siren = Siren(ep.mqtt_host, ep.mqtt_port, "stations/gauge-e2e/alerts")
        pub = Publisher(ep.mqtt_host, ep.mqtt_port)
        try:
            assert siren.subscribed.wait(10)
            now = datetime.now(UTC)
            # below the warning level first: nothing; then over it
            for ago, value in ((60, 11.2), (0, 12.4)):
                at = iso(now - timedelta(seconds=ago))
                msg = {"readings": [{"metric": "level", "value": value, "unit": "m", "ts": at}]}
                pub.publish("devices/lvl-e2e/readings", json.dumps(msg)).wait_for_publish(10)
            assert wait_for(lambda: len(hook.snapshot()) >= 1, timeout=90), "no webhook call"
            assert wait_for(lambda: len(siren.messages) >= 1, timeout=30), "no MQTT notification"
        finally:
            pub.close()
            siren.close()
        (call,) = hook.snapshot()
        (doc,) = signed_payloads([call])  # checks the HMAC signature with the shared secret
        assert call.path == "/flood"
        assert call.headers["content-type"] == "application/json"
    assert doc["kind"] == "raised"
    assert doc["alert_id"] == "flood.level:device:lvl-e2e"
    assert (doc["station_id"], doc["device_id"], doc["region"], doc["basin"]) == (
        "gauge-e2e",
        "lvl-e2e",
        "420600",
        "Han",
    )
    assert (doc["rule"], doc["domain"], doc["metric"]) == ("flood.level", "hydro", "level")
    assert doc["value"] == pytest.approx(12.4) and doc["threshold"] == pytest.approx(12.0)
    assert doc["severity"] in ("minor", "moderate") and doc["group"] == "flood-duty"
    assert "水位预警" in str(doc["explanation_zh"]) and "gauge-e2e" in str(doc["title"])
    assert siren.messages[0]["notification_id"] != doc["notification_id"]  # one per recipient
    assert siren.messages[0]["alert_id"] == doc["alert_id"]
    (alert,) = api.get("/alerts", params={"station_id": "gauge-e2e"}).json()
    assert alert["status"] == "open" and alert["value"] == pytest.approx(12.4)
    sent = api.get("/notifications", params={"alert": alert["id"]}).json()
    assert sorted(n["channel"] for n in sent) == ["mqtt", "webhook"] and {n["status"] for n in sent} == {
        "sent"
    }
