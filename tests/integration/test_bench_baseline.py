"""`stationflow bench --baseline --analytics` on a small load: the bridge, off and on, all counted."""

from __future__ import annotations

from tests.integration.cli_utils import run_cli_json

READINGS = 20_000
PER_MESSAGE = 5
BENCH_TIMEOUT_S = 420.0
STATIONFLOW_STAGES = {"collector", "worker", "tansu", "mosquitto", "influxdb", "loadgen"}
BASELINE_STAGES = {"bridge", "mosquitto", "influxdb", "loadgen"}
ANALYTICS_STAGE = "analytics (worker on - off)"


def test_bench_baseline_reports_ratios_and_cpu_per_stage() -> None:
    r = run_cli_json(
        "bench", "--baseline", "--analytics",
        "--readings", str(READINGS), "--per-message", str(PER_MESSAGE), "--json",
        timeout=BENCH_TIMEOUT_S,
    )  # fmt: skip
    (rnd,) = r["runs"]
    base, off, on = rnd["baseline"], rnd["analytics_off"], rnd["analytics_on"]

    # the bridge stored everything it was sent, and stopped cleanly with nothing left unwritten
    assert base["published"] == base["stored"] == READINGS and base["lost"] == 0 and not base["failed"]
    bridge = base["bridge"]
    assert bridge["stopped_cleanly"] and bridge["exit_code"] == 0 and bridge["points_failed"] == 0
    assert bridge["messages"] >= READINGS // PER_MESSAGE  # plus the latency probes
    assert bridge["points_written"] == bridge["messages"]  # one point per message
    for run in (off, on):
        assert run["published"] == run["stored"] == READINGS and run["lost"] == 0 and not run["failed"]
    assert on["analytics_caught_up"]
    assert r["lost"] == {"baseline": [0], "analytics_off": [0], "analytics_on": [0]} and r["failed"] == []

    # the ratios are the printed readings/s divided by the baseline's
    assert r["baseline_readings_per_s"] == base["readings_per_s"] > 0
    assert r["readings_per_s_off"] == off["readings_per_s"] > 0
    assert r["readings_per_s_on"] == on["analytics_readings_per_s"] > 0
    ratio = r["ratio_to_baseline"]
    assert ratio == rnd["ratio_to_baseline"]
    assert ratio["off"] == round(off["readings_per_s"] / base["readings_per_s"], 3) > 0
    assert ratio["on"] == round(on["analytics_readings_per_s"] / base["readings_per_s"], 3) > 0

    # CPU µs per reading for every stage, from each process's CPU-seconds over the readings stored
    cpu = r["cpu_us_per_reading"]
    assert set(cpu["baseline"]) == BASELINE_STAGES
    assert set(cpu["analytics_off"]) == STATIONFLOW_STAGES
    assert set(cpu["analytics_on"]) == STATIONFLOW_STAGES | {ANALYTICS_STAGE}
    for kind, figures in cpu.items():
        assert all(v is not None and v >= 0 for v in figures.values()), (kind, figures)
    for kind, stage in [("baseline", "bridge"), ("analytics_off", "collector"), ("analytics_off", "worker")]:
        assert cpu[kind][stage] > 0 and cpu[kind]["loadgen"] > 0, (kind, cpu[kind])
    worker_on, worker_off = on["cpu_s_exact"]["worker"], off["cpu_s_exact"]["worker"]
    assert cpu["analytics_on"][ANALYTICS_STAGE] == round((worker_on - worker_off) / READINGS * 1e6, 2)
    assert cpu["analytics_off"]["worker"] == round(worker_off / READINGS * 1e6, 2)

    # the worker's peak memory, with analytics off and on
    assert r["worker_peak_rss_mb"]["off"] == off["worker_peak_rss_mb"] > 0
    assert r["worker_peak_rss_mb"]["on"] == on["worker_peak_rss_mb"] > 0
