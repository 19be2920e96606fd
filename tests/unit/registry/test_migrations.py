"""Alembic: ``upgrade head`` builds exactly the schema the ORM models describe, on both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from devices import crud
from devices.convert import device_record
from devices.db import alembic_config, make_engine, upgrade_head
from devices.models import Base, Device, DeviceType
from tests.unit.registry.conftest import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    """An engine on an empty private database: SQLite, then PostgreSQL."""
    engine = make_engine(database_url(request.param, request, tmp_path))
    request.addfinalizer(engine.dispose)
    return engine


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_migrated_schema_matches_models(engine: Engine) -> None:
    upgrade_head(engine)
    upgrade_head(engine)  # idempotent at head
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == "0005"


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    upgrade_head(engine)
    _downgrade(engine, "0001")
    columns = {c["name"] for c in inspect(engine).get_columns("devices")}
    assert "mqtt_password_hash" not in columns and "calibration" in columns
    assert "protocol" not in columns and "hj212_mn" not in columns
    _downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade_head(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == "0005"


def _upgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_upgrade_from_0003_keeps_devices_as_json_without_links(engine: Engine) -> None:
    """Rows written before 0004 read back as ``protocol = 'json'`` devices; built-ins gain their codes."""
    _upgrade(engine, "0003")
    rain_metrics = {"rain": {"unit": "mm", "min": 0, "max": 300, "hj212_code": None}}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO device_types (name, domain, description, builtin, metrics, updated_at)"
                " VALUES ('rain-gauge', 'hydro', 'old', :yes, :metrics, :now)"
            ),
            {"yes": True, "metrics": json.dumps(rain_metrics), "now": datetime(2026, 11, 1, tzinfo=UTC)},
        )
        conn.execute(
            text(
                "INSERT INTO devices (id, type_name, status, calibration, updated_at, mqtt_password_hash)"
                " VALUES ('old-rain', 'rain-gauge', 'active', '{}', :now, 'h')"
            ),
            {"now": datetime(2026, 11, 1, tzinfo=UTC)},
        )
    upgrade_head(engine)
    with Session(engine) as session:
        row = session.get(Device, "old-rain")
        assert row is not None and row.protocol == "json" and row.mqtt_password_hash == "h"  # noqa: S105
        assert (row.hj212_mn, row.sl651_address, row.hj212_password_hash) == (None, None, None)
        record = device_record(row, row.device_type, row.station)
        assert (record.protocol, record.hj212, record.sl651) == ("json", None, None)
        assert record.metrics["rain"].sl651_code is None

        crud.seed_builtin_types(session)  # what the service does at start
        session.expire_all()
        rain = session.get(DeviceType, "rain-gauge")
        assert rain is not None and rain.metrics["rain"]["sl651_code"] == "DRP"
        assert rain.description == "old"
        assert [d for _, d in crud.outbox_batch(session, limit=10)] == ["old-rain"]
        assert session.get(DeviceType, "hydro-rtu") is not None
        row.sl651_address = "0012345678"  # the new unique index is in place
        session.add(Device(id="other", type_name="rain-gauge", sl651_address="0012345678"))
        with pytest.raises(IntegrityError):
            session.commit()
