"""Data-validity rules for averages (GB 3095 Table 4, identical in 2012 and 2026) and helpers (pure).

Source of truth: ``specs/standards.md`` §2.2, §2.3 and §6.2. Below a minimum the average is
*invalid* (None here); above it, **all** valid values are used: nothing is dropped for looking
high (GB 3095-2026 §6.4). Only data flagged N (and S once audited) count as valid (§6.2).

Hourly series are lists of 1-h averages in time order, ``None`` (or NaN) where an hour is missing
or invalid; a window is labelled by its last hour (the 8-h value at hour t covers t-7…t).

Averages are **exact**: every value is taken at its decimal representation (a float at its
shortest ``repr``, so 80.1 means 801/10) and summed as a ``fractions.Fraction``, so an average
that is exactly 80.5 is 80.5 whatever the order of the values, and the GB/T 8170 rounding and
the IAQI ceiling that follow depend only on the data (issue 9 item 3). ``exact_mean`` and the
window functions return a ``Fraction``; ``mean_if_valid`` the same value as a float.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Final

__all__ = [
    "HOURS_PER_24H_WINDOW",
    "HOURS_PER_O3_8H_WINDOW",
    "MIN_DAILY_VALUES_PER_MONTH",
    "MIN_DAILY_VALUES_PER_MONTH_FEBRUARY",
    "MIN_DAILY_VALUES_PER_MONTH_TSP_BAP_PB",
    "MIN_DAILY_VALUES_PER_QUARTER_PB",
    "MIN_DAILY_VALUES_PER_YEAR",
    "MIN_DAILY_VALUES_PER_YEAR_TSP_BAP_PB",
    "MIN_HOURLY_VALUES_PER_DAY",
    "MIN_HOURLY_VALUES_PER_O3_8H",
    "MIN_O3_8H_VALUES_PER_DAY",
    "MIN_SAMPLING_HOURS_PER_DAY_TSP_BAP_PB",
    "MIN_SAMPLING_MINUTES_PER_HOUR",
    "O3_8H_DAY_WINDOWS",
    "VALID_FLAGS",
    "ExactValue",
    "annual_mean_valid",
    "annual_mean_valid_tsp_bap_pb",
    "daily_max_8h",
    "daily_mean",
    "daily_mean_valid",
    "daily_mean_valid_tsp_bap_pb",
    "exact",
    "exact_mean",
    "flag_is_valid",
    "hourly_mean_valid",
    "mean_if_valid",
    "monthly_mean_valid",
    "o3_8h_moving",
    "o3_8h_valid",
    "pm_24h_moving",
    "quarterly_mean_valid_pb",
]

# GB 3095 Table 4 (spec §2.3).
MIN_SAMPLING_MINUTES_PER_HOUR: Final = 45  # 1-h: SO2, NO2, CO, O3, NOx (and PM sub-hour data, §2.3)
MIN_HOURLY_VALUES_PER_DAY: Final = 20  # 24-h: SO2, NO2, CO, PM10, PM2.5, NOx (values or hours sampled)
MIN_HOURLY_VALUES_PER_O3_8H: Final = 6  # O3 8-h: in each 8-h window
MIN_DAILY_VALUES_PER_YEAR: Final = 324  # annual: SO2, NO2, PM10, PM2.5, NOx
MIN_DAILY_VALUES_PER_MONTH: Final = 27  # ... and in every month
MIN_DAILY_VALUES_PER_MONTH_FEBRUARY: Final = 25  # ... 25 in February
MIN_DAILY_VALUES_PER_YEAR_TSP_BAP_PB: Final = 60  # annual: TSP, BaP, Pb, evenly spread
MIN_DAILY_VALUES_PER_MONTH_TSP_BAP_PB: Final = 5  # ... and >= 5 per month (also for Pb quarterly)
MIN_DAILY_VALUES_PER_QUARTER_PB: Final = 15  # Pb quarterly, evenly spread
MIN_SAMPLING_HOURS_PER_DAY_TSP_BAP_PB: Final = 24  # daily: TSP, BaP, Pb need 24 h of sampling

HOURS_PER_O3_8H_WINDOW: Final = 8
HOURS_PER_24H_WINDOW: Final = 24
# HJ 663-2013: the daily maximum 8-h average is the largest 8-h moving average ending 08:00…24:00
# of the natural day (China time), i.e. the 17 windows that lie inside the day.
O3_8H_DAY_WINDOWS: Final = HOURS_PER_24H_WINDOW - HOURS_PER_O3_8H_WINDOW + 1
# Not in GB 3095: HJ 663-2013 practice as cited in spec §2.3 (medium confidence), hence a parameter.
MIN_O3_8H_VALUES_PER_DAY: Final = 14  # of the 17 windows ending 08:00…24:00

ExactValue = float | int | Decimal | Fraction

VALID_FLAGS: Final = frozenset({"N"})  # HJ 212-2017 flags whose data count (§6.2)


def flag_is_valid(flag: str, *, audited: bool = False) -> bool:
    """Whether an HJ 212-2017 data flag counts toward the minimums (N; S only once audited)."""
    flag = flag.strip().upper()
    return flag in VALID_FLAGS or (audited and flag == "S")


def hourly_mean_valid(n_samples: int, *, sample_minutes: float = 1) -> bool:
    """1-h average: at least 45 minutes of valid sub-hour data (e.g. 45 1-min or 9 5-min values)."""
    return n_samples * sample_minutes >= MIN_SAMPLING_MINUTES_PER_HOUR


def daily_mean_valid(n_hours: int) -> bool:
    """24-h average (SO2, NO2, CO, PM10, PM2.5, NOx; also PM 24-h moving): >= 20 hourly values."""
    return n_hours >= MIN_HOURLY_VALUES_PER_DAY


def daily_mean_valid_tsp_bap_pb(sampling_hours: float) -> bool:
    """24-h average of TSP, BaP or Pb: 24 h of sampling."""
    return sampling_hours >= MIN_SAMPLING_HOURS_PER_DAY_TSP_BAP_PB


def o3_8h_valid(n_hours: int) -> bool:
    """O3 8-h average: at least 6 hourly values in the 8-h window."""
    return n_hours >= MIN_HOURLY_VALUES_PER_O3_8H


def monthly_mean_valid(n_days: int, month: int) -> bool:
    """Monthly average: >= 27 daily values (>= 25 in February); ``month`` is 1-12."""
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1-12, got {month}")
    return n_days >= (MIN_DAILY_VALUES_PER_MONTH_FEBRUARY if month == 2 else MIN_DAILY_VALUES_PER_MONTH)


def annual_mean_valid(days_per_month: Sequence[int]) -> bool:
    """Annual average (SO2, NO2, PM10, PM2.5, NOx): >= 324 daily values and every month valid.

    ``days_per_month`` holds the 12 counts of valid daily values, January first.
    """
    _check_months(days_per_month, 12)
    months_ok = all(monthly_mean_valid(n, m) for m, n in enumerate(days_per_month, start=1))
    return months_ok and sum(days_per_month) >= MIN_DAILY_VALUES_PER_YEAR


def annual_mean_valid_tsp_bap_pb(days_per_month: Sequence[int]) -> bool:
    """Annual TSP, BaP or Pb average: >= 60 daily values, >= 5 in every month (12 counts)."""
    _check_months(days_per_month, 12)
    return (
        all(n >= MIN_DAILY_VALUES_PER_MONTH_TSP_BAP_PB for n in days_per_month)
        and sum(days_per_month) >= MIN_DAILY_VALUES_PER_YEAR_TSP_BAP_PB
    )


def quarterly_mean_valid_pb(days_per_month: Sequence[int]) -> bool:
    """Quarterly Pb average: >= 15 daily values, >= 5 in each of the quarter's 3 months."""
    _check_months(days_per_month, 3)
    return (
        all(n >= MIN_DAILY_VALUES_PER_MONTH_TSP_BAP_PB for n in days_per_month)
        and sum(days_per_month) >= MIN_DAILY_VALUES_PER_QUARTER_PB
    )


def exact(value: ExactValue) -> Fraction | None:
    """The exact value of a number (a float at its shortest ``repr``); None if NaN or infinite."""
    if isinstance(value, bool):
        raise TypeError("a concentration cannot be a bool")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, Decimal):
        return Fraction(value) if value.is_finite() else None
    if not math.isfinite(value):
        return None
    return Fraction(repr(float(value)))


def exact_mean(values: Iterable[ExactValue | None], min_count: int) -> Fraction | None:
    """Exact arithmetic mean of the valid values (not None, not NaN), or None if fewer than
    ``min_count`` (or none at all). Independent of the order of the values."""
    valid = [e for v in values if v is not None and (e := exact(v)) is not None]
    if not valid or len(valid) < min_count:
        return None
    return sum(valid, Fraction(0)) / len(valid)


def mean_if_valid(values: Iterable[ExactValue | None], min_count: int) -> float | None:
    """:func:`exact_mean` as a float (correctly rounded from the exact mean)."""
    mean = exact_mean(values, min_count)
    return None if mean is None else float(mean)


def o3_8h_moving(hourly: Sequence[ExactValue | None]) -> Fraction | None:
    """O3 8-h moving average ending at the last hour: mean of the last 8 slots, >= 6 valid.

    A series shorter than 8 counts the absent hours as missing.
    """
    return exact_mean(hourly[-HOURS_PER_O3_8H_WINDOW:], MIN_HOURLY_VALUES_PER_O3_8H)


def pm_24h_moving(hourly: Sequence[ExactValue | None]) -> Fraction | None:
    """PM10/PM2.5 24-h moving average ending at the last hour (2012 real-time report), >= 20 valid."""
    return exact_mean(hourly[-HOURS_PER_24H_WINDOW:], MIN_HOURLY_VALUES_PER_DAY)


def daily_mean(hourly: Sequence[ExactValue | None]) -> Fraction | None:
    """24-h average of one natural day (China time): the day's 24 hourly values, >= 20 valid."""
    if len(hourly) > HOURS_PER_24H_WINDOW:
        raise ValueError(f"a day has {HOURS_PER_24H_WINDOW} hourly values, got {len(hourly)}")
    return exact_mean(hourly, MIN_HOURLY_VALUES_PER_DAY)


def daily_max_8h(
    hourly: Sequence[ExactValue | None], *, min_windows: int = MIN_O3_8H_VALUES_PER_DAY
) -> Fraction | None:
    """O3 daily max 8-h average (MDA8): the largest valid 8-h mean over every full window.

    HJ 663-2013: pass the day's 24 hourly values (China time, hour 00:00-01:00 first) for the
    17 windows ending 08:00…24:00, each inside the day; this is what the station stage does.
    (The previous day's last 7 hours followed by the day's 24 give the 24 windows ending in the
    day, a convention some platforms use.) Each window needs >= 6 valid hours of 8 (GB 3095
    Table 4), and the MDA8 is None unless at least ``min_windows`` windows are valid (HJ 663-2013
    practice: 14 of the 17, spec §2.3).
    """
    span = HOURS_PER_O3_8H_WINDOW
    means = (o3_8h_moving(hourly[end - span : end]) for end in range(span, len(hourly) + 1))
    valid = [m for m in means if m is not None]
    if not valid or len(valid) < min_windows:
        return None
    return max(valid)


def _check_months(days_per_month: Sequence[int], expected: int) -> None:
    if len(days_per_month) != expected:
        raise ValueError(f"expected {expected} monthly counts, got {len(days_per_month)}")
