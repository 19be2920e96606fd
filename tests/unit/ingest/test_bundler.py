"""The collector's bundler: partition choice, flush triggers, size cap, order, failure → no ack."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from ingest.bundler import Bundler
from ingest.collector import Collector
from ingest.settings import IngestSettings
from stationflow.bench.mqttwire import encode_publish
from stationflow.wire import split_bundle

TOPIC = "readings.raw"


class FakeProducer:
    """Records appended records; ``hold_first`` makes the first send wait (a full aiokafka batch)."""

    def __init__(self, partitions: int = 4, *, hold_first: bool = False, fail: BaseException | None = None):
        self.parts = set(range(partitions))
        self.records: list[tuple[int | None, bytes | None, bytes]] = []  # partition, key, value
        self.deliveries: list[asyncio.Future[Any]] = []
        self.hold_first = hold_first
        self.fail = fail
        self.auto_ack = True

    async def partitions_for(self, topic: str) -> set[int]:
        return self.parts

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None
    ) -> asyncio.Future[Any]:
        if self.hold_first and not self.records:
            await asyncio.sleep(0.02)
        assert value is not None
        self.records.append((partition, key, value))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail is not None:
            done.set_exception(self.fail)
        elif self.auto_ack:
            done.set_result(None)
        self.deliveries.append(done)
        return done


async def _bundler(producer: FakeProducer, **kw: Any) -> Bundler:
    bundler = Bundler(producer, TOPIC, **kw)
    await bundler.start()
    return bundler


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize("partitions", [1, 3, 4, 12])
async def test_partition_is_the_one_aiokafka_chooses_for_the_device_key(partitions: int) -> None:
    producer = FakeProducer(partitions)
    bundler = await _bundler(producer)
    every = list(producer.parts)  # what AIOKafkaProducer._partition hands its partitioner
    for i in range(300):
        key = f"dev-{i}".encode()
        assert bundler.partition_for(key) == DefaultPartitioner()(key, every, every)


async def test_partition_matches_a_real_producer_partitioning_a_keyed_record() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")  # never started: no network
    parts = {0, 1, 2, 3, 4, 5}
    producer._metadata.partitions_for_topic = lambda topic: parts
    producer._metadata.available_partitions_for_topic = lambda topic: parts
    bundler = await _bundler(FakeProducer(6))
    for i in range(200):
        key = f"station-{i:04d}".encode()
        assert bundler.partition_for(key) == producer._partition(TOPIC, None, key, None, key, b"v")


async def test_messages_of_one_loop_pass_share_one_record_per_partition() -> None:
    producer = FakeProducer(4)
    bundler = await _bundler(producer)
    keys = [f"dev-{i}".encode() for i in range(40)]
    futures = [bundler.add(k, b'{"n":%d}' % i) for i, k in enumerate(keys)]
    assert producer.records == []  # nothing sent before the loop ran what was ready
    await asyncio.gather(*futures)
    by_partition = {p: [k for k in keys if bundler.partition_for(k) == p] for p in producer.parts}
    assert sorted(p or 0 for p, _, _ in producer.records) == sorted(p for p, ks in by_partition.items() if ks)
    for partition, key, value in producer.records:
        assert key is None and partition is not None  # the bundler names the partition
        docs = split_bundle(value)
        assert docs == [b'{"n":%d}' % keys.index(k) for k in by_partition[partition]]
    # the next pass of the loop opens new bundles
    later = bundler.add(keys[0], b"{}")
    await later
    assert len(producer.records) == len([ks for ks in by_partition.values() if ks]) + 1


async def test_a_message_arriving_after_the_flush_goes_in_the_next_record() -> None:
    producer = FakeProducer(1)
    bundler = await _bundler(producer)
    first = bundler.add(b"a", b"1")
    await _settle()  # the flush ran
    second = bundler.add(b"a", b"2")
    await asyncio.gather(first, second)
    assert [v for _, _, v in producer.records] == [b"1", b"2"]


async def test_size_caps_seal_a_bundle_at_once() -> None:
    producer = FakeProducer(1)
    bundler = await _bundler(producer, max_documents=3, max_bytes=10_000)
    futures = [bundler.add(b"k", b"d%d" % i) for i in range(7)]
    await asyncio.gather(*futures)
    assert [split_bundle(v) for _, _, v in producer.records] == [
        [b"d0", b"d1", b"d2"],
        [b"d3", b"d4", b"d5"],
        [b"d6"],
    ]
    producer.records.clear()
    bundler = await _bundler(producer, max_documents=1000, max_bytes=25)
    docs = [b"x" * 10 for _ in range(5)]  # 11 bytes each with the separator: two per bundle
    await asyncio.gather(*(bundler.add(b"k", d) for d in docs))
    assert [len(split_bundle(v)) for _, _, v in producer.records] == [2, 2, 1]
    assert all(len(v) <= 25 for _, _, v in producer.records)


async def test_a_document_is_acknowledged_only_with_its_record() -> None:
    producer = FakeProducer(1)
    producer.auto_ack = False
    bundler = await _bundler(producer)
    futures = [bundler.add(b"k", b"%d" % i) for i in range(3)]
    await _settle()
    assert len(producer.records) == 1 and not any(f.done() for f in futures)
    producer.deliveries[0].set_result(None)
    await _settle()
    assert all(f.done() and f.exception() is None for f in futures)


async def test_one_devices_burst_keeps_its_order_when_the_producer_waits() -> None:
    producer = FakeProducer(2, hold_first=True)
    bundler = await _bundler(producer, max_documents=4)
    futures = []
    for i in range(30):
        futures.append(bundler.add(b"dtu", b"%d" % i))
        if i % 7 == 0:
            await asyncio.sleep(0)  # some messages arrive on later reads
    await asyncio.gather(*futures)
    docs = [d for _, _, v in producer.records for d in split_bundle(v)]
    assert docs == [b"%d" % i for i in range(30)]
    assert bundler.pending == 0


async def test_kafka_failure_fails_every_message_of_the_bundle_and_what_follows() -> None:
    producer = FakeProducer(1, fail=RuntimeError("broker gone"))
    bundler = await _bundler(producer)
    futures = [bundler.add(b"k", b"%d" % i) for i in range(3)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError, match="broker gone"):
        bundler.add(b"k", b"later")


async def test_collector_withholds_the_puback_when_kafka_fails() -> None:
    settings = IngestSettings()
    collector = Collector(settings, AIOKafkaProducer(bootstrap_servers="127.0.0.1:9"))
    fake = FakeProducer(1, fail=RuntimeError("kafka down"))
    collector.producer = fake
    collector.bundler = Bundler(fake, collector.raw_topic)
    await collector.bundler.start()
    payload = b'{"readings":[{"metric":"pm25","value":1,"ts":"%s"}]}'
    now = collector_now()
    handlers = [
        collector._on_message(collector.client, f"devices/d{i}/readings", payload % now, 1, {})
        for i in range(3)
    ]
    results = await asyncio.gather(*handlers, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)  # raised: gmqtt sends no PUBACK
    assert collector._stop.is_set() and collector._fatal is not None
    assert len(fake.records) == 1  # the three messages went out as one record


async def test_collector_acknowledges_after_the_bundle_and_sends_dead_letters_alone() -> None:
    collector = Collector(IngestSettings(), AIOKafkaProducer(bootstrap_servers="127.0.0.1:9"))
    fake = FakeProducer(1)
    collector.producer = fake
    collector.bundler = Bundler(fake, collector.raw_topic)
    await collector.bundler.start()
    good = b'{"readings":[{"metric":"pm25","value":1,"ts":"%s"}]}' % collector_now()
    results = await asyncio.gather(
        collector._on_message(collector.client, "devices/a/readings", good, 1, {}),
        collector._on_message(collector.client, "devices/b/readings", b"not json", 1, {}),
        collector._on_message(collector.client, "devices/c/readings", good, 1, {}),
    )
    assert list(results) == [0, 0, 0]
    raw = [r for r in fake.records if r[1] is None]
    dead = [r for r in fake.records if r[1] is not None]
    assert len(raw) == 1 and len(split_bundle(raw[0][2])) == 2
    assert [k for _, k, _ in dead] == [b"b"] and b"invalid_json" in dead[0][2]


def collector_now() -> bytes:
    """An ISO timestamp inside the collector's accepted window."""
    from stationflow.contracts import utcnow

    return utcnow().isoformat().encode()


class _Connection:
    """Stands in for gmqtt's MQTTConnection: records what is written to the socket."""

    class _Protocol:
        proto_ver = 5

    def __init__(self) -> None:
        self._protocol = self._Protocol()
        self.writes: list[bytes] = []
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def send_package(self, data: bytes) -> None:
        self.writes.append(data)


def _publish(topic: str, payload: bytes, mid: int) -> tuple[int, bytes]:
    packet = encode_publish(topic, payload, mid, 1)
    body, _ = _body(packet)
    return packet[0], body


def _body(packet: bytes) -> tuple[bytes, int]:
    """Variable header + payload of a packet (skip the remaining-length bytes)."""
    pos = 1
    while packet[pos] & 0x80:
        pos += 1
    return packet[pos + 1 :], pos + 1


async def test_the_pubacks_of_a_bundle_go_out_in_one_write_after_kafka_acked() -> None:
    collector = Collector(IngestSettings(), AIOKafkaProducer(bootstrap_servers="127.0.0.1:9"))
    fake = FakeProducer(1)
    fake.auto_ack = False
    collector.producer = fake
    collector.bundler = Bundler(fake, collector.raw_topic)
    await collector.bundler.start()
    connection = _Connection()
    collector.client._connection = connection
    handler = getattr(collector.client, "_package_handler", collector.client)
    good = b'{"readings":[{"metric":"pm25","value":1,"ts":"%s"}]}' % collector_now()
    for mid in (11, 12, 13):  # as gmqtt parses them from one socket read
        handler._handle_packet(*_publish(f"devices/d{mid}/readings", good, mid))
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(fake.records) == 1 and connection.writes == []  # sent to Kafka, not acknowledged yet
    fake.deliveries[0].set_result(None)
    for _ in range(10):
        await asyncio.sleep(0)
    assert connection.writes == [
        b"".join(bytes([0x40, 4]) + mid.to_bytes(2) + b"\x00\x00" for mid in (11, 12, 13))
    ]


async def test_pubacks_due_on_a_lost_connection_are_not_written() -> None:
    collector = Collector(IngestSettings(), AIOKafkaProducer(bootstrap_servers="127.0.0.1:9"))
    connection = _Connection()
    collector.client._connection = connection
    handler = getattr(collector.client, "_package_handler", collector.client)
    handler._send_puback(5)
    connection.closing = True
    await asyncio.sleep(0)
    assert connection.writes == []


async def _dispatching_collector(fake: FakeProducer) -> tuple[Collector, _Connection, Any]:
    collector = Collector(IngestSettings(), AIOKafkaProducer(bootstrap_servers="127.0.0.1:9"))
    collector.producer = fake
    collector.bundler = Bundler(fake, collector.raw_topic)
    await collector.bundler.start()
    connection = _Connection()
    collector.client._connection = connection
    return collector, connection, getattr(collector.client, "_package_handler", collector.client)


async def _spin() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_no_puback_from_gmqtts_dispatch_when_kafka_fails() -> None:
    fake = FakeProducer(1)
    fake.auto_ack = False
    collector, connection, handler = await _dispatching_collector(fake)
    good = b'{"readings":[{"metric":"pm25","value":1,"ts":"%s"}]}' % collector_now()
    tasks = len(asyncio.all_tasks())
    for mid in (1, 2):
        handler._handle_packet(*_publish(f"devices/d{mid}/readings", good, mid))
    assert len(asyncio.all_tasks()) == tasks  # QoS 1 JSON: no task per message
    await _spin()
    fake.deliveries[0].set_exception(RuntimeError("not leader"))
    await _spin()
    assert connection.writes == []
    assert collector._stop.is_set() and collector._inflight == 0
    handler._handle_packet(*_publish("devices/d3/readings", good, 3))  # after the failure
    await _spin()
    assert connection.writes == [] and len(fake.records) == 1


async def test_a_refused_qos1_message_is_acknowledged_after_its_dead_letter() -> None:
    fake = FakeProducer(1)
    fake.auto_ack = False
    _, connection, handler = await _dispatching_collector(fake)
    handler._handle_packet(*_publish("devices/d1/readings", b"{not json", 7))
    await _spin()
    assert [(k, b"invalid_json" in v) for _, k, v in fake.records] == [(b"d1", True)]
    assert connection.writes == []
    fake.deliveries[0].set_result(None)
    await _spin()
    assert connection.writes == [bytes([0x40, 4, 0, 7, 0, 0])]


async def test_hj212_messages_keep_gmqtts_task() -> None:
    _, _, handler = await _dispatching_collector(FakeProducer(1))
    tasks = len(asyncio.all_tasks())
    handler._handle_packet(*_publish("devices/dtu-1/hj212", b"##0000", 9))
    assert len(asyncio.all_tasks()) == tasks + 1  # _on_message, which may wait for the registry
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()
