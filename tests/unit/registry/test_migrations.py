"""Alembic: ``upgrade head`` builds exactly the schema the ORM models describe."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from devices.db import make_engine, upgrade_head
from devices.models import Base


def test_migrated_schema_matches_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    upgrade_head(engine)
    upgrade_head(engine)  # idempotent at head
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == "0002"
    engine.dispose()
