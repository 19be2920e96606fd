"""Engine creation and schema migration (Alembic ``upgrade head``, run by the service at startup)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import Engine

from stationflow import sqldb

__all__ = ["alembic_config", "make_engine", "upgrade_head"]

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys on and cross-thread use allowed."""
    return sqldb.make_engine(url)


def alembic_config() -> Config:
    """Alembic configuration of the packaged registry migrations."""
    return sqldb.alembic_config(MIGRATIONS)


def upgrade_head(engine: Engine) -> None:
    """Bring the registry schema to the newest revision (run by the service at startup)."""
    sqldb.upgrade_head(engine, MIGRATIONS)
