"""Alembic: ``upgrade head`` builds exactly the schema the ORM models describe, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from devices.db import alembic_config, make_engine, upgrade_head
from devices.models import Base
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
        assert context.get_current_revision() == "0004"


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    upgrade_head(engine)
    _downgrade(engine, "0001")
    columns = {c["name"] for c in inspect(engine).get_columns("devices")}
    assert "mqtt_password_hash" not in columns and "calibration" in columns
    _downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade_head(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == "0004"
