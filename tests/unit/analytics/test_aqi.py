from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.analytics.aqi import (
    BREAKPOINTS,
    CATEGORIES,
    IAQI_LEVELS,
    AqiResult,
    Standard,
    category_for,
    choose_standard,
    daily_aqi,
    hourly_aqi,
    hourly_indicators,
    iaqi,
)

S12 = Standard.HJ_633_2012
S26 = Standard.HJ_633_2026
BOTH = pytest.mark.parametrize("std", [S12, S26])
H12 = datetime(2025, 6, 1, 12, tzinfo=UTC)  # a 2012-era hour
H26 = datetime(2026, 6, 1, 12, tzinfo=UTC)
D12 = date(2025, 6, 1)
D26 = date(2026, 6, 1)


def _split(column: str) -> tuple[str, str]:
    pollutant, _, period = column.rpartition("_")
    return pollutant, period


# --- breakpoint tables ------------------------------------------------------------------------


def test_2012_table_is_the_spec_table() -> None:
    assert dict(BREAKPOINTS[S12]) == {
        "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
        "so2_1h": (0, 150, 500, 650, 800),
        "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
        "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
        "pm10_24h": (0, 50, 150, 250, 350, 420, 500, 600),
        "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),
        "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),
        "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
        "o3_8h": (0, 100, 160, 215, 265, 800),
        "pm2_5_24h": (0, 35, 75, 115, 150, 250, 350, 500),
    }


def test_2026_changes_only_the_pm_iaqi_100_breakpoints() -> None:
    changed = {k for k in BREAKPOINTS[S12] if BREAKPOINTS[S12][k] != BREAKPOINTS[S26][k]}
    assert changed == {"pm10_24h", "pm2_5_24h"}
    assert BREAKPOINTS[S26]["pm10_24h"] == (0, 50, 120, 250, 350, 420, 500, 600)
    assert BREAKPOINTS[S26]["pm2_5_24h"] == (0, 35, 60, 115, 150, 250, 350, 500)


# --- §1.2 test vectors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pollutant", "period", "c", "expected"),
    [
        pytest.param("pm2_5", "24h", 35, 50, id="pm2_5-35"),
        pytest.param("pm2_5", "24h", 36, 52, id="pm2_5-36-ceiling-not-nearest"),
        pytest.param("pm2_5", "24h", 75.5, 101, id="pm2_5-75.5"),
        pytest.param("pm10", "24h", 151, 101, id="pm10-151"),
        pytest.param("o3", "8h", 161, 101, id="o3_8h-161"),
        pytest.param("co", "24h", 4.1, 101, id="co-4.1"),
        pytest.param("no2", "1h", 250, 105, id="no2_1h-250"),
        pytest.param("o3", "1h", 205, 103, id="o3_1h-205"),
    ],
)
def test_spec_vectors_2012(pollutant: str, period: str, c: float, expected: int) -> None:
    assert iaqi(pollutant, period, c, S12) == expected


@pytest.mark.parametrize(
    ("pollutant", "period", "c", "expected"),
    [
        # The spec gives no 2026 vectors; these are the §1.2 inputs on the 2026 table, by hand.
        pytest.param("pm2_5", "24h", 35, 50, id="pm2_5-35"),
        pytest.param("pm2_5", "24h", 36, 52, id="pm2_5-36"),  # 50 + 50/25
        pytest.param("pm2_5", "24h", 60, 100, id="pm2_5-60-new-breakpoint"),
        pytest.param("pm2_5", "24h", 61, 101, id="pm2_5-61"),  # 100 + 50/55
        pytest.param("pm2_5", "24h", 75.5, 115, id="pm2_5-75.5"),  # -> 76: 100 + 50*16/55 = 114.5
        pytest.param("pm10", "24h", 120, 100, id="pm10-120-new-breakpoint"),
        pytest.param("pm10", "24h", 151, 112, id="pm10-151"),  # 100 + 50*31/130 = 111.9
        pytest.param("o3", "8h", 161, 101, id="o3_8h-161"),
        pytest.param("co", "24h", 4.1, 101, id="co-4.1"),
        pytest.param("no2", "1h", 250, 105, id="no2_1h-250"),
        pytest.param("o3", "1h", 205, 103, id="o3_1h-205"),
        pytest.param("pm2_5", "1h", 61, 101, id="pm2_5-1h-on-daily-column"),
        pytest.param("pm10", "1h", 120, 100, id="pm10-1h-on-daily-column"),
    ],
)
def test_vectors_2026(pollutant: str, period: str, c: float, expected: int) -> None:
    assert iaqi(pollutant, period, c, S26) == expected


# --- breakpoints and ceiling -------------------------------------------------------------------


def _columns() -> list[tuple[Standard, str]]:
    return [(std, column) for std in Standard for column in BREAKPOINTS[std]]


@pytest.mark.parametrize(("std", "column"), _columns())
def test_every_breakpoint_gives_its_level_exactly(std: Standard, column: str) -> None:
    pollutant, period = _split(column)
    for bp, level in zip(BREAKPOINTS[std][column], IAQI_LEVELS, strict=False):
        assert iaqi(pollutant, period, bp, std) == level
        assert iaqi(pollutant, period, float(bp), std) == level


@pytest.mark.parametrize(("std", "column"), _columns())
def test_just_above_a_breakpoint_rounds_up(std: Standard, column: str) -> None:
    pollutant, period = _split(column)
    bps = BREAKPOINTS[std][column]
    for bp, level in zip(bps[:-1], IAQI_LEVELS, strict=False):
        above = Fraction(bp) + Fraction(1, 1000)
        assert iaqi(pollutant, period, above, std, round_concentration=False) == level + 1
        assert iaqi(pollutant, period, bp + 0.001, std, round_concentration=False) == level + 1


@pytest.mark.parametrize(
    ("column", "c", "expected"),
    [
        # Naive float arithmetic gives 7.000000000000001, 46.00000000000001, 55.00000000000001 and
        # 203.00000000000003 here, whose ceilings are one too high.
        pytest.param("pm2_5_24h", 4.9, 7, id="pm2_5-4.9"),
        pytest.param("pm2_5_24h", 32.2, 46, id="pm2_5-32.2"),
        pytest.param("co_24h", 2.2, 55, id="co-2.2"),
        pytest.param("pm10_24h", 352.1, 203, id="pm10-352.1"),
    ],
)
def test_exact_integer_iaqi_is_not_bumped_by_float_error(column: str, c: float, expected: int) -> None:
    bps = BREAKPOINTS[S12][column]
    i = next(i for i in range(1, len(bps)) if c <= bps[i])
    naive = (IAQI_LEVELS[i] - IAQI_LEVELS[i - 1]) / (bps[i] - bps[i - 1]) * (c - bps[i - 1]) + IAQI_LEVELS[
        i - 1
    ]
    assert math.ceil(naive) == expected + 1  # the trap is real
    pollutant, period = _split(column)
    assert iaqi(pollutant, period, c, S12) == expected


def test_co_2026_keeps_one_decimal() -> None:
    assert iaqi("co", "24h", 2.2, S26) == 55
    assert iaqi("co", "24h", 4.2, S26) == 101


@pytest.mark.parametrize(
    ("pollutant", "c", "rounded_iaqi", "raw_iaqi"),
    [
        pytest.param("pm2_5", 35.5, 52, 51, id="35.5-half-even-up-to-36"),
        pytest.param("co", 4.05, 100, 101, id="co-4.05-to-4.0"),
        pytest.param("co", 4.15, 101, 101, id="co-4.15-to-4.2"),
        pytest.param("co", 4.25, 101, 102, id="co-4.25-to-4.2"),
        pytest.param("co", 4.35, 102, 102, id="co-4.35-to-4.4"),
    ],
)
def test_2026_rounds_concentrations_half_to_even(
    pollutant: str, c: float, rounded_iaqi: int, raw_iaqi: int
) -> None:
    assert iaqi(pollutant, "24h", c, S26) == rounded_iaqi
    assert iaqi(pollutant, "24h", c, S26, round_concentration=False) == raw_iaqi


def test_half_even_rounding_details() -> None:
    # 34.5 -> 34 (even): 50*34/35 = 48.57 -> 49; unrounded 49.29 -> 50.
    assert iaqi("pm2_5", "24h", 34.5, S26) == 49
    assert iaqi("pm2_5", "24h", 34.5, S26, round_concentration=False) == 50
    # 2012 does not round unless asked.
    assert iaqi("pm2_5", "24h", 35.5, S12) == 51
    assert iaqi("pm2_5", "24h", 35.5, S12, round_concentration=True) == 52


def test_numeric_types_are_exact() -> None:
    assert iaqi("co", "24h", Decimal("2.2"), S12) == 55
    assert iaqi("co", "24h", Fraction(11, 5), S12) == 55
    assert iaqi("pm2_5", "24h", 36, S12) == 52
    with pytest.raises(TypeError):
        iaqi("pm2_5", "24h", True, S12)


# --- special rules and out-of-range values ----------------------------------------------------


def test_so2_1h_above_800() -> None:
    assert iaqi("so2", "1h", 800, S12) == 200
    assert iaqi("so2", "1h", 801, S12) is None  # 2012: no 1-h IAQI, use the 24-h value
    assert iaqi("so2", "1h", 801, S26) == 200
    assert iaqi("so2", "1h", 5000, S26) == 200


def test_o3_8h_above_800() -> None:
    assert iaqi("o3", "8h", 800, S12) == 300
    assert iaqi("o3", "8h", 801, S12) is None  # 2012: no 8-h IAQI, use the 1-h value
    assert iaqi("o3", "8h", 801, S26) == 300
    assert iaqi("o3", "8h", 5000, S26) == 300


@BOTH
def test_above_the_top_breakpoint_caps_or_extrapolates(std: Standard) -> None:
    assert iaqi("pm2_5", "24h", 600, std) == 500
    assert iaqi("pm2_5", "24h", 600, std, over_range="extrapolate") == 567  # 400 + 100*250/150
    assert iaqi("o3", "1h", 1300, std, over_range="extrapolate") == 550


@BOTH
@pytest.mark.parametrize("c", [-0.1, -5, math.nan, math.inf, Decimal("NaN")])
def test_negative_or_non_finite_is_na(std: Standard, c: float) -> None:
    assert iaqi("pm10", "24h", c, std) is None


@pytest.mark.parametrize(("pollutant", "period"), [("o3", "24h"), ("pm10", "8h"), ("nox", "1h"), ("so2", "")])
def test_unknown_column_is_an_error(pollutant: str, period: str) -> None:
    with pytest.raises(ValueError, match="no IAQI breakpoints"):
        iaqi(pollutant, period, 1, S12)


def test_unknown_standard_is_an_error() -> None:
    with pytest.raises(ValueError):
        iaqi("pm10", "24h", 1, "HJ 633-2099")
    assert iaqi("pm10", "24h", 151, "HJ 633-2012") == 101


# --- categories ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aqi", "level", "cn", "en", "rgb"),
    [
        (0, 1, "优", "Excellent", (0, 228, 0)),
        (50, 1, "优", "Excellent", (0, 228, 0)),
        (51, 2, "良", "Good", (255, 255, 0)),
        (100, 2, "良", "Good", (255, 255, 0)),
        (101, 3, "轻度污染", "Lightly polluted", (255, 126, 0)),
        (150, 3, "轻度污染", "Lightly polluted", (255, 126, 0)),
        (151, 4, "中度污染", "Moderately polluted", (255, 0, 0)),
        (200, 4, "中度污染", "Moderately polluted", (255, 0, 0)),
        (201, 5, "重度污染", "Heavily polluted", (153, 0, 76)),
        (300, 5, "重度污染", "Heavily polluted", (153, 0, 76)),
        (301, 6, "严重污染", "Severely polluted", (126, 0, 35)),
        (500, 6, "严重污染", "Severely polluted", (126, 0, 35)),
        (567, 6, "严重污染", "Severely polluted", (126, 0, 35)),
    ],
)
def test_category_for(aqi: int, level: int, cn: str, en: str, rgb: tuple[int, int, int]) -> None:
    cat = category_for(aqi)
    assert (cat.level, cat.name_cn, cat.name_en, cat.colour.rgb) == (level, cn, en, rgb)


def test_category_table() -> None:
    assert [c.colour.hex for c in CATEGORIES] == [
        "#00E400",
        "#FFFF00",
        "#FF7E00",
        "#FF0000",
        "#99004C",
        "#7E0023",
    ]
    assert [c.colour.name for c in CATEGORIES] == ["green", "yellow", "orange", "red", "purple", "maroon"]
    assert [c.roman for c in CATEGORIES] == ["I", "II", "III", "IV", "V", "VI"]
    assert all(c.advice for c in CATEGORIES)
    with pytest.raises(ValueError):
        category_for(-1)


# --- choose_standard ------------------------------------------------------------------------------


def test_choose_standard_switches_at_midnight_china_time() -> None:
    cst = timezone(timedelta(hours=8))
    assert choose_standard(datetime(2026, 2, 28, 23, 59, 59, tzinfo=cst)) is S12
    assert choose_standard(datetime(2026, 3, 1, 0, 0, tzinfo=cst)) is S26
    assert choose_standard(datetime(2026, 2, 28, 15, 59, 59, tzinfo=UTC)) is S12
    assert choose_standard(datetime(2026, 2, 28, 16, 0, tzinfo=UTC)) is S26
    assert choose_standard(date(2026, 2, 28)) is S12
    assert choose_standard(date(2026, 3, 1)) is S26


def test_choose_standard_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        choose_standard(datetime(2026, 3, 1))  # noqa: DTZ001 - the point of the test


# --- hourly (real-time) report -----------------------------------------------------------------


def test_hourly_indicators() -> None:
    assert hourly_indicators(S12) == ("so2_1h", "no2_1h", "pm10_24h", "pm2_5_24h", "co_1h", "o3_1h", "o3_8h")
    assert hourly_indicators(S12, "1h") == (
        "so2_1h",
        "no2_1h",
        "pm10_1h",
        "pm2_5_1h",
        "co_1h",
        "o3_1h",
        "o3_8h",
    )
    assert hourly_indicators(S26) == ("so2_1h", "no2_1h", "pm10_1h", "pm2_5_1h", "co_1h", "o3_1h")
    assert hourly_indicators(S26, "1h") == hourly_indicators(S26)
    with pytest.raises(ValueError):
        hourly_indicators(S26, "24h")


def test_hourly_2012_full_report() -> None:
    result = hourly_aqi(
        {
            "so2_1h": 20,
            "no2_1h": 250,
            "co_1h": 1.0,
            "o3_1h": 205,
            "o3_8h": 161,
            "pm10_24h": 151,
            "pm2_5_24h": 36,
            "pm2_5_1h": 400,  # 2012 Table 4: concentration only, no IAQI
        },
        H12,
    )
    assert result.standard is S12
    assert result.iaqi == {
        "so2_1h": 7,
        "no2_1h": 105,
        "pm10_24h": 101,
        "pm2_5_24h": 52,
        "co_1h": 10,
        "o3_1h": 103,
        "o3_8h": 101,
    }
    assert result.aqi == 105
    assert result.primary_pollutants == ("no2_1h",)
    assert result.non_attainment == ("no2_1h", "pm10_24h", "o3_1h", "o3_8h")
    assert result.level == 3
    assert result.category is not None
    assert result.category.name_en == "Lightly polluted"
    assert result.colour is not None
    assert result.colour.rgb == (255, 126, 0)
    assert result.missing == ()
    assert result.over_range == ()
    assert result.publishable


def test_hourly_2012_pm_basis_1h_scores_the_hourly_pm() -> None:
    result = hourly_aqi({"pm2_5_1h": 36, "pm2_5_24h": 200}, H12, pm_basis="1h")
    assert result.iaqi == {"pm2_5_1h": 52}
    assert result.aqi == 52


def test_hourly_2026_uses_1h_pm_and_drops_o3_8h() -> None:
    result = hourly_aqi({"pm2_5": 61, "pm10_24h": 500, "o3_8h": 700, "o3": 100}, H26)
    assert result.standard is S26
    assert result.iaqi == {"pm2_5_1h": 101, "o3_1h": 32}
    assert result.aqi == 101
    assert result.non_attainment == ()  # removed in 2026


def test_hourly_2012_so2_above_800_falls_back_to_24h() -> None:
    result = hourly_aqi({"so2_1h": 900, "so2_24h": 100, "pm2_5_24h": 10}, H12)
    assert result.iaqi == {"so2_24h": 75, "pm2_5_24h": 15}
    assert result.missing == ("no2_1h", "pm10_24h", "co_1h", "o3_1h", "o3_8h")
    without_24h = hourly_aqi({"so2_1h": 900}, H12)
    assert without_24h.iaqi == {}
    assert "so2_1h" in without_24h.missing
    assert without_24h.aqi is None


def test_hourly_2026_so2_above_800_is_200() -> None:
    result = hourly_aqi({"so2_1h": 900, "so2_24h": 100}, H26)
    assert result.iaqi == {"so2_1h": 200}
    assert result.primary_pollutants == ("so2_1h",)


def test_o3_8h_above_800_2012_uses_o3_1h() -> None:
    result = hourly_aqi({"o3_1h": 900, "o3_8h": 850}, H12)
    assert result.iaqi == {"o3_1h": 350}
    assert "o3_8h" not in result.missing
    alone = hourly_aqi({"o3_8h": 850}, H12)
    assert alone.iaqi == {}
    assert {"o3_1h", "o3_8h"} <= set(alone.missing)


def test_daily_2026_o3_8h_above_800_is_300() -> None:
    result = daily_aqi({"o3_8h": 850}, D26)
    assert result.iaqi == {"o3_8h": 300}
    assert result.aqi == 300


def test_over_range_is_flagged() -> None:
    result = hourly_aqi({"pm2_5_24h": 600, "co_1h": 1}, H12)
    assert result.iaqi["pm2_5_24h"] == 500
    assert result.over_range == ("pm2_5_24h",)
    extrapolated = hourly_aqi({"pm2_5_24h": 600}, H12, over_range="extrapolate")
    assert extrapolated.aqi == 567
    assert extrapolated.level == 6
    assert extrapolated.over_range == ("pm2_5_24h",)


# --- primary pollutants, missing data ------------------------------------------------------------


def test_primary_pollutants_tie() -> None:
    # PM10 24h 151 and PM2.5 24h 75.5 both give 101 (§1.2 vectors).
    result = daily_aqi({"pm10_24h": 151, "pm2_5_24h": 75.5, "so2_24h": 10}, D12)
    assert result.aqi == 101
    assert result.primary_pollutants == ("pm10_24h", "pm2_5_24h")


def test_no_primary_pollutant_at_or_below_50() -> None:
    result = daily_aqi(
        {"pm2_5": 35, "pm10": 50, "so2": 50, "no2": 40, "co": 2, "o3_8h": 100, "o3_1h": 160}, D12
    )
    assert result.aqi == 50
    assert result.primary_pollutants == ()
    assert result.level == 1
    assert result.missing == ()
    just_above = daily_aqi({"pm2_5": 35.1, "pm10": 50}, D12)
    assert just_above.aqi == 51
    assert just_above.primary_pollutants == ("pm2_5_24h",)


def test_non_attainment_is_iaqi_above_100_in_2012_only() -> None:
    values = {"pm10": 150, "pm2_5": 76, "o3_8h": 160}
    assert daily_aqi(values, D12).non_attainment == ("pm2_5_24h",)
    assert daily_aqi(values, D26).non_attainment == ()


def test_daily_2012_and_2026_indicators() -> None:
    values = {"so2": 10, "no2": 10, "pm10": 10, "pm2_5": 10, "co": 0.5, "o3_1h": 250, "o3_8h": 90}
    r12 = daily_aqi(values, D12)
    assert set(r12.iaqi) == {"so2_24h", "no2_24h", "pm10_24h", "pm2_5_24h", "co_24h", "o3_1h", "o3_8h"}
    assert r12.aqi == 125  # O3 daily max 1h 250
    r26 = daily_aqi(values, D26)
    assert set(r26.iaqi) == {"so2_24h", "no2_24h", "pm10_24h", "pm2_5_24h", "co_24h", "o3_8h"}
    assert r26.aqi == 45


def test_empty_input() -> None:
    for result in (hourly_aqi({}, H12), hourly_aqi({}, H26), daily_aqi({}, D12), daily_aqi({}, D26)):
        assert result.aqi is None
        assert result.iaqi == {}
        assert result.category is None
        assert result.level is None
        assert result.colour is None
        assert result.primary_pollutants == ()
        assert not result.publishable
    assert hourly_aqi({}, H26).missing == hourly_indicators(S26)


def test_missing_values_and_2026_publication_rule() -> None:
    low = hourly_aqi({"pm2_5": 20, "pm10": None, "so2": math.nan, "no2": -1}, H26)
    assert low.aqi == 29
    assert low.missing == ("so2_1h", "no2_1h", "pm10_1h", "co_1h", "o3_1h")
    assert not low.publishable  # 2026 §5.3.1: incomplete and AQI <= 100
    high = hourly_aqi({"pm2_5": 100}, H26)
    assert high.aqi == 137
    assert high.publishable
    partial_2012 = hourly_aqi({"pm2_5_24h": 20}, H12)
    assert partial_2012.aqi == 29
    assert partial_2012.publishable  # 2012: AQI from what is present, missing ones listed


def test_not_monitored_pollutants_are_not_missing() -> None:
    values = {"pm2_5": 20, "pm10": 30, "so2": 5, "no2": 10, "o3": 50}
    result = hourly_aqi(values, H26, not_monitored={"co"})
    assert result.missing == ()
    assert result.publishable
    with pytest.raises(ValueError, match="unknown pollutants"):
        hourly_aqi(values, H26, not_monitored={"co2"})


def test_input_keys() -> None:
    assert hourly_aqi({"pm25_24h": 36}, H12).iaqi == {"pm2_5_24h": 52}
    assert hourly_aqi({"PM25": 36}, H26).iaqi == {"pm2_5_1h": 52}
    assert hourly_aqi({"temperature": 30, "o3_24h": 5, "co": 5}, H12).iaqi == {"co_1h": 50}
    # A bare PM key is the 1-h value, which the 2012 real-time report does not score by default.
    assert hourly_aqi({"pm2_5": 36}, H12).iaqi == {}
    assert hourly_aqi({"pm2_5": 36}, H12, pm_basis="1h").iaqi == {"pm2_5_1h": 52}
    with pytest.raises(ValueError, match="second time"):
        hourly_aqi({"pm25": 1, "pm2_5_1h": 2}, H26)
    with pytest.raises(ValueError, match="ambiguous"):
        daily_aqi({"o3": 100}, D26)


def test_explicit_standard_overrides_the_date() -> None:
    assert hourly_aqi({"pm2_5": 61}, H12, S26).standard is S26
    assert daily_aqi({"pm2_5": 61}, D26, "HJ 633-2012").iaqi == {"pm2_5_24h": 83}


def test_result_is_frozen() -> None:
    result = daily_aqi({"pm2_5": 61}, D26)
    assert isinstance(result, AqiResult)
    with pytest.raises(AttributeError):
        result.aqi = 1  # type: ignore[misc]


# --- properties ----------------------------------------------------------------------------------

_CONCENTRATION = st.one_of(
    st.integers(min_value=0, max_value=4000),
    st.floats(min_value=0, max_value=4000, allow_nan=False, allow_infinity=False),
    st.fractions(min_value=0, max_value=4000, max_denominator=1000),
)


@settings(max_examples=300, deadline=None)
@given(
    column=st.sampled_from(_columns()),
    a=_CONCENTRATION,
    b=_CONCENTRATION,
    rounded=st.booleans(),
)
def test_iaqi_is_monotonic_and_in_range(
    column: tuple[Standard, str], a: float | Fraction, b: float | Fraction, rounded: bool
) -> None:
    std, name = column
    pollutant, period = _split(name)
    lo, hi = sorted((_exact(a), _exact(b)))
    i_lo = iaqi(pollutant, period, lo, std, round_concentration=rounded)
    i_hi = iaqi(pollutant, period, hi, std, round_concentration=rounded)
    if std is S12 and name in ("so2_1h", "o3_8h"):  # NA above 800: the other period stands in
        if i_lo is None:
            assert i_hi is None
        if i_hi is None:
            return
    assert isinstance(i_lo, int)
    assert isinstance(i_hi, int)
    assert 0 <= i_lo <= i_hi <= 500


def _exact(x: float | Fraction) -> Fraction:
    return Fraction(repr(x)) if isinstance(x, float) else Fraction(x)
