"""CRUD of types, stations and devices through the API, with validation and publishing."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from devices.catalog import BUILTIN_TYPES
from devices.models import Device, DeviceType, Station
from devices.publisher import MemoryRegistryPublisher
from devices.settings import RegistrySettings
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
    assert pm25 == {
        "metric": "pm25",
        "unit": "ug/m3",
        "min": 0,
        "max": 1000,
        "hj212_code": "a34004",
        "sl651_code": None,
    }
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
    for field in ("description", "domain"):  # found by schemathesis: a null used to be a 500
        nulled = client.patch("/device-types/soil-probe", json={field: None})
        assert nulled.status_code == 422 and f"{field} cannot be null" in nulled.text
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


def test_nul_characters_never_reach_the_database(
    client: TestClient, registry_settings: RegistrySettings
) -> None:
    # PostgreSQL text cannot hold NUL: bodies refuse it on every backend (422, not a 500 on PG).
    answer = client.post("/stations", json={**GAUGE, "name": "River\x00 1"})
    assert answer.status_code == 422 and "must not contain NUL characters" in answer.text
    assert client.post("/api-keys", json={"name": "a\x00", "role": "admin"}).status_code == 422
    # Lookups by a NUL-carrying id cannot match anything: SQLite says so, PostgreSQL refuses them.
    on_postgres = registry_settings.database_url.startswith("postgresql")
    answer = client.get("/stations/st%00x")
    assert answer.status_code == (422 if on_postgres else 404), answer.text
    answer = client.get("/devices", params={"station_id": "\x00"})
    assert answer.status_code == (422 if on_postgres else 200), answer.text
    if on_postgres:
        assert "NUL" in answer.json()["detail"][0]["msg"]


CONCURRENT_ROWS = {
    "stations": (Station(id="st-race", name="Race"), {"id": "st-race", "name": "Race"}),
    "device-types": (
        DeviceType(name="race-type", domain="x", metrics={}),
        {"name": "race-type", "domain": "x", "metrics": [{"metric": "m", "unit": "1"}]},
    ),
    "devices": (Device(id="dev-race", type_name="rain-gauge"), {"id": "dev-race", "type": "rain-gauge"}),
}


@pytest.mark.parametrize("registry_settings", ["postgres"], indirect=True)
@pytest.mark.parametrize("resource", sorted(CONCURRENT_ROWS))
def test_concurrent_create_is_a_conflict(
    client: TestClient, registry_settings: RegistrySettings, resource: str
) -> None:
    """A row another transaction commits between our existence check and our insert: 409, not 500.

    PostgreSQL only: its insert waits on the other transaction's uncommitted row, then fails with
    a unique violation once that commits (SQLite would lock the whole database instead).
    """
    row, body = CONCURRENT_ROWS[resource]
    engine = create_engine(registry_settings.database_url, poolclass=NullPool)
    answers: list[Response] = []
    try:
        with Session(engine) as other:
            other.add(row)
            other.flush()  # inserted, not committed: invisible to the API's existence check
            poster = threading.Thread(target=lambda: answers.append(client.post(f"/{resource}", json=body)))
            poster.start()
            _wait_for_lock_wait(other)
            other.commit()
        poster.join(timeout=30)
    finally:
        engine.dispose()
    assert len(answers) == 1
    assert answers[0].status_code == 409, answers[0].text
    assert "already exists" in answers[0].json()["detail"]


def _wait_for_lock_wait(session: Session, timeout: float = 15.0) -> None:
    """Until some other backend of this database waits on a lock (the API's blocked insert)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + timeout
    while not session.scalar(query):
        assert time.monotonic() < deadline, "the API's insert never waited on the uncommitted row"
        time.sleep(0.02)
