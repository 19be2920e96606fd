"""Shared fixtures: the real stack components as subprocesses on free loopback ports.

A missing binary makes the fixture raise :class:`StackError` with an install hint, so the run
fails instead of skipping: CI installs everything with ``scripts/setup.sh``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol
from uuid import uuid4

import pytest

from stationflow.stack import (
    Component,
    influx_create_db,
    start_influxd,
    start_mosquitto,
    start_tansu,
    start_victoria_metrics,
)

INTEGRATION_DIR = Path(__file__).parent / "integration"


class NameFactory(Protocol):
    """Type of the ``unique_name`` fixture."""

    def __call__(self, prefix: str = "n") -> str: ...


@pytest.fixture(scope="session", autouse=True)
def _no_outside_settings() -> Iterator[None]:
    """Tests see the settings' defaults and what they set themselves, never a developer's
    ``STATIONFLOW_*`` variables (which every service started as a subprocess would inherit)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("STATIONFLOW_")]:
            mp.delenv(name)
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration with ``integration``."""
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


def _serve(
    start: Callable[[Path], Component], tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[Component]:
    component = start(tmp_path_factory.mktemp(name))
    try:
        yield component
    finally:
        component.stop()


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Component]:
    """A Tansu Kafka broker for the session; ``tansu.url`` is the bootstrap address."""
    yield from _serve(start_tansu, tmp_path_factory, "tansu")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Component]:
    """A Mosquitto broker (anonymous access) for the session; use ``.host`` / ``.port``."""
    yield from _serve(start_mosquitto, tmp_path_factory, "mosquitto")


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Component]:
    """An InfluxDB 1.x server shared by the session: never stop it in a test."""
    yield from _serve(start_influxd, tmp_path_factory, "influxd")


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Component]:
    """A VictoriaMetrics server (an ``/api/v2/write`` target) for the session."""
    yield from _serve(start_victoria_metrics, tmp_path_factory, "victoria")


@pytest.fixture
def influxd_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], Component]]:
    """Start private influxd servers (free to stop, kill, restart); all stopped afterwards."""
    started: list[Component] = []

    def start() -> Component:
        component = start_influxd(tmp_path_factory.mktemp("influxd-private"))
        started.append(component)
        return component

    yield start
    for component in reversed(started):
        component.stop()


def _unique_name(prefix: str = "n") -> str:
    return f"{prefix}{uuid4().hex[:8]}"


@pytest.fixture
def unique_name() -> NameFactory:
    """Factory of names unique to this test: ``unique_name("grp")`` -> ``"grp3f2a9c1e"``."""
    return _unique_name


@pytest.fixture
def topic_prefix() -> str:
    """A Kafka topic prefix unique to this test, e.g. ``"t3f2a9c1e."``."""
    return f"t{uuid4().hex[:8]}."


@pytest.fixture
def influx_db(influxd: Component, unique_name: NameFactory) -> str:
    """A fresh database on the session influxd, unique to this test."""
    name = unique_name("db")
    influx_create_db(influxd.url, name)
    return name


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for the session: the SQLAlchemy URL of its ``postgres`` database.

    Never use that database itself for test data: ``postgres_db_url`` gives each test its own.
    """
    from stationflow.stack.postgres import start_postgres  # the PostgreSQL fixtures stand alone

    with start_postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server.sqlalchemy_url()


@pytest.fixture
def postgres_db_url(postgres_url: str, unique_name: NameFactory) -> Iterator[str]:
    """A fresh, empty database on the session PostgreSQL; dropped after the test."""
    from stationflow.stack.postgres import create_database, drop_database

    name = unique_name("test_")
    yield create_database(postgres_url, name)
    drop_database(postgres_url, name)
