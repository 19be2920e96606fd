"""The alert service app: ``create_app(settings)``; the lifespan runs the event consumer,
the escalation scheduler, the outbox dispatcher and the registry follower as tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker

from alerts import metrics
from alerts.api import router
from alerts.auth import BOOTSTRAP_NAME
from alerts.board import StationBoard
from alerts.channels import Channel
from alerts.channels.email import EmailChannel
from alerts.channels.mqtt import MqttChannel
from alerts.channels.sms import SmsChannel
from alerts.channels.webhook import WebhookChannel
from alerts.consumer import EventConsumer
from alerts.db import make_engine, make_sessions
from alerts.dispatcher import Dispatcher
from alerts.lifecycle import due_escalations
from alerts.live import Broadcaster
from alerts.models import Alert, ApiKey, Outbox
from alerts.runtime import Runtime
from alerts.settings import AlertsSettings
from alerts.stations import router as stations_router
from stationflow import apikeys, topics
from stationflow.consumerlag import ConsumerLagMonitor, GroupTopics
from stationflow.contracts import DeviceStatus
from stationflow.lifetime import cancel_and_wait
from stationflow.registryview import RegistryFollower, RegistryView
from stationview.influxql import InfluxQL
from stationview.state import station_board

__all__ = ["build_channels", "create_app"]

logger = logging.getLogger(__name__)
CONSOLE = Path(__file__).parent / "console.html"
SEVERITIES = ("info", "minor", "moderate", "major", "critical")


def build_channels(settings: AlertsSettings) -> dict[str, Channel]:
    """Every channel, configured from the settings."""
    timeout = settings.alerts_send_timeout_s
    password = settings.alerts_smtp_password
    mqtt_password = settings.mqtt_password
    return {
        "webhook": WebhookChannel(
            settings.alerts_webhook_secret.get_secret_value().encode(), timeout_s=timeout
        ),
        "sms": SmsChannel(
            settings.alerts_sms_url,
            settings.alerts_sms_template,
            headers=settings.alerts_sms_headers,
            timeout_s=timeout,
        ),
        "email": EmailChannel(
            host=settings.alerts_smtp_host,
            port=settings.alerts_smtp_port,
            sender=settings.alerts_smtp_from,
            username=settings.alerts_smtp_username,
            password=password.get_secret_value() if password else None,
            starttls=settings.alerts_smtp_starttls,
            timeout_s=timeout,
        ),
        "mqtt": MqttChannel(
            settings.mqtt_host,
            settings.mqtt_port,
            username=settings.mqtt_username,
            password=mqtt_password.get_secret_value() if mqtt_password else None,
            client_id=f"{settings.alerts_group_id}-notify",
            timeout_s=timeout,
        ),
    }


class Health(BaseModel):
    """Liveness, and whether the service is consuming events and knows the registry."""

    status: str
    consuming: bool = Field(description="joined the consumer group on alerts.events")
    registry_devices: int | None = Field(description="devices known from the registry (None: not followed)")


def _refresh_gauges(sessions: sessionmaker[Session]) -> None:
    """The open-alert and outbox gauges, once a tick (off the dispatcher's path: counting the
    outbox in every claim added its query to every notification's latency)."""
    with sessions() as session:
        rows = session.execute(
            select(Alert.status, Alert.severity, func.count())
            .where(Alert.status != "resolved")
            .group_by(Alert.status, Alert.severity)
        ).all()
        pending = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.status == "pending"))
    metrics.OUTBOX_DEPTH.set(pending or 0)
    counts = {(st, sev): n for st, sev, n in rows}
    for st in ("open", "acknowledged"):
        for sev in SEVERITIES:
            metrics.OPEN_ALERTS.labels(st, sev).set(counts.get((st, sev), 0))


def _station_board(
    settings: AlertsSettings, sessions: sessionmaker[Session], registry: RegistryView, influx: InfluxQL
) -> StationBoard:
    """Every station's state (hidden ones too: this is the bureau's console) with its open alerts."""

    async def states(now: datetime) -> list[Any]:
        return list(await station_board(influx, registry, include_hidden=True, now=now))

    return StationBoard(states, sessions, refresh_s=settings.alerts_board_refresh_s)


async def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a background loop; log and restart it after an unexpected error (never die silently)."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("background task failed, restarting in 2 s task=%s", name)
            await asyncio.sleep(2.0)


def create_app(
    settings: AlertsSettings, *, channels: Mapping[str, Channel] | None = None, kafka: bool = True
) -> FastAPI:
    """The app; ``channels`` replaces the configured ones, ``kafka=False`` runs the API,
    scheduler and dispatcher without consuming events (API tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.alerts_admin_key is not None:
            key = settings.alerts_admin_key.get_secret_value()
            apikeys.check_admin_key(key, setting="STATIONFLOW_ALERTS_ADMIN_KEY", dev=settings.dev)
        if settings.alerts_webhook_secret.get_secret_value() == apikeys.DEFAULT_SECRET:
            logger.warning(
                "webhook signatures use the default secret; set STATIONFLOW_ALERTS_WEBHOOK_SECRET "
                "so receivers can trust them"
            )
        async with AsyncExitStack() as stack:  # every resource and task, released in reverse
            await _start(stack, app, settings, channels, kafka)
            yield

    app = FastAPI(
        title="stationflow alerts",
        version="1",
        lifespan=lifespan,
        description="Alert lifecycle, routing and escalation, silences, notifications and the duty console.",
    )

    @app.get("/health", tags=["health"])
    async def health(request: Request) -> Health:
        """Liveness (no key needed)."""
        state = request.app.state
        registry: RegistryView | None = getattr(state, "registry", None)
        consumer: EventConsumer | None = getattr(state, "consumer", None)
        return Health(
            status="ok",
            consuming=consumer is not None and consumer.ready.is_set(),
            registry_devices=len(registry) if registry is not None and registry.ready.is_set() else None,
        )

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus metrics (no key needed, as scrapers expect)."""
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    @app.get("/console", tags=["console"], response_class=HTMLResponse)
    async def console() -> HTMLResponse:
        """The duty console (the page asks for an API key and keeps it in the browser)."""
        return HTMLResponse(CONSOLE.read_text(encoding="utf-8"))

    app.add_exception_handler(DataError, apikeys.data_error)
    app.include_router(router)
    if settings.alerts_registry:
        app.include_router(stations_router)
    return app


async def _start(
    stack: AsyncExitStack,
    app: FastAPI,
    settings: AlertsSettings,
    channels: Mapping[str, Channel] | None,
    kafka: bool,
) -> None:
    """Open the service's resources and start its tasks, each released by ``stack`` (tasks
    cancelled first, then the InfluxDB client and the channels, the database engine last)."""
    engine = make_engine(settings.database_url)
    stack.callback(engine.dispose)
    sessions = make_sessions(engine)
    if settings.alerts_admin_key is not None:
        token = settings.alerts_admin_key.get_secret_value()
        with sessions() as session:
            if apikeys.ensure_bootstrap_key(session, model=ApiKey, token=token, name=BOOTSTRAP_NAME):
                logger.info("bootstrap admin API key created")
    live = Broadcaster()
    live.bind(asyncio.get_running_loop())
    registry = RegistryView() if settings.alerts_registry else None
    app.state.registry = registry

    def maintenance(device_id: str | None) -> bool:
        if registry is None or device_id is None:
            return False
        record = registry.get(device_id)
        return record is not None and record.status is DeviceStatus.MAINTENANCE

    runtime = app.state.runtime = Runtime(settings, sessions, live, maintenance)
    active = dict(channels) if channels is not None else build_channels(settings)
    for channel in active.values():
        stack.push_async_callback(channel.aclose)
    if registry is not None:  # the station board: the registry view and InfluxDB
        influx = await stack.enter_async_context(InfluxQL.from_settings(settings))
        runtime.board = _station_board(settings, sessions, registry, influx)
    dispatcher = Dispatcher(
        sessions,
        active,
        retry_base_s=settings.alerts_retry_base_s,
        retry_max_s=settings.alerts_retry_max_s,
        max_attempts=settings.alerts_max_attempts,
        send_timeout_s=settings.alerts_send_timeout_s,
        concurrency=settings.alerts_dispatch_concurrency,
        on_change=live.publish,
    )
    if kafka:
        await topics.ensure_topics(settings)

    def changed(alert: int) -> None:
        live.publish(alert)
        dispatcher.wake()

    consumer = EventConsumer(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.topic(topics.ALERTS),
        group_id=settings.alerts_group_id,
        sessions=sessions,
        console_url=settings.alerts_public_url,
        maintenance=maintenance,
        on_change=changed,
        sync_topic=settings.topic(topics.ALERT_SYNC),
        sync_grace_s=settings.alerts_sync_grace_s,
        fetch_max_wait_ms=settings.alerts_fetch_max_wait_ms,
        # a new alert's notifications go out right after its transaction, not after a
        # dispatcher round and a claim transaction of their own
        hand_off=(dispatcher.claim_s, dispatcher.dispatch),
    )
    app.state.consumer = consumer

    async def schedule() -> None:
        while True:
            if await asyncio.to_thread(_escalate, sessions, settings, maintenance, live):
                dispatcher.wake()
            await asyncio.to_thread(_refresh_gauges, sessions)
            await asyncio.sleep(settings.alerts_tick_s)

    tasks: list[asyncio.Task[None]] = []
    stack.push_async_callback(cancel_and_wait, tasks, logger)  # first out: before what they use
    tasks.append(asyncio.create_task(_supervise("scheduler", schedule)))
    tasks.append(
        asyncio.create_task(_supervise("dispatcher", lambda: dispatcher.run(settings.alerts_tick_s)))
    )
    if kafka:
        tasks.append(asyncio.create_task(_supervise("events", consumer.run)))
        lag = ConsumerLagMonitor(
            settings.kafka_bootstrap,
            [
                GroupTopics(
                    settings.alerts_group_id,
                    (settings.topic(topics.ALERTS), settings.topic(topics.ALERT_SYNC)),
                )
            ],
        )
        tasks.append(asyncio.create_task(_supervise("consumer lag", lag.run)))
    else:
        consumer.ready.set()
    if registry is not None and kafka:
        follower = RegistryFollower(settings, registry)
        tasks.append(asyncio.create_task(_supervise("registry", follower.run)))
    # the API answers at once; events are consumed as soon as the group is joined
    # (a new group starts from the earliest event, so none is missed meanwhile)
    logger.info(
        "alert service ready topic=%s group=%s", settings.topic(topics.ALERTS), settings.alerts_group_id
    )


def _escalate(
    sessions: sessionmaker[Session],
    settings: AlertsSettings,
    maintenance: Callable[[str | None], bool],
    live: Broadcaster,
) -> int:
    """Escalate / re-notify what is due; return how many alerts changed."""
    with sessions() as session:
        changed = due_escalations(
            session, now=datetime.now(UTC), console_url=settings.alerts_public_url, maintenance=maintenance
        )
        ids = [a.id for a in changed]
        session.commit()
    if ids:
        metrics.ESCALATIONS.inc(len(ids))
    for alert_id in ids:
        live.publish(alert_id)
    return len(ids)
