"""The registry service in the running pipeline: calibration changed through the REST API
changes stored values within seconds, and device status shows readings and rejections."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from stationflow.stack.components import Component, influx_query
from stationflow.stack.pipeline import Pipeline
from tests.integration.pipeline_utils import Publisher, iso, make_pipeline, wait_for


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, {"STATIONFLOW_STREAMS_REGISTRY": "true"})
    with p:
        p.start("devices")
        p.start("ingest")
        p.start("streams")
        yield p


def _api(p: Pipeline) -> httpx.Client:
    return httpx.Client(base_url=p.registry_url, headers={"X-API-Key": p.registry_admin_key}, timeout=10)


def _stored(p: Pipeline) -> list[float]:
    ep = p.endpoints
    assert ep is not None
    series = influx_query(
        ep.influx_url, ep.influx_db, "SELECT temperature FROM coldchain WHERE device='fridge-9'"
    )
    return [row[1] for row in series[0]["values"]] if series else []


def test_calibration_through_the_api_changes_stored_values_without_restart(pipeline: Pipeline) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    api = _api(pipeline)
    station = {"id": "wh-9", "name": "Warehouse 9", "kind": "coldchain", "region": "440300"}
    assert api.post("/stations", json=station).status_code == 201
    device = {"id": "fridge-9", "type": "coldchain-logger", "station_id": "wh-9", "expected_interval_s": 60}
    assert api.post("/devices", json=device).status_code == 201

    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    now = datetime.now(UTC)

    def send(value: float, unit: str, seconds_ago: int) -> None:
        body = {
            "readings": [
                {
                    "metric": "temperature",
                    "value": value,
                    "unit": unit,
                    "ts": iso(now - timedelta(seconds=seconds_ago)),
                }
            ]
        }
        pub.publish("devices/fridge-9/readings", json.dumps(body)).wait_for_publish(10)

    # The registration reaches the worker through the registry topic within seconds.
    assert wait_for(lambda: (send(41.0, "degF", 120), bool(_stored(pipeline)))[1], timeout=30, interval=1.0)
    assert _stored(pipeline)[0] == pytest.approx(5.0)

    patch = {"calibration": {"temperature": {"scale": 1.0, "offset": 10.0}}}
    assert api.patch("/devices/fridge-9", json=patch).status_code == 200
    # Each attempt needs its own timestamp: a repeat of device + metric + ts is a duplicate
    # (first one wins), so re-sending the same instant could never show the new calibration.
    attempts = iter(range(90, 30, -1))
    assert wait_for(
        lambda: (send(5.0, "degC", next(attempts)), any(v == pytest.approx(15.0) for v in _stored(pipeline)))[
            1
        ],
        timeout=30,
        interval=1.0,
    ), _stored(pipeline)

    send(5.0, "parsecs", 30)  # refused by the worker: unknown unit

    def status() -> dict[str, object]:
        response = api.get("/devices/fridge-9/status")
        assert response.status_code == 200
        result: dict[str, object] = response.json()
        return result

    assert wait_for(lambda: status()["last_rejection"] is not None, timeout=30, interval=1.0), status()
    final = status()
    assert final["last_seen"] is not None
    assert isinstance(final["readings_last_hour"], int) and final["readings_last_hour"] >= 2
    last = final["last_rejection"]
    assert isinstance(last, dict) and last["code"] == "unknown_unit" and "parsecs" in last["reason"]
    pub.close()
