from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.analytics.coldchain import (
    CHILLED,
    CHILLED_FRESH,
    FROZEN,
    TEMPERATURE_CLASSES,
    excursions,
    interval_weights,
    mkt,
)


@pytest.mark.parametrize(
    ("temps", "expected"),
    [
        pytest.param([-18.0] * 4, -18.000, id="constant-frozen"),
        pytest.param([-18.0, -18.0, -18.0, -10.0], -15.017, id="frozen-with-peak"),
        pytest.param([2.0, 4.0, 6.0, 8.0], 5.302, id="chilled-ramp"),
        pytest.param([2.0] * 7 + [20.0], 7.503, id="chilled-one-warm"),
    ],
)
def test_mkt_spec_vectors(temps: list[float], expected: float) -> None:
    assert mkt(temps) == pytest.approx(expected, abs=5e-4)


def test_mkt_constants_and_weights() -> None:
    # With R = 8.3144, ΔH/R is 10 000 K exactly: still within rounding of the spec vector.
    assert mkt([2, 4, 6, 8], gas_constant=8.3144) == pytest.approx(5.302, abs=1e-3)
    # Integer weights equal repeating the samples.
    assert mkt([2.0, 20.0], [7, 1]) == pytest.approx(mkt([2.0] * 7 + [20.0]))
    # Zero-weight samples do not count.
    assert mkt([5.0, 40.0], [1.0, 0.0]) == pytest.approx(5.0)


def test_mkt_rejects_bad_input() -> None:
    for args in (([],), ([1.0, 2.0], [1.0]), ([1.0], [0.0]), ([float("nan")],), ([-300.0],)):
        with pytest.raises(ValueError):
            mkt(*args)


@given(st.lists(st.floats(-40, 40), min_size=1, max_size=50))
def test_mkt_between_mean_and_max(temps: list[float]) -> None:
    m = mkt(temps)
    assert sum(temps) / len(temps) - 1e-9 <= m <= max(temps) + 1e-9


def test_temperature_classes_as_data() -> None:
    assert FROZEN.high_c == -18.0 and FROZEN.critical_high_c == -15.0 and FROZEN.low_c is None
    assert (CHILLED.low_c, CHILLED.high_c) == (0.0, 8.0)
    assert (CHILLED_FRESH.low_c, CHILLED_FRESH.high_c) == (0.0, 4.0)
    assert {c.code for c in TEMPERATURE_CLASSES} == {"frozen", "chilled", "chilled_fresh"}


def test_interval_weights_cap_gaps() -> None:
    assert interval_weights([0, 60, 120, 1000], max_gap_s=120).tolist() == [60, 60, 120, 0]
    assert interval_weights([0, 60, 120, 1000]).tolist() == [60, 60, 120, 0]  # 2x median 60
    with pytest.raises(ValueError):
        interval_weights([0, 60, 60])


def _series(step: float, temps: list[float], t0: float = 0.0) -> list[tuple[float, float]]:
    return [(t0 + i * step, v) for i, v in enumerate(temps)]


def test_excursion_needs_min_duration() -> None:
    # 1-min logging of a 2-8 °C fridge: a 3-min door opening, later a 15-min warm spell.
    temps = [5.0] * 10 + [9.0] * 3 + [5.0] * 10 + [10.0] * 15 + [5.0] * 5
    s = excursions(_series(60, temps), 2.0, 8.0, min_duration_s=600)
    assert s.breaches == 2 and s.count == 1
    assert s.time_above_s == 18 * 60 and s.time_below_s == 0
    assert s.time_in_range_s == (len(temps) - 1 - 18) * 60 and s.time_missing_s == 0
    ev = s.longest
    assert ev is not None
    assert (ev.side, ev.start_s, ev.end_s, ev.duration_s, ev.peak_c, ev.ongoing) == (
        "above",
        23 * 60,
        38 * 60,
        900,
        10.0,
        False,
    )
    assert s.time_out_of_range_s == s.time_above_s


def test_limit_values_are_in_range_and_below_is_counted() -> None:
    s = excursions(_series(60, [8.0, 2.0, 1.9, 1.5, 8.0]), 2.0, 8.0, min_duration_s=0)
    assert s.time_above_s == 0 and s.time_below_s == 120
    assert [(e.side, e.peak_c) for e in s.excursions] == [("below", 1.5)]


def test_gaps_are_missing_not_in_range() -> None:
    # Logging every 5 min, then 2 h with no data in the middle of a breach.
    samples = [(0, -20.0), (300, -14.0), (600, -14.0), (600 + 7200, -13.0), (7800 + 300, -19.0)]
    s = excursions(samples, None, -15.0, min_duration_s=900, max_gap_s=600)
    assert s.time_missing_s == 7200 - 600
    assert s.time_above_s == 300 + 600 + 300
    assert s.count == 1 and s.excursions[0].duration_s == 1200
    assert s.excursions[0].start_s == 300 and s.excursions[0].end_s == 8100


def test_ongoing_excursion_and_empty_input() -> None:
    s = excursions(_series(60, [-20.0, -16.0, -16.0, -16.0]), None, FROZEN.high_c, min_duration_s=60)
    assert s.count == 1 and s.excursions[0].ongoing and s.excursions[0].duration_s == 120
    empty = excursions([], 0, 4)
    assert empty.count == 0 and empty.longest is None and empty.breaches == 0
    with pytest.raises(ValueError):
        excursions([(0, 1.0)], 5.0, 4.0)


@given(st.lists(st.floats(-30, 30), min_size=2, max_size=60), st.floats(-10, 0), st.floats(0, 10))
def test_time_adds_up(temps: list[float], low: float, high: float) -> None:
    samples = _series(60, temps)
    s = excursions(samples, low, high, min_duration_s=120)
    total = s.time_above_s + s.time_below_s + s.time_in_range_s + s.time_missing_s
    assert math.isclose(total, samples[-1][0] - samples[0][0])
    assert sum(e.duration_s for e in s.excursions) <= s.time_out_of_range_s
    assert all(e.duration_s >= 120 for e in s.excursions)
