"""Helpers for end-to-end tests: a per-test pipeline on the shared brokers, a publisher, a reader."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer
from paho.mqtt.enums import CallbackAPIVersion

from stationflow.stack.components import Component, influx_create_db, influx_query, start_mosquitto
from stationflow.stack.pipeline import Endpoints, Pipeline
from stationflow.wire import split_bundle

DEADLINE_S = 60.0


def make_pipeline(
    tansu: Component,
    influxd: Component,
    tmp_path: Path,
    extra_env: dict[str, str] | None = None,
    *,
    mosquitto_persistence: bool = False,
    mosquitto_config: str = "",
) -> tuple[Pipeline, str]:
    """A Pipeline on shared Tansu/InfluxDB (unique prefix and database) and a private Mosquitto.

    ``mosquitto_persistence``: the broker keeps sessions and queued messages on disk across a
    restart (``pipeline.component("mosquitto")`` can be killed and started again).
    ``mosquitto_config``: extra lines for its configuration (they override the tuning).
    """
    tag = uuid.uuid4().hex[:8]
    mosquitto = start_mosquitto(
        tmp_path / "mosquitto", persistence=mosquitto_persistence, extra_config=mosquitto_config
    )
    db = f"db_{tag}"
    influx_create_db(influxd.url, db)
    pipeline = Pipeline(
        tmp_path,
        topic_prefix=f"t{tag}.",
        extra_env={
            "STATIONFLOW_INGEST_CLIENT_ID": f"ingest-{tag}",
            "STATIONFLOW_INGEST_SHARE_GROUP": f"g{tag}",
            "STATIONFLOW_STREAMS_APP_ID": f"streams-{tag}",
            "STATIONFLOW_REGISTRY_GROUP_ID": f"registry-{tag}",
            "STATIONFLOW_ALERTS_GROUP_ID": f"alerts-{tag}",
            "STATIONFLOW_LOG_LEVEL": "INFO",
            # spine tests publish for unregistered devices; registry tests turn it on
            "STATIONFLOW_STREAMS_REGISTRY": "false",
            **(extra_env or {}),
        },
        components=[mosquitto],
        endpoints=Endpoints(
            kafka=tansu.url,
            mqtt_host=mosquitto.host,
            mqtt_port=mosquitto.port,
            influx_url=influxd.url,
            influx_db=db,
        ),
    )
    return pipeline, tag


def iso(t: datetime) -> str:
    """ISO 8601 with milliseconds and Z."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Publisher:
    """A QoS 1 MQTT v5 publisher that counts what the broker acknowledged."""

    host: str
    port: int
    client: mqtt.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(200)
        self.client.connect(self.host, self.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def numbered_messages(device: str, count: int, *, start: datetime, per_message: int = 5) -> Iterator[bytes]:
    """Unique readings: metrics m0..m{n-1}, one message per ms from ``start``."""
    for i in range(count):
        ts = iso(start + timedelta(milliseconds=i))
        yield json.dumps(
            {"readings": [{"metric": f"m{k}", "value": i + k / 10, "ts": ts} for k in range(per_message)]}
        ).encode()


class SteadyLoad(threading.Thread):
    """Publish ``count`` messages at ``rate`` msgs/s in the background; count broker acks."""

    def __init__(self, pub: Publisher, device: str, count: int, rate: float, per_message: int = 5) -> None:
        super().__init__(daemon=True)
        self.pub, self.device, self.count, self.rate = pub, device, count, rate
        self.per_message = per_message
        self.published = 0
        self.acked = 0  # messages the broker acknowledged (PUBACK), set when the thread ends
        self.start_ts = datetime.now(UTC) - timedelta(minutes=5)

    def run(self) -> None:
        t0 = time.monotonic()
        infos = []
        for i, payload in enumerate(
            numbered_messages(self.device, self.count, start=self.start_ts, per_message=self.per_message)
        ):
            infos.append(self.pub.publish(f"devices/{self.device}/readings", payload))
            delay = t0 + (i + 1) / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.published = i + 1
        for info in infos:
            info.wait_for_publish(timeout=DEADLINE_S)
        # counted, not asserted: an assertion in this thread would not fail the test
        self.acked = sum(1 for info in infos if info.is_published())

    @property
    def readings(self) -> int:
        return self.count * self.per_message


def stored_values(url: str, db: str, measurement: str, device: str) -> int:
    """Number of numeric values stored for a device (all fields)."""
    q = f"SELECT count(*) FROM {measurement} WHERE device = '{device}'"  # noqa: S608 - test input
    total = 0
    for series in influx_query(url, db, q):
        for row in series["values"]:
            total += sum(v for v in row[1:] if isinstance(v, int))
    return total


def wait_for(predicate: Callable[[], bool], timeout: float = DEADLINE_S, interval: float = 0.2) -> bool:
    """Poll until ``predicate()`` or the deadline; return the last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def read_topic(
    bootstrap: str, topic: str, *, until: Callable[[list[bytes]], bool], timeout: float = 30
) -> list[bytes]:
    """Read a Kafka topic from the beginning until ``until(values)`` or the deadline."""

    async def _read() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        values: list[bytes] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not until(values):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    values.extend(r.value for r in records)
        finally:
            await consumer.stop()
        return values

    return asyncio.run(_read())


@dataclass
class BundleRead:
    """What ``read_bundles`` read: the records (partition, value) and their documents."""

    records: list[tuple[int, bytes]]
    documents: list[bytes]
    partitions: list[int]  # the topic's


def read_bundles(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[bytes]], bool],
    timeout: float = 30,
    settle_s: float = 0.0,
) -> BundleRead:
    """Read a topic of bundles (``readings.raw``, ``readings.clean``: each record holds one or
    more ``ReadingBatch`` documents) from the beginning until ``until(documents)`` or the
    deadline; then ``settle_s`` longer, so that anything past the expected (a duplicate) shows."""

    async def _read() -> BundleRead:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        out = BundleRead([], [], [])

        async def fetch() -> None:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    if r.value is not None:
                        out.records.append((tp.partition, r.value))
                        out.documents.extend(split_bundle(r.value))

        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not until(out.documents):
                await fetch()
            if settle_s:
                await asyncio.sleep(settle_s)
                await fetch()
            out.partitions = sorted(consumer.partitions_for_topic(topic) or ())
        finally:
            await consumer.stop()
        return out

    return asyncio.run(_read())


def read_documents(
    bootstrap: str, topic: str, *, until: Callable[[list[bytes]], bool], timeout: float = 30
) -> list[bytes]:
    """The ``ReadingBatch`` documents of a topic of bundles, in the order read (``read_bundles``)."""
    return read_bundles(bootstrap, topic, until=until, timeout=timeout).documents
