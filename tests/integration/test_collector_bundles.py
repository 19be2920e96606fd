"""The MQTT collector's bundles on a real Mosquitto and Tansu.

A burst from one device (as a logger uploading its stored history) interleaved with other
devices: every message is acknowledged, each reaches ``readings.raw`` exactly once, one
device's messages in the order they were published, and every record carries only documents
of devices whose id hashes to the record's partition (aiokafka's default partitioner).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from stationflow.contracts import ReadingBatch
from stationflow.stack.components import Component
from stationflow.stack.pipeline import Pipeline
from stationflow.wire import split_bundle
from tests.integration.pipeline_utils import DEADLINE_S, Publisher, iso, make_pipeline, read_bundles

BURST = 1500  # messages of the bursting device
OTHERS = 20  # other devices, one message each every 50 burst messages
EVERY = 50


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path)
    with p:
        p.start("ingest")
        yield p


def _message(value: int, ts: datetime) -> bytes:
    return json.dumps({"readings": [{"metric": "seq", "value": value, "ts": iso(ts)}]}).encode()


def test_a_burst_keeps_each_devices_order_and_every_record_holds_one_partition(pipeline: Pipeline) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    start = datetime.now(UTC) - timedelta(hours=1)
    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    infos = []
    sent: dict[str, list[int]] = {}
    try:
        for i in range(BURST):
            infos.append(pub.publish("devices/burst-1/readings", _message(i, start + timedelta(seconds=i))))
            sent.setdefault("burst-1", []).append(i)
            if i % EVERY == 0:
                other = f"other-{(i // EVERY) % OTHERS}"
                infos.append(pub.publish(f"devices/{other}/readings", _message(i, start)))
                sent.setdefault(other, []).append(i)
        for info in infos:
            info.wait_for_publish(timeout=DEADLINE_S)
            assert info.is_published()
    finally:
        pub.close()

    topic = pipeline.topic_prefix + "readings.raw"
    read = read_bundles(
        ep.kafka, topic, until=lambda d: len(d) >= len(infos), timeout=DEADLINE_S, settle_s=1.0
    )
    records, partitions = read.records, read.partitions
    assert partitions, "the topic has partitions"
    received: dict[str, list[int]] = {}
    for partition, value in records:
        for doc in split_bundle(value):
            batch = ReadingBatch.model_validate_json(doc)
            key = batch.device_id.encode()
            assert DefaultPartitioner()(key, partitions, partitions) == partition, batch.device_id
            received.setdefault(batch.device_id, []).extend(int(r.value) for r in batch.readings)
    assert received == sent  # each message once, each device's in the order published
    assert len(records) < len(infos), "messages were bundled"
