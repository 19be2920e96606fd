"""Alembic environment of the alert database: the caller's connection (the service), else the URL.

Its version table is ``alert_alembic_version``, so the alert tables can share a PostgreSQL
database with the registry (whose version table is Alembic's default).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from alerts.models import Base
from alerts.settings import AlertsSettings

VERSION_TABLE = "alert_alembic_version"
config = context.config
target_metadata = Base.metadata


def _configure(**kw: object) -> None:
    context.configure(target_metadata=target_metadata, version_table=VERSION_TABLE, **kw)  # type: ignore[arg-type]


def run_offline() -> None:
    """Emit SQL without a database."""
    _configure(url=AlertsSettings().database_url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate through the given connection, or one opened from the settings' URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = AlertsSettings().database_url
    engine = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(connection=conn, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
