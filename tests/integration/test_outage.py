"""InfluxDB stopped for 60 s under load, then restarted: every reading arrives."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stationflow.stack.components import Component
from stationflow.stack.monitor import scrape_counter
from tests.integration.pipeline_utils import Publisher, SteadyLoad, make_pipeline, stored_values, wait_for

OUTAGE_S = 60.0


@pytest.mark.slow
def test_influxdb_down_for_60s_under_load_loses_nothing(
    tansu: Component, influxd_factory: Callable[[], Component], tmp_path: Path
) -> None:
    influx = influxd_factory()
    pipeline, _ = make_pipeline(tansu, influx, tmp_path)
    with pipeline:
        pipeline.start("ingest")
        pipeline.start("streams")
        ep = pipeline.endpoints
        assert ep is not None
        pub = Publisher(ep.mqtt_host, ep.mqtt_port)
        # 90 s of load at 100 msgs/s (500 readings/s): before, during and after the outage.
        load = SteadyLoad(pub, "outage-1", count=9000, rate=100)
        load.start()
        assert wait_for(
            lambda: stored_values(ep.influx_url, ep.influx_db, "sensor", "outage-1") > 0, timeout=30
        )
        influx.stop()
        stopped_at = time.monotonic()
        metrics_url = f"http://127.0.0.1:{pipeline.metrics_ports['streams']}/metrics"
        assert wait_for(lambda: scrape_counter(metrics_url, "stationflow_sink_outage") == 1, timeout=20)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))
        spooled = scrape_counter(metrics_url, "stationflow_sink_spooled_points_total")
        assert spooled > 0, "readings arriving during the outage went to the on-disk spool"
        influx.start()
        load.join(timeout=120)
        assert not load.is_alive()
        assert wait_for(
            lambda: stored_values(ep.influx_url, ep.influx_db, "sensor", "outage-1") == load.readings,
            timeout=120,
            interval=1.0,
        ), f"stored {stored_values(ep.influx_url, ep.influx_db, 'sensor', 'outage-1')} of {load.readings}"
        assert scrape_counter(metrics_url, "stationflow_sink_dropped_points_total") == 0
        assert wait_for(lambda: scrape_counter(metrics_url, "stationflow_sink_outage") == 0, timeout=30)
        pub.close()
