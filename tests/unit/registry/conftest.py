"""Registry unit fixtures: the app on a temp database with an in-memory publisher.

Every test using ``registry_settings`` (directly or through ``client``) runs twice: on a
private SQLite file (``[sqlite]``) and on a fresh database of the session's real PostgreSQL
server (``[postgres]``, see ``postgres_db_url`` in tests/conftest.py). Deselect the PostgreSQL
runs with ``-k "not postgres"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devices.main import create_app
from devices.publisher import MemoryRegistryPublisher
from devices.settings import RegistrySettings

ADMIN_TOKEN = "admin-test-token"  # noqa: S105


BACKENDS = ["sqlite", "postgres"]


def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A private, empty database of ``backend``: a temp SQLite file or a fresh PostgreSQL one."""
    if backend == "postgres":
        # Looked up only here, so SQLite-only runs never start PostgreSQL.
        url: str = request.getfixturevalue("postgres_db_url")
        return url
    return f"sqlite:///{tmp_path}/registry.db"


@pytest.fixture(params=BACKENDS)
def registry_settings(request: pytest.FixtureRequest, tmp_path: Path) -> RegistrySettings:
    """Settings with a private database (SQLite, then PostgreSQL) and a bootstrap admin key."""
    return RegistrySettings(
        state_dir=tmp_path,
        registry_database_url=database_url(request.param, request, tmp_path),
        registry_admin_key=ADMIN_TOKEN,  # type: ignore[arg-type]
    )


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
