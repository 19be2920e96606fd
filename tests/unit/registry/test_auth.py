"""API keys and roles: 401 without a key, 403 with too small a role."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devices.main import create_app
from devices.publisher import MemoryRegistryPublisher
from devices.settings import RegistrySettings
from stationflow.apikeys import InsecureSecretError
from tests.unit.registry.conftest import ADMIN_TOKEN, make_key


def test_health_is_open_and_everything_else_needs_a_key(client: TestClient) -> None:
    assert client.get("/health", headers={"X-API-Key": ""}).status_code == 200
    assert client.get("/docs", headers={"X-API-Key": ""}).status_code == 200
    answer = client.get("/devices", headers={"X-API-Key": ""})
    assert answer.status_code == 401 and "X-API-Key" in answer.json()["detail"]
    assert client.get("/devices", headers={"X-API-Key": "nope"}).json()["detail"] == "unknown API key"


def test_roles(client: TestClient) -> None:
    reader, integrator = make_key(client, "read-only"), make_key(client, "integrator")
    assert client.get("/device-types", headers=reader).status_code == 200
    answer = client.post("/stations", json={"id": "s1", "name": "S"}, headers=reader)
    assert answer.status_code == 403
    assert answer.json()["detail"] == "API key role 'read-only' may not do this: it needs 'integrator'"
    assert client.post("/stations", json={"id": "s1", "name": "S"}, headers=integrator).status_code == 201
    body = {"name": "t", "domain": "x", "metrics": [{"metric": "m", "unit": "u"}]}
    assert client.post("/device-types", json=body, headers=integrator).status_code == 403
    assert client.get("/api-keys", headers=integrator).status_code == 403


def test_keys_are_stored_hashed_and_revocable(client: TestClient) -> None:
    headers = make_key(client, "read-only")
    listed = client.get("/api-keys").json()
    assert listed["count"] == 2
    assert all("token" not in k for k in listed["data"])
    key_id = next(k["id"] for k in listed["data"] if k["role"] == "read-only")
    assert client.delete(f"/api-keys/{key_id}").status_code == 200
    assert client.get("/devices", headers=headers).status_code == 401


def test_the_registry_refuses_the_default_admin_key_outside_dev(tmp_path: Path) -> None:
    settings = RegistrySettings(state_dir=tmp_path, registry_admin_key="change-me")  # type: ignore[arg-type]
    app = create_app(settings, publisher=MemoryRegistryPublisher())
    with pytest.raises(InsecureSecretError, match="STATIONFLOW_REGISTRY_ADMIN_KEY"), TestClient(app):
        pass
    dev = settings.model_copy(update={"dev": True})
    with TestClient(
        create_app(dev, publisher=MemoryRegistryPublisher()), headers={"X-API-Key": "change-me"}
    ) as c:
        assert c.get("/api-keys").status_code == 200


def test_the_event_stream_token_in_the_query_is_only_for_the_alert_service(client: TestClient) -> None:
    # the registry takes its key from the X-API-Key header only (no ?key=, which ends up in logs)
    assert client.get("/devices", params={"key": ADMIN_TOKEN}, headers={"X-API-Key": ""}).status_code == 401
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert [s["in"] for s in schemes.values()] == ["header"]
