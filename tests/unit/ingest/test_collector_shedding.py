"""The collector's QoS 0 shedding hook sits on gmqtt's real PUBLISH dispatch (no broker needed)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
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
