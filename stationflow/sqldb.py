"""SQLAlchemy engines for the services' databases (the registry's and the alert service's).

SQLite gets foreign keys on, cross-thread use and a busy timeout, and optionally WAL mode
(several writers on threads one after another, readers never blocked); other URLs (PostgreSQL)
get pre-ping so a restarted server is reconnected transparently.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["alembic_config", "make_engine", "upgrade_head"]


def make_engine(url: str, *, wal: bool = False) -> Engine:
    """An engine for ``url``; a SQLite file's directory is created."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    def pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", pragmas)
    return engine


def alembic_config(migrations: Path) -> Config:
    """Alembic configuration of a packaged migrations directory (no ``alembic.ini`` needed)."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    return config


def upgrade_head(engine: Engine, migrations: Path) -> None:
    """Bring the schema of ``migrations`` to its newest revision, in one transaction."""
    config = alembic_config(migrations)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
