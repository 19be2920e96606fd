"""MQTT credentials issued by the registry, against a fake broker (the real one: integration)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from devices.broker import BrokerError
from devices.credentials import verify_password
from devices.main import create_app
from devices.models import Device
from devices.publisher import MemoryRegistryPublisher
from devices.settings import RegistrySettings
from tests.unit.registry.conftest import ADMIN_TOKEN, make_key


class FakeBroker:
    """Records account calls; ``fail`` names operations that raise BrokerError."""

    enabled = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail: set[str] = set()
        self.fail_after = 10**9  # create succeeds this many times, then fails
        self.counter = 0

    async def _call(self, op: str, device_id: str) -> None:
        self.calls.append((op, device_id))
        if op in self.fail:
            raise BrokerError(f"{op} refused for '{device_id}'")

    async def create(self, device_id: str) -> str | None:
        """A password, or a failure after ``fail_after`` creations."""
        await self._call("create", device_id)
        self.counter += 1
        if self.counter > self.fail_after:
            raise BrokerError("broker gone")
        return f"pw-{device_id}-{self.counter}"

    async def rotate(self, device_id: str) -> str | None:
        """A new password."""
        await self._call("rotate", device_id)
        self.counter += 1
        return f"pw-{device_id}-{self.counter}"

    async def disable(self, device_id: str) -> None:
        """Record."""
        await self._call("disable", device_id)

    async def enable(self, device_id: str) -> None:
        """Record."""
        await self._call("enable", device_id)

    async def delete(self, device_id: str) -> None:
        """Record."""
        await self._call("delete", device_id)


@pytest.fixture
def broker() -> FakeBroker:
    """The fake broker of the test."""
    return FakeBroker()


@pytest.fixture
def app_client(
    registry_settings: RegistrySettings, published: MemoryRegistryPublisher, broker: FakeBroker
) -> Iterator[TestClient]:
    """The app with the fake broker."""
    app = create_app(registry_settings, publisher=published, broker=broker)
    with TestClient(app, headers={"X-API-Key": ADMIN_TOKEN}) as test_client:
        yield test_client


def stored_hash(client: TestClient, device_id: str) -> str | None:
    """The password hash the registry holds for a device."""
    with client.app.state.runtime.sessions() as session:  # type: ignore[attr-defined]
        row = session.get(Device, device_id)
        assert row is not None
        return row.mqtt_password_hash


def register(client: TestClient, device_id: str, **extra: object) -> dict[str, object]:
    """POST a rain gauge; its 201 body."""
    answer = client.post("/devices", json={"id": device_id, "type": "rain-gauge", **extra})
    assert answer.status_code == 201, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_registration_returns_credentials_once_and_stores_only_a_hash(app_client: TestClient) -> None:
    body = register(app_client, "rg-1")
    mqtt = body["mqtt"]
    assert mqtt == {
        "username": "rg-1",
        "password": "pw-rg-1-1",
        "host": "127.0.0.1",
        "port": 1883,
        "topic": "devices/rg-1/readings",
    }
    stored = stored_hash(app_client, "rg-1")
    assert stored is not None and "pw-rg-1-1" not in stored
    assert verify_password("pw-rg-1-1", stored)
    assert "mqtt" not in app_client.get("/devices/rg-1").json()
    assert "mqtt_password_hash" not in app_client.get("/devices/rg-1").json()


def test_integrator_may_register_and_rotate_but_reader_may_not(app_client: TestClient) -> None:
    integrator, reader = make_key(app_client, "integrator"), make_key(app_client, "read-only")
    body = {"id": "rg-i", "type": "rain-gauge"}
    assert app_client.post("/devices", json=body, headers=integrator).is_success
    assert app_client.post("/devices/rg-i/credentials", headers=integrator).is_success
    assert app_client.post("/devices/rg-i/credentials", headers=reader).status_code == 403


def test_broker_failure_leaves_no_device(
    app_client: TestClient, broker: FakeBroker, published: MemoryRegistryPublisher
) -> None:
    broker.fail.add("create")
    answer = app_client.post("/devices", json={"id": "rg-x", "type": "rain-gauge"})
    assert answer.status_code == 502
    assert "rg-x" in answer.json()["detail"] and "not registered" in answer.json()["detail"]
    assert app_client.get("/devices/rg-x").status_code == 404
    assert ("delete", "rg-x") in broker.calls  # a half-made account is cleaned up
    # No record of it is published (the outbox may follow the undone registration with a tombstone).
    assert all(record is None for key, record in published.sent if key == "rg-x")
    broker.fail.clear()
    register(app_client, "rg-x")  # the id is free again


def test_retired_at_registration_is_disabled(app_client: TestClient, broker: FakeBroker) -> None:
    register(app_client, "rg-r", status="retired")
    assert broker.calls == [("create", "rg-r"), ("disable", "rg-r")]


def test_rotation_replaces_the_hash(app_client: TestClient) -> None:
    register(app_client, "rg-2")
    answer = app_client.post("/devices/rg-2/credentials")
    assert answer.status_code == 200, answer.text
    new = answer.json()
    assert (new["username"], new["password"]) == ("rg-2", "pw-rg-2-2")
    stored = stored_hash(app_client, "rg-2")
    assert stored is not None
    assert verify_password("pw-rg-2-2", stored) and not verify_password("pw-rg-2-1", stored)
    assert app_client.post("/devices/nope/credentials").status_code == 404


def test_rotation_failure_keeps_the_old_hash(app_client: TestClient, broker: FakeBroker) -> None:
    register(app_client, "rg-3")
    broker.fail.add("rotate")
    assert app_client.post("/devices/rg-3/credentials").status_code == 502
    stored = stored_hash(app_client, "rg-3")
    assert stored is not None and verify_password("pw-rg-3-1", stored)


def test_status_changes_follow_to_the_broker(app_client: TestClient, broker: FakeBroker) -> None:
    register(app_client, "rg-4")
    for new in ("maintenance", "retired", "retired", "active", "maintenance"):
        assert app_client.patch("/devices/rg-4", json={"status": new}).is_success
    assert [op for op, _ in broker.calls] == ["create", "disable", "enable"]


def test_status_change_refused_by_the_broker_is_not_saved(app_client: TestClient, broker: FakeBroker) -> None:
    register(app_client, "rg-5")
    broker.fail.add("disable")
    assert app_client.patch("/devices/rg-5", json={"status": "retired"}).status_code == 502
    assert app_client.get("/devices/rg-5").json()["status"] == "active"


def test_delete_removes_the_account(app_client: TestClient, broker: FakeBroker) -> None:
    register(app_client, "rg-6")
    broker.fail.add("delete")
    assert app_client.delete("/devices/rg-6").status_code == 502
    assert app_client.get("/devices/rg-6").is_success
    broker.fail.clear()
    assert app_client.delete("/devices/rg-6").is_success
    assert broker.calls[-1] == ("delete", "rg-6")
    assert app_client.get("/devices/rg-6").status_code == 404


def _csv(*rows: str) -> str:
    return "id,type,status\n" + "".join(f"{r}\n" for r in rows)


def test_import_issues_credentials_to_new_devices_only(app_client: TestClient, broker: FakeBroker) -> None:
    register(app_client, "old-1")
    text = _csv("old-1,rain-gauge,active", "new-1,rain-gauge,active", "new-2,rain-gauge,retired")
    report = app_client.post("/import/devices", content=text, headers={"Content-Type": "text/csv"}).json()
    assert report["created"] == 2 and report["unchanged"] == 1
    assert [c["device_id"] for c in report["credentials"]] == ["new-1", "new-2"]
    for item in report["credentials"]:
        stored = stored_hash(app_client, item["device_id"])
        assert stored is not None and verify_password(item["password"], stored)
    assert ("disable", "new-2") in broker.calls
    again = app_client.post("/import/devices", content=text, headers={"Content-Type": "text/csv"}).json()
    assert again["credentials"] == [] and again["unchanged"] == 3


def test_import_status_change_disables(app_client: TestClient, broker: FakeBroker) -> None:
    register(app_client, "imp-1")
    text = _csv("imp-1,rain-gauge,retired")
    report = app_client.post("/import/devices", content=text, headers={"Content-Type": "text/csv"}).json()
    assert report["updated"] == 1 and report["failed"] == 0
    assert broker.calls[-1] == ("disable", "imp-1")


def test_import_stops_issuing_after_a_broker_failure(app_client: TestClient, broker: FakeBroker) -> None:
    broker.fail_after = 1
    text = _csv("f-1,rain-gauge,active", "f-2,rain-gauge,active", "f-3,rain-gauge,active")
    report = app_client.post("/import/devices", content=text, headers={"Content-Type": "text/csv"}).json()
    assert report["created"] == 1 and report["failed"] == 2
    assert [e["row"] for e in report["errors"]] == [2, 3]
    assert "broker gone" in report["errors"][0]["reason"]
    assert [c["device_id"] for c in report["credentials"]] == ["f-1"]
    assert app_client.get("/devices", params={"limit": 10}).json()["count"] == 1
    assert [op for op, _ in broker.calls].count("create") == 2  # f-3 not attempted


def test_without_broker_no_credentials(client: TestClient) -> None:
    assert register(client, "nb-1")["mqtt"] is None
    answer = client.post("/devices/nb-1/credentials")
    assert answer.status_code == 409
    assert "provisioning is off" in answer.json()["detail"]
    report = client.post(
        "/import/devices", content=_csv("nb-2,rain-gauge,active"), headers={"Content-Type": "text/csv"}
    ).json()
    assert report["created"] == 1 and report["credentials"] == []
