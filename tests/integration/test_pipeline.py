"""End to end through the running services: MQTT → collector → Kafka → Faust worker → InfluxDB."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stationflow.contracts import DeadLetter, ReadingBatch
from stationflow.stack.components import Component, influx_query
from stationflow.stack.monitor import scrape_counter
from stationflow.stack.pipeline import Pipeline
from tests.integration.pipeline_utils import (
    Publisher,
    SteadyLoad,
    iso,
    make_pipeline,
    read_documents,
    read_topic,
    stored_values,
    wait_for,
)


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path)
    with p:
        p.start("ingest")
        p.start("streams")
        yield p


@pytest.fixture
def publisher(pipeline: Pipeline) -> Iterator[Publisher]:
    assert pipeline.endpoints is not None
    pub = Publisher(pipeline.endpoints.mqtt_host, pipeline.endpoints.mqtt_port)
    yield pub
    pub.close()


def test_readings_published_over_mqtt_are_queryable_in_influxdb(
    pipeline: Pipeline, publisher: Publisher
) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    air = {
        "readings": [
            {"metric": "pm25", "value": 35.2, "unit": "ug/m3", "ts": iso(t)},
            {"metric": "pm10", "value": 61, "unit": "ug/m3", "ts": iso(t)},
            {
                "metric": "pm25",
                "value": 37.5,
                "ts": iso(t + timedelta(seconds=30)),
            },
        ]
    }
    water = {
        "ts": iso(t),
        "readings": [{"metric": "ph", "value": 7.2}, {"metric": "do", "value": 8.1, "quality": "T"}],
    }
    publisher.publish("devices/air-e2e/readings", json.dumps(air)).wait_for_publish(10)
    publisher.publish("devices/water-e2e/readings", json.dumps(water)).wait_for_publish(10)

    def air_rows() -> list[list[object]]:
        series = influx_query(
            ep.influx_url, ep.influx_db, "SELECT pm25, pm10 FROM air WHERE device='air-e2e'"
        )
        return series[0]["values"] if series else []

    assert wait_for(lambda: len(air_rows()) == 2, timeout=30)
    t_ns = int(t.timestamp()) * 10**9
    assert air_rows() == [[t_ns, 35.2, 61.0], [t_ns + 30 * 10**9, 37.5, None]]
    water_rows = influx_query(
        ep.influx_url, ep.influx_db, "SELECT ph, do, do_q FROM water WHERE device='water-e2e'"
    )
    assert water_rows[0]["values"] == [[t_ns, 7.2, 8.1, "T"]]

    clean = read_documents(ep.kafka, pipeline.topic_prefix + "readings.clean", until=lambda d: len(d) >= 2)
    batches = sorted((ReadingBatch.model_validate_json(d) for d in clean), key=lambda b: b.device_id)
    assert [b.device_id for b in batches] == ["air-e2e", "water-e2e"]
    assert len(batches[0].readings) == 3


HOSTILE: list[tuple[str, bytes, str]] = [
    ("devices/bad-1/readings", b"{not json", "invalid_json"),
    ("devices/bad-2/readings", b'{"readings": []}', "empty_batch"),
    (
        "devices/bad-3/readings",
        b'{"readings":[{"metric":"pm25","value":NaN,"ts":"2026-11-21T00:00:00Z"}]}',
        "non_finite",
    ),
    (
        "devices/bad-4/readings",
        b'{"readings":[{"metric":"pm25","value":1,"ts":"2099-01-01T00:00:00Z"}]}',
        "ts_future",
    ),
    (
        "devices/bad-5/readings",
        b'{"readings":[{"metric":"pm25","value":1,"ts":"2001-01-01T00:00:00Z"}]}',
        "ts_past",
    ),
    (
        "devices/bad-6/readings",
        b'{"device_id":"other","readings":[{"metric":"x","value":1,"ts":"2026-11-21T00:00:00Z"}]}',
        "topic_mismatch",
    ),
    ("devices/bad-7/readings", b'{"readings":[{"metric":"pm25","value":"high"}]}', "invalid_schema"),
    ("devices/bad-8/readings", b"x" * 300_000, "oversized"),
    (
        "devices/bad-9/readings",
        b'{"readings":[{"metric":"pm25","value":1,"ts":"2026-11-21T08:00:00"}]}',
        "naive_timestamp",
    ),
    ("devices/bad 10/readings", b"{}", "bad_device_id"),
    ("devices/bad-11/readings", b"null", "invalid_schema"),
]


def test_bad_messages_land_in_the_dead_letter_topic_and_the_collector_keeps_going(
    pipeline: Pipeline, publisher: Publisher
) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    hostile = HOSTILE
    for topic, payload, _ in hostile:
        publisher.publish(topic, payload).wait_for_publish(10)
    now = iso(datetime.now(UTC))
    good = json.dumps({"readings": [{"metric": "pm25", "value": 12.5, "ts": now}]})
    publisher.publish("devices/good-1/readings", good).wait_for_publish(10)

    letters = [
        DeadLetter.model_validate_json(v)
        for v in read_topic(
            ep.kafka, pipeline.topic_prefix + "readings.deadletter", until=lambda v: len(v) >= len(hostile)
        )
    ]
    assert sorted(d.code for d in letters) == sorted(c for _, _, c in hostile), " ".join(
        sorted(d.code for d in letters)
    )
    by_code = {d.code: d for d in letters}
    assert by_code["invalid_json"].device_id == "bad-1"
    assert by_code["invalid_json"].payload() == b"{not json"
    assert "ahead of the server clock" in by_code["ts_future"].reason
    assert by_code["oversized"].payload_size == 300_000
    # still alive and storing good readings
    assert wait_for(lambda: stored_values(ep.influx_url, ep.influx_db, "air", "good-1") == 1, timeout=30)
    assert pipeline.services["ingest"].running
    rejected = scrape_counter(
        f"http://127.0.0.1:{pipeline.metrics_ports['ingest']}/metrics", "stationflow_ingest_rejected_total"
    )
    assert rejected == len(hostile)
    log = (pipeline.state_dir / "logs" / "ingest.log").read_text()
    assert "message rejected device_id=bad-1" in log and "code=invalid_json" in log


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["streams", "ingest"])
def test_sigkill_mid_stream_loses_nothing(pipeline: Pipeline, publisher: Publisher, victim: str) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    load = SteadyLoad(publisher, f"kill-{victim}", count=4000, rate=400)
    load.start()
    assert wait_for(lambda: load.published >= 1000, timeout=30)
    pipeline.services[victim].signal(signal.SIGKILL)
    assert wait_for(lambda: not pipeline.services[victim].running, timeout=10)
    killed_at = load.published
    pipeline.start(victim)  # waits until ready (the worker waits for the dead member's session)
    load.join(timeout=120)
    assert not load.is_alive()
    assert killed_at < load.count, "the kill happened mid-stream"
    assert wait_for(
        lambda: stored_values(ep.influx_url, ep.influx_db, "sensor", f"kill-{victim}") == load.readings,
        timeout=120,
        interval=1.0,
    ), f"stored {stored_values(ep.influx_url, ep.influx_db, 'sensor', f'kill-{victim}')} of {load.readings}"
