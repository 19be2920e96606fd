"""`stationflow bench hj212` on a small fleet: it counts every frame and reading, and fails on loss."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from stationflow.bench.hj212bench import measure
from stationflow.bench.hj212load import POLLUTANTS, Hj212Scenario
from stationflow.stack.pipeline import Pipeline
from tests.integration.cli_utils import run_cli_json

CONNECTIONS = 50
MINUTES = 2
BENCH_TIMEOUT_S = 240.0


def test_bench_counts_every_frame_and_reading() -> None:
    r = run_cli_json(
        "bench", "hj212",
        "--connections", str(CONNECTIONS), "--minutes", str(MINUTES), "--steady", "1",
        "--steady-interval", "0.5", "--json",
        timeout=BENCH_TIMEOUT_S,
    )  # fmt: skip
    frames = CONNECTIONS * MINUTES
    assert r["connections"] == CONNECTIONS and r["connect_failures"] == 0
    assert r["frames_sent"] == r["frames_acked"] == r["frames_expected"] == frames
    backlog, paced = r["ack_latency_ms"], r["steady_ack_latency_ms"]
    assert (backlog["samples"], paced["samples"]) == (frames - CONNECTIONS, CONNECTIONS)  # --steady 1
    for lat in (backlog, paced):
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert r["readings_sent"] == r["readings_stored"] == frames * len(POLLUTANTS)
    assert r["lost"] == 0 and r["problems"] == []
    assert r["frames_per_s"] > 0 and r["readings_per_s"] > 0
    for name in ("tcp", "streams"):
        assert r["cpu_s"][name] > 0 and r["rss_mb"][name] > 0 and r["cpu_us_per_frame"][name] > 0


def test_bench_fails_when_acknowledged_readings_never_reach_influxdb() -> None:
    def stop_worker(p: Pipeline) -> None:
        p.services["streams"].stop()  # the collector still acknowledges: Kafka holds the frames

    scenario = Hj212Scenario(connections=5, minutes=MINUTES, end=datetime.now(UTC))
    r = measure(Console(quiet=True), scenario, stall_s=5.0, on_started=stop_worker)
    assert r["frames_acked"] == 5 * MINUTES
    assert r["readings_stored"] == 0 and r["lost"] == 5 * MINUTES * len(POLLUTANTS)
    assert any("not in InfluxDB" in p for p in r["problems"]), r["problems"]
