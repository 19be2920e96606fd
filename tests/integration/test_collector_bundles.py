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


def test_messages_with_and_without_mqtt5_properties_all_arrive_once(pipeline: Pipeline) -> None:
    """The collector reads a plain QoS 1 PUBLISH itself and leaves one with properties (which
    Mosquitto forwards: user properties, content type, message expiry) to gmqtt's parser; an
    MQTT 3.1.1 device's messages come through the same. Every one is stored exactly once."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    ep = pipeline.endpoints
    assert ep is not None
    start = datetime.now(UTC) - timedelta(hours=1)
    v5 = Publisher(ep.mqtt_host, ep.mqtt_port)
    v311 = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    v311.connect(ep.mqtt_host, ep.mqtt_port)
    v311.loop_start()
    infos = []
    try:
        for i in range(60):
            ts = start + timedelta(seconds=i)
            if i % 3 == 0:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.UserProperty = [("site", f"s{i}")]
                props.ContentType = "application/json"
                props.MessageExpiryInterval = 3600
                info = v5.client.publish("devices/props-1/readings", _message(i, ts), qos=1, properties=props)
            elif i % 3 == 1:
                info = v5.publish("devices/props-1/readings", _message(i, ts))
            else:
                info = v311.publish("devices/props-1/readings", _message(i, ts), qos=1)
            infos.append(info)
        for info in infos:
            info.wait_for_publish(timeout=DEADLINE_S)
            assert info.is_published()
    finally:
        v5.close()
        v311.loop_stop()
        v311.disconnect()
    topic = pipeline.topic_prefix + "readings.raw"
    read = read_bundles(
        ep.kafka, topic, until=lambda d: len(d) >= len(infos), timeout=DEADLINE_S, settle_s=1.0
    )
    values = sorted(
        int(r.value)
        for _, value in read.records
        for doc in split_bundle(value)
        for r in ReadingBatch.model_validate_json(doc).readings
    )
    assert values == list(range(60))
