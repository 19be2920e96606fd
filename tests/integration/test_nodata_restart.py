"""A worker restarted after a downtime longer than a device's no-data limit does not call the
device offline for the silence it did not watch (e.g. `stationflow up` stopped overnight with
the device states restored): the device's next reading arrives first. A device that stays
silent is still called offline, its limit after the worker's start."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from stationflow.contracts import AlertEvent
from stationflow.stack.archive import group_lag
from stationflow.stack.components import Component, influx_query
from stationflow.stack.monitor import scrape_counter
from stationflow.stack.pipeline import Pipeline
from stationflow.topics import ALERTS, CLEAN
from tests.integration.pipeline_utils import Publisher, iso, make_pipeline, read_topic, wait_for

pytestmark = pytest.mark.slow

INTERVAL_S, GRACE_S = 12, 3  # offline after 15 s of silence
ENV = {
    "STATIONFLOW_STREAMS_REGISTRY": "true",
    "STATIONFLOW_ANALYTICS_NODATA_GRACE_S": str(GRACE_S),
    "STATIONFLOW_ANALYTICS_NODATA_CHECK_S": "1",
    "STATIONFLOW_ANALYTICS_SYNC_S": "1",
}


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, ENV)
    with p:
        for kind in ("devices", "ingest", "streams"):
            p.start(kind)
        yield p


def _syncs(p: Pipeline) -> float:
    try:
        return scrape_counter(
            f"http://127.0.0.1:{p.metrics_ports['streams']}/metrics",
            "stationflow_analytics_alert_syncs_total",
        )
    except httpx.HTTPError:
        return 0.0


def _offline_events(p: Pipeline, timeout: float) -> list[tuple[str, int]]:
    ep = p.endpoints
    assert ep is not None
    raw = read_topic(ep.kafka, p.topic_prefix + ALERTS, until=lambda _v: False, timeout=timeout)
    events = [AlertEvent.model_validate_json(v) for v in raw]
    return [
        (e.state.value, e.seq) for e in events if e.rule == "health.offline" and e.device_id == "gauge-nd"
    ]


def test_the_downtime_of_the_worker_is_not_a_device_silence(pipeline: Pipeline) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    api = httpx.Client(base_url=pipeline.registry_url, headers={"X-API-Key": pipeline.registry_admin_key})
    assert api.post("/stations", json={"id": "st-nd", "name": "Quiet", "kind": "gauge"}).status_code == 201
    body = {"id": "gauge-nd", "type": "level-gauge", "station_id": "st-nd", "expected_interval_s": INTERVAL_S}
    assert api.post("/devices", json=body).status_code == 201
    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    q = "SELECT count(level) FROM hydro WHERE device='gauge-nd'"

    def stored() -> int:
        series = influx_query(ep.influx_url, ep.influx_db, q)
        return int(series[0]["values"][0][1]) if series else 0

    def send(value: float) -> None:
        body = {"readings": [{"metric": "level", "value": value, "ts": iso(datetime.now(UTC))}]}
        pub.publish("devices/gauge-nd/readings", json.dumps(body)).wait_for_publish(timeout=30)

    try:
        send(3.0)
        assert wait_for(lambda: stored() == 1, timeout=60)
        # the analytics have committed it: it is not delivered again after the restart
        app = pipeline.extra_env["STATIONFLOW_STREAMS_APP_ID"]
        groups = {app: (pipeline.topic_prefix + CLEAN,)}
        assert wait_for(lambda: asyncio.run(group_lag(ep.kafka, groups)) == {app: 0}, timeout=60)
        pipeline.services["streams"].stop(timeout=30)
        time.sleep(INTERVAL_S + GRACE_S + 5)  # the worker is down longer than the device's limit
        pipeline.start("streams")
        # the worker's tables are restored (it announces its alerts only then) and its
        # checks have run (every second) before the device's next reading
        assert wait_for(lambda: _syncs(pipeline) >= 2, timeout=90)
        send(3.1)
        assert wait_for(lambda: stored() == 2, timeout=60)
        # several checks have run since: the restored state did not make the device offline
        assert _offline_events(pipeline, timeout=5) == []
        # silent from now on: offline after its limit, as before the restart
        assert wait_for(lambda: _offline_events(pipeline, timeout=2) == [("raised", 1)], timeout=60)
    finally:
        pub.close()
