"""Issue 9 items 1 and 2 through the running services (registry, collector, worker, InfluxDB).

1. A station region ``"440300\\nX"`` once became a second line in the worker's write: InfluxDB
   stored a measurement ``X`` and lost the reading. The registry now refuses it (422 naming
   the field); human text with commas, spaces, ``=``, quotes, backslashes and Chinese is
   accepted and stored exactly; and a hostile record that bypasses the registry API (straight
   onto the registry topic) is written with U+FFFD in place of the newline, never as a second
   point or another measurement.
2. A point InfluxDB refuses (a field type conflict) is kept with its device and InfluxDB's
   reason, listed by ``stationflow rejected``, while the other points of the batch are stored.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from stationflow.contracts import DeviceRecord, MetricSpec, StationInfo
from stationflow.stack.components import Component, influx_query, influx_write
from stationflow.stack.pipeline import Pipeline
from stationflow.topics import REGISTRY
from tests.integration.pipeline_utils import Publisher, iso, make_pipeline, wait_for
from tests.integration.test_enrichment import _publish_records

NO_ANALYTICS = {"STATIONFLOW_ANALYTICS_ENABLED": "false"}  # the raw measurements alone: exact sets
NAME = 'Gauge "A", 深圳 = 1 \\东'
REGION = '440300, 南山区 = "east" a\\b'
BASIN = 'Pearl River, 珠江=东江 "x" \\y'


def _influx(p: Pipeline, q: str) -> list[dict[str, Any]]:
    ep = p.endpoints
    assert ep is not None
    return influx_query(ep.influx_url, ep.influx_db, q)


def _measurements(p: Pipeline) -> set[str]:
    shown = _influx(p, "SHOW MEASUREMENTS")
    return {row[0] for row in shown[0]["values"]} if shown else set()


def _rows(p: Pipeline, measurement: str, device: str) -> list[dict[str, Any]]:
    series = _influx(p, f"SELECT * FROM {measurement} WHERE device = '{device}'")  # noqa: S608 - ours
    if not series:
        return []
    return [dict(zip(series[0]["columns"], values, strict=True)) for values in series[0]["values"]]


def _send_until_stored(p: Pipeline, device: str, metric: str, measurement: str) -> list[dict[str, Any]]:
    ep = p.endpoints
    assert ep is not None
    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    seconds = iter(range(600, 0, -1))  # each attempt its own timestamp (a repeat is a duplicate)

    def attempt() -> bool:
        ts = iso(datetime.now(UTC) - timedelta(seconds=next(seconds)))
        body = {"readings": [{"metric": metric, "value": 12.5, "ts": ts}]}
        pub.publish(f"devices/{device}/readings", json.dumps(body)).wait_for_publish(10)
        return bool(_rows(p, measurement, device))

    try:
        assert wait_for(attempt, timeout=60, interval=1.0), f"no {measurement} point of {device}"
    finally:
        pub.close()
    return _rows(p, measurement, device)


@pytest.fixture
def registry_pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, {"STATIONFLOW_STREAMS_REGISTRY": "true", **NO_ANALYTICS})
    with p:
        p.start("devices")
        p.start("ingest")
        p.start("streams")
        yield p


def test_registry_refuses_a_newline_and_stores_human_text_exactly(registry_pipeline: Pipeline) -> None:
    p = registry_pipeline
    api = httpx.Client(base_url=p.registry_url, headers={"X-API-Key": p.registry_admin_key}, timeout=10)

    refused = api.post("/stations", json={"id": "st-inj", "name": "Injected", "region": "440300\nX"})
    assert refused.status_code == 422, refused.text
    assert [e["loc"] for e in refused.json()["detail"]] == [["body", "region"]]
    assert api.get("/stations/st-inj").status_code == 404

    station = {"id": "st-human", "name": NAME, "kind": "water", "region": REGION, "basin": BASIN}
    assert api.post("/stations", json=station).status_code == 201, station
    created = api.post("/devices", json={"id": "wq-human", "type": "water-station", "station_id": "st-human"})
    assert created.status_code == 201, created.text
    assert api.get("/stations/st-human").json()["name"] == NAME

    rows = _send_until_stored(p, "wq-human", "ph", "water")
    assert {(r["station"], r["region"], r["basin"]) for r in rows} == {("st-human", REGION, BASIN)}
    assert _measurements(p) == {"water"}


@pytest.fixture
def bypass_pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, {"STATIONFLOW_STREAMS_REGISTRY": "true", **NO_ANALYTICS})
    hostile = DeviceRecord(
        device_id="air-inj",
        device_type="air-station",
        domain="air",
        station=StationInfo(station_id="st-inj", name="x", region="440300\nX", basin="b\\"),
        metrics={"pm25": MetricSpec(metric="pm25", unit="ug/m3", min=0, max=1000)},
        updated_at=datetime.now(UTC),
    )
    with p:
        p.start("ingest")  # creates the topics
        _publish_records(tansu.url, p.topic_prefix + REGISTRY, [hostile])
        p.start("streams")
        yield p


def test_a_record_that_bypasses_the_registry_cannot_inject_a_point(bypass_pipeline: Pipeline) -> None:
    p = bypass_pipeline
    rows = _send_until_stored(p, "air-inj", "pm25", "air")
    assert {(r["region"], r["basin"], r["pm25"]) for r in rows} == {("440300\ufffdX", "b\ufffd", 12.5)}
    assert _measurements(p) == {"air"}  # no "X,station=…" measurement


@pytest.fixture
def spine(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, NO_ANALYTICS)
    with p:
        p.start("ingest")
        p.start("streams")
        yield p


def test_refused_points_are_kept_and_the_rest_of_the_batch_stored(spine: Pipeline, tmp_path: Path) -> None:
    p = spine
    ep = p.endpoints
    assert ep is not None
    # pm25 becomes a string field in this database: every numeric pm25 after it is refused
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    seed_ns = int((t0 - timedelta(seconds=10)).timestamp()) * 10**9  # same shard: conflicts are per shard
    influx_write(ep.influx_url, ep.influx_db, f'air,device=seed pm25="text" {seed_ns}')
    # one message, two instants: the pm25 point is refused, the pm10 point is stored; and
    # another device's message in the same moments
    mixed = {
        "readings": [
            {"metric": "pm25", "value": 35.0, "ts": iso(t0)},
            {"metric": "pm10", "value": 61.0, "ts": iso(t0 + timedelta(seconds=1))},
        ]
    }
    other = {"readings": [{"metric": "pm10", "value": 40.0, "ts": iso(t0)}]}
    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    pub.publish("devices/air-bad/readings", json.dumps(mixed)).wait_for_publish(10)
    pub.publish("devices/air-good/readings", json.dumps(other)).wait_for_publish(10)
    pub.close()

    def cli(*args: str) -> list[dict[str, Any]]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "stationflow.cli",
                "rejected",
                "--state-dir",
                str(tmp_path),
                "--json",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return [json.loads(row) for row in done.stdout.splitlines()]

    assert wait_for(lambda: bool(cli("--device", "air-bad")), timeout=60, interval=1.0)
    (kept,) = cli("--device", "air-bad")
    assert kept["measurement"] == "air" and kept["status"] == 400
    assert "field type conflict" in kept["reason"] and '"pm25"' in kept["reason"]
    assert kept["line"].startswith("air,device=air-bad pm25=35.0 ")
    assert cli() == [kept]  # nothing else was refused

    assert wait_for(lambda: len(_rows(p, "air", "air-good")) == 1, timeout=30)
    stored = _rows(p, "air", "air-bad")
    assert [(r["pm10"], r["pm25"]) for r in stored] == [(61.0, None)]
    assert _rows(p, "air", "air-good")[0]["pm10"] == 40.0
