from __future__ import annotations

import math

import pytest

from streams.analytics.validity import (
    MIN_DAILY_VALUES_PER_MONTH,
    MIN_DAILY_VALUES_PER_MONTH_FEBRUARY,
    MIN_DAILY_VALUES_PER_MONTH_TSP_BAP_PB,
    MIN_DAILY_VALUES_PER_QUARTER_PB,
    MIN_DAILY_VALUES_PER_YEAR,
    MIN_DAILY_VALUES_PER_YEAR_TSP_BAP_PB,
    MIN_HOURLY_VALUES_PER_DAY,
    MIN_HOURLY_VALUES_PER_O3_8H,
    MIN_O3_8H_VALUES_PER_DAY,
    MIN_SAMPLING_HOURS_PER_DAY_TSP_BAP_PB,
    MIN_SAMPLING_MINUTES_PER_HOUR,
    annual_mean_valid,
    annual_mean_valid_tsp_bap_pb,
    daily_max_8h,
    daily_mean,
    daily_mean_valid,
    daily_mean_valid_tsp_bap_pb,
    flag_is_valid,
    hourly_mean_valid,
    mean_if_valid,
    monthly_mean_valid,
    o3_8h_moving,
    o3_8h_valid,
    pm_24h_moving,
    quarterly_mean_valid_pb,
)


def test_constants_are_gb3095_table_4() -> None:
    assert MIN_SAMPLING_MINUTES_PER_HOUR == 45
    assert MIN_HOURLY_VALUES_PER_DAY == 20
    assert MIN_HOURLY_VALUES_PER_O3_8H == 6
    assert (MIN_DAILY_VALUES_PER_YEAR, MIN_DAILY_VALUES_PER_MONTH, MIN_DAILY_VALUES_PER_MONTH_FEBRUARY) == (
        324,
        27,
        25,
    )
    assert (MIN_DAILY_VALUES_PER_YEAR_TSP_BAP_PB, MIN_DAILY_VALUES_PER_MONTH_TSP_BAP_PB) == (60, 5)
    assert MIN_DAILY_VALUES_PER_QUARTER_PB == 15
    assert MIN_SAMPLING_HOURS_PER_DAY_TSP_BAP_PB == 24
    assert MIN_O3_8H_VALUES_PER_DAY == 14


@pytest.mark.parametrize(
    ("n", "minutes", "valid"),
    [(45, 1, True), (44, 1, False), (60, 1, True), (9, 5, True), (8, 5, False), (0, 1, False)],
)
def test_hourly_mean_valid(n: int, minutes: float, valid: bool) -> None:
    assert hourly_mean_valid(n, sample_minutes=minutes) is valid


def test_daily_and_8h_thresholds() -> None:
    assert daily_mean_valid(20)
    assert not daily_mean_valid(19)
    assert o3_8h_valid(6)
    assert not o3_8h_valid(5)
    assert daily_mean_valid_tsp_bap_pb(24)
    assert not daily_mean_valid_tsp_bap_pb(23.5)


@pytest.mark.parametrize(
    ("n", "month", "valid"),
    [(27, 1, True), (26, 1, False), (25, 2, True), (24, 2, False), (26, 3, False), (27, 12, True)],
)
def test_monthly_mean_valid(n: int, month: int, valid: bool) -> None:
    assert monthly_mean_valid(n, month) is valid


def test_monthly_mean_rejects_bad_month() -> None:
    with pytest.raises(ValueError):
        monthly_mean_valid(30, 13)


def test_annual_mean_valid() -> None:
    full = [27] * 12  # 324 exactly
    assert annual_mean_valid(full)
    assert not annual_mean_valid([26] + [28] * 11)  # 334 days but January short
    assert annual_mean_valid([27, 25] + [28] * 10)  # February needs only 25; total 332
    assert not annual_mean_valid([27, 25] + [27] * 10)  # 322 < 324
    with pytest.raises(ValueError):
        annual_mean_valid([30] * 11)


def test_tsp_bap_pb_annual_and_pb_quarterly() -> None:
    assert annual_mean_valid_tsp_bap_pb([5] * 12)  # exactly 60
    assert not annual_mean_valid_tsp_bap_pb([4] + [10] * 11)
    assert not annual_mean_valid_tsp_bap_pb([5] * 11 + [4])
    assert quarterly_mean_valid_pb([5, 5, 5])
    assert not quarterly_mean_valid_pb([4, 6, 6])
    assert not quarterly_mean_valid_pb([5, 5, 4])
    with pytest.raises(ValueError):
        quarterly_mean_valid_pb([5, 5])


@pytest.mark.parametrize(
    ("flag", "audited", "valid"),
    [("N", False, True), ("n", False, True), ("S", False, False), ("S", True, True)]
    + [(f, False, False) for f in "FMDCTB"],
)
def test_flag_is_valid(flag: str, audited: bool, valid: bool) -> None:
    assert flag_is_valid(flag, audited=audited) is valid


def test_mean_if_valid_uses_all_valid_values() -> None:
    assert mean_if_valid([1.0, None, 3.0, math.nan, 5.0], 3) == 3.0
    assert mean_if_valid([1.0, None, 3.0], 3) is None
    assert mean_if_valid([], 0) is None
    assert mean_if_valid([0.1] * 10, 10) == pytest.approx(0.1)
    assert mean_if_valid([1e300, 1.0, -1e300], 3) == pytest.approx(1 / 3)  # fsum keeps precision


def test_o3_8h_moving() -> None:
    assert o3_8h_moving([10.0] * 8) == 10.0
    # 6 of 8 present: averaged over the hours present.
    assert o3_8h_moving([None, None, 10, 20, 30, 40, 50, 60]) == 35.0
    assert o3_8h_moving([None, None, None, 20, 30, 40, 50, 60]) is None
    # Only the last 8 hours count.
    assert o3_8h_moving([1000.0] * 5 + [10.0] * 8) == 10.0
    # A short series counts the absent hours as missing.
    assert o3_8h_moving([10.0] * 6) == 10.0
    assert o3_8h_moving([10.0] * 5) is None


def test_pm_24h_moving_and_daily_mean() -> None:
    day = [float(h) for h in range(24)]
    assert pm_24h_moving([999.0, *day]) == 11.5
    assert daily_mean(day) == 11.5
    with_gaps: list[float | None] = [None] * 4 + [10.0] * 20
    assert daily_mean(with_gaps) == 10.0
    assert pm_24h_moving(with_gaps) == 10.0
    assert daily_mean([None] * 5 + [10.0] * 19) is None
    with pytest.raises(ValueError):
        daily_mean([1.0] * 25)


def test_daily_max_8h_over_the_17_windows_of_a_day() -> None:
    day: list[float | None] = [10.0] * 24
    day[12] = 90.0  # the 8 windows ending 12…19 contain it: (7*10 + 90) / 8 = 20
    assert daily_max_8h(day) == 20.0


def test_daily_max_8h_with_the_previous_evening() -> None:
    previous_tail: list[float | None] = [170.0] * 7
    day: list[float | None] = [10.0] * 24
    assert daily_max_8h(day) == 10.0
    # 24 windows: the first one ends at the day's first hour and holds 7 evening hours.
    assert daily_max_8h(previous_tail + day) == (7 * 170 + 10) / 8


def test_daily_max_8h_needs_enough_valid_windows() -> None:
    # Hours 0-2 missing: windows ending at hours 7, 8 have 5, 6 valid hours -> 1 invalid window.
    day: list[float | None] = [None] * 3 + [10.0] * 21
    assert daily_max_8h(day) == 10.0
    # Hours 0-5 missing: windows ending at 7..10 are invalid (2..5 valid) -> 13 of 17 valid.
    gap: list[float | None] = [None] * 6 + [10.0] * 18
    assert daily_max_8h(gap) is None
    assert daily_max_8h(gap, min_windows=13) == 10.0
    assert daily_max_8h([None] * 24, min_windows=0) is None
