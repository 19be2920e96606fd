"""The station ``public`` flag: hidden by default, set by create/patch/CSV, carried on every record."""

from __future__ import annotations

from fastapi.testclient import TestClient

from devices.publisher import MemoryRegistryPublisher
from stationflow.contracts import DeviceRecord

AIR = {"id": "st-air-1", "name": "Air 1", "kind": "air", "lat": 30.2, "lon": 120.1}


def _last_station_public(published: MemoryRegistryPublisher, device_id: str) -> bool:
    records = [r for k, r in published.sent if k == device_id and isinstance(r, DeviceRecord)]
    assert records, f"no record for {device_id}"
    assert records[-1].station is not None
    return records[-1].station.public


def test_public_defaults_to_false_and_follows_patch(
    client: TestClient, published: MemoryRegistryPublisher
) -> None:
    created = client.post("/stations", json=AIR)
    assert created.status_code == 201 and created.json()["public"] is False
    assert (
        client.post(
            "/devices", json={"id": "aq-1", "type": "air-station", "station_id": "st-air-1"}
        ).status_code
        == 201
    )
    assert _last_station_public(published, "aq-1") is False

    assert client.patch("/stations/st-air-1", json={"public": True}).json()["public"] is True
    assert _last_station_public(published, "aq-1") is True
    assert client.get("/stations/st-air-1").json()["public"] is True
    # A patch of another field keeps the flag.
    assert client.patch("/stations/st-air-1", json={"name": "Air One"}).json()["public"] is True
    assert _last_station_public(published, "aq-1") is True

    assert client.patch("/stations/st-air-1", json={"public": False}).json()["public"] is False
    assert _last_station_public(published, "aq-1") is False
    assert client.patch("/stations/st-air-1", json={"public": None}).status_code == 422


def test_public_on_create_and_csv_import(client: TestClient) -> None:
    assert client.post("/stations", json={**AIR, "public": True}).json()["public"] is True
    text = "id,name,kind,public\nst-b,B,air,true\nst-c,C,air,false\nst-d,D,air,\nst-e,E,air,maybe\n"
    answer = client.post("/import/stations", content=text, headers={"Content-Type": "text/csv"}).json()
    assert (answer["created"], answer["failed"]) == (3, 1)
    assert answer["errors"][0]["row"] == 4 and "public" in answer["errors"][0]["reason"]
    got = {s["id"]: s["public"] for s in client.get("/stations").json()["data"]}
    assert got == {"st-air-1": True, "st-b": True, "st-c": False, "st-d": False}
