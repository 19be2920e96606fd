"""The simulator's MQTT devices (JSON, SenML, DTU HJ 212) through real Mosquitto, Tansu and the collector.

Every message the simulator publishes is acknowledged and every reading it counts comes out
on ``readings.raw`` under the right device, source and metrics; nothing is dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices.catalog import BUILTIN_TYPES
from simulator.fleet import AIR_DTU, AIR_SENML, AirStation, Hj212Wire
from simulator.mqtt import run_simulator
from stationflow.contracts import DeviceRecord, Hj212Link, ReadingBatch
from stationflow.passwords import hash_password
from stationflow.settings import CommonSettings
from stationflow.stack.components import Component
from stationflow.stack.pipeline import Pipeline
from tests.integration.pipeline_utils import make_pipeline, read_documents, read_topic
from tests.integration.tcp_utils import publish_records

AIR_TYPE = next(t for t in BUILTIN_TYPES if t.name == "air-station")


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path)
    with p:
        p.start("ingest")
        yield p


def _record(device_id: str, **link: object) -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        device_type=AIR_TYPE.name,
        domain=AIR_TYPE.domain,
        metrics={m.metric: m for m in AIR_TYPE.metrics},
        updated_at=datetime.now(UTC),
        **link,
    )


def test_json_senml_and_dtu_devices_are_all_stored(pipeline: Pipeline) -> None:
    ep = pipeline.endpoints
    assert ep is not None and isinstance(AIR_DTU.link, Hj212Wire)
    prefix = pipeline.topic_prefix
    dtu = AIR_DTU.link
    records = [
        _record(
            "air-dtu-001",
            protocol="hj212",
            hj212=Hj212Link(mn=dtu.mn, password_hash=hash_password(dtu.password)),
        ),
        _record("air-senml-001", protocol="senml"),
        _record("air-json-001"),
    ]
    asyncio.run(publish_records(ep.kafka, prefix + "registry", records))
    settings = CommonSettings(mqtt_host=ep.mqtt_host, mqtt_port=ep.mqtt_port)
    fleet = [AIR_DTU, AIR_SENML, AirStation("air-json-001")]
    stats = asyncio.run(run_simulator(settings, fleet=fleet, interval_s=1.0, duration_s=2.0))
    assert stats.ticks == 3 and stats.messages == 9 and stats.acked == 9 and stats.rejected == 0
    # per tick: the DTU's 8 values, the SenML pack's 2 x 8 records, the JSON device's 8 readings
    assert stats.readings == 3 * (8 + 16 + 8)

    def total(documents: list[bytes]) -> int:
        return sum(len(ReadingBatch.model_validate_json(d).readings) for d in documents)

    raw = [
        ReadingBatch.model_validate_json(doc)
        for doc in read_documents(
            ep.kafka, prefix + "readings.raw", until=lambda d: total(d) >= stats.readings, timeout=60
        )
    ]
    counts = Counter[str]()
    for batch in raw:
        counts[batch.device_id] += len(batch.readings)
        kind = batch.source.rsplit("/", 1)[1]
        assert (
            kind
            == {"air-dtu-001": "hj212", "air-senml-001": "senml", "air-json-001": "readings"}[batch.device_id]
        )
        assert {r.metric for r in batch.readings} == {m.metric for m in AIR_TYPE.metrics}
    assert counts == {"air-dtu-001": 24, "air-senml-001": 48, "air-json-001": 24}
    letters = read_topic(ep.kafka, prefix + "readings.deadletter", until=lambda v: bool(v), timeout=3)
    assert letters == []
