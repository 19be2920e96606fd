"""``python -m ingest.tcp`` as a process: end to end into InfluxDB, fuzzing a live connection,
metrics, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
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

from stationflow.contracts import DeviceRecord, Hj212Link, MetricSpec, Sl651Link
from stationflow.passwords import hash_password
from stationflow.stack.components import Component, influx_query
from stationflow.stack.pipeline import Pipeline
from stationflow.topics import DEADLETTER, REGISTRY
from tests.integration.pipeline_utils import make_pipeline, read_topic, wait_for
from tests.integration.tcp_utils import (
    hj212_9014,
    hj212_data,
    publish_records,
    sl651_frame,
    sl651_report_body,
)

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
RTU = DeviceRecord(
    device_id="rtu-svc",
    device_type="rain_level_rtu",
    domain="hydro",
    metrics={
        "rain": MetricSpec(metric="rain", unit="mm", sl651_code="PN05"),
        "level": MetricSpec(metric="level", unit="m", sl651_code="Z"),
    },
    protocol="sl651",
    sl651=Sl651Link(address="0012340001"),
    updated_at=datetime.now(UTC),
)


@pytest.fixture
def pipeline(tansu: Component, influxd: Component, tmp_path: Path) -> Iterator[Pipeline]:
    p, _ = make_pipeline(tansu, influxd, tmp_path, {"STATIONFLOW_STREAMS_REGISTRY": "true"})
    with p:
        p.start("ingest")  # creates the topics
        asyncio.run(publish_records(tansu.url, p.topic_prefix + REGISTRY, [AIR, RTU]))
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

    # an SL 651 RTU: 0.5 mm in the last 5 minutes and a level of 7.970 m, confirmed with EOT
    observed = minute(5)
    body = sl651_report_body(
        serial=1,
        sent=datetime.now(CST),
        address="0012340001",
        observed=observed,
        elements=bytes.fromhex("2219000005" + "392300007970"),
    )
    report = sl651_frame(address="0012340001", fc=0x32, body=body)
    reply = send_and_read(pipeline.sl651_port, report, 25)
    assert reply[:16] == bytes.fromhex("7E7E001234000101A0003280080200") + b"\x01"
    assert reply[22] == 0x04

    def hydro() -> list[list[object]]:
        series = influx_query(
            ep.influx_url, ep.influx_db, "SELECT rain, level FROM hydro WHERE device='rtu-svc'"
        )
        return series[0]["values"] if series else []

    assert wait_for(lambda: len(hydro()) == 1, timeout=60), pipeline.services["tcp"].log_tail()
    assert hydro()[0] == [int(observed.timestamp()) * 1_000_000_000, 0.5, 7.97]

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
        st.sampled_from(
            [b"\x7e\x7e", b"\x7e\x7e\x01\x00\x12\x34\x00\x01\xa0\x00\x32\x00\x10\x02", b"\x01", b"\x03"]
        ),
    ),
    max_size=20,
)


def sl651_report(serial: int) -> bytes:
    body = sl651_report_body(
        serial=serial,
        sent=datetime.now(CST),
        address="0012340001",
        observed=minute(1),
        elements=bytes.fromhex("2219000001"),
    )
    return sl651_frame(address="0012340001", fc=0x32, body=body)


def sl651_exchange(port: int, serial: int) -> None:
    reply = send_and_read(port, sl651_report(serial), 25)
    assert reply[:3] == b"\x7e\x7e\x00" and reply[22] == 0x04


def sl651_exchange_on(sock: socket.socket, serial: int) -> None:
    """A report on a connection that carried noise: answered unless the noise left a partial frame
    that swallows it (then the frame timeout gives it up, which this test does not wait for)."""
    sock.sendall(sl651_report(serial))


def test_random_bytes_never_kill_the_server(pipeline: Pipeline) -> None:
    counter = iter(range(1, 10_000))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(chunks=CHUNKS, sl651=st.booleans(), good_after=st.booleans())
    def fuzz(chunks: list[bytes], sl651: bool, good_after: bool) -> None:
        port = pipeline.sl651_port if sl651 else pipeline.hj212_port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for chunk in chunks:
                sock.sendall(chunk)
            if good_after and sl651:  # the same connection still works after the noise
                sl651_exchange_on(sock, next(counter))
        if good_after and not sl651:
            good_exchange(pipeline.hj212_port, 10 + next(counter) % 1000, 1.0)

    fuzz()
    good_exchange(pipeline.hj212_port, 5, 2.0)  # the server is alive and still answers both protocols
    sl651_exchange(pipeline.sl651_port, 9999)
    assert pipeline.services["tcp"].running
    ep = pipeline.endpoints
    assert ep is not None
    letters = [
        json.loads(v)
        for v in read_topic(ep.kafka, pipeline.topic_prefix + DEADLETTER, until=lambda _: False, timeout=5)
    ]
    assert letters, "the noise produced no dead letter"
    assert all(letter["code"] and letter["reason"] for letter in letters)
    assert not [letter for letter in letters if letter["code"] == "internal_error"], "a decoder raised"
