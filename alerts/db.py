"""Engine and schema of the alert database.

SQLite (the default) runs in WAL mode with a busy timeout, so the event consumer, the
outbox dispatcher, the escalation scheduler and API requests (each on its own thread) can
write one after another without "database is locked" errors.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from alerts.models import Base
from stationflow import sqldb

__all__ = ["make_engine", "make_sessions"]


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite in WAL mode); creates the tables that do not exist yet."""
    engine = sqldb.make_engine(url, wal=True)
    Base.metadata.create_all(engine)
    return engine


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
