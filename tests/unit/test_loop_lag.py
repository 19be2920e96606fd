"""stationflow_event_loop_lag_seconds: how long a callback held a service's event loop."""

from __future__ import annotations

import asyncio
import math
import time

from stationflow.bench.alertbench import loop_lag_summary
from stationflow.runtime import LOOP_LAG, watch_loop_lag


def _count(le: str) -> float:
    """Observations at or under the bucket ``le`` so far (the histogram is process-wide)."""
    for metric in LOOP_LAG.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket") and sample.labels["le"] == le:
                return sample.value
    raise AssertionError(f"no bucket {le}")


def _total() -> float:
    return _count("+Inf")


async def test_a_blocking_callback_is_seen_as_lag() -> None:
    before_total, before_fast = _total(), _count("0.05")
    watcher = asyncio.create_task(watch_loop_lag(0.01))
    await asyncio.sleep(0.03)  # a few quiet turns
    time.sleep(0.15)  # the point: a callback that holds the loop for 150 ms
    await asyncio.sleep(0.03)
    watcher.cancel()
    observed = _total() - before_total
    fast = _count("0.05") - before_fast
    assert observed >= 2
    assert observed - fast >= 1  # the 150 ms hold: over 50 ms, in a higher bucket
    assert fast >= 1  # the quiet turns: under 50 ms


async def test_an_idle_loop_shows_no_long_lag() -> None:
    before_total, before_fast = _total(), _count("0.05")
    watcher = asyncio.create_task(watch_loop_lag(0.01))
    await asyncio.sleep(0.1)
    watcher.cancel()
    assert _total() - before_total >= 3
    assert _total() - before_total == _count("0.05") - before_fast


def test_the_alert_bench_counts_late_timers_from_the_buckets() -> None:
    before = {0.05: 10.0, 0.25: 10.0, 1.0: 10.0, math.inf: 10.0}
    # 100 timers during the load: 90 on time, 6 late by 50-250 ms, 3 by 250 ms-1 s, 1 over 1 s
    after = {0.05: 100.0, 0.25: 106.0, 1.0: 109.0, math.inf: 110.0}
    assert loop_lag_summary(before, after) == {
        "timers": 100.0,
        "late_over_50ms": 10.0,
        "late_over_250ms": 4.0,
        "late_over_1000ms": 1.0,
    }
    assert loop_lag_summary({}, {}) == {
        "timers": 0.0,
        "late_over_50ms": 0.0,
        "late_over_250ms": 0.0,
        "late_over_1000ms": 0.0,
    }
