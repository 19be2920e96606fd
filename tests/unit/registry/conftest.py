"""Registry unit fixtures: the app on a temp SQLite database with an in-memory publisher."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devices.main import create_app
from devices.publisher import MemoryRegistryPublisher
from devices.settings import RegistrySettings

ADMIN_TOKEN = "admin-test-token"  # noqa: S105


@pytest.fixture
def registry_settings(tmp_path: Path) -> RegistrySettings:
    """Settings with a private SQLite file and a bootstrap admin key."""
    return RegistrySettings(state_dir=tmp_path, registry_admin_key=ADMIN_TOKEN)  # type: ignore[arg-type]


@pytest.fixture
def published() -> MemoryRegistryPublisher:
    """What the app would have sent to Kafka."""
    return MemoryRegistryPublisher()


@pytest.fixture
def client(registry_settings: RegistrySettings, published: MemoryRegistryPublisher) -> Iterator[TestClient]:
    """A client with the admin key set; the lifespan runs for the test."""
    app = create_app(registry_settings, publisher=published)
    with TestClient(app, headers={"X-API-Key": ADMIN_TOKEN}) as test_client:
        yield test_client


def make_key(client: TestClient, role: str) -> dict[str, str]:
    """Headers carrying a new key of ``role``."""
    answer = client.post("/api-keys", json={"name": f"{role} key", "role": role})
    assert answer.status_code == 201, answer.text
    return {"X-API-Key": answer.json()["token"]}
