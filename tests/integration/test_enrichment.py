"""Registry enrichment through the running worker: units, calibration, tags, refusals, live updates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from stationflow.contracts import Calibration, DeadLetter, DeviceRecord, MetricSpec, StationInfo
from stationflow.stack.components import Component, influx_query
from stationflow.stack.pipeline import Pipeline
from stationflow.topics import DEADLETTER, REGISTRY
from tests.integration.pipeline_utils import Publisher, iso, make_pipeline, read_topic, wait_for

NOW = datetime.now(UTC)


def _cold(calibration: dict[str, Calibration] | None = None) -> DeviceRecord:
    return DeviceRecord(
        device_id="cold-e2e",
        device_type="coldchain_logger",
        domain="coldchain",
        station=StationInfo(station_id="wh-3", name="Warehouse 3", region="440300"),
        metrics={"temperature": MetricSpec(metric="temperature", unit="degC", min=-40, max=60)},
        calibration=calibration or {},
        updated_at=NOW,
    )


def _publish_records(bootstrap: str, topic: str, records: list[DeviceRecord]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for record in records:
                await producer.send_and_wait(topic, record.model_dump_json().encode(), key=record.key())
        finally:
            await producer.stop()

    asyncio.run(send())


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, {"STATIONFLOW_STREAMS_REGISTRY": "true"})
    with p:
        p.start("ingest")  # creates the topics
        _publish_records(tansu.url, p.topic_prefix + REGISTRY, [_cold()])
        p.start("streams")
        yield p


def _temps(p: Pipeline) -> list[list[object]]:
    ep = p.endpoints
    assert ep is not None
    q = "SELECT temperature, temperature_q, station, region FROM coldchain WHERE device='cold-e2e'"
    series = influx_query(ep.influx_url, ep.influx_db, q)
    return series[0]["values"] if series else []


def test_registry_drives_units_tags_refusals_and_live_calibration(pipeline: Pipeline) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    pub = Publisher(ep.mqtt_host, ep.mqtt_port)
    t1 = NOW - timedelta(minutes=2)

    def send(device: str, value: float, unit: str, ts: datetime) -> None:
        body = {"readings": [{"metric": "temperature", "value": value, "unit": unit, "ts": iso(ts)}]}
        pub.publish(f"devices/{device}/readings", json.dumps(body)).wait_for_publish(10)

    send("cold-e2e", 41.0, "°F", t1)  # → 5.0 degC
    send("cold-e2e", 5.0, "furlongs", t1 + timedelta(seconds=1))  # unknown unit
    send("ghost-1", 5.0, "degC", t1)  # not registered
    assert wait_for(lambda: len(_temps(pipeline)) == 1, timeout=30)
    (_, value, flag, station, region) = _temps(pipeline)[0]
    assert value == pytest.approx(5.0) and flag is None
    assert (station, region) == ("wh-3", "440300")

    letters = [
        DeadLetter.model_validate_json(v)
        for v in read_topic(ep.kafka, pipeline.topic_prefix + DEADLETTER, until=lambda v: len(v) >= 2)
    ]
    by_code = {d.code: d for d in letters}
    assert by_code["unknown_unit"].device_id == "cold-e2e" and "furlongs" in by_code["unknown_unit"].reason
    assert by_code["unknown_device"].device_id == "ghost-1" and by_code["unknown_device"].stage == "streams"

    # Calibration changed in the registry: later readings are stored corrected, no restart.
    _publish_records(
        ep.kafka, pipeline.topic_prefix + REGISTRY, [_cold({"temperature": Calibration(offset=10.0)})]
    )

    # each attempt its own timestamp: a resend that beat the registry update would make every
    # later resend of the same instant a duplicate (first one wins), never showing the new value
    attempts = iter(range(1, 100))

    def corrected() -> bool:
        send("cold-e2e", 5.0, "degC", NOW - timedelta(seconds=next(attempts)))
        return any(row[1] == pytest.approx(15.0) for row in _temps(pipeline))

    assert wait_for(corrected, timeout=30, interval=1.0)
    send("cold-e2e", 80.0, "degC", NOW)  # 90 after calibration: out of range, kept, flagged T
    assert wait_for(lambda: any(row[2] == "T" for row in _temps(pipeline)), timeout=30)
    pub.close()
