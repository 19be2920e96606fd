"""The compose wiring, without a Docker engine: every stationflow service of docker-compose.yml,
started with its own command and environment, against local infrastructure.

``docker-compose config --env-file .env.example`` resolves the file exactly as compose would.
Each service built from ``.`` runs as ``python -m stationflow.cli <command>`` with its resolved
environment, the compose host names mapped to local components:

- ``kafka:9092`` → a private Tansu;
- ``mosquitto:1883`` → Mosquitto started by the compose start script ``mosquitto/init-dynsec.sh``
  (dynsec store created with the admin login from .env.example) with ``mosquitto/mosquitto.conf``
  (only the listener, the plugin path and the data paths rewritten), then provisioned by the
  compose ``broker-init`` job itself;
- ``influxdb:8086`` → the session's InfluxDB 1.x (see ``INFLUX_1X`` for what it cannot do);
- ``postgres`` → a database on the session's PostgreSQL (trust auth on loopback);
- ``<service>:<port>`` of a listener of ours → ``127.0.0.1:<free port>``.

The services start in the order of their ``depends_on`` and must pass their own compose
healthchecks (run here with the ports mapped). Then: every target ``prometheus/prometheus.yml``
scrapes answers Prometheus text, bound on every interface as compose needs; the broker refuses
anonymous clients; the demo simulator registers its fleet through the registry (device
credentials issued over dynsec) and its backfilled readings reach InfluxDB, none dead-lettered;
every service is still running at the end.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import gmqtt
import httpx
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from stationflow.stack import Component, free_port, influx_create_db, start_tansu
from stationflow.stack.components import SBIN_PATH, find_dynsec_plugin
from stationflow.stack.monitor import count_points, scrape_counter
from stationflow.stack.ports import port_open
from stationflow.stack.postgres import create_database
from stationflow.stack.procs import ManagedProcess

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# Healthy within: the registry migrates PostgreSQL, the worker joins its group (seconds each).
HEALTHY_S = 90.0
# The demo's backfill (48 h: about 9,000 MQTT messages) through MQTT, Kafka and the worker.
BACKFILL_S = 90.0
MIN_READINGS = 20
MIN_MESSAGES = 1000
# The worker has caught up when it consumed this share of what the collector took in (live
# messages keep arriving meanwhile).
CAUGHT_UP = 0.95
POLL_S = 0.5
# Services started together once the registry is up (each waits only for infrastructure and it).
SECOND_WAVE = ("ingest", "tcp", "streams", "streams-2", "alerts", "opendata")
WORKERS = ("streams", "streams-2")  # sharing the partitions: their counters add up
# What InfluxDB 1.x cannot do that compose's InfluxDB 2 does: the v2 write API (/api/v2/write,
# token, org, bucket). The worker writes with the v1 dialect instead, into a database of its own;
# InfluxQL reads (open data, alerts) are the same on both (/query, the bucket's DBRP mapping
# there). The 1.x server runs without auth, so the token is not sent.
INFLUX_1X = {"STATIONFLOW_INFLUX_DIALECT": "v1"}
INFLUX_1X_DROPPED = ("STATIONFLOW_INFLUX_TOKEN", "STATIONFLOW_INFLUX_ORG", "STATIONFLOW_INFLUX_BUCKET")


@dataclass
class Wired:
    """The running compose services and where their compose ports landed."""

    config: dict[str, Any]
    ports: dict[tuple[str, int], int]  # (compose service, compose port) → local port
    kafka: str
    mqtt: Component
    admin: tuple[str, str]
    influx_url: str
    influx_db: str
    procs: dict[str, ManagedProcess] = field(default_factory=dict)
    logs: Path = Path()

    def url(self, service: str, port: int) -> str:
        """``http://127.0.0.1:<local>`` of a compose service's port."""
        return f"http://127.0.0.1:{self.ports[(service, port)]}"


def _resolved() -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose missing: run scripts/setup.sh"
    result = subprocess.run(
        [binary, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def _ours(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in config["services"].items() if "build" in svc}


def _listeners(name: str, env: Mapping[str, str]) -> list[int]:
    """The ports a service listens on: its ``*_PORT`` settings, except the broker it connects to."""
    return [
        int(v) for k, v in env.items() if k.endswith("_PORT") and k != "STATIONFLOW_MQTT_PORT" and v != "0"
    ]


def _local_env(name: str, env: Mapping[str, str], w: Wired, state: Path, postgres: str) -> dict[str, str]:
    """A service's compose environment with every compose address mapped to a local one."""
    services = set(w.config["services"])
    out: dict[str, str] = {}
    for key, value in env.items():
        if key == "STATIONFLOW_KAFKA_BOOTSTRAP":
            assert value == "kafka:9092"
            value = w.kafka
        elif key == "STATIONFLOW_MQTT_HOST":
            assert value == "mosquitto"
            value = w.mqtt.host
        elif key == "STATIONFLOW_MQTT_PORT":
            assert value == "1883"
            value = str(w.mqtt.port)
        elif key == "STATIONFLOW_INFLUX_URL":
            assert urlsplit(value).netloc == "influxdb:8086"
            value = w.influx_url
        elif key == "STATIONFLOW_INFLUX_DB":
            value = w.influx_db  # the session's server: a database of this test's own
        elif key.endswith("_DATABASE_URL"):
            url = make_url(value)
            assert (url.host, url.database) == ("postgres", "stationflow"), value
            value = postgres
        elif key.endswith("_PORT") and key != "STATIONFLOW_MQTT_PORT" and value != "0":
            value = str(w.ports[(name, int(value))])
        elif key.endswith("_URL") and urlsplit(value).hostname in services:
            parts = urlsplit(value)
            local = w.ports[(str(parts.hostname), parts.port or 80)]
            value = urlunsplit(parts._replace(netloc=f"127.0.0.1:{local}"))
        elif re.fullmatch(r"[a-z-]+:\d+", value) and value.split(":")[0] in services:  # host:port
            value = f"127.0.0.1:{w.ports[(value.split(':')[0], int(value.split(':')[1]))]}"
        out[key] = value
    if out.get("STATIONFLOW_INFLUX_DIALECT") == "v2":
        out.update(INFLUX_1X)
        for key in INFLUX_1X_DROPPED:
            out.pop(key, None)
    for key, value in out.items():  # nothing may still point at a compose host
        assert not re.search(rf"(^|//)({'|'.join(map(re.escape, services))})(:|/|$)", value), (
            name,
            key,
            value,
        )
    # the image's ENV STATIONFLOW_STATE_DIR (/var/lib/stationflow), one per service here
    out["STATIONFLOW_STATE_DIR"] = str(state / name)
    out["PYTHONUNBUFFERED"] = "1"
    return out


def _healthcheck_argv(svc: Mapping[str, Any], name: str, w: Wired) -> list[str] | None:
    """The service's compose healthcheck command with its ports mapped (python → this interpreter)."""
    test = svc.get("healthcheck", {}).get("test")
    if not test:
        return None
    assert test[0] == "CMD" and test[1] == "python", f"{name}: healthcheck {test}"
    argv = [sys.executable, *test[2:]]
    for (service, port), local in w.ports.items():
        if service == name:
            argv = [a.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{local}/") for a in argv]
    return argv


def _healthy(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0


def _start_mosquitto(config: Mapping[str, Any], workdir: Path) -> tuple[Component, tuple[str, str]]:
    """Mosquitto as compose starts it: its start script and config, paths and listener mapped."""
    workdir.mkdir(parents=True)
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path=SBIN_PATH)
    assert binary, "mosquitto missing: run scripts/setup.sh"
    port = free_port()
    conf = (ROOT / "mosquitto" / "mosquitto.conf").read_text()
    replaced = {
        "listener 1883 0.0.0.0": f"listener {port} 127.0.0.1",
        "plugin /usr/lib/mosquitto_dynamic_security.so": f"plugin {find_dynsec_plugin(binary)}",
        "plugin_opt_config_file /mosquitto/data/dynsec.json": f"plugin_opt_config_file {workdir}/dynsec.json",
        "persistence_location /mosquitto/data/": f"persistence_location {workdir}/",
    }
    for old, new in replaced.items():
        assert old in conf, old
        conf = conf.replace(old, new)
    # as root, mosquitto would switch to user mosquitto, which cannot write here (the image chowns)
    conf += f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
    (workdir / "mosquitto.conf").write_text(conf)
    env = config["services"]["mosquitto"]["environment"]
    admin = (env["MOSQUITTO_ADMIN_USER"], env["MOSQUITTO_ADMIN_PASSWORD"])
    proc = ManagedProcess(
        "mosquitto",
        ["sh", str(ROOT / "mosquitto" / "init-dynsec.sh")],
        log_path=workdir / "mosquitto.log",
        env={
            **env,
            "MOSQUITTO_DYNSEC_STORE": str(workdir / "dynsec.json"),
            "MOSQUITTO_CONF": str(workdir / "mosquitto.conf"),
            "PATH": f"{os.environ.get('PATH', '')}:{SBIN_PATH}",
        },
    )
    component = Component(
        "mosquitto",
        "127.0.0.1",
        port,
        proc,
        workdir,
        ready=lambda: port_open("127.0.0.1", port),
        ready_timeout=15.0,
        scheme="mqtt",
    )
    component.start()
    # compose's own healthcheck (a login and a retained $SYS message), port mapped
    shell = config["services"]["mosquitto"]["healthcheck"]["test"]
    assert shell[0] == "CMD-SHELL"
    check = shell[1].replace("$$", "$").replace("-p 1883", f"-p {port}")
    result = subprocess.run(["sh", "-c", check], env={**os.environ, **env}, capture_output=True, timeout=15)
    assert result.returncode == 0, result.stderr
    return component, admin


@pytest.fixture(scope="module")
def wired(tmp_path_factory: pytest.TempPathFactory, influxd: Component, postgres_url: str) -> Iterator[Wired]:
    """Every stationflow service of docker-compose.yml, up and healthy, the demo simulator included."""
    base = tmp_path_factory.mktemp("compose")
    config = _resolved()
    tansu = start_tansu(base / "tansu")
    mqtt, admin = _start_mosquitto(config, base / "mosquitto")
    influx_db = f"compose{os.getpid()}"
    influx_create_db(influxd.url, influx_db)
    postgres = create_database(postgres_url, f"compose{os.getpid()}")
    ours = _ours(config)
    ports = {
        (name, p): free_port() for name, svc in ours.items() for p in _listeners(name, svc["environment"])
    }
    w = Wired(config, ports, tansu.url, mqtt, admin, influxd.url, influx_db, logs=base / "logs")
    try:
        envs = {
            name: _local_env(name, svc["environment"], w, base / "state", postgres)
            for name, svc in ours.items()
        }

        def start(name: str) -> ManagedProcess:
            argv = [sys.executable, "-m", "stationflow.cli", *ours[name]["command"]]
            proc = ManagedProcess(name, argv, log_path=w.logs / f"{name}.log", env=envs[name], cwd=ROOT)
            proc.start()
            w.procs[name] = proc
            return proc

        def wait_healthy(names: tuple[str, ...]) -> None:
            checks = {n: _healthcheck_argv(ours[n], n, w) for n in names}
            for n in names:
                argv = checks[n] or _metrics_probe(w, n)
                w.procs[n].wait_ready(functools.partial(_healthy, argv), HEALTHY_S)

        # broker-init: a one-shot job that must complete successfully
        job = start("broker-init")
        deadline = time.monotonic() + 60
        while job.running and time.monotonic() < deadline:
            time.sleep(POLL_S)
        assert job.returncode == 0, job.log_tail()
        del w.procs["broker-init"]
        start("registry")
        wait_healthy(("registry",))
        for name in SECOND_WAVE:
            start(name)
        wait_healthy(SECOND_WAVE)
        start("simulator")
        yield w
    finally:
        for proc in reversed(list(w.procs.values())):
            proc.stop(timeout=20)
        mqtt.stop()
        tansu.stop()


def _metrics_probe(w: Wired, name: str) -> list[str]:
    """For a service without a compose healthcheck: its metrics endpoint answers."""
    port = next(p for (s, p) in w.ports if s == name)
    code = f"import urllib.request; urllib.request.urlopen('{w.url(name, port)}/metrics', timeout=4)"
    return [sys.executable, "-c", code]


def _scrape_targets() -> list[tuple[str, int]]:
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    return [
        (host, int(port))
        for job in prometheus["scrape_configs"]
        for static in job["static_configs"]
        for host, port in (t.split(":") for t in static["targets"])
    ]


def _listening_addresses(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    }


def test_every_scrape_target_answers_prometheus_text_on_every_interface(wired: Wired) -> None:
    targets = _scrape_targets()
    assert {host for host, _ in targets} == set(_ours(wired.config)) - {"broker-init", "simulator"}
    for host, port in targets:
        response = httpx.get(f"{wired.url(host, port)}/metrics", timeout=5)
        assert response.status_code == 200, (host, port)
        assert response.headers["content-type"].startswith("text/plain"), (host, response.headers)
        families = list(text_string_to_metric_families(response.text))
        assert families, f"{host}:{port}/metrics has no metric"
        # Prometheus runs in its own container: a loopback bind would be unreachable there
        assert _listening_addresses(wired.ports[(host, port)]) & {"0.0.0.0", "::"}, (host, port)


def test_the_broker_refuses_anonymous_clients(wired: Wired) -> None:
    async def connect() -> None:
        client = gmqtt.Client(f"anonymous-{os.getpid()}")
        try:
            await asyncio.wait_for(client.connect(wired.mqtt.host, wired.mqtt.port, version=5), 10)
        finally:
            client.stop_reconnect()
            if client.is_connected:
                await client.disconnect()

    with pytest.raises(gmqtt.MQTTConnectError):
        asyncio.run(connect())


def test_the_demo_registers_its_fleet_and_its_backfill_is_stored(wired: Wired) -> None:
    """Registered through the registry API (credentials issued over dynsec); its history is stored
    and, once the worker has caught up with what the collectors took in, nothing was refused."""
    from devices.dynsec import DynsecAdmin
    from simulator.fleet import default_fleet
    from simulator.mqtt import is_mqtt

    key = wired.config["services"]["simulator"]["environment"]["STATIONFLOW_REGISTRY_ADMIN_KEY"]
    fleet = default_fleet()
    ingest = wired.url("ingest", 9461) + "/metrics"
    workers = [wired.url(name, 9462) + "/metrics" for name in WORKERS]
    tcp = wired.url("tcp", 9464) + "/metrics"
    deadline = time.monotonic() + BACKFILL_S
    stored = taken = consumed = 0.0
    while time.monotonic() < deadline:
        simulator = wired.procs["simulator"]
        assert simulator.running or simulator.returncode == 0, simulator.log_tail()
        # history: older than the live readings, so it came from the backfill
        stored = count_points(
            wired.influx_url, wired.influx_db, where="time > now() - 50h AND time < now() - 1h"
        )
        taken = scrape_counter(ingest, "stationflow_ingest_messages_total")
        # one per device message, in either worker
        consumed = sum(scrape_counter(w, "stationflow_streams_documents_total") for w in workers)
        if stored >= MIN_READINGS and taken >= MIN_MESSAGES and consumed >= CAUGHT_UP * taken:
            break
        time.sleep(POLL_S * 4)
    assert stored >= MIN_READINGS, f"{stored} backfilled values stored; simulator:\n{simulator.log_tail()}"
    assert taken >= MIN_MESSAGES and consumed >= CAUGHT_UP * taken, (taken, consumed)
    assert scrape_counter(ingest, "stationflow_ingest_rejected_total") == 0
    assert sum(scrape_counter(w, "stationflow_streams_rejected_total") for w in workers) == 0
    assert scrape_counter(tcp, "stationflow_tcp_deadletters_total") == 0

    devices = httpx.get(
        f"{wired.url('registry', 8080)}/devices",
        headers={"X-API-Key": key},
        params={"limit": 1000},
        timeout=10,
    )
    assert devices.status_code == 200, devices.text
    assert {spec.device_id for spec in fleet} <= {d["id"] for d in devices.json()["data"]}

    async def mqtt_clients() -> set[str]:
        async with DynsecAdmin(wired.mqtt.host, wired.mqtt.port, *wired.admin) as admin:
            return {
                spec.device_id for spec in fleet if is_mqtt(spec) and await admin.get_client(spec.device_id)
            }

    assert asyncio.run(mqtt_clients()) == {spec.device_id for spec in fleet if is_mqtt(spec)}


def test_every_service_is_still_running_and_healthy(wired: Wired) -> None:
    ours = _ours(wired.config)
    for name, proc in wired.procs.items():
        assert proc.running, f"{name} exited ({proc.returncode}):\n{proc.log_tail()}"
        check = _healthcheck_argv(ours[name], name, wired)
        if check is not None:
            assert _healthy(check), f"{name} no longer passes its compose healthcheck:\n{proc.log_tail()}"
