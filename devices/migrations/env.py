"""Alembic environment: uses the caller's connection when given (the service), else the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from devices.models import Base
from devices.settings import RegistrySettings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    env = RegistrySettings().registry_database_url
    return env or config.get_main_option("sqlalchemy.url") or RegistrySettings().database_url


def run_offline() -> None:
    """Emit SQL without a database."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate through the given connection, or one opened from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config({"sqlalchemy.url": _url()}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
