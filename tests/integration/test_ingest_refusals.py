"""Through the running collector and worker: repeated JSON keys and empty payloads are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stationflow.contracts import DeadLetter
from stationflow.stack.components import Component, influx_query
from stationflow.stack.monitor import scrape_counter
from stationflow.stack.pipeline import Pipeline
from tests.integration.pipeline_utils import Publisher, iso, make_pipeline, read_topic, wait_for


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path)
    with p:
        p.start("ingest")
        p.start("streams")
        yield p


def _stored(pipeline: Pipeline, device: str) -> int:
    """Rows of any measurement (readings and what the worker derives) tagged with ``device``."""
    ep = pipeline.endpoints
    assert ep is not None
    series = influx_query(ep.influx_url, ep.influx_db, f"SELECT * FROM /.*/ WHERE device='{device}'")  # noqa: S608
    return sum(len(s["values"]) for s in series)


def test_repeated_keys_and_empty_payloads_go_to_the_dead_letter_topic_and_nothing_is_stored(
    pipeline: Pipeline,
) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    ts = iso(datetime.now(UTC) - timedelta(minutes=1))
    sent = {
        # the value the device meant is ambiguous: it must not be stored as 2
        "dup-value": f'{{"readings":[{{"metric":"pm25","value":1,"value":2,"ts":"{ts}"}}]}}'.encode(),
        "dup-top": f'{{"ts":"{ts}","readings":[{{"metric":"pm25","value":3}}],"ts":"{ts}"}}'.encode(),
        "dup-second": (
            f'{{"readings":[{{"metric":"pm25","value":4,"ts":"{ts}"}},'
            f'{{"metric":"pm10","value":5,"ts" : "{ts}","metric" : "pm25"}}]}}'
        ).encode(),
        "empty": b"",
    }
    expected = {
        "dup-value": ("invalid_json", 'readings[0]: duplicate key "value"'),
        "dup-top": ("invalid_json", 'payload: duplicate key "ts"'),
        "dup-second": ("invalid_json", 'readings[1]: duplicate key "metric"'),
        "empty": ("empty_payload", "retained"),
        "retain-clear": ("empty_payload", "retained"),
    }
    publisher = Publisher(ep.mqtt_host, ep.mqtt_port)
    try:
        for device, payload in sent.items():
            publisher.publish(f"devices/{device}/readings", payload).wait_for_publish(10)
        # a client clearing a retained message: a zero-length retained PUBLISH reaches subscribers
        clear = publisher.client.publish("devices/retain-clear/readings", b"", qos=1, retain=True)
        clear.wait_for_publish(10)
        good = json.dumps({"readings": [{"metric": "pm25", "value": 12.5, "ts": ts}]})
        publisher.publish("devices/good-dup/readings", good).wait_for_publish(10)
    finally:
        publisher.close()

    letters = [
        DeadLetter.model_validate_json(v)
        for v in read_topic(
            ep.kafka, pipeline.topic_prefix + "readings.deadletter", until=lambda v: len(v) >= len(expected)
        )
    ]
    by_device = {d.device_id: d for d in letters}
    assert sorted(by_device) == sorted(expected), [(d.device_id, d.code, d.reason) for d in letters]
    for device, (code, words) in expected.items():
        letter = by_device[device]
        assert letter.code == code, (device, letter.code, letter.reason)
        assert words in letter.reason, (device, letter.reason)
        assert letter.payload() == sent.get(device, b"")
        assert letter.source == f"mqtt:devices/{device}/readings"

    # the good message published after them is stored; none of the refused ones is
    def good() -> list[list[object]]:
        series = influx_query(ep.influx_url, ep.influx_db, "SELECT pm25 FROM air WHERE device='good-dup'")
        return [row[1:] for row in series[0]["values"]] if series else []

    assert wait_for(lambda: good() == [[12.5]], timeout=60), good()
    for device in expected:
        assert _stored(pipeline, device) == 0, device
    metrics_url = f"http://127.0.0.1:{pipeline.metrics_ports['ingest']}/metrics"
    assert scrape_counter(metrics_url, "stationflow_ingest_rejected_total") == len(expected)
    log = (pipeline.state_dir / "logs" / "ingest.log").read_text()
    assert "message rejected device_id=dup-value" in log
    assert 'reason=readings[0]: duplicate key "value"' in log
    assert "message rejected device_id=empty " in log and "code=empty_payload" in log
