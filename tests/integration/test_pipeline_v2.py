"""The v2 write dialect through the running services: MQTT → collector → worker → /api/v2/write.

VictoriaMetrics implements InfluxDB's /api/v2/write; a field ``pm25`` of measurement ``air``
becomes the series ``air_pm25`` with the tags as labels.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from stationflow.stack.components import Component, start_mosquitto, victoria_force_flush
from stationflow.stack.pipeline import Endpoints, Pipeline
from tests.integration.pipeline_utils import Publisher, iso, wait_for


def _exported(url: str, device: str) -> list[dict[str, object]]:
    victoria_force_flush(url)
    params = {"match[]": f'{{__name__=~"air_.*",device="{device}"}}'}
    text = httpx.get(f"{url}/api/v1/export", params=params, trust_env=False, timeout=10).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_v2_dialect_through_the_running_pipeline(
    tansu: Component, victoria: Component, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    mosquitto = start_mosquitto(tmp_path / "mosquitto")
    pipeline = Pipeline(
        tmp_path,
        topic_prefix=f"t{tag}.",
        extra_env={
            "STATIONFLOW_INGEST_CLIENT_ID": f"ingest-{tag}",
            "STATIONFLOW_INGEST_SHARE_GROUP": f"g{tag}",
            "STATIONFLOW_STREAMS_APP_ID": f"streams-{tag}",
            "STATIONFLOW_INFLUX_DIALECT": "v2",
            "STATIONFLOW_INFLUX_TOKEN": "any-token",
            "STATIONFLOW_STREAMS_REGISTRY": "false",  # unregistered test devices
        },
        components=[mosquitto],
        endpoints=Endpoints(
            kafka=tansu.url, mqtt_host=mosquitto.host, mqtt_port=mosquitto.port, influx_url=victoria.url
        ),
    )
    device = f"air-v2-{tag}"
    with pipeline:
        pipeline.start("ingest")
        pipeline.start("streams")
        pub = Publisher(mosquitto.host, mosquitto.port)
        t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        payload = {
            "readings": [
                {"metric": "pm25", "value": 35.2, "ts": iso(t)},
                {"metric": "pm10", "value": 61, "ts": iso(t)},
            ]
        }
        pub.publish(f"devices/{device}/readings", json.dumps(payload)).wait_for_publish(10)
        pub.close()
        assert wait_for(lambda: len(_exported(victoria.url, device)) == 2, timeout=60, interval=1.0)
    series = {s["metric"]["__name__"]: s for s in _exported(victoria.url, device)}  # type: ignore[index]
    assert series["air_pm25"]["values"] == [35.2]
    assert series["air_pm10"]["values"] == [61.0]
    assert series["air_pm25"]["timestamps"] == [int(t.timestamp() * 1000)]
