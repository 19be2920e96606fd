"""The benchmark load generator: schedule, payloads, MQTT wire format, workers (fake broker)."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from stationflow.bench import loadgen, mqttwire
from stationflow.bench.loadgen import (
    plan,
    probe_payload,
    probe_worker,
    publish_worker,
    run_load,
)
from stationflow.bench.mqttwire import LoadError, count_acks, encode_connect, encode_publish
from stationflow.contracts import DEVICE_ID_PATTERN, Reading

START = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# ----------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize(
    ("readings", "per_message", "devices"),
    [(0, 5, 3), (1, 5, 3), (1000, 5, 200), (1003, 5, 7), (999, 1, 10), (12, 50, 2)],
)
def test_plan_totals_exactly_n_readings(readings: int, per_message: int, devices: int) -> None:
    p = plan(readings, devices=devices, per_message=per_message, start=START)
    messages = [p.render(k) for k in range(p.messages)]
    assert sum(m.readings for m in messages) == readings
    assert len(messages) == -(-readings // per_message)
    assert all(m.readings == per_message for m in messages[:-1])


def _readings(p: loadgen.LoadPlan) -> Iterator[tuple[str, Reading]]:
    for k in range(p.messages):
        msg = p.render(k)
        device = msg.topic.split("/")[1]
        body = orjson.loads(msg.payload)
        assert set(body) == {"readings"}
        assert len(body["readings"]) == msg.readings
        for raw in body["readings"]:
            assert TS_RE.match(raw["ts"])
            assert isinstance(raw["value"], float)
            yield device, Reading.model_validate(raw)


def test_readings_are_unique_valid_and_topic_shaped() -> None:
    p = plan(5003, devices=13, per_message=5, start=START)
    seen = set()
    for device, reading in _readings(p):
        assert re.match(DEVICE_ID_PATTERN, device)
        assert device.startswith("bench-")
        seen.add((device, reading.metric, reading.ts))
    assert len(seen) == 5003


def test_ts_steps_one_ms_per_message_per_device() -> None:
    p = plan(100, devices=4, per_message=5, start=START + timedelta(microseconds=123_456))
    assert p.start == START + timedelta(milliseconds=123)  # truncated to ms
    by_device: dict[str, list[datetime]] = {}
    for device, reading in _readings(p):
        if reading.metric == "m0":
            by_device.setdefault(device, []).append(reading.ts)
    assert sorted(by_device) == ["bench-0001", "bench-0002", "bench-0003", "bench-0004"]
    for stamps in by_device.values():
        assert stamps == [p.start + timedelta(milliseconds=i) for i in range(len(stamps))]


@pytest.mark.parametrize("shards", [1, 2, 3, 5])
def test_shards_partition_messages_by_device(shards: int) -> None:
    p = plan(1000, devices=7, per_message=3, start=START)
    parts = [list(p.indexes(i, shards)) for i in range(shards)]
    assert sorted(k for part in parts for k in part) == list(range(p.messages))
    owners = [{p.device_id(k) for k in part} for part in parts]
    for i, a in enumerate(owners):
        for b in owners[i + 1 :]:
            assert not a & b
    assert p.render_shard(1 % shards, shards)[0] == p.render(parts[1 % shards][0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"readings": -1},
        {"per_message": 0},
        {"devices": 0},
        {"devices": 100_000},
        {"start": datetime(2026, 1, 1)},  # noqa: DTZ001 - naive on purpose
    ],
)
def test_plan_refuses_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"readings": 10, "devices": 2, "per_message": 5, "start": START}
    args.update(kwargs)
    with pytest.raises(ValueError):
        plan(**args)  # type: ignore[arg-type]


def test_ten_thousand_devices_get_distinct_valid_ids() -> None:
    p = plan(readings=50_000, devices=10_000, per_message=5, start=START)
    ids = {p.device_id(k) for k in range(p.messages)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(DEVICE_ID_PATTERN, i) for i in ids)
    assert plan(readings=10, devices=9999, per_message=5, start=START).device_id(0) == "bench-0001"


def test_a_bench_whose_load_did_not_run_or_lost_readings_fails() -> None:
    from stationflow.bench.runner import _failure

    assert _failure(None, readings=100, sent=100, stored=100) is None
    stopped = _failure("ValueError: devices", readings=100, sent=0, stored=0)
    assert stopped is not None and "load generator stopped" in stopped
    assert _failure(None, readings=100, sent=0, stored=0) == "published 0 of 100 readings"
    assert (
        _failure(None, readings=100, sent=100, stored=97) == "3 of 100 published readings were never stored"
    )


def test_probe_payload_carries_its_publish_time() -> None:
    ms = int(START.timestamp() * 1000) + 42
    body = orjson.loads(probe_payload(7, ms))
    reading = Reading.model_validate(body["readings"][0])
    assert reading.metric == loadgen.PROBE_METRIC
    assert reading.value == 7.0
    assert reading.ts == START + timedelta(milliseconds=42)


# ----------------------------------------------------------------------------- MQTT v5 wire


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _parse_publish(packet: bytes) -> tuple[int, str, int, bytes]:
    """Independent decoder: (qos, topic, packet id, payload) of one PUBLISH."""
    assert packet[0] >> 4 == 3
    qos = (packet[0] >> 1) & 3
    length, pos = _varint(packet, 1)
    assert len(packet) == pos + length
    (tlen,) = struct.unpack_from("!H", packet, pos)
    topic = packet[pos + 2 : pos + 2 + tlen].decode()
    pos += 2 + tlen
    pid = 0
    if qos:
        (pid,) = struct.unpack_from("!H", packet, pos)
        pos += 2
    plen, pos = _varint(packet, pos)
    return qos, topic, pid, packet[pos + plen :]


@pytest.mark.parametrize("size", [0, 100, 200, 20_000, 3_000_000])
def test_publish_encoding_round_trips(size: int) -> None:
    payload = b"x" * size
    assert _parse_publish(encode_publish("devices/a/readings", payload, 513)) == (
        1,
        "devices/a/readings",
        513,
        payload,
    )
    assert _parse_publish(encode_publish("t", payload, 9, qos=0)) == (0, "t", 0, payload)


def test_connect_carries_version_5_and_credentials() -> None:
    packet = encode_connect("cid", "user", "pw")
    length, pos = _varint(packet, 1)
    body = packet[pos:]
    assert packet[0] == 0x10 and len(body) == length
    assert body[:7] == b"\x00\x04MQTT\x05"
    assert body[7] == 0xC2  # user name, password, clean start
    assert body.endswith(b"\x00\x03cid\x00\x04user\x00\x02pw")
    assert encode_connect("cid", None, None)[pos + 7] == 0x02


def test_count_acks_fast_path_and_partial_packets() -> None:
    acks = b"".join(b"\x40\x02" + struct.pack("!H", i) for i in range(1, 6))
    assert count_acks(acks) == (5, b"")
    assert count_acks(acks + b"\x40\x02\x00") == (5, b"\x40\x02\x00")
    assert count_acks(b"\x40") == (0, b"\x40")


def test_count_acks_reads_v5_reason_codes() -> None:
    no_subscribers = b"\x40\x03\x00\x01\x10"  # 0x10 is a success code
    with_props = b"\x40\x04\x00\x02\x00\x00"
    assert count_acks(no_subscribers + with_props + b"\x40\x02\x00\x03") == (3, b"")
    assert mqttwire.parse_acks(no_subscribers + with_props + no_subscribers + b"\x40") == (3, 2, b"\x40")
    with pytest.raises(LoadError, match="0x87 not authorized"):
        count_acks(b"\x40\x02\x00\x01" + b"\x40\x03\x00\x02\x87")
    with pytest.raises(LoadError, match="disconnected us: 0x93"):
        count_acks(b"\xe0\x01\x93")


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        (b"", 65535),
        (b"\x21\x00\x14", 20),
        (b"\x24\x01\x27\x00\x10\x00\x00\x12\x00\x02id\x21\x03\xe8", 1000),
        (b"\x26\x00\x01k\x00\x01v\x21\x00\x05", 5),
    ],
)
def test_receive_maximum_from_connack_properties(props: bytes, expected: int) -> None:
    assert mqttwire._receive_maximum(props) == expected


# ----------------------------------------------------------------------------- fake broker


class FakeBroker:
    """A tiny MQTT v5 broker that records PUBLISH packets and checks the in-flight window.

    ``crash_after``: after that many PUBLISHes it drops the connection without acking what
    it holds (a SIGKILLed broker), then hangs up on the next ``refuse`` connection attempts
    before CONNACK (a broker still starting).
    """

    def __init__(
        self,
        receive_maximum: int | None = None,
        refuse_topic: str | None = None,
        *,
        crash_after: int | None = None,
        refuse: int = 0,
        unrouted_topic: str | None = None,
    ) -> None:
        self.unrouted_topic = unrouted_topic
        self.receive_maximum = receive_maximum
        self.refuse_topic = refuse_topic
        self.crash_after, self.refuse = crash_after, refuse
        self.published: list[tuple[str, int, bytes]] = []
        self.dup_flags: list[bool] = []
        self.acks_sent = 0
        self.unacked_at_crash: list[int] = []  # packet ids held unacked when it crashed
        self.connections = 0
        self.max_unacked = 0
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        for _ in range(600):  # bounded: about a minute
            if self.closed.is_set():
                return
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            self.connections += 1
            if self.unacked_at_crash and self.refuse > 0:
                self.refuse -= 1
                return  # hang up before CONNACK
            conn.settimeout(0.05)
            buf, unacked = b"", []
            for _ in range(20_000):  # bounded: about 1000 s of idle polls at most
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    data = None
                if data == b"":
                    return
                buf += data or b""
                packets, buf = mqttwire._split(buf)
                for first, body in packets:
                    if first == 0x10:
                        conn.sendall(self._connack())
                    elif first >> 4 == 3:
                        unacked.extend(self._record(first, body))
                        if self.crash_after is not None and len(self.published) >= self.crash_after:
                            self.crash_after = None
                            self.unacked_at_crash = [struct.unpack_from("!H", a, 2)[0] for a in unacked]
                            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            return  # RST, like a killed process with unread input
                    elif first == 0xC0:
                        conn.sendall(b"\xd0\x00")  # PINGRESP
                    elif first == 0xE0:
                        return
                self.max_unacked = max(self.max_unacked, len(unacked))
                # Ack once the window is full or the client went quiet (it waits for acks).
                if unacked and (data is None or len(unacked) >= (self.receive_maximum or 1 << 16)):
                    conn.sendall(b"".join(unacked))
                    self.acks_sent += len(unacked)
                    unacked = []

    def _connack(self) -> bytes:
        props = b"" if self.receive_maximum is None else b"\x21" + struct.pack("!H", self.receive_maximum)
        body = b"\x00\x00" + mqttwire._varint(len(props)) + props
        return b"\x20" + mqttwire._varint(len(body)) + body

    def _record(self, first: int, body: bytes) -> list[bytes]:
        """Record a PUBLISH; return its PUBACK (none for QoS 0)."""
        qos, topic, pid, payload = _parse_publish(bytes([first]) + mqttwire._varint(len(body)) + body)
        with self.lock:
            self.published.append((topic, pid, payload))
            self.dup_flags.append(bool(first & 0x08))
        reason = b"\x87" if topic == self.refuse_topic else b"\x10" if topic == self.unrouted_topic else b""
        return [b"\x40" + bytes([2 + len(reason)]) + struct.pack("!H", pid) + reason] if qos else []

    def close(self) -> None:
        self.closed.set()
        self.server.close()


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    fake = FakeBroker()
    yield fake
    fake.close()


def test_publish_worker_delivers_in_order_within_the_window() -> None:
    fake = FakeBroker(receive_maximum=7)
    try:
        p = plan(500, devices=3, per_message=5, start=START)
        messages = p.render_shard()
        result = publish_worker("127.0.0.1", fake.port, messages, max_inflight=1000)
    finally:
        fake.close()
    assert (result.messages, result.readings) == (100, 500)
    assert [(t, body) for t, _, body in fake.published] == [(m.topic, m.payload) for m in messages]
    assert [pid for _, pid, _ in fake.published] == list(range(1, 101))
    assert 1 <= fake.max_unacked <= 7


def test_publish_worker_qos0_ends_after_a_ping_round_trip(broker: FakeBroker) -> None:
    messages = plan(300, devices=3, per_message=5, start=START).render_shard()
    result = publish_worker("127.0.0.1", broker.port, messages, qos=0)
    assert (result.messages, result.readings) == (60, 300)
    assert [body for _, _, body in broker.published] == [m.payload for m in messages]
    assert {pid for _, pid, _ in broker.published} == {0}


def test_publish_worker_stops_on_a_refused_message() -> None:
    fake = FakeBroker(refuse_topic="devices/bench-0002/readings")
    try:
        messages = plan(50, devices=3, per_message=5, start=START).render_shard()
        with pytest.raises(LoadError, match="not authorized"):
            publish_worker("127.0.0.1", fake.port, messages, timeout_s=10)
    finally:
        fake.close()


def test_publish_worker_reports_an_unreachable_broker() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(LoadError, match="cannot connect"):
        publish_worker("127.0.0.1", port, [], timeout_s=5)


def test_probe_worker_sends_unique_increasing_timestamps(broker: FakeBroker) -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    sent = probe_worker("127.0.0.1", broker.port, stop, 0.01, max_seconds=5)
    timer.cancel()
    assert sent >= 5
    stamps = [orjson.loads(body)["readings"][0]["ts"] for _, _, body in broker.published]
    assert len(stamps) == sent
    assert stamps == sorted(set(stamps))
    assert {topic for topic, _, _ in broker.published} == {"devices/bench-probe/readings"}


def test_run_load_publishes_everything_from_processes(broker: FakeBroker) -> None:
    progress: list[int] = []
    result = run_load(
        "127.0.0.1",
        broker.port,
        readings=2003,
        per_message=5,
        processes=2,
        devices=10,
        on_progress=progress.append,
        timeout_s=60,
    )
    assert (result.readings, result.messages) == (2003, 401)
    assert progress[-1] == 2003
    assert result.probes >= 1
    bench = [body for topic, _, body in broker.published if "bench-probe" not in topic]
    probes = [body for topic, _, body in broker.published if "bench-probe" in topic]
    assert sum(len(orjson.loads(body)["readings"]) for body in bench) == 2003
    assert len(probes) == result.probes


# ----------------------------------------------------------------------------- broker restarts


def test_mark_dup_sets_only_the_dup_flag() -> None:
    packet = encode_publish("devices/a/readings", b"{}", 77)
    again = mqttwire.mark_dup(packet)
    assert again[0] == packet[0] | 0x08 and again[1:] == packet[1:]
    assert _parse_publish(again) == _parse_publish(packet)


def test_broker_going_away_is_retryable_and_refusals_are_not() -> None:
    with pytest.raises(mqttwire.ConnectionLost, match="0x8b server shutting down"):
        count_acks(b"\xe0\x01\x8b")
    with pytest.raises(LoadError) as refused:
        count_acks(b"\xe0\x01\x87")
    assert not isinstance(refused.value, mqttwire.ConnectionLost)


def test_publisher_resends_unacknowledged_messages_after_a_broker_crash() -> None:
    fake = FakeBroker(receive_maximum=50, crash_after=137, refuse=2)
    try:
        messages = plan(1500, devices=7, per_message=5, start=START).render_shard()
        result = publish_worker("127.0.0.1", fake.port, messages, max_inflight=1000, timeout_s=30)
    finally:
        fake.close()
    assert (result.messages, result.readings) == (300, 1500)
    assert result.reconnects == 1
    assert fake.connections == 4  # the first, two hung up before CONNACK, the one that finished
    # Everything the broker held unacknowledged came again, flagged DUP, with its packet id.
    dups = [(pid, body) for (_, pid, body), dup in zip(fake.published, fake.dup_flags, strict=True) if dup]
    assert result.resent == len(dups) >= len(fake.unacked_at_crash) > 0
    assert set(fake.unacked_at_crash) <= {pid for pid, _ in dups}
    assert all(body == messages[pid - 1].payload for pid, body in dups)
    # Every message reached the broker, first seen in schedule order, the last one last.
    bodies = [body for _, _, body in fake.published]
    assert list(dict.fromkeys(bodies)) == [m.payload for m in messages]
    assert bodies[-1] == messages[-1].payload


def test_publisher_counts_only_acknowledged_messages_when_it_gives_up() -> None:
    fake = FakeBroker(receive_maximum=20, crash_after=45, refuse=1_000_000)
    packets = [encode_publish("devices/a/readings", b"%d" % i, i % 65535 + 1) for i in range(200)]
    try:
        link = loadgen.DeviceLink(
            lambda: mqttwire.Connection("127.0.0.1", fake.port, "dev", (None, None)),
            packets,
            max_inflight=1000,
            deadline=time.monotonic() + 30,
            give_up_s=1.0,
        )
        started = time.monotonic()
        with pytest.raises(LoadError, match="broker unreachable, gave up with"):
            while not link.done:
                link.pump(0.5)
        assert time.monotonic() - started < 10
    finally:
        fake.close()
    assert link.acked == fake.acks_sent < 45
    assert link.reconnects == 0


def test_probe_worker_resends_after_a_broker_crash() -> None:
    fake = FakeBroker(crash_after=10, refuse=1)
    stop = threading.Event()
    timer = threading.Timer(0.6, stop.set)
    timer.start()
    try:
        acked = probe_worker("127.0.0.1", fake.port, stop, 0.01, max_seconds=5)
    finally:
        timer.cancel()
        fake.close()
    stamps = {orjson.loads(body)["readings"][0]["ts"] for _, _, body in fake.published}
    assert acked == len(stamps) > 10
    resent = {pid for (_, pid, _), dup in zip(fake.published, fake.dup_flags, strict=True) if dup}
    assert fake.unacked_at_crash and set(fake.unacked_at_crash) <= resent


def test_publish_worker_paces_to_the_rate(broker: FakeBroker) -> None:
    messages = plan(200, devices=3, per_message=5, start=START).render_shard()
    started = time.monotonic()
    result = publish_worker("127.0.0.1", broker.port, messages, rate=200.0, timeout_s=30)
    # message k is not sent before k / rate seconds: the last one after (40 - 1) / 200 s
    assert time.monotonic() - started >= 39 / 200
    assert result.messages == 40
    assert [body for _, _, body in broker.published] == [m.payload for m in messages]


def test_publish_worker_counts_messages_nobody_was_subscribed_to() -> None:
    fake = FakeBroker(unrouted_topic="devices/bench-0002/readings")
    try:
        messages = plan(300, devices=3, per_message=5, start=START).render_shard()
        result = publish_worker("127.0.0.1", fake.port, messages, timeout_s=10)
    finally:
        fake.close()
    assert result.messages == 60
    assert result.unrouted == sum(m.topic == "devices/bench-0002/readings" for m in messages) == 20


def test_the_first_probe_goes_even_if_the_load_is_already_over(broker: FakeBroker) -> None:
    # a short load on a fast machine finished before the probe process had sent anything, and
    # the run had no latency sample (seen in test_run_load_publishes_everything_from_processes)
    stop = threading.Event()
    stop.set()
    sent = probe_worker("127.0.0.1", broker.port, stop, 0.01, max_seconds=5)
    assert sent == 1
    assert [topic for topic, _, _ in broker.published] == ["devices/bench-probe/readings"]
