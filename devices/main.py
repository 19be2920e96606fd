"""The registry FastAPI app: ``create_app(settings)``; resources live in the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker

from stationflow import apikeys, topics

from . import crud
from .api.deps import Runtime
from .api.routes import api_keys, device_types, devices, imports, stations
from .broker import BrokerAccounts, open_broker_accounts
from .consumer import StatusConsumer
from .db import make_engine, upgrade_head
from .models import ApiKey
from .provisioning import Provisioner
from .publisher import KafkaRegistryPublisher, MemoryRegistryPublisher, RegistryPublisher
from .relay import OutboxRelay
from .settings import RegistrySettings
from .status import StatusTracker

__all__ = ["create_app"]

logger = logging.getLogger(__name__)
# Longest the start waits for the start snapshot while Kafka answers (it does not wait once the
# relay fails): a large registry is published in full before the API reports ready, as before the
# outbox, so services started after it find every device on the topic.
START_SNAPSHOT_WAIT_S = 120.0


class OutboxPublic(BaseModel):
    """The registry outbox: changes committed but not yet acknowledged by Kafka."""

    depth: int
    oldest_age_s: float | None
    kafka: str
    last_error: str | None
    failed_attempts: int


class HealthPublic(BaseModel):
    """Liveness, and whether registry changes reach Kafka."""

    detail: str
    outbox: OutboxPublic


def _prepare_database(settings: RegistrySettings, sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        added = crud.seed_builtin_types(session)
        if settings.registry_admin_key is not None:
            token = settings.registry_admin_key.get_secret_value()
            apikeys.check_admin_key(token, setting="STATIONFLOW_REGISTRY_ADMIN_KEY", dev=settings.dev)
            apikeys.ensure_bootstrap_key(session, model=ApiKey, token=token, name="bootstrap-admin")
    logger.info("registry database ready builtin_types_added=%d", added)


def _relay(
    settings: RegistrySettings, sessions: sessionmaker[Session], sink: RegistryPublisher
) -> OutboxRelay:
    return OutboxRelay(
        sessions,
        sink,
        batch=settings.registry_outbox_batch,
        retry_base_s=settings.registry_outbox_retry_base_s,
        retry_max_s=settings.registry_outbox_retry_max_s,
        check_s=settings.registry_topic_check_s,
        settle_s=settings.registry_reset_settle_s,
    )


async def _run_relay(stack: AsyncExitStack, relay: OutboxRelay) -> None:
    """Start the relay task (cancelled on shutdown) and wait for the start snapshot (bounded)."""
    task = asyncio.create_task(relay.run(), name="registry-outbox-relay")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    stack.push_async_callback(stop)
    if not await relay.wait_published(START_SNAPSHOT_WAIT_S):
        logger.warning("registry snapshot not yet acknowledged by kafka; the outbox relay keeps trying")


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
            sink: RegistryPublisher
            if publisher is None:
                await topics.ensure_topics(settings)
                kafka = KafkaRegistryPublisher(settings, timeout_s=settings.registry_kafka_timeout_s)
                sink = await stack.enter_async_context(kafka)
                consumer = StatusConsumer(settings, group_id=settings.registry_group_id, tracker=tracker)
                await stack.enter_async_context(consumer)
            else:
                sink = publisher
            relay = _relay(settings, sessions, sink)
            app.state.runtime = Runtime(engine, sessions, relay, tracker, provisioner, settings)
            await _run_relay(stack, relay)
            yield

    app = FastAPI(title="stationflow device registry", version="1", lifespan=lifespan)
    app.add_exception_handler(DataError, apikeys.data_error)

    @app.get("/health", tags=["health"])
    async def health(request: Request) -> HealthPublic:
        """Liveness, and the outbox: changes not yet acknowledged by Kafka (no key needed)."""
        runtime: Runtime = request.app.state.runtime
        outbox = await runtime.relay.status()
        return HealthPublic(detail="ok", outbox=OutboxPublic(**asdict(outbox)))

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus metrics (no key needed, as scrapers expect)."""
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for module in (device_types, stations, devices, imports, api_keys):
        app.include_router(module.router)
    return app
