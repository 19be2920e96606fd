"""The registry FastAPI app: ``create_app(settings)``; resources live in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker

from stationflow import topics

from . import crud
from .api.deps import Runtime
from .api.routes import api_keys, device_types, devices, imports, stations
from .broker import BrokerAccounts, open_broker_accounts
from .consumer import StatusConsumer
from .db import make_engine, upgrade_head
from .provisioning import Provisioner
from .publisher import KafkaRegistryPublisher, MemoryRegistryPublisher
from .schemas import Message
from .settings import RegistrySettings
from .status import StatusTracker

__all__ = ["create_app"]

logger = logging.getLogger(__name__)
SNAPSHOT_CHUNK = 1000  # devices per snapshot batch: bounds memory on a large registry


def _prepare_database(settings: RegistrySettings, sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        added = crud.seed_builtin_types(session)
        if settings.registry_admin_key is not None:
            crud.ensure_bootstrap_key(session, token=settings.registry_admin_key.get_secret_value())
    logger.info("registry database ready builtin_types_added=%d", added)


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    """A value the database refuses (PostgreSQL: a NUL in a path or query parameter) is a 422, not a 500."""
    cause = getattr(exc, "orig", None) or exc
    logger.info("database refused a request value path=%s error=%s", request.url.path, cause)
    detail = [
        {"loc": ["request"], "msg": f"value not accepted by the database: {cause}", "type": "value_error"}
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _publish_snapshot(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        ids = crud.all_device_ids(session)
        for start in range(0, len(ids), SNAPSHOT_CHUNK):
            await runtime.publisher.publish(
                crud.device_records(session, ids=ids[start : start + SNAPSHOT_CHUNK])
            )
    logger.info("published registry snapshot devices=%d", len(ids))


async def _open_broker(
    settings: RegistrySettings, stack: AsyncExitStack, broker: BrokerAccounts | None
) -> Provisioner:
    """The provisioner on the given broker accounts, else on those the settings configure."""
    if broker is None:
        broker = await stack.enter_async_context(open_broker_accounts(settings))
    return Provisioner(broker, settings.mqtt_host, settings.mqtt_port)


def create_app(
    settings: RegistrySettings,
    *,
    publisher: MemoryRegistryPublisher | None = None,
    broker: BrokerAccounts | None = None,
) -> FastAPI:
    """The app; ``publisher`` replaces Kafka (and the status consumer), ``broker`` dynsec, in tests."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        async with AsyncExitStack() as stack:
            stack.callback(engine.dispose)
            upgrade_head(engine)
            sessions = sessionmaker(engine, expire_on_commit=False)
            _prepare_database(settings, sessions)
            tracker = StatusTracker()
            provisioner = await _open_broker(settings, stack, broker)
            if publisher is None:
                await topics.ensure_topics(settings)
                kafka = KafkaRegistryPublisher(
                    bootstrap=settings.kafka_bootstrap, topic=settings.topic(topics.REGISTRY)
                )
                runtime = Runtime(
                    engine, sessions, await stack.enter_async_context(kafka), tracker, provisioner
                )
                consumer = StatusConsumer(settings, group_id=settings.registry_group_id, tracker=tracker)
                await stack.enter_async_context(consumer)
            else:
                runtime = Runtime(engine, sessions, publisher, tracker, provisioner)
            app.state.runtime = runtime
            await _publish_snapshot(runtime)
            yield

    app = FastAPI(title="stationflow device registry", version="1", lifespan=lifespan)
    app.add_exception_handler(DataError, _data_error)

    @app.get("/health", tags=["health"])
    async def health() -> Message:
        """Liveness (no key needed)."""
        return Message(detail="ok")

    for module in (device_types, stations, devices, imports, api_keys):
        app.include_router(module.router)
    return app
