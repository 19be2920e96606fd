"""The shared API-key kit (stationflow.apikeys) as the alert service uses it, on SQLite and
PostgreSQL: tokens stored hashed, bootstrap idempotent, UTC timestamps, the default secret
refused outside dev, ``?key=`` accepted (the console's EventSource)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.main import create_app
from alerts.models import ApiKey
from alerts.settings import AlertsSettings
from stationflow.apikeys import (
    InsecureSecretError,
    check_admin_key,
    create_key,
    ensure_bootstrap_key,
    find_key,
    hash_token,
)

PREFIX = "sfa_"
BOOT = "boot-token"


def test_a_key_is_stored_as_its_hash_and_found_by_its_token(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        row, token = create_key(s, model=ApiKey, name="wall", role="read-only", token_prefix=PREFIX)
        s.commit()
        assert token.startswith("sfa_") and len(token) > 40 and row.prefix == token[:10]
        stored = s.scalars(select(ApiKey)).one()
        assert stored.key_hash == hash_token(token) != token and token not in stored.key_hash
        assert find_key(s, model=ApiKey, token=token) is stored
        assert find_key(s, model=ApiKey, token=token + "x") is None
        assert stored.created_at.tzinfo is not None


def test_bootstrap_is_idempotent(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        assert ensure_bootstrap_key(s, model=ApiKey, token=BOOT, name="bootstrap admin") is True
        assert ensure_bootstrap_key(s, model=ApiKey, token=BOOT, name="bootstrap admin") is False
    with sessions() as s:
        (key,) = s.scalars(select(ApiKey)).all()
        assert (key.name, key.role, key.prefix) == ("bootstrap admin", "admin", "boot-token")


@pytest.mark.parametrize(
    "written",
    [
        datetime(2026, 7, 20, 14, 0, tzinfo=timezone(timedelta(hours=8))),  # China time
        datetime(2026, 7, 20, 6, 0, tzinfo=UTC),
        datetime(2026, 7, 20, 6, 0),  # naive: taken as UTC, never as the host's local time  # noqa: DTZ001
    ],
)
def test_timestamps_keep_their_instant_and_come_back_in_utc(
    sessions: sessionmaker[Session], written: datetime
) -> None:
    with sessions() as s:
        row, _ = create_key(s, model=ApiKey, name="t", role="admin", token_prefix="")
        row.created_at = written
        s.commit()
    with sessions() as s:
        back = s.scalars(select(ApiKey)).one().created_at
    assert back == datetime(2026, 7, 20, 6, 0, tzinfo=UTC) and back.tzinfo == UTC


def test_the_default_secret_is_refused_outside_dev() -> None:
    with pytest.raises(InsecureSecretError, match="STATIONFLOW_X_ADMIN_KEY"):
        check_admin_key("change-me", setting="STATIONFLOW_X_ADMIN_KEY", dev=False)
    with pytest.raises(InsecureSecretError):
        check_admin_key(" change-me\n", setting="STATIONFLOW_X_ADMIN_KEY", dev=False)
    check_admin_key("change-me", setting="STATIONFLOW_X_ADMIN_KEY", dev=True)
    check_admin_key("a-real-secret", setting="STATIONFLOW_X_ADMIN_KEY", dev=False)


def test_the_alert_service_does_not_start_with_the_default_admin_key(tmp_path: Path) -> None:
    settings = AlertsSettings(state_dir=tmp_path, alerts_admin_key="change-me", alerts_registry=False)  # type: ignore[arg-type]
    app = create_app(settings, channels={}, kafka=False)
    with pytest.raises(InsecureSecretError, match="STATIONFLOW_ALERTS_ADMIN_KEY"), TestClient(app):
        pass
    dev = settings.model_copy(update={"dev": True})
    with TestClient(create_app(dev, channels={}, kafka=False)) as client:
        assert client.get("/whoami", headers={"X-API-Key": "change-me"}).json()["role"] == "admin"


def test_the_alert_service_takes_the_key_from_the_header_or_the_query(tmp_path: Path) -> None:
    settings = AlertsSettings(state_dir=tmp_path, alerts_admin_key="tok-admin", alerts_registry=False)  # type: ignore[arg-type]
    with TestClient(create_app(settings, channels={}, kafka=False)) as client:
        assert client.get("/whoami", params={"key": "tok-admin"}).status_code == 200
        assert client.get("/whoami", headers={"X-API-Key": "tok-admin"}).status_code == 200
        missing = client.get("/whoami")
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
        assert client.get("/whoami", params={"key": "nope"}).json()["detail"] == "unknown API key"
        assert (
            client.get("/stations/board", headers={"X-API-Key": "tok-admin"}).status_code == 404
        )  # no registry
