"""Engine creation and schema migration (Alembic ``upgrade head``, run by the service at startup)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from stationflow import sqldb

__all__ = ["alembic_config", "make_engine", "upgrade_head"]

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys on and cross-thread use allowed."""
    return sqldb.make_engine(url)


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations (no ``alembic.ini`` needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade_head(engine: Engine) -> None:
    """Bring the database schema to the newest revision."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
