"""Engine and schema (Alembic migrations) of the alert database.

SQLite (the default) runs in WAL mode with a busy timeout, so the event consumer, the
outbox dispatcher, the escalation scheduler and API requests (each on its own thread) can
write one after another without "database is locked" errors.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from stationflow import sqldb

__all__ = ["alembic_config", "make_engine", "make_sessions", "upgrade_head"]

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """Alembic configuration of the packaged alert migrations."""
    return sqldb.alembic_config(MIGRATIONS)


def upgrade_head(engine: Engine) -> None:
    """Bring the alert schema to the newest revision (run by the service at startup)."""
    sqldb.upgrade_head(engine, MIGRATIONS)


def make_engine(url: str, *, migrate: bool = True) -> Engine:
    """An engine for ``url`` (SQLite in WAL mode), its schema migrated to the newest revision."""
    engine = sqldb.make_engine(url, wal=True)
    if migrate:
        upgrade_head(engine)
    return engine


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
