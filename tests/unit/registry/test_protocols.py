"""Device protocols through the API: HJ 212 and SL 651 links, passwords shown once and stored hashed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from devices.catalog import BUILTIN_TYPES
from devices.models import Device
from devices.publisher import MemoryRegistryPublisher
from devices.settings import RegistrySettings
from stationflow.contracts import DeviceRecord, Quality, Reading, ReadingBatch
from stationflow.passwords import verify_password
from streams.enrich import Enriched, enrich

AIR = {"id": "air-hj-1", "type": "air-station", "protocol": "hj212"}
RTU = {"id": "rtu-1", "type": "hydro-rtu", "protocol": "sl651"}


def _stored(settings: RegistrySettings, device_id: str) -> Device:
    """The device row as the database holds it (a connection of its own, not the API's)."""
    engine = create_engine(settings.database_url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            row = session.get(Device, device_id)
            assert row is not None
            session.expunge(row)
            return row
    finally:
        engine.dispose()


def _record(published: MemoryRegistryPublisher, device_id: str) -> DeviceRecord:
    """The last record published for the device (not a tombstone)."""
    record = next(r for key, r in reversed(published.sent) if key == device_id)
    assert record is not None
    return record


def _loc(answer: Any) -> list[list[str]]:
    return [e["loc"] for e in answer.json()["detail"]]


def test_hj212_device_password_generated_shown_once_and_stored_hashed(
    client: TestClient, registry_settings: RegistrySettings, published: MemoryRegistryPublisher
) -> None:
    body = {**AIR, "hj212": {"mn": "88888880000001234567", "crc": "modbus", "allow_from": ["10.1.0.0/16"]}}
    created = client.post("/devices", json=body)
    assert created.status_code == 201, created.text
    answer = created.json()
    password = answer["hj212_password"]
    assert re.fullmatch(r"[A-Za-z0-9]{6}", password)
    assert answer["sl651_password"] is None
    assert answer["protocol"] == "hj212"
    link = {"mn": "88888880000001234567", "password_set": True, "crc": "modbus", "strict": False,
            "allow_from": ["10.1.0.0/16"]}  # fmt: skip
    assert answer["hj212"] == link and answer["sl651"] is None

    shown = client.get("/devices/air-hj-1")
    assert shown.json()["hj212"] == link
    assert password not in shown.text and "hj212_password" not in shown.json()
    assert password not in client.get("/devices").text

    row = _stored(registry_settings, "air-hj-1")
    assert row.hj212_password_hash is not None and password not in row.hj212_password_hash
    assert verify_password(password, row.hj212_password_hash)
    assert not verify_password(password[::-1] + "x", row.hj212_password_hash)

    record = _record(published, "air-hj-1")
    assert record.protocol == "hj212" and record.sl651 is None
    assert record.hj212 is not None and record.hj212.mn == "88888880000001234567"
    assert record.hj212.crc == "modbus" and record.hj212.allow_from == ["10.1.0.0/16"]
    assert record.hj212.password_hash == row.hj212_password_hash
    assert password not in record.model_dump_json()


def test_hj212_given_password_is_not_echoed(client: TestClient, registry_settings: RegistrySettings) -> None:
    body = {**AIR, "hj212": {"mn": "MN-GIVEN", "password": "123456", "strict": True}}
    answer = client.post("/devices", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["hj212_password"] is None and "123456" not in answer.text
    row = _stored(registry_settings, "air-hj-1")
    assert row.hj212_password_hash is not None and verify_password("123456", row.hj212_password_hash)
    assert row.hj212_strict is True


def test_patch_keeps_the_password_and_publishes_the_link(
    client: TestClient, registry_settings: RegistrySettings, published: MemoryRegistryPublisher
) -> None:
    client.post("/devices", json={**AIR, "hj212": {"mn": "MN-1", "password": "pw1"}})
    stored = _stored(registry_settings, "air-hj-1").hj212_password_hash

    patched = client.patch(
        "/devices/air-hj-1", json={"hj212": {"mn": "MN-2", "crc": "hj212", "strict": True}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["hj212"] == {"mn": "MN-2", "password_set": True, "crc": "hj212", "strict": True,
                                       "allow_from": []}  # fmt: skip
    assert patched.json()["hj212_password"] is None
    assert _stored(registry_settings, "air-hj-1").hj212_password_hash == stored  # kept, not re-hashed
    record = _record(published, "air-hj-1")
    assert record.hj212 is not None and (record.hj212.mn, record.hj212.strict) == ("MN-2", True)

    # an unrelated change keeps the link as it is
    sent = len(published.sent)
    assert client.patch("/devices/air-hj-1", json={"expected_interval_s": 60}).status_code == 200
    assert len(published.sent) == sent + 1
    assert _record(published, "air-hj-1").hj212 == record.hj212

    # the same password again changes nothing; a new one is hashed anew
    same = client.patch("/devices/air-hj-1", json={"hj212": {"mn": "MN-2", "password": "pw1", "crc": "hj212",
                                                              "strict": True}})  # fmt: skip
    assert same.status_code == 200 and len(published.sent) == sent + 1
    client.patch("/devices/air-hj-1", json={"hj212": {"mn": "MN-2", "password": "pw2"}})
    new_hash = _stored(registry_settings, "air-hj-1").hj212_password_hash
    assert new_hash is not None and verify_password("pw2", new_hash)
    assert _record(published, "air-hj-1").hj212 == record.hj212.model_copy(
        update={"password_hash": new_hash, "crc": None, "strict": False}
    )

    # no link for an hj212 device: 422 naming it; switching to json with the link removed is fine
    missing = client.patch("/devices/air-hj-1", json={"hj212": None})
    assert missing.status_code == 422 and ["body", "hj212"] in _loc(missing)
    switched = client.patch("/devices/air-hj-1", json={"protocol": "json", "hj212": None})
    assert switched.status_code == 200 and switched.json()["hj212"] is None
    assert _stored(registry_settings, "air-hj-1").hj212_password_hash is None
    record = _record(published, "air-hj-1")
    assert record.protocol == "json" and record.hj212 is None

    # a new link added by PATCH without a password gets one, shown in that answer only
    added = client.patch("/devices/air-hj-1", json={"protocol": "hj212", "hj212": {"mn": "MN-3"}})
    password = added.json()["hj212_password"]
    assert added.status_code == 200 and re.fullmatch(r"[A-Za-z0-9]{6}", password)
    assert verify_password(password, _stored(registry_settings, "air-hj-1").hj212_password_hash or "")


def test_duplicate_keys_are_409_naming_the_holder(client: TestClient) -> None:
    assert client.post("/devices", json={**AIR, "hj212": {"mn": "MN-DUP"}}).status_code == 201
    again = client.post("/devices", json={**AIR, "id": "air-hj-2", "hj212": {"mn": "MN-DUP"}})
    assert again.status_code == 409 and again.json()["detail"] == "MN 'MN-DUP' belongs to device 'air-hj-1'"
    assert client.get("/devices/air-hj-2").status_code == 404

    assert client.post("/devices", json={**RTU, "sl651": {"address": "00123456ab"}}).status_code == 201
    clash = client.post("/devices", json={**RTU, "id": "rtu-2", "sl651": {"address": "00123456AB"}})
    assert clash.status_code == 409
    assert clash.json()["detail"] == "RTU address '00123456AB' belongs to device 'rtu-1'"

    # PATCH onto another device's key, too; a device keeps its own key without conflict
    assert client.post("/devices", json={**AIR, "id": "air-hj-3", "hj212": {"mn": "MN-3"}}).status_code == 201
    taken = client.patch("/devices/air-hj-3", json={"hj212": {"mn": "MN-DUP"}})
    assert taken.status_code == 409 and "air-hj-1" in taken.json()["detail"]
    assert (
        client.patch("/devices/air-hj-3", json={"hj212": {"mn": "MN-3", "strict": True}}).status_code == 200
    )
    # the key is free again once its device is deleted
    assert client.delete("/devices/air-hj-1").status_code == 200
    assert client.patch("/devices/air-hj-3", json={"hj212": {"mn": "MN-DUP"}}).status_code == 200


def test_invalid_links_are_422(client: TestClient) -> None:
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({**AIR}, ["body", "hj212"]),
        ({**RTU}, ["body", "sl651"]),
        ({**AIR, "hj212": {"mn": "M", "allow_from": ["10.0.0.1/8"]}}, ["body", "hj212", "allow_from"]),
        ({**AIR, "hj212": {"mn": "M", "allow_from": ["not-a-net"]}}, ["body", "hj212", "allow_from"]),
        ({**AIR, "hj212": {"mn": "M", "password": "12;456"}}, ["body", "hj212", "password"]),
        ({**AIR, "hj212": {"mn": "M", "password": "1234567890"}}, ["body", "hj212", "password"]),
        ({**AIR, "hj212": {"mn": "M", "crc": "crc32"}}, ["body", "hj212", "crc"]),
        ({**AIR, "hj212": {"mn": "with space"}}, ["body", "hj212", "mn"]),
        ({**RTU, "sl651": {"address": "0012345678FF"}}, ["body", "sl651", "address"]),
        ({**RTU, "sl651": {"address": "001234567G"}}, ["body", "sl651", "address"]),
        ({**RTU, "sl651": {"address": "0012345678", "password": "A00"}}, ["body", "sl651", "password"]),
        ({**RTU, "sl651": {"address": "0012345678", "ack": "ack"}}, ["body", "sl651", "ack"]),
        (
            {**RTU, "sl651": {"address": "0012345678", "allow_from": ["::1/64"]}},
            ["body", "sl651", "allow_from"],
        ),
        ({**AIR, "protocol": "modbus"}, ["body", "protocol"]),
    ]
    for body, loc in cases:
        answer = client.post("/devices", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert loc in _loc(answer), (body, answer.text)
    no_codes = client.post("/devices", json={**AIR, "type": "rain-gauge", "hj212": {"mn": "M"}})
    assert no_codes.status_code == 422 and ["body", "protocol"] in _loc(no_codes)
    assert "type 'rain-gauge' gives none of its metrics an hj212_code" in no_codes.text
    assert client.get("/devices").json()["count"] == 0
    missing = client.post("/devices", json=AIR).json()["detail"][0]["msg"]
    assert missing == "protocol 'hj212' needs the hj212 link (its mn at least)"


def test_sl651_device_and_protocol_password(
    client: TestClient, registry_settings: RegistrySettings, published: MemoryRegistryPublisher
) -> None:
    body = {**RTU, "sl651": {"address": "0012345678", "ack": "esc", "level_base_m": 100.5,
                             "allow_from": ["192.168.1.7", "2001:db8::/32"]}}  # fmt: skip
    created = client.post("/devices", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["sl651_password"] is None  # omitted: not checked, nothing generated
    assert created.json()["sl651"] == {"address": "0012345678", "password_set": False, "ack": "esc",
                                       "level_base_m": 100.5,
                                       "allow_from": ["192.168.1.7/32", "2001:db8::/32"]}  # fmt: skip
    record = _record(published, "rtu-1")
    assert record.sl651 is not None and record.sl651.password_hash is None and record.sl651.ack == "esc"
    assert record.metrics["voltage"].sl651_code == "VT" and record.domain == "hydro"

    generated = client.post("/devices/rtu-1/protocol-password")
    assert generated.status_code == 200, generated.text
    password = generated.json()["password"]
    assert generated.json()["protocol"] == "sl651" and re.fullmatch(r"[0-9A-F]{4}", password)
    stored = _stored(registry_settings, "rtu-1").sl651_password_hash
    assert stored is not None and verify_password(password, stored)
    assert _record(published, "rtu-1").sl651.password_hash == stored  # type: ignore[union-attr]
    assert client.get("/devices/rtu-1").json()["sl651"]["password_set"] is True
    assert password not in client.get("/devices/rtu-1").text

    given = client.post("/devices/rtu-1/protocol-password", json={"password": "a1b2"})
    assert given.json() == {"device_id": "rtu-1", "protocol": "sl651", "password_set": True, "password": None}
    assert verify_password("A1B2", _stored(registry_settings, "rtu-1").sl651_password_hash or "")
    bad = client.post("/devices/rtu-1/protocol-password", json={"password": "12345"})
    assert bad.status_code == 422 and ["body", "password"] in _loc(bad)
    no_link = client.post("/devices/rtu-1/protocol-password", json={"protocol": "hj212"})
    assert no_link.status_code == 422 and "no hj212 link" in no_link.text
    cleared = client.post("/devices/rtu-1/protocol-password", json={"clear": True})
    assert cleared.json()["password_set"] is False
    assert _record(published, "rtu-1").sl651.password_hash is None  # type: ignore[union-attr]

    # generate_password on create / PATCH, returned once
    other = {**RTU, "id": "rtu-2", "sl651": {"address": "00000000AA", "generate_password": True}}
    made = client.post("/devices", json=other).json()
    assert re.fullmatch(r"[0-9A-F]{4}", made["sl651_password"]) and made["sl651"]["password_set"] is True
    both = {"address": "00000000AA", "password": "1234", "generate_password": True}
    assert client.patch("/devices/rtu-2", json={"sl651": both}).status_code == 422
    assert client.get("/devices/nope/protocol-password").status_code in (404, 405)
    assert client.post("/devices/nope/protocol-password").status_code == 404

    # deleting publishes the tombstone
    assert client.delete("/devices/rtu-1").status_code == 200
    assert published.sent[-1] == ("rtu-1", None)


def test_hj212_protocol_password_reset(client: TestClient, registry_settings: RegistrySettings) -> None:
    client.post("/devices", json={**AIR, "hj212": {"mn": "MN-R", "password": "old"}})
    reset = client.post("/devices/air-hj-1/protocol-password").json()
    assert reset["protocol"] == "hj212" and re.fullmatch(r"[A-Za-z0-9]{6}", reset["password"])
    stored = _stored(registry_settings, "air-hj-1").hj212_password_hash or ""
    assert verify_password(reset["password"], stored) and not verify_password("old", stored)
    bad = client.post("/devices/air-hj-1/protocol-password", json={"password": "a&b"})
    assert bad.status_code == 422
    json_device = {"id": "plain", "type": "air-station"}
    assert client.post("/devices", json=json_device).status_code == 201
    assert client.post("/devices/plain/protocol-password").status_code == 422


def test_device_type_protocol_codes(client: TestClient) -> None:
    rtu = client.get("/device-types/hydro-rtu").json()
    codes = {m["metric"]: (m["unit"], m["sl651_code"]) for m in rtu["metrics"]}
    assert rtu["domain"] == "hydro"
    assert codes == {
        "rain": ("mm", "DRP"),
        "level": ("m", "Z"),
        "flow": ("m3/s", "Q"),
        "voltage": ("V", "VT"),
        "rain_day": ("mm", "PJ"),
        "rain_total": ("mm", "PT"),
    }
    level = client.get("/device-types/level-gauge").json()
    assert {m["metric"]: m["sl651_code"] for m in level["metrics"]} == {"level": "Z", "flow": "Q"}
    air = client.get("/device-types/air-station").json()
    assert {m["metric"]: m["hj212_code"] for m in air["metrics"]}["so2"] == "a21026"

    body = {"name": "well", "domain": "hydro", "metrics": [
        {"metric": "depth", "unit": "m", "sl651_code": "H", "hj212_code": "w00001"},
        {"metric": "temp", "unit": "degC", "sl651_code": "TW"}]}  # fmt: skip
    assert client.post("/device-types", json=body).status_code == 201
    assert client.get("/device-types/well").json()["metrics"][0]["sl651_code"] == "H"
    dupe = {
        **body,
        "name": "well2",
        "metrics": [*body["metrics"], {"metric": "x", "unit": "m", "sl651_code": "H"}],
    }
    answer = client.post("/device-types", json=dupe)
    assert answer.status_code == 422 and "sl651_code must name one metric, repeated: H" in answer.text
    same_code = [{"metric": name, "unit": "m", "hj212_code": "w1"} for name in ("a", "b")]
    patched = client.patch("/device-types/well", json={"metrics": same_code})
    assert patched.status_code == 422


def test_csv_import_keeps_protocol_links(client: TestClient, registry_settings: RegistrySettings) -> None:
    client.post("/devices", json={**AIR, "hj212": {"mn": "MN-CSV", "password": "abc"}})
    stored = _stored(registry_settings, "air-hj-1")
    text = "id,type,expected_interval_s\nair-hj-1,air-station,300\n"
    answer = client.post("/import/devices", content=text, headers={"Content-Type": "text/csv"}).json()
    assert answer["updated"] == 1, answer
    after = _stored(registry_settings, "air-hj-1")
    assert after.expected_interval_s == 300 and after.protocol == "hj212"
    assert (after.hj212_mn, after.hj212_password_hash) == ("MN-CSV", stored.hj212_password_hash)


def test_hydro_rtu_readings_pass_enrichment() -> None:
    """The built-in hydro-rtu's metrics and units (V included) are accepted by the streams worker."""
    spec = next(t for t in BUILTIN_TYPES if t.name == "hydro-rtu")
    now = datetime.now(UTC)
    record = DeviceRecord(device_id="rtu-1", device_type=spec.name, domain=spec.domain,
                          metrics={m.metric: m for m in spec.metrics}, updated_at=now)  # fmt: skip
    values = {"rain": (0.5, "mm"), "level": (7.97, "m"), "flow": (3.25, "m3/s"), "voltage": (12.07, "volt")}
    readings = [Reading(metric=k, value=v, unit=u, ts=now) for k, (v, u) in values.items()]
    batch = ReadingBatch(device_id="rtu-1", received_at=now, source="tcp:10.0.0.1:5000", readings=readings)
    result = enrich(batch, record)
    assert isinstance(result, Enriched) and result.domain == "hydro"
    assert {r.metric: (r.value, r.unit) for r in result.batch.readings} == {
        "rain": (0.5, "mm"), "level": (7.97, "m"), "flow": (3.25, "m3/s"), "voltage": (12.07, "V")
    }  # fmt: skip
    over = batch.model_copy(update={"readings": [Reading(metric="voltage", value=31.0, unit="V", ts=now)]})
    flagged = enrich(over, record)
    assert isinstance(flagged, Enriched) and flagged.batch.readings[0].quality == Quality.OVER_RANGE
