"""Device windows and rules through the pure engine: the flood hydrograph, hysteresis on a
noisy signal, replay idempotency, late readings, hourly validity and cold chain."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from stationflow.contracts import AlertEvent, DeviceRecord, Quality, Reading
from streams.analytics.device import AnalyticsConfig, DeviceState, check_silence, update_device
from tests.analytics_scenarios import (
    EXPECTED_LEVEL,
    EXPECTED_RAIN,
    STEP_S,
    STEPS,
    gauge_record,
    hydrograph_start,
    level_at,
    rain_at,
)

CONFIG = AnalyticsConfig()
T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _run(
    device_id: str,
    record: DeviceRecord | None,
    batches: list[list[Reading]],
    domain: str = "hydro",
    state: DeviceState | None = None,
    roundtrip: bool = True,
) -> tuple[DeviceState, list[AlertEvent], list[str]]:
    state = state or DeviceState()
    events: list[AlertEvent] = []
    lines: list[str] = []
    for i, batch in enumerate(batches):
        out = update_device(state, device_id, batch, record=record, domain=domain, now=1e9 + i, config=CONFIG)
        events += out.events
        lines += out.lines
        if roundtrip:  # what the Faust table stores and restores
            state = DeviceState.load(orjson.loads(orjson.dumps(state.dump())))
    return state, events, lines


def _seq(events: list[AlertEvent], start: datetime) -> list[tuple[str, str, str, int]]:
    return [
        (e.rule, e.state.value, e.severity.value, int((e.observed_at - start).total_seconds()) // STEP_S)
        for e in events
    ]


def _hydro_batches(metric: str, start: datetime, per_batch: int) -> list[list[Reading]]:
    value = level_at if metric == "level" else rain_at
    readings = [
        Reading(metric=metric, value=value(i), ts=start + timedelta(seconds=STEP_S * i)) for i in range(STEPS)
    ]
    return [readings[i : i + per_batch] for i in range(0, len(readings), per_batch)]


@pytest.mark.parametrize("per_batch", [1, 7, STEPS])
def test_flood_hydrograph_gives_exactly_the_expected_level_events(per_batch: int) -> None:
    start = hydrograph_start(T0)
    _, events, _ = _run(
        "lvl-1", gauge_record("lvl-1", "level-gauge"), _hydro_batches("level", start, per_batch)
    )
    assert _seq(events, start) == EXPECTED_LEVEL
    assert all(e.alert_id == "flood.level:device:lvl-1" for e in events)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert {e.raised_at for e in events} == {start + timedelta(seconds=STEP_S * 30)}
    assert events[2].threshold == 14.0 and events[2].station_id == "gauge-hj-01" and events[2].basin == "Han"


@pytest.mark.parametrize("per_batch", [1, 12, STEPS])
def test_rain_gives_the_storm_signal_sequence(per_batch: int) -> None:
    start = hydrograph_start(T0)
    _, events, lines = _run(
        "rain-1", gauge_record("rain-1", "rain-gauge"), _hydro_batches("rain", start, per_batch)
    )
    assert sorted(_seq(events, start), key=lambda e: (e[0], e[3])) == sorted(
        EXPECTED_RAIN, key=lambda e: (e[0], e[3])
    )
    assert any(line.startswith("rainfall_sum,") and "sum_24h=72.0" in line for line in lines)


def test_replaying_a_batch_changes_nothing() -> None:
    start = hydrograph_start(T0)
    batches = _hydro_batches("level", start, 10)
    record = gauge_record("lvl-1", "level-gauge")
    state, events, _ = _run("lvl-1", record, batches[:10])
    before = state.dump()
    # at-least-once: the last three batches are delivered again
    _, again, _ = _run("lvl-1", record, batches[7:10], state=state)
    assert again == []
    assert state.dump()["m"] == before["m"]
    _, rest, _ = _run("lvl-1", record, batches[10:], state=state)
    assert _seq(events + rest, start) == EXPECTED_LEVEL


def test_noise_hovering_at_the_warning_level_gives_one_alert() -> None:
    rng = random.Random(7)
    record = gauge_record("lvl-2", "level-gauge")
    # 6 h of 1-minute samples within ±4 cm of the 12.5 m warning level
    readings = [
        Reading(metric="level", value=12.5 + rng.uniform(-0.04, 0.04), ts=T0 + timedelta(minutes=i))
        for i in range(360)
    ]
    _, events, _ = _run("lvl-2", record, [readings[i : i + 5] for i in range(0, 360, 5)])
    moderate = [e for e in events if e.rule == "flood.level" and e.severity.value == "moderate"]
    assert len(moderate) == 1, [(e.state, e.severity) for e in events]
    assert [e.state.value for e in events if e.rule == "flood.level"] == ["raised", "updated"]


def test_late_readings_are_counted_and_left_out_of_closed_hours() -> None:
    record = gauge_record("lvl-3", "level-gauge")
    first = [Reading(metric="level", value=10.0, ts=T0 + timedelta(minutes=i)) for i in range(0, 130)]
    state, _, _ = _run("lvl-3", record, [first])
    hour0 = int(T0.timestamp())
    assert state.metrics["level"].hours[hour0][1] == 60  # 60 one-minute samples
    # a reading for the first hour, arriving after hour + grace has passed: late
    out = update_device(
        state,
        "lvl-3",
        [Reading(metric="level", value=99.0, ts=T0 + timedelta(minutes=30, seconds=30))],
        record=record,
        domain="hydro",
        now=2e9,
        config=CONFIG,
    )
    assert out.late == 1 and state.late == 1
    assert state.metrics["level"].hours[hour0][0] == 10.0
    # inside the grace period it still counts: the open hour takes an out-of-order reading
    inside = T0 + timedelta(minutes=125, seconds=30)
    update_device(
        state,
        "lvl-3",
        [Reading(metric="level", value=10.0, ts=inside)],
        record=record,
        domain="hydro",
        now=2e9,
        config=CONFIG,
    )
    assert state.late == 1


def test_flagged_readings_and_spikes_are_left_out_of_averages() -> None:
    readings = [Reading(metric="pm25", value=40.0 + (i % 3), ts=T0 + timedelta(minutes=i)) for i in range(70)]
    readings[20] = Reading(metric="pm25", value=900.0, ts=readings[20].ts)  # spike
    readings[30] = Reading(metric="pm25", value=500.0, ts=readings[30].ts, quality=Quality.OVER_RANGE)
    state, _, _ = _run("air-1", None, [readings], domain="air")
    mean, n = state.metrics["pm25"].hours[int(T0.timestamp())][:2]
    assert n == 58 and 40.0 <= mean <= 42.0
    assert state.spikes == 1 and state.out_of_range == 1


def test_hourly_values_need_45_minutes_of_data() -> None:
    sparse = [Reading(metric="pm25", value=50.0, ts=T0 + timedelta(minutes=i)) for i in range(0, 40)]
    sparse += [
        Reading(metric="pm25", value=50.0, ts=T0 + timedelta(hours=1, minutes=i)) for i in range(0, 60)
    ]
    sparse += [Reading(metric="pm25", value=50.0, ts=T0 + timedelta(hours=2, minutes=10))]
    state = DeviceState()
    hourly = []
    for r in sparse:
        out = update_device(state, "air-2", [r], record=None, domain="air", now=1e9, config=CONFIG)
        hourly += out.hourly
    assert [(h.hour, sorted(h.means)) for h in hourly] == [(T0 + timedelta(hours=1), ["pm25"])]


def test_no_data_raises_after_interval_plus_grace_and_clears_when_back() -> None:
    record = gauge_record("lvl-4", "level-gauge")
    state = DeviceState()
    update_device(
        state,
        "lvl-4",
        [Reading(metric="level", value=10.0, ts=T0)],
        record=record,
        domain="hydro",
        now=1000.0,
        config=CONFIG,
    )
    limit = STEP_S + CONFIG.nodata_grace_s
    assert (
        check_silence(state, "lvl-4", record=record, domain="hydro", now=1000.0 + limit, config=CONFIG)
        is None
    )
    raised = check_silence(state, "lvl-4", record=record, domain="hydro", now=1001.0 + limit, config=CONFIG)
    assert (
        raised is not None
        and raised.state.value == "raised"
        and raised.alert_id == "health.offline:device:lvl-4"
    )
    assert (
        check_silence(state, "lvl-4", record=record, domain="hydro", now=2000.0 + limit, config=CONFIG)
        is None
    )
    back = update_device(
        state,
        "lvl-4",
        [Reading(metric="level", value=10.1, ts=T0 + timedelta(hours=1))],
        record=record,
        domain="hydro",
        now=5000.0,
        config=CONFIG,
    )
    assert [(e.rule, e.state.value, e.seq) for e in back.events] == [("health.offline", "cleared", 2)]


def test_stuck_sensor_raises_after_30_identical_intervals() -> None:
    readings = [Reading(metric="temperature", value=4.0, ts=T0 + timedelta(minutes=i)) for i in range(40)]
    _, events, _ = _run("fridge-1", None, [readings], domain="coldchain")
    stuck = [e for e in events if e.rule == "health.stuck"]
    assert [(e.state.value, int((e.observed_at - T0).total_seconds() // 60)) for e in stuck] == [
        ("raised", 30)
    ]


def test_cold_chain_excursion_time_and_mkt() -> None:
    temps = [4.0] * 10 + [12.0] * 40 + [4.0] * 10  # 40 minutes above 8 °C
    readings = [
        Reading(metric="temperature", value=t, ts=T0 + timedelta(minutes=i), shipment="SH-1")
        for i, t in enumerate(temps)
    ]
    state, events, lines = _run("fridge-2", None, [readings], domain="coldchain")
    ship = state.shipments["SH-1"]
    assert ship[2] == 40 * 60  # time above
    assert ship[4] == 1  # excursions
    excursion = [(e.state.value, e.severity.value) for e in events if e.rule == "coldchain.excursion"]
    assert excursion == [("raised", "moderate"), ("cleared", "moderate")]
    summary = [line for line in lines if line.startswith("coldchain_summary,")]
    assert summary and "shipment=SH-1" in summary[-1] and "mkt_c=" in summary[-1]


def test_an_excursion_ends_with_its_shipment_and_the_next_shipment_counts_its_own() -> None:
    """The simulator's fridge failure across the 12:00 trip change: the ended shipment's run
    must not hold the device's alert open forever (it did: CI at 21:00 UTC, alert never cleared)."""

    def at(i: int, temp: float, ship: str) -> Reading:
        return Reading(metric="temperature", value=temp, ts=T0 + timedelta(minutes=i), shipment=ship)

    readings = [at(i, 4.0, "SH-A") for i in range(10)]
    readings += [at(i, 12.0, "SH-A") for i in range(10, 50)]  # 40 min above 8 °C in SH-A
    readings += [at(i, 12.0, "SH-B") for i in range(50, 90)]  # the trip changes: 40 more in SH-B
    readings += [at(i, 4.0, "SH-B") for i in range(90, 100)]
    readings += [at(i, 4.0, "SH-C") for i in range(100, 110)]
    state, events, lines = _run(
        "fridge-3", None, [readings[i : i + 7] for i in range(0, 110, 7)], "coldchain"
    )
    excursion = [
        (e.state.value, int((e.observed_at - T0).total_seconds() // 60))
        for e in events
        if e.rule == "coldchain.excursion"
    ]
    # raised 30 min into SH-A's run; cleared when SH-B starts; SH-B's goods 30 min out; back at 90
    assert excursion == [("raised", 40), ("cleared", 50), ("raised", 80), ("cleared", 90)]
    a, b = state.shipments["SH-A"], state.shipments["SH-B"]
    assert a[6] == 39 * 60 and a[5] == -1.0  # longest (to SH-A's last reading), no run open
    assert b[4] == 1 and b[6] == 40 * 60
    last_summaries = [line for line in lines if line.startswith("coldchain_summary,")][-3:]
    assert all("excursion_s=0" in line for line in last_summaries), last_summaries


def test_ended_shipments_are_forgotten_after_a_week_and_summarised_for_an_hour() -> None:
    day = 24 * 60
    readings = [
        Reading(metric="temperature", value=4.0, ts=T0 + timedelta(minutes=m), shipment=f"SH-{m // day}")
        for m in range(0, 9 * day, 30)
    ]
    state, _, lines = _run(
        "fridge-4", None, [readings[i : i + 12] for i in range(0, len(readings), 12)], "coldchain"
    )
    assert sorted(state.shipments) == [f"SH-{d}" for d in range(1, 9)]  # SH-0 ended > 7 days before SH-8
    summaries = [line for line in lines if line.startswith("coldchain_summary,")]
    at_end = [line for line in summaries if line.endswith(summaries[-1].rsplit(" ", 1)[1])]
    assert len(at_end) == 1 and "shipment=SH-8" in at_end[0], at_end
    start_of_8 = [line.split(" ")[0] for line in summaries[-len(at_end) - 40 :]]
    assert {"coldchain_summary,device=fridge-4,shipment=SH-7"} <= set(start_of_8)  # its final values
