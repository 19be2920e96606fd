"""CRUD of types, stations and devices through the API, with validation and publishing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from devices.catalog import BUILTIN_TYPES
from devices.publisher import MemoryRegistryPublisher
from stationflow.contracts import DeviceRecord

GAUGE = {"id": "st-river-1", "name": "River 1", "kind": "gauge", "basin": "basin-a", "region": "330100",
         "lat": 30.2, "lon": 120.1, "warning_level": 23.5, "guaranteed_level": 25.0,
         "thresholds": {"rise_rate_1h": 0.5}}  # fmt: skip


def test_builtin_types_seeded_with_simulator_metric_names(client: TestClient) -> None:
    answer = client.get("/device-types").json()
    names = {t["name"] for t in answer["data"]}
    assert {t.name for t in BUILTIN_TYPES} <= names
    air = client.get("/device-types/air-station").json()
    pm25 = next(m for m in air["metrics"] if m["metric"] == "pm25")
    assert pm25 == {"metric": "pm25", "unit": "ug/m3", "min": 0, "max": 1000, "hj212_code": "a34004"}
    assert air["domain"] == "air"
    water = {m["metric"] for m in client.get("/device-types/water-station").json()["metrics"]}
    assert water == {"ph", "do", "codmn", "nh3n", "tp", "temperature", "turbidity"}


def test_custom_type_and_errors(client: TestClient) -> None:
    body = {
        "name": "soil-probe",
        "domain": "soil",
        "metrics": [{"metric": "moisture", "unit": "%", "min": 0, "max": 100}],
    }
    assert client.post("/device-types", json=body).status_code == 201
    assert client.post("/device-types", json=body).status_code == 409
    bad = {**body, "name": "x2", "metrics": [{"metric": "m", "unit": "%", "min": 5, "max": 1}]}
    answer = client.post("/device-types", json=bad)
    assert answer.status_code == 422
    assert "min (5.0) is greater than max (1.0)" in answer.text
    assert client.delete("/device-types/air-station").status_code == 409
    assert client.delete("/device-types/soil-probe").status_code == 200


def test_station_validation_per_kind(client: TestClient) -> None:
    assert client.post("/stations", json=GAUGE).status_code == 201
    assert client.post("/stations", json=GAUGE).json()["detail"] == "station 'st-river-1' already exists"
    bad = {**GAUGE, "id": "st-2", "guaranteed_level": 20.0}
    answer = client.post("/stations", json=bad)
    assert answer.status_code == 422
    assert "guaranteed_level (20.0) must be >= warning_level (23.5)" in answer.text
    water = {"id": "st-w", "name": "W", "kind": "water", "target_class": "III", "warning_level": 1}
    assert "warning_level/guaranteed_level are for kind 'gauge'" in client.post("/stations", json=water).text
    answer = client.patch("/stations/st-river-1", json={"warning_level": 26})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body"]
    assert client.patch("/stations/st-river-1", json={"warning_level": 24}).json()["warning_level"] == 24


def test_device_crud_publishes_records(client: TestClient, published: MemoryRegistryPublisher) -> None:
    client.post("/stations", json=GAUGE)
    body = {"id": "river-07", "type": "level-gauge", "station_id": "st-river-1",
            "calibration": {"level": {"scale": 1.0, "offset": -0.12}}, "expected_interval_s": 60}  # fmt: skip
    assert client.post("/devices", json=body).status_code == 201
    key, record = published.sent[-1]
    assert key == "river-07" and isinstance(record, DeviceRecord)
    assert record.domain == "hydro"
    assert record.station is not None and record.station.basin == "basin-a"
    assert record.thresholds == {"warning_level": 23.5, "guaranteed_level": 25.0, "rise_rate_1h": 0.5}
    assert record.calibration["level"].offset == -0.12
    assert set(record.metrics) == {"level", "flow"}

    client.patch("/stations/st-river-1", json={"warning_level": 24.0})
    assert published.sent[-1][1] is not None and published.sent[-1][1].thresholds["warning_level"] == 24.0
    assert client.patch("/devices/river-07", json={"status": "maintenance"}).json()["status"] == "maintenance"
    assert published.sent[-1][1] is not None and published.sent[-1][1].status == "maintenance"
    assert client.delete("/stations/st-river-1").status_code == 409
    assert client.delete("/devices/river-07").status_code == 200
    assert published.sent[-1] == ("river-07", None)
    assert client.get("/devices/river-07").status_code == 404


def test_device_reference_and_calibration_errors(client: TestClient) -> None:
    answer = client.post("/devices", json={"id": "d1", "type": "no-such-type"})
    assert answer.status_code == 404 and "unknown device type 'no-such-type'" in answer.text
    answer = client.post("/devices", json={"id": "d1", "type": "rain-gauge", "station_id": "nowhere"})
    assert answer.status_code == 404 and "unknown station 'nowhere'" in answer.text
    answer = client.post(
        "/devices", json={"id": "d1", "type": "rain-gauge", "calibration": {"pm25": {"scale": 2}}}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "calibration"]
    assert "pm25" in answer.text
    answer = client.post("/devices", json={"id": "bad id!", "type": "rain-gauge"})
    assert answer.status_code == 422 and "id" in answer.json()["detail"][0]["loc"]
