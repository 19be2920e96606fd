"""The local stack: each real component starts, answers and keeps its data across a restart."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from stationflow.stack import (
    Component,
    ManagedProcess,
    StackError,
    free_ports,
    influx_query,
    influx_write,
    start_mosquitto,
    victoria_force_flush,
    wait_port,
)
from tests.conftest import NameFactory

# Generous bounds for a loaded CI runner; each wait returns as soon as its condition holds.
KAFKA_TIMEOUT = 30.0
MQTT_TIMEOUT = 10.0
# Rows are searchable right after /internal/force_flush; the margin is for a loaded runner.
VICTORIA_TIMEOUT = 15.0
POLL = 0.05
# Receive Maximum probe: the subscriber never acks, so exactly this many may arrive.
RECEIVE_MAXIMUM = 1000
PROBE_MESSAGES = 2000
# After the window is full, how long to keep watching for messages beyond it.
PROBE_SETTLE = 1.0


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)


# --- processes and ports -----------------------------------------------------------------------


def test_free_ports_are_distinct_and_unused() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    with pytest.raises(StackError, match="nothing listens"):
        wait_port("127.0.0.1", ports[0], timeout=0.2)


def test_process_that_exits_early_reports_its_log(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "broken", ["sh", "-c", "echo config error on line 3; exit 3"], log_path=tmp_path / "b.log"
    )
    proc.start()
    with pytest.raises(StackError, match=r"(?s)status 3.*config error on line 3"):
        proc.wait_ready(lambda: False, timeout=10)
    assert proc.returncode == 3
    assert not proc.running


def test_stop_escalates_to_sigkill_and_is_idempotent(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "stubborn",
        ["sh", "-c", "trap '' TERM; echo up; sleep 30"],
        log_path=tmp_path / "s.log",
        env={"STACK_TEST": "1"},
    )
    proc.start()
    proc.wait_ready(lambda: proc.log_tail().endswith("up"), timeout=10)  # trap is set
    assert proc.stop(timeout=0.3) == -signal.SIGKILL
    assert proc.stop() == -signal.SIGKILL
    assert proc.kill() == -signal.SIGKILL


def test_missing_binary_fails_with_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *_args, **_kwargs: None)
    with pytest.raises(StackError, match=r"setup\.sh"):
        start_mosquitto(tmp_path / "mosquitto")


def test_start_refuses_a_port_in_use(mosquitto: Component, tmp_path: Path) -> None:
    with pytest.raises(StackError, match="already in use"):
        start_mosquitto(tmp_path / "second", port=mosquitto.port)
    assert mosquitto.proc.running


# --- Tansu -------------------------------------------------------------------------------------


async def test_tansu_produce_and_consume(
    tansu: Component, topic_prefix: str, unique_name: NameFactory
) -> None:
    topic = f"{topic_prefix}stack"
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.url)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=tansu.url)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b'{"pm25": 12.5}', key=b"dev1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=tansu.url,
        group_id=unique_name("grp"),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), KAFKA_TIMEOUT)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"dev1", b'{"pm25": 12.5}')
    assert (record.partition, record.offset) == (sent.partition, sent.offset)


# --- Mosquitto ---------------------------------------------------------------------------------


@contextmanager
def mqtt_client(
    broker: Component,
    client_id: str,
    *,
    manual_ack: bool = False,
    receive_maximum: int | None = None,
) -> Iterator[mqtt.Client]:
    """A connected MQTT v5 client running its network loop in a thread."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    connected = threading.Event()
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.set() if not reason.is_failure else None
    properties = None
    if receive_maximum is not None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.ReceiveMaximum = receive_maximum
    client.connect(broker.host, broker.port, properties=properties)
    client.loop_start()
    try:
        assert connected.wait(MQTT_TIMEOUT), f"{client_id} did not connect"
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def subscribe(client: mqtt.Client, topic: str) -> list[mqtt.MQTTMessage]:
    """Subscribe with QoS 1 and wait for SUBACK; return the list messages are appended to."""
    received: list[mqtt.MQTTMessage] = []
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, message: received.append(message)
    client.on_subscribe = lambda *_args: subscribed.set()
    client.subscribe(topic, qos=1)
    assert subscribed.wait(MQTT_TIMEOUT), f"no SUBACK for {topic}"
    return received


def test_mosquitto_publish_and_subscribe(mosquitto: Component, unique_name: NameFactory) -> None:
    topic = f"{unique_name('devices/')}/readings"
    with mqtt_client(mosquitto, unique_name("sub")) as sub:
        received = subscribe(sub, topic)
        with mqtt_client(mosquitto, unique_name("pub")) as pub:
            pub.publish(topic, b'{"pm25": 12.5}', qos=1).wait_for_publish(MQTT_TIMEOUT)
        wait_for(lambda: len(received) >= 1, MQTT_TIMEOUT, "the published message")
    assert [(m.topic, m.payload, m.qos) for m in received] == [(topic, b'{"pm25": 12.5}', 1)]


def test_mosquitto_honours_receive_maximum(mosquitto: Component, unique_name: NameFactory) -> None:
    """A v5 subscriber that never acks gets exactly Receive Maximum QoS 1 messages in flight."""
    topic = f"{unique_name('probe/')}/x"
    with mqtt_client(mosquitto, unique_name("sub"), manual_ack=True, receive_maximum=RECEIVE_MAXIMUM) as sub:
        received = subscribe(sub, topic)
        with mqtt_client(mosquitto, unique_name("pub")) as pub:
            infos = [pub.publish(topic, b"%d" % i, qos=1) for i in range(PROBE_MESSAGES)]
            for info in infos:
                info.wait_for_publish(MQTT_TIMEOUT)
        wait_for(lambda: len(received) >= RECEIVE_MAXIMUM, MQTT_TIMEOUT, "a full window")
        time.sleep(PROBE_SETTLE)  # anything beyond the window would arrive now
        assert len(received) == RECEIVE_MAXIMUM
        assert [m.payload for m in received] == [b"%d" % i for i in range(RECEIVE_MAXIMUM)]


def connect_result(broker: Component, username: str | None, password: str | None) -> str:
    """Reason string of the CONNACK a MQTT v5 client gets with these credentials."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if username is not None:
        client.username_pw_set(username, password)
    reasons: list[str] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: reasons.append(str(reason))
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        wait_for(lambda: bool(reasons), MQTT_TIMEOUT, "CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    return reasons[0]


def test_mosquitto_dynsec_requires_credentials(tmp_path: Path) -> None:
    with start_mosquitto(tmp_path, dynsec=True) as broker:
        assert broker.username is not None
        assert broker.password is not None
        assert connect_result(broker, broker.username, broker.password) == "Success"
        assert connect_result(broker, broker.username, "wrong") == "Not authorized"
        assert connect_result(broker, None, None) == "Not authorized"
        broker.restart()  # the store and the admin credentials survive a restart
        assert connect_result(broker, broker.username, broker.password) == "Success"


# --- InfluxDB 1.x ------------------------------------------------------------------------------


def test_influxd_write_and_query(influxd: Component, influx_db: str) -> None:
    influx_write(influxd.url, influx_db, "air,device_id=dev1 pm25=12.5 1700000000000000000")
    series = influx_query(influxd.url, influx_db, 'SELECT "pm25" FROM "air"')
    assert series == [{"name": "air", "columns": ["time", "pm25"], "values": [[1700000000000000000, 12.5]]}]


def test_influx_query_raises_on_error(influxd: Component, unique_name: NameFactory) -> None:
    with pytest.raises(StackError, match="database not found"):
        influx_query(influxd.url, unique_name("missing"), "SELECT * FROM air")


def test_influxd_restart_keeps_data_and_port(
    influxd_factory: Callable[[], Component], unique_name: NameFactory
) -> None:
    server = influxd_factory()
    db = unique_name("db")
    influx_query(server.url, db, f'CREATE DATABASE "{db}"')
    influx_write(server.url, db, "air,device_id=dev1 pm25=7 1700000000000000000")
    url, old_pid = server.url, server.proc.pid

    server.kill()  # unclean: the point must come back from the WAL
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/ping", trust_env=False)
    server.restart()

    assert (server.url, server.proc.running) == (url, True)
    assert server.proc.pid != old_pid
    series = influx_query(server.url, db, 'SELECT "pm25" FROM "air"')
    assert series[0]["values"] == [[1700000000000000000, 7.0]]


# --- VictoriaMetrics ---------------------------------------------------------------------------


def export_series(url: str, match: str) -> list[dict[str, Any]]:
    """Series matching ``match`` from VictoriaMetrics ``/api/v1/export`` (JSON lines)."""
    response = httpx.get(f"{url}/api/v1/export", params={"match[]": match}, trust_env=False)
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_victoria_metrics_accepts_influxdb_client_writes(
    victoria: Component, unique_name: NameFactory
) -> None:
    measurement = unique_name("air")
    written_at = datetime.now(UTC).replace(microsecond=0)
    line = f"{measurement},device_id=dev1 pm25=12.5 {int(written_at.timestamp())}"
    # VictoriaMetrics ignores token, org and bucket.
    with InfluxDBClient(url=victoria.url, token="any", org="any") as client:  # noqa: S106
        client.write_api(write_options=SYNCHRONOUS).write(bucket="any", record=line, write_precision="s")
    victoria_force_flush(victoria.url)

    match = f'{{__name__="{measurement}_pm25"}}'
    wait_for(lambda: bool(export_series(victoria.url, match)), VICTORIA_TIMEOUT, match)
    [series] = export_series(victoria.url, match)
    assert series["metric"]["device_id"] == "dev1"
    assert series["values"] == [12.5]
    assert series["timestamps"] == [int(written_at.timestamp() * 1000)]
