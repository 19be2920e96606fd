"""API keys and roles: 401 without a key, 403 with too small a role."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.unit.registry.conftest import make_key


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
