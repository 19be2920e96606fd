"""Reconciliation through the running worker and alert service: an open alert whose condition
the analytics no longer hold (their state was lost, e.g. the whole stack was killed after the
alert was raised) is resolved from the analytics' active set (AlertSync); an alert they do
hold stays open."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from stationflow.stack.components import Component
from stationflow.stack.monitor import scrape_counter
from stationflow.stack.pipeline import Pipeline
from tests.integration.alerts_utils import ALERTS_ENV, alert_event, alerts_api, produce
from tests.integration.pipeline_utils import Publisher, iso, make_pipeline, wait_for

SYNC_ENV = {
    **ALERTS_ENV,
    "STATIONFLOW_STREAMS_REGISTRY": "true",
    "STATIONFLOW_ANALYTICS_SYNC_S": "2",
    "STATIONFLOW_ALERTS_SYNC_GRACE_S": "1",
}


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, SYNC_ENV)
    with p:
        for kind in ("devices", "alerts", "ingest", "streams"):
            p.start(kind)
        yield p


def _statuses(api: httpx.Client) -> dict[str, tuple[str, str | None]]:
    try:
        answer = api.get("/alerts", params={"station_id": "gauge-rc", "rule": "flood.level"})
    except httpx.HTTPError:
        return {}
    return {a["alert_id"]: (a["status"], a["resolved_by"]) for a in answer.json()}


def test_an_alert_the_analytics_no_longer_hold_is_resolved_and_a_held_one_stays_open(
    pipeline: Pipeline,
) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    registry = httpx.Client(
        base_url=pipeline.registry_url, headers={"X-API-Key": pipeline.registry_admin_key}, timeout=10
    )
    station = {"id": "gauge-rc", "name": "Gauge", "kind": "gauge", "region": "445100", "warning_level": 12.5}
    assert registry.post("/stations", json=station).status_code == 201
    for device in ("lvl-held", "lvl-lost"):
        body = {"id": device, "type": "level-gauge", "station_id": "gauge-rc", "expected_interval_s": 3600}
        assert registry.post("/devices", json=body).status_code == 201
    at = datetime.now(UTC) - timedelta(minutes=5)
    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    try:
        for device, level in (("lvl-held", 13.0), ("lvl-lost", 11.0)):
            body = {"readings": [{"metric": "level", "value": level, "unit": "m", "ts": iso(at)}]}
            pub.publish(f"devices/{device}/readings", json.dumps(body)).wait_for_publish(timeout=30)
    finally:
        pub.close()
    # what the analytics had raised for lvl-lost before they lost that state
    produce(pipeline, [alert_event("lvl-lost", station="gauge-rc", raised_at=at.replace(microsecond=0))])
    held, lost = "flood.level:device:lvl-held", "flood.level:device:lvl-lost"
    with alerts_api(pipeline) as api:
        assert wait_for(lambda: _statuses(api).get(held, ("",))[0] == "open", timeout=90), _statuses(api)
        assert wait_for(lambda: _statuses(api).get(lost) == ("resolved", "reconciled"), timeout=60), (
            _statuses(api)
        )
        syncs = scrape_counter(
            f"http://127.0.0.1:{pipeline.metrics_ports['streams']}/metrics",
            "stationflow_analytics_alert_syncs_total",
        )
        # later snapshots still hold the raised alert: it stays open
        assert wait_for(
            lambda: (
                scrape_counter(
                    f"http://127.0.0.1:{pipeline.metrics_ports['streams']}/metrics",
                    "stationflow_analytics_alert_syncs_total",
                )
                >= syncs + 2
            ),
            timeout=30,
        )
        assert _statuses(api)[held] == ("open", None)
        history = api.get("/alerts", params={"station_id": "gauge-rc"}).json()
        (lost_alert,) = [a for a in history if a["alert_id"] == lost]
        events = [h["what"] for h in api.get(f"/alerts/{lost_alert['id']}/history").json()]
        assert "reconciled" in events, events
    assert scrape_counter(f"{pipeline.alerts_url}/metrics", "stationflow_alerts_reconciled_total") == 1
