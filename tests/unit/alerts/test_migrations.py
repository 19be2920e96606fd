"""Alembic: ``upgrade head`` builds exactly the schema the alert models describe, on both
backends, in its own version table (the alert tables may share a database with the registry)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from alerts.db import alembic_config, make_engine, upgrade_head
from alerts.models import Base
from devices.db import upgrade_head as registry_upgrade_head
from tests.unit.registry.conftest import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    engine = make_engine(database_url(request.param, request, tmp_path), migrate=False)
    request.addfinalizer(engine.dispose)
    return engine


def test_migrated_schema_matches_models_next_to_the_registry(engine: Engine) -> None:
    registry_upgrade_head(engine)  # one shared database, as in docker-compose
    upgrade_head(engine)
    upgrade_head(engine)  # idempotent at head
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "version_table": "alert_alembic_version",
                "include_name": lambda name, kind, _parent: kind != "table" or name.startswith("alert"),
            },
        )
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == "0001"
    tables = set(inspect(engine).get_table_names())
    assert {"alembic_version", "alert_alembic_version", "api_keys", "alert_api_keys", "alerts"} <= tables


def test_downgrade_to_base_leaves_no_alert_table(engine: Engine) -> None:
    upgrade_head(engine)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alert_alembic_version"}
