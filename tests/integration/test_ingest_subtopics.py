"""Every device subtopic is heard, through real Mosquitto, Tansu and the collector process.

A device publishes to ``devices/<id>/senml`` (SenML pack), ``devices/<id>/hj212`` (one HJ 212
frame, as a DTU gateway forwards it; decoded with the device's registry record, registered
while the collector runs) and ``devices/<id>/other``: the first two become ``ReadingBatch``es
on ``readings.raw``, the third an ``unknown_subtopic`` dead letter, and every one is
acknowledged with PUBACK success (a device is never left retrying).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from stationflow.contracts import DeadLetter, DeviceRecord, Hj212Link, MetricSpec, Quality, ReadingBatch
from stationflow.passwords import hash_password
from stationflow.stack.components import Component
from stationflow.stack.monitor import scrape_counter
from stationflow.stack.pipeline import Pipeline
from tests.integration.pipeline_utils import iso, make_pipeline, read_documents, read_topic, wait_for
from tests.integration.tcp_utils import hj212_data, publish_records

CST = ZoneInfo("Asia/Shanghai")
PW = "271828"
AIR = {
    "pm25": MetricSpec(metric="pm25", unit="ug/m3", hj212_code="a34004"),
    "co": MetricSpec(metric="co", unit="mg/m3", hj212_code="a21005"),
    "temperature": MetricSpec(metric="temperature", unit="degC", hj212_code="a01001"),
}


class AckingPublisher:
    """QoS 1 MQTT v5 publisher that keeps the PUBACK reason code of every message."""

    def __init__(self, host: str, port: int) -> None:
        self.acks: dict[int, int] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_publish = self._on_publish
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        with self._lock:
            self.acks[mid] = int(getattr(rc, "value", 0))

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(30)
        return info.mid

    def reason_code(self, mid: int) -> int | None:
        with self._lock:
            return self.acks.get(mid)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path)
    with p:
        p.start("ingest")
        yield p


def _dtu(device_id: str, mn: str) -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        device_type="air-station",
        domain="air",
        metrics=AIR,
        protocol="hj212",
        hj212=Hj212Link(mn=mn, password_hash=hash_password(PW)),
        updated_at=datetime.now(UTC),
    )


def test_senml_hj212_and_unknown_subtopics_through_the_collector(pipeline: Pipeline) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    prefix = pipeline.topic_prefix
    now = datetime.now(UTC).replace(microsecond=0)
    pub = AckingPublisher(ep.mqtt_host, ep.mqtt_port)
    try:
        # the collector is up and subscribed once a JSON reading comes through
        probe = json.dumps({"readings": [{"metric": "pm25", "value": 1, "ts": iso(now)}]}).encode()
        pub.publish("devices/probe-1/readings", probe)
        assert read_topic(ep.kafka, prefix + "readings.raw", until=lambda v: len(v) >= 1, timeout=60)

        # registered while the collector runs: the first frame finds it by catching up
        asyncio.run(publish_records(ep.kafka, prefix + "registry", [_dtu("dtu-7", "MN-DTU-7")]))
        local = (now.astimezone(CST) - timedelta(minutes=1)).replace(second=0, tzinfo=None)
        frame, _ = hj212_data(
            mn="MN-DTU-7",
            pw=PW,
            cn="2011",
            data_time=local.replace(tzinfo=CST),
            values="a34004-Rtd=35.2,a34004-Flag=N;a21005-Rtd=0.8,a21005-Flag=C;a99999-Rtd=4,a99999-Flag=N",
            flag=4,
        )
        wrong_pw, _ = hj212_data(
            mn="MN-DTU-7", pw="000000", cn="2011", data_time=local.replace(tzinfo=CST), values="a34004-Rtd=1"
        )
        pack = [
            {
                "bn": "urn:dev:stationflow:sen-3:",
                "bt": now.timestamp(),
                "bu": "Cel",
                "n": "temperature",
                "v": 21.5,
            },
            {"n": "temperature", "t": -30, "v": 21.25},
            {"n": "humidity", "u": "%RH", "v": 48},
        ]
        mids = {
            "hj212": pub.publish("devices/dtu-7/hj212", frame),
            "senml": pub.publish("devices/sen-3/senml", json.dumps(pack).encode()),
            "other": pub.publish("devices/sen-3/other", b"hello"),
            "nested": pub.publish("devices/sen-3/senml/extra", b"[]"),
            "bad_pw": pub.publish("devices/dtu-7/hj212", wrong_pw),
            "unregistered": pub.publish("devices/dtu-8/hj212", frame),
            "other_device": pub.publish(
                "devices/sen-3/senml",
                json.dumps([{"n": "urn:dev:stationflow:sen-4:temperature", "v": 1}]).encode(),
            ),
        }
        assert wait_for(lambda: all(pub.reason_code(m) is not None for m in mids.values()), timeout=30)
        assert {name: pub.reason_code(m) for name, m in mids.items()} == dict.fromkeys(
            mids, 0
        )  # PUBACK success
    finally:
        pub.close()

    raw = [
        ReadingBatch.model_validate_json(doc)
        for doc in read_documents(ep.kafka, prefix + "readings.raw", until=lambda d: len(d) >= 3, timeout=60)
    ]
    by_device = {b.device_id: b for b in raw}
    assert sorted(by_device) == ["dtu-7", "probe-1", "sen-3"], raw

    dtu = by_device["dtu-7"]
    data_time = local.replace(tzinfo=CST).astimezone(UTC)
    assert dtu.source == "mqtt:devices/dtu-7/hj212"
    assert [(r.metric, r.value, r.unit, r.ts, r.quality) for r in dtu.readings] == [
        ("pm25", 35.2, "ug/m3", data_time, Quality.NORMAL),
        ("co", 0.8, "mg/m3", data_time, Quality.CALIBRATION),
    ]
    sen = by_device["sen-3"]
    assert sen.source == "mqtt:devices/sen-3/senml"
    assert [(r.metric, r.value, r.unit, r.ts) for r in sen.readings] == [
        ("temperature", 21.5, "degC", now),
        ("temperature", 21.25, "degC", now - timedelta(seconds=30)),
        ("humidity", 48.0, "%", now),
    ]

    expected = {
        ("sen-3", "unknown_subtopic", "mqtt:devices/sen-3/other"),
        ("sen-3", "unknown_subtopic", "mqtt:devices/sen-3/senml/extra"),
        ("dtu-7", "hj212_bad_password", "mqtt:devices/dtu-7/hj212"),
        ("dtu-8", "unknown_device", "mqtt:devices/dtu-8/hj212"),
        ("sen-3", "senml_other_device", "mqtt:devices/sen-3/senml"),
        ("dtu-7", "hj212_unknown_code", "mqtt:devices/dtu-7/hj212"),
    }
    letters = [
        DeadLetter.model_validate_json(v)
        for v in read_topic(ep.kafka, prefix + "readings.deadletter", until=lambda v: len(v) >= len(expected))
    ]
    assert {(d.device_id, d.code, d.source) for d in letters} == expected, [
        (d.code, d.reason) for d in letters
    ]
    other = next(d for d in letters if d.source == "mqtt:devices/sen-3/other")
    assert other.payload() == b"hello"
    assert "devices/sen-3/readings" in other.reason and "devices/sen-3/hj212" in other.reason
    unknown = next(d for d in letters if d.code == "hj212_unknown_code")
    assert "a99999" in unknown.reason and unknown.payload() == frame

    metrics_url = f"http://127.0.0.1:{pipeline.metrics_ports['ingest']}/metrics"
    assert scrape_counter(metrics_url, "stationflow_ingest_hj212_unknown_codes_total") == 1
    log = (pipeline.state_dir / "logs" / "ingest.log").read_text()
    assert "code=unknown_subtopic" in log
    assert "hj212 unknown codes device_id=dtu-7 codes=a99999" in log


def test_a_session_from_before_holds_no_overlapping_subscription(
    tansu: Component, influxd: Component, tmp_path: Path
) -> None:
    """A collector session created with ``devices/+/readings`` (before every subtopic was heard):
    the upgraded collector drops that subscription, so a reading is not delivered twice."""
    pipeline, tag = make_pipeline(tansu, influxd, tmp_path)
    with pipeline:
        ep = pipeline.endpoints
        assert ep is not None
        old = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ingest-{tag}", protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        old.connect(ep.mqtt_host, ep.mqtt_port, clean_start=False, properties=props)
        subscribed = threading.Event()
        old.on_subscribe = lambda *_: subscribed.set()
        old.loop_start()
        old.subscribe(f"$share/g{tag}/devices/+/readings", qos=1)
        assert subscribed.wait(10)
        old.disconnect()
        old.loop_stop()

        pipeline.start("ingest")
        pub = AckingPublisher(ep.mqtt_host, ep.mqtt_port)
        now = datetime.now(UTC)
        try:
            for i in range(3):
                body = {"readings": [{"metric": "pm25", "value": i, "ts": iso(now - timedelta(seconds=i))}]}
                pub.publish("devices/once-1/readings", json.dumps(body).encode())
        finally:
            pub.close()
        prefix = pipeline.topic_prefix
        values = read_documents(ep.kafka, prefix + "readings.raw", until=lambda d: len(d) >= 4, timeout=10)
        assert [ReadingBatch.model_validate_json(v).readings[0].value for v in values] == [0.0, 1.0, 2.0]
        log = (pipeline.state_dir / "logs" / "ingest.log").read_text()
        assert "session_present=True" in log
