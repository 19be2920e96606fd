"""Through the running services: after Mosquitto dropped messages, the collector resumes its
session, and no QoS 1 reading is lost.

Mosquitto 2.0.11 can keep QoS 1 messages it acknowledged to their devices unsent in a live
session after it dropped QoS 0 messages towards the collector (``ingest.resume``). Here the
broker's outgoing queue is made small (``max_queued_messages 200``) and the collector is
stopped (SIGSTOP, as a stalled process) during a short QoS 0 burst, so that the broker drops
for certain, while QoS 1 devices keep publishing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from stationflow.stack.components import Component
from stationflow.stack.pipeline import Pipeline
from tests.integration.pipeline_utils import Publisher, SteadyLoad, make_pipeline, stored_values, wait_for
from tests.integration.test_qos0_flood import Flooder, metric

QOS1_DEVICES = ("d1-a", "d1-b")
QOS1_MESSAGES = 200  # per device, 5 readings each, at 20 msg/s: 10 s
BURST_S = 3.0


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, mosquitto_config="max_queued_messages 200\n")
    with p:
        p.start("ingest")
        p.start("streams")
        yield p


def test_the_collector_resumes_its_session_after_broker_drops_and_every_qos1_reading_is_stored(
    pipeline: Pipeline,
) -> None:
    ep = pipeline.endpoints
    assert ep is not None
    metrics_url = f"http://127.0.0.1:{pipeline.metrics_ports['ingest']}/metrics"
    publishers = [Publisher(ep.mqtt_host, ep.mqtt_port) for _ in QOS1_DEVICES]
    loads = [
        SteadyLoad(pub, d, count=QOS1_MESSAGES, rate=20.0)
        for pub, d in zip(publishers, QOS1_DEVICES, strict=True)
    ]
    flooder = Flooder(ep.mqtt_host, ep.mqtt_port, "burst-0", duration_s=BURST_S)
    try:
        for load in loads:
            load.start()
        time.sleep(1.0)
        collector = psutil.Process(pipeline.services["ingest"].pid)
        collector.suspend()  # its socket fills up, so the broker's queue does, and it drops
        try:
            flooder.start()
            flooder.join(timeout=BURST_S + 30)
        finally:
            collector.resume()
        for load in loads:
            load.join(timeout=60)
        assert flooder.error is None, flooder.error
        assert [load.acked for load in loads] == [QOS1_MESSAGES] * len(loads)

        # the broker dropped (its counter, as the collector reports it) ...
        assert wait_for(
            lambda: metric(metrics_url, "stationflow_mqtt_broker_dropped_messages") > 0, timeout=30
        )
        # ... so the collector resumed its session once the drops stopped, and is connected
        assert wait_for(
            lambda: metric(metrics_url, "stationflow_ingest_mqtt_session_resumes_total") >= 1, timeout=60
        )
        assert wait_for(lambda: metric(metrics_url, "stationflow_ingest_mqtt_connected") == 1, timeout=30)
        log = (pipeline.state_dir / "logs" / "ingest.log").read_text()
        assert "mqtt session resume broker_dropped=" in log

        # every QoS 1 reading is stored
        for device, load in zip(QOS1_DEVICES, loads, strict=True):
            assert wait_for(
                lambda d=device, n=load.readings: (
                    stored_values(ep.influx_url, ep.influx_db, "sensor", d) == n
                ),
                timeout=120,
                interval=1.0,
            ), f"{device}: stored {stored_values(ep.influx_url, ep.influx_db, 'sensor', device)}"
        assert pipeline.services["ingest"].running
    finally:
        for pub in publishers:
            pub.close()
