"""The collector's QoS 0 shedding hook sits on gmqtt's real PUBLISH dispatch (no broker needed)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from ingest.collector import Collector
from ingest.settings import IngestSettings
from stationflow.bench.mqttwire import encode_publish

TOPIC = "devices/flood-unit/readings"


def _shed(device: str) -> float:
    return REGISTRY.get_sample_value("stationflow_ingest_qos0_shed_total", {"device": device}) or 0.0


def _variable_header_and_payload(qos: int) -> tuple[int, bytes]:
    packet = encode_publish(TOPIC, b'{"readings":[]}', 7, qos)
    # fixed header: first byte, then a one-byte remaining length for a packet this small
    return packet[0], packet[2:]


async def test_a_qos0_publish_over_the_limit_is_shed_before_any_task_is_built() -> None:
    settings = IngestSettings(ingest_qos0_max_inflight=10, ingest_qos0_max_inflight_per_device=2)
    collector = Collector(settings, AIOKafkaProducer(bootstrap_servers="127.0.0.1:9"))
    handler = getattr(collector.client, "_package_handler", collector.client)
    dispatch = handler._handle_packet  # gmqtt's own dispatch by packet type
    for _ in range(2):
        assert collector._qos0.try_acquire(TOPIC)
    collector._shed_throttle.allow(TOPIC, time.monotonic())  # the report for this device was just sent
    before, tasks = _shed("flood-unit"), len(asyncio.all_tasks())

    cmd, body = _variable_header_and_payload(qos=0)
    for _ in range(5):
        dispatch(cmd, body)

    assert _shed("flood-unit") == before + 5
    assert len(asyncio.all_tasks()) == tasks  # nothing was handed to gmqtt's per-message task

    collector._qos0.release(TOPIC)  # room again: the next QoS 0 message goes on to _on_message
    dispatch(cmd, body)
    assert _shed("flood-unit") == before + 5
    assert len(asyncio.all_tasks()) == tasks + 1
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()


def _qos1_collector(monkeypatch: Any) -> tuple[Collector, Any, list[tuple[int, str, bytes]]]:
    """A collector whose QoS 1 messages are recorded where they would go to the bundler."""
    collector = Collector(IngestSettings(), AIOKafkaProducer(bootstrap_servers="127.0.0.1:9"))
    handler = getattr(collector.client, "_package_handler", collector.client)
    forwarded: list[tuple[int, str, bytes]] = []
    monkeypatch.setattr(type(collector.bundler), "started", property(lambda _: True))
    monkeypatch.setattr(
        collector, "_forward_qos1", lambda _h, mid, topic, payload: forwarded.append((mid, topic, payload))
    )
    return collector, handler, forwarded


async def test_a_plain_qos1_publish_is_read_without_gmqtt_s_parser(monkeypatch: Any) -> None:
    collector, handler, forwarded = _qos1_collector(monkeypatch)
    payload = b'{"readings":[{"metric":"level","value":1.5,"ts":"2026-11-21T08:00:00Z"}]}'
    packet = encode_publish(TOPIC, payload, 513, 1)  # MQTT 5: an empty property block
    assert collector._publish_qos1(handler, MQTTv50, packet[2:])
    # MQTT 3.1.1 has no property block at all
    v311 = packet[2 : 2 + 2 + len(TOPIC) + 2] + payload
    assert collector._publish_qos1(handler, MQTTv311, v311)
    assert forwarded == [(513, TOPIC, payload), (513, TOPIC, payload)]


async def test_a_publish_with_properties_or_of_another_kind_is_left_to_gmqtt(monkeypatch: Any) -> None:
    collector, handler, forwarded = _qos1_collector(monkeypatch)
    body = encode_publish(TOPIC, b"{}", 9, 1)[2:]
    at = 2 + len(TOPIC) + 2  # the property length
    with_properties = body[:at] + b"\x05\x03\x00\x02ab" + body[at + 1 :]  # content type "ab"
    hj212 = encode_publish("devices/st-1/hj212", b"##", 9, 1)[2:]
    sys_topic = encode_publish("$SYS/broker/uptime", b"1", 9, 1)[2:]
    bad_topic = b"\x00\x02\xff\xfe\x00\x09\x00{}"  # not UTF-8
    for packet in (with_properties, hj212, sys_topic, bad_topic, b"", b"\x00", b"\x00\x05ab"):
        assert not collector._publish_qos1(handler, MQTTv50, packet)
    assert forwarded == []


async def test_any_bytes_are_forwarded_or_left_to_gmqtt_never_an_exception(monkeypatch: Any) -> None:
    collector, handler, forwarded = _qos1_collector(monkeypatch)

    @settings(max_examples=300, deadline=None)
    @given(packet=st.binary(max_size=64), version=st.sampled_from([MQTTv311, MQTTv50]))
    def check(packet: bytes, version: int) -> None:
        forwarded.clear()
        taken = collector._publish_qos1(handler, version, packet)
        assert taken == bool(forwarded)
        if taken:
            ((mid, topic, payload),) = forwarded
            assert packet.startswith(len(topic.encode()).to_bytes(2) + topic.encode() + mid.to_bytes(2))
            assert packet.endswith(payload)

    check()
