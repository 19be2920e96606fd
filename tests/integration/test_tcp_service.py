"""``python -m ingest.tcp`` as a process: end to end into InfluxDB, fuzzing a live connection,
metrics, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationflow.contracts import DeviceRecord, Hj212Link, MetricSpec
from stationflow.passwords import hash_password
from stationflow.stack.components import Component, influx_query
from stationflow.stack.pipeline import Pipeline
from stationflow.topics import REGISTRY
from tests.integration.pipeline_utils import make_pipeline, wait_for
from tests.integration.tcp_utils import hj212_9014, hj212_data, publish_records

CST = ZoneInfo("Asia/Shanghai")
PW = "123456"
AIR = DeviceRecord(
    device_id="air-svc",
    device_type="air_station",
    domain="air",
    metrics={
        "pm25": MetricSpec(metric="pm25", unit="ug/m3", hj212_code="a34004"),
        "pm10": MetricSpec(metric="pm10", unit="ug/m3", hj212_code="a34002"),
    },
    protocol="hj212",
    hj212=Hj212Link(mn="AIRSVC0001", password_hash=hash_password(PW)),
    updated_at=datetime.now(UTC),
)


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, {"STATIONFLOW_STREAMS_REGISTRY": "true"})
    with p:
        p.start("ingest")  # creates the topics
        asyncio.run(publish_records(tansu.url, p.topic_prefix + REGISTRY, [AIR]))
        p.start("tcp")
        yield p


def minute(offset_min: int) -> datetime:
    return (datetime.now(CST) - timedelta(minutes=offset_min)).replace(second=0, microsecond=0)


def send_and_read(port: int, frame: bytes, expect: int, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(frame)
        got = b""
        while len(got) < expect:
            chunk = sock.recv(expect - len(got))
            if not chunk:
                break
            got += chunk
        return got


def good_exchange(port: int, offset_min: int, value: float) -> None:
    frame, qn = hj212_data(
        mn="AIRSVC0001", pw=PW, cn="2051", data_time=minute(offset_min), values=f"a34004-Avg={value}"
    )
    expected = hj212_9014(qn=qn, pw=PW, mn="AIRSVC0001")
    assert send_and_read(port, frame, len(expected)) == expected


def test_end_to_end_metrics_and_clean_stop(pipeline: Pipeline) -> None:
    pipeline.start("streams")
    ep = pipeline.endpoints
    assert ep is not None
    t = minute(3)
    frame, qn = hj212_data(
        mn="AIRSVC0001",
        pw=PW,
        cn="2051",
        data_time=t,
        values="a34004-Avg=35.2,a34004-Flag=N;a34002-Avg=61,a34002-Flag=D",
    )
    expected = hj212_9014(qn=qn, pw=PW, mn="AIRSVC0001")
    assert send_and_read(pipeline.hj212_port, frame, len(expected)) == expected

    def stored() -> list[list[object]]:
        q = "SELECT pm25, pm10, pm10_q FROM air WHERE device='air-svc'"
        series = influx_query(ep.influx_url, ep.influx_db, q)
        return series[0]["values"] if series else []

    assert wait_for(lambda: len(stored()) == 1, timeout=60), pipeline.services["tcp"].log_tail()
    ts_ns, pm25, pm10, pm10_q = stored()[0]
    assert ts_ns == int(t.timestamp()) * 1_000_000_000  # the minute's start, Beijing time → UTC
    assert (pm25, pm10, pm10_q) == (35.2, 61.0, "D")

    url = f"http://127.0.0.1:{pipeline.tcp_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    assert 'stationflow_tcp_frames_total{outcome="stored",protocol="hj212"} 1.0' in text
    assert 'stationflow_hj212_crc_variant{device="air-svc",variant="hj212"} 1.0' in text
    assert 'stationflow_tcp_replies_total{kind="9014",protocol="hj212"} 1.0' in text

    proc = pipeline.services.pop("tcp")
    log = proc.log_path
    proc.signal(signal.SIGTERM)
    assert wait_for(lambda: not proc.running, timeout=20)
    assert proc.returncode == 0, proc.log_tail()
    assert "tcp collector stopped" in log.read_text()


CHUNKS = st.lists(
    st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"##", b"##0100", b"##9999", b"&&", b"\r\n", b"CP=&&", b"QN=;ST=22;CN=2051;", b"#"]),
    ),
    max_size=20,
)


def test_random_bytes_never_kill_the_server(pipeline: Pipeline) -> None:
    port = pipeline.hj212_port
    counter = iter(range(10_000))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(chunks=CHUNKS, good_after=st.booleans())
    def fuzz(chunks: list[bytes], good_after: bool) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for chunk in chunks:
                sock.sendall(chunk)
        if good_after:
            good_exchange(port, 10 + next(counter) % 1000, 1.0)

    fuzz()
    good_exchange(port, 5, 2.0)  # the server is alive and still answers
    assert pipeline.services["tcp"].running
