"""The whole pipeline on one machine: brokers, database and our services as child processes.

Used by ``stationflow up``, ``stationflow bench`` and the end-to-end tests, so all three run
exactly the same processes the same way.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from stationflow import topics
from stationflow.settings import CommonSettings
from stationflow.stack.archive import (
    ArchiveSettings,
    ArchiveSpec,
    ArchiveStore,
    Mirror,
    archive_tails,
    group_lag,
    restore,
)
from stationflow.stack.auth import ServiceAccounts, provision_service_accounts
from stationflow.stack.components import (
    Component,
    influx_create_db,
    start_influxd,
    start_mosquitto,
    start_tansu,
)
from stationflow.stack.ports import LOOPBACK, free_port
from stationflow.stack.procs import ManagedProcess, StackError

__all__ = [
    "Endpoints",
    "Pipeline",
    "Starting",
    "launch_service",
    "service_env",
    "service_name",
    "start_service",
]

logger = logging.getLogger(__name__)

# Readiness deadlines: a Faust worker joins its group and gets partitions in a few seconds;
# after a SIGKILL of the previous member it waits for that member's session to expire.
INGEST_READY_S = 60.0
STREAMS_READY_S = 120.0
INGEST_READY_LINE = "mqtt connected"
STREAMS_READY_LINE = "partitions assigned"
ANALYTICS_READY_LINE = "analytics ready"  # an analytics-only worker, once its tables are restored
REGISTRY_READY_LINE = "Application startup complete"
REGISTRY_READY_S = 60.0
ALERTS_READY_LINE = "alert service ready"
ALERTS_READY_S = 60.0
# The TCP collector (``python -m ingest.tcp``) logs one line per protocol once it listens; it
# binds after it has read the registry topic, which takes seconds.
TCP_READY_LINES = ("listening protocol=hj212", "listening protocol=sl651")
TCP_READY_S = 60.0
OPENDATA_READY_LINE = "opendata service ready"
OPENDATA_READY_S = 60.0
# Service kind → module run as ``python -m <module>``.
SERVICE_MODULES = {
    "ingest": "ingest",
    "tcp": "ingest.tcp",
    "streams": "streams",
    "analytics": "streams",  # a worker with the raw stage off (``Pipeline(split_analytics=True)``)
    "devices": "devices",
    "alerts": "alerts",
    "opendata": "opendata",
}
# Stop order: both collectors first (nothing new enters Kafka), then the worker drains; the
# alert service delivers what it has; the registry last.
STOP_ORDER = ("ingest", "tcp", "streams", "analytics", "alerts", "opendata", "devices")
COLLECTORS = ("ingest", "tcp")
# A draining stop polls the consumer groups' lag; two zero readings a poll apart mean done
# (Faust commits every second; a worker that just consumed may still be producing downstream).
DRAIN_POLL_S = 1.0
DRAIN_CONFIRMATIONS = 2


def service_name(kind: str, instance: int = 1) -> str:
    """``ingest``, ``ingest-2``, ``streams``, ``streams-2``…"""
    return kind if instance == 1 else f"{kind}-{instance}"


def kind_and_instance(name: str) -> tuple[str, int]:
    """The inverse of :func:`service_name`: ``streams-2`` → (``streams``, 2), ``ingest`` → (``ingest``, 1).

    Service kinds have no ``-``; a name that is not a service's (``tansu``) is its own kind."""
    kind, _, instance = name.partition("-")
    return kind, int(instance) if instance.isdigit() else 1


def kind_of(name: str) -> str:
    """The service kind of a process name (``streams-2`` → ``streams``)."""
    return kind_and_instance(name)[0]


@dataclass(frozen=True)
class Endpoints:
    """Where the infrastructure listens."""

    kafka: str  # host:port
    mqtt_host: str
    mqtt_port: int
    influx_url: str
    influx_db: str = "stationflow"


def service_env(
    endpoints: Endpoints,
    *,
    state_dir: Path,
    topic_prefix: str = "",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``STATIONFLOW_*`` variables for a service process."""
    env = {
        "STATIONFLOW_KAFKA_BOOTSTRAP": endpoints.kafka,
        "STATIONFLOW_MQTT_HOST": endpoints.mqtt_host,
        "STATIONFLOW_MQTT_PORT": str(endpoints.mqtt_port),
        "STATIONFLOW_INFLUX_URL": endpoints.influx_url,
        "STATIONFLOW_INFLUX_DB": endpoints.influx_db,
        "STATIONFLOW_TOPIC_PREFIX": topic_prefix,
        "STATIONFLOW_STATE_DIR": str(state_dir),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra or {})
    return env


def _log_contains(path: Path, needles: tuple[str, ...], offset: int) -> Callable[[], bool]:
    """Whether every one of ``needles`` was logged after ``offset``."""

    def check() -> bool:
        try:
            with path.open("rb") as fh:
                fh.seek(offset)
                text = fh.read()
        except FileNotFoundError:
            return False
        return all(needle.encode() in text for needle in needles)

    return check


def _ready_spec(kind: str) -> tuple[tuple[str, ...], float]:
    return {
        "ingest": ((INGEST_READY_LINE,), INGEST_READY_S),
        "tcp": (TCP_READY_LINES, TCP_READY_S),
        "streams": ((STREAMS_READY_LINE,), STREAMS_READY_S),
        "analytics": ((ANALYTICS_READY_LINE,), STREAMS_READY_S),
        "devices": ((REGISTRY_READY_LINE,), REGISTRY_READY_S),
        "alerts": ((ALERTS_READY_LINE,), ALERTS_READY_S),
        "opendata": ((OPENDATA_READY_LINE,), OPENDATA_READY_S),
    }[kind]


@dataclass(frozen=True)
class Starting:
    """A service process that was started and may not be ready yet; ``wait`` until it is."""

    proc: ManagedProcess
    ready: Callable[[], bool]
    timeout: float

    def wait(self) -> ManagedProcess:
        """Block until the service logged its ready line; stop it and raise if it does not."""
        try:
            self.proc.wait_ready(self.ready, self.timeout)
        except BaseException:
            self.proc.stop()  # never leave an unready child behind
            raise
        return self.proc


def launch_service(kind: str, *, env: Mapping[str, str], log_path: Path) -> Starting:
    """Start a service (ingest, tcp, streams, devices, alerts, opendata) without waiting for it."""
    ready_lines, timeout = _ready_spec(kind)
    proc = ManagedProcess(kind, [sys.executable, "-m", SERVICE_MODULES[kind]], log_path=log_path, env=env)
    offset = log_path.stat().st_size if log_path.exists() else 0
    proc.start()
    return Starting(proc, _log_contains(log_path, ready_lines, offset), timeout)


def start_service(kind: str, *, env: Mapping[str, str], log_path: Path, wait: bool = True) -> ManagedProcess:
    """Start a service (ingest, tcp, streams, devices, alerts) and wait until it is ready."""
    starting = launch_service(kind, env=env, log_path=log_path)
    return starting.wait() if wait else starting.proc


@dataclass
class Pipeline:
    """Tansu + Mosquitto + InfluxDB 1.x + collectors + stream worker under one state dir.

    ``ports`` names fixed ports: ``kafka``, ``mqtt``, ``influx``, ``ingest_metrics``,
    ``streams_metrics``, ``registry``, ``alerts``, ``opendata``, and for the TCP collector ``hj212``,
    ``sl651`` and ``tcp_metrics``; any other is a free port chosen once.
    """

    state_dir: Path
    topic_prefix: str = ""
    ports: Mapping[str, int] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    components: list[Component] = field(default_factory=list)
    services: dict[str, ManagedProcess] = field(default_factory=dict)
    endpoints: Endpoints | None = None
    metrics_ports: dict[str, int] = field(default_factory=dict)
    auth: bool = False  # Mosquitto with dynamic security; services get their own accounts
    accounts: ServiceAccounts | None = None
    # `stationflow up`: Mosquitto persistence, Kafka state archived under state_dir/kafka-archive
    # and restored at start, a draining stop (see stationflow.stack.archive)
    durable: bool = False
    mirror: Mirror | None = None
    # The stream worker as two processes: ``streams`` runs the raw stage only and ``analytics``
    # the analytics only (the same Faust app and tables), so each stage has a core and a GIL.
    split_analytics: bool = False

    def start_infra(self, on_step: Callable[[str], None] = lambda _: None) -> Endpoints:
        """Start Tansu, Mosquitto and InfluxDB (at the same time); create the database."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        on_step("tansu (Kafka API), mosquitto (MQTT) and influxd (InfluxDB 1.x)")

        def mosquitto_with_accounts() -> Component:
            mosquitto = start_mosquitto(
                self.state_dir / "mosquitto",
                self.ports.get("mqtt"),
                dynsec=self.auth,
                persistence=self.durable,
            )
            if self.auth:
                try:
                    self.accounts = provision_service_accounts(mosquitto, self.state_dir)
                except BaseException:
                    mosquitto.stop()
                    raise
            return mosquitto

        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="infra") as pool:
            futures = [
                pool.submit(start_tansu, self.state_dir / "tansu", self.ports.get("kafka")),
                pool.submit(mosquitto_with_accounts),
                pool.submit(start_influxd, self.state_dir / "influxdb", self.ports.get("influx")),
            ]
            wait(futures)
        started = [f.result() for f in futures if f.exception() is None]
        self.components.extend(started)  # stopped by stop() whatever failed
        for future in futures:
            if (exc := future.exception()) is not None:
                raise exc
        tansu, mosquitto, influx = started
        self.endpoints = Endpoints(
            kafka=tansu.url, mqtt_host=mosquitto.host, mqtt_port=mosquitto.port, influx_url=influx.url
        )
        influx_create_db(influx.url, self.endpoints.influx_db)
        if self.durable:
            on_step("kafka state from the archive")
            self.restore_state()
        return self.endpoints

    def archive_spec(self) -> ArchiveSpec:
        """The state topics of this pipeline's services and the groups that consume what."""
        from alerts.settings import AlertsSettings  # the stack starts services; services never import it
        from streams.analyticsworker import changelog_topics
        from streams.settings import StreamsSettings

        streams = StreamsSettings(**self._settings_of("streams"))
        alerts = AlertsSettings(**self._settings_of("alerts"))
        app = streams.streams_app_id
        return ArchiveSpec(
            changelogs=changelog_topics(streams),
            logs=(streams.topic(topics.DEADLETTER),),
            groups={
                f"{app}.raw": (streams.topic(topics.RAW),),
                app: (streams.topic(topics.CLEAN), streams.topic(topics.HOURLY)),
                alerts.alerts_group_id: (alerts.topic(topics.ALERTS),),
            },
        )

    def _settings_of(self, kind: str) -> dict[str, Any]:
        """A service's STATIONFLOW_* environment as settings field values (over the inherited env)."""
        env = self.env(kind)
        return {
            k.removeprefix("STATIONFLOW_").lower(): v for k, v in env.items() if k.startswith("STATIONFLOW_")
        }

    @property
    def archive(self) -> ArchiveStore:
        """The Kafka state archive of this state dir."""
        return ArchiveStore(self.state_dir / "kafka-archive")

    def restore_state(self) -> None:
        """Create the topics, write the archive back, start mirroring (before any service starts)."""
        from streams.settings import StreamsSettings

        assert self.endpoints is not None  # noqa: S101 - start_infra() ran
        spec = self.archive_spec()
        settings = StreamsSettings(**self._settings_of("streams"))
        bootstrap = self.endpoints.kafka
        ends = asyncio.run(self._restore(settings, spec))
        self.mirror = Mirror(bootstrap, self.archive, spec, ArchiveSettings(), ends)
        self.mirror.start()

    async def _restore(self, settings: CommonSettings, spec: ArchiveSpec) -> dict[TopicPartition, int]:
        await topics.ensure_topics(settings, changelogs=spec.changelogs)
        return await restore(settings.kafka_bootstrap, self.archive)

    def drain(self, on_progress: Callable[[Mapping[str, int]], None] = lambda _: None) -> bool:
        """Wait (bounded) until every consumer group has committed the end of its topics.

        Lag must read 0 twice in a row (a worker that just consumed may still produce
        downstream). Returns False when the deadline passed first.
        """
        assert self.endpoints is not None  # noqa: S101 - start_infra() ran
        groups = self.archive_spec().groups
        deadline = time.monotonic() + ArchiveSettings().drain_timeout_s
        zero = 0
        lag: Mapping[str, int] = {}
        while time.monotonic() < deadline:
            lag = asyncio.run(group_lag(self.endpoints.kafka, groups))
            on_progress(lag)
            zero = zero + 1 if not any(lag.values()) else 0
            if zero >= DRAIN_CONFIRMATIONS:
                return True
            time.sleep(DRAIN_POLL_S)
        logger.warning("drain deadline passed; unconsumed records go to the archive lag=%s", lag)
        return False

    def env(self, kind: str, instance: int = 1) -> dict[str, str]:
        """Environment of one of our services (instance N > 1: a further collector / worker)."""
        if self.endpoints is None:
            raise StackError("start_infra() first")
        name = service_name(kind, instance)
        extra = dict(self.extra_env)
        # (the registry and the alert service serve /metrics on their API)
        if kind in ("ingest", "streams", "analytics"):
            if name not in self.metrics_ports:
                configured = self.ports.get(f"{kind}_metrics") if instance == 1 else None
                self.metrics_ports[name] = configured or free_port()
            setting = "STREAMS" if kind == "analytics" else kind.upper()
            extra.setdefault(f"STATIONFLOW_{setting}_METRICS_PORT", str(self.metrics_ports[name]))
        if kind == "tcp":
            extra["STATIONFLOW_HJ212_PORT"] = str(self.hj212_port)
            extra["STATIONFLOW_SL651_PORT"] = str(self.sl651_port)
            extra.setdefault("STATIONFLOW_TCP_BIND", LOOPBACK)
            extra.setdefault("STATIONFLOW_TCP_METRICS_PORT", str(self.tcp_metrics_port))
        if kind == "ingest" and self.accounts is not None:
            extra["STATIONFLOW_MQTT_USERNAME"], extra["STATIONFLOW_MQTT_PASSWORD"] = self.accounts.collector
        if kind == "devices":
            extra["STATIONFLOW_REGISTRY_PORT"] = str(self.registry_port)
            extra["STATIONFLOW_REGISTRY_ADMIN_KEY"] = self.registry_admin_key
            if self.accounts is not None:
                user, password = self.accounts.admin
                extra["STATIONFLOW_REGISTRY_DYNSEC_USERNAME"] = user
                extra["STATIONFLOW_REGISTRY_DYNSEC_PASSWORD"] = password
        if kind == "alerts":
            extra["STATIONFLOW_ALERTS_PORT"] = str(self.alerts_port)
            extra["STATIONFLOW_ALERTS_ADMIN_KEY"] = self.alerts_admin_key
            extra.setdefault("STATIONFLOW_ALERTS_PUBLIC_URL", self.alerts_url)
            extra.setdefault("STATIONFLOW_ALERTS_WEBHOOK_SECRET", self._secret("alerts-webhook-secret"))
            if self.accounts is not None:
                extra["STATIONFLOW_MQTT_USERNAME"], extra["STATIONFLOW_MQTT_PASSWORD"] = self.accounts.alerts
        if kind == "opendata":
            extra["STATIONFLOW_OPENDATA_PORT"] = str(self.opendata_port)
        if kind == "streams":
            extra["STATIONFLOW_STREAMS_INSTANCE"] = str(instance)
            if self.split_analytics:
                extra["STATIONFLOW_ANALYTICS_ENABLED"] = "false"
        elif kind == "analytics":
            extra["STATIONFLOW_STREAMS_INSTANCE"] = f"analytics-{instance}"
            extra["STATIONFLOW_STREAMS_RAW_ENABLED"] = "false"
            extra["STATIONFLOW_ANALYTICS_ENABLED"] = "true"
        elif kind == "ingest" and instance > 1:
            # Collectors share the subscription group but each needs its own MQTT session.
            base = extra.get("STATIONFLOW_INGEST_CLIENT_ID", "stationflow-ingest")
            extra["STATIONFLOW_INGEST_CLIENT_ID"] = f"{base}-{instance}"
        return service_env(
            self.endpoints, state_dir=self.state_dir, topic_prefix=self.topic_prefix, extra=extra
        )

    def start(self, kind: str, *, instance: int = 1, wait: bool = True) -> ManagedProcess:
        """Start (or restart) a service: ``ingest``, ``tcp``, ``streams``, ``devices`` or ``alerts``."""
        starting = self.launch(kind, instance=instance)
        return starting.wait() if wait else starting.proc

    def launch(self, kind: str, *, instance: int = 1) -> Starting:
        """Start a service without waiting: several can then get ready at the same time."""
        name = service_name(kind, instance)
        log_path = self.state_dir / "logs" / f"{name}.log"
        starting = launch_service(kind, env=self.env(kind, instance), log_path=log_path)
        self.services[name] = starting.proc
        return starting

    def _port(self, name: str, configured: str | None = None) -> int:
        """``ports[configured or name]``, else a free port, chosen once and kept under ``name``."""
        if name not in self.metrics_ports:
            self.metrics_ports[name] = self.ports.get(configured or name) or free_port()
        return self.metrics_ports[name]

    @property
    def hj212_port(self) -> int:
        """Where the TCP collector listens for HJ 212 stations."""
        return self._port("hj212")

    @property
    def sl651_port(self) -> int:
        """Where the TCP collector listens for SL 651 RTUs."""
        return self._port("sl651")

    @property
    def tcp_metrics_port(self) -> int:
        """The TCP collector's Prometheus endpoint (``metrics_ports["tcp"]``)."""
        return self._port("tcp", "tcp_metrics")

    @property
    def registry_port(self) -> int:
        """Port of the registry API (``ports["registry"]``, else a free one, chosen once)."""
        if "registry" not in self.metrics_ports:
            self.metrics_ports["registry"] = self.ports.get("registry") or free_port()
        return self.metrics_ports["registry"]

    @property
    def registry_url(self) -> str:
        """Base URL of the registry API."""
        return f"http://127.0.0.1:{self.registry_port}"

    @property
    def registry_admin_key(self) -> str:
        """The registry's bootstrap admin API key, created once and kept 0600 in the state dir."""
        return self._secret("registry-admin-key")

    @property
    def alerts_port(self) -> int:
        """Port of the alert service (``ports["alerts"]``, else a free one, chosen once)."""
        if "alerts-api" not in self.metrics_ports:
            self.metrics_ports["alerts-api"] = self.ports.get("alerts") or free_port()
        return self.metrics_ports["alerts-api"]

    @property
    def alerts_url(self) -> str:
        """Base URL of the alert service (API, /console, /metrics)."""
        return f"http://127.0.0.1:{self.alerts_port}"

    @property
    def alerts_admin_key(self) -> str:
        """The alert service's bootstrap admin API key (0600 in the state dir)."""
        return self._secret("alerts-admin-key")

    @property
    def opendata_port(self) -> int:
        """Port of the open-data service (``ports["opendata"]``, else a free one, chosen once)."""
        return self._port("opendata-api", "opendata")

    @property
    def opendata_url(self) -> str:
        """Base URL of the open-data service (public page, /api/v1, /docs, /metrics)."""
        return f"http://127.0.0.1:{self.opendata_port}"

    def _secret(self, name: str) -> str:
        path = self.state_dir / name
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def component(self, name: str) -> Component:
        """A running infrastructure component by name (``tansu``, ``mosquitto``, ``influxd``)."""
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(name)

    def stop(self, on_drain: Callable[[Mapping[str, int]], None] | None = None) -> None:
        """Stop services first (collectors before workers, so they drain), then the infrastructure.

        Durable: after the collectors, wait until every consumer group is at the end of its
        topics (``on_drain`` sees the lag), stop the other services, finish the archive
        (mirror caught up, anything still unconsumed kept), and only then stop the brokers.
        """
        if self.durable and self.endpoints is not None and self.mirror is not None:
            for name in [n for n in self.services if kind_of(n) in COLLECTORS]:
                self._stop_service(name)
            try:
                self.drain(on_drain or (lambda _: None))
            except Exception:  # a broker that is gone cannot be drained: stop the rest anyway
                logger.exception("drain failed")
        for name in sorted(self.services, key=lambda n: STOP_ORDER.index(kind_of(n))):
            self._stop_service(name)
        if self.mirror is not None:
            self._finish_archive()
        while self.components:
            self.components.pop().stop()

    def _finish_archive(self) -> None:
        assert self.mirror is not None and self.endpoints is not None  # noqa: S101 - durable stop
        mirror, self.mirror = self.mirror, None
        mirror.stop()
        try:
            kept = asyncio.run(archive_tails(self.endpoints.kafka, self.archive, self.archive_spec().groups))
        except Exception:
            logger.exception("unconsumed records could not be archived")
            return
        logger.info(
            "kafka state archived records=%d flushes=%d unconsumed=%d", mirror.records, mirror.flushes, kept
        )

    def _stop_service(self, name: str) -> None:
        proc = self.services.pop(name)
        started = time.monotonic()
        proc.stop(timeout=20.0)
        logger.info("stopped %s in %.1fs", name, time.monotonic() - started)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
