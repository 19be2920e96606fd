from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.analytics.rain import (
    GRADES,
    STANDARD,
    UNVERIFIED_1H,
    is_short_duration_heavy_rain,
    rain_grade,
    rainstorm_signal,
    rolling_sums,
)

H = 3600
NOW = 1_795_248_000


def _code(total: float, hours: int) -> str | None:
    g = rain_grade(total, hours)
    return None if g is None else g.code


@pytest.mark.parametrize(
    ("total", "code"),
    [
        (0.0, None),
        (0.04, None),
        (0.1, "light"),
        (9.9, "light"),
        (10.0, "moderate"),
        (24.9, "moderate"),
        (25.0, "heavy"),
        (49.9, "heavy"),
        (50.0, "rainstorm"),
        (99.9, "rainstorm"),
        (100.0, "heavy_rainstorm"),
        (249.9, "heavy_rainstorm"),
        (250.0, "extreme_rainstorm"),
        (900.0, "extreme_rainstorm"),
    ],
)
def test_24h_grade_boundaries(total: float, code: str | None) -> None:
    assert _code(total, 24) == code


@pytest.mark.parametrize(
    ("total", "code"),
    [
        (0.1, "light"),
        (4.9, "light"),
        (5.0, "moderate"),
        (14.9, "moderate"),
        (15.0, "heavy"),
        (29.9, "heavy"),
        (30.0, "rainstorm"),
        (69.9, "rainstorm"),
        (70.0, "heavy_rainstorm"),
        (139.9, "heavy_rainstorm"),
        (140.0, "extreme_rainstorm"),
    ],
)
def test_12h_grade_boundaries(total: float, code: str) -> None:
    assert _code(total, 12) == code


def test_grade_names_and_source() -> None:
    g = rain_grade(120.0, 24)
    assert g is not None
    assert (g.name_zh, g.name_en, g.low_mm, g.high_mm, g.rank) == (
        "大暴雨",
        "heavy rainstorm",
        100.0,
        249.9,
        5,
    )
    assert g.source == STANDARD
    top = rain_grade(300.0, 24)
    assert top is not None and top.name_zh == "特大暴雨" and top.high_mm is None
    assert [x.name_zh for x in GRADES[12]] == ["小雨", "中雨", "大雨", "暴雨", "大暴雨", "特大暴雨"]


def test_totals_are_read_at_gauge_resolution() -> None:
    assert _code(0.1 + 0.2 + 9.6999999, 24) == "moderate"  # 10.0 after float noise
    assert _code(49.94, 24) == "heavy"


def test_1h_convention_is_marked_unverified() -> None:
    assert [_code(v, 1) for v in (2.5, 2.6, 8.0, 8.1, 15.9, 16.0)] == [
        "light",
        "moderate",
        "moderate",
        "heavy",
        "heavy",
        "rainstorm",
    ]
    g = rain_grade(1.0, 1)
    assert g is not None and g.source == UNVERIFIED_1H
    assert is_short_duration_heavy_rain(20.0) and not is_short_duration_heavy_rain(19.9)


def test_other_durations_and_bad_totals_raise() -> None:
    with pytest.raises(ValueError, match="12 h and 24 h"):
        rain_grade(10.0, 6)
    with pytest.raises(ValueError):
        rain_grade(-1.0, 24)
    with pytest.raises(ValueError):
        rain_grade(float("nan"), 24)


def test_rolling_sums_window_edges() -> None:
    inc = [
        (NOW - 24 * H, 100.0),  # exactly 24 h ago: belongs to the previous window
        (NOW - 24 * H + 1, 1.0),
        (NOW - 12 * H, 2.0),
        (NOW - 6 * H + 300, 4.0),
        (NOW - 3 * H + 300, 8.0),
        (NOW - 300, 16.0),
        (NOW, 32.0),
        (NOW + 300, 64.0),  # future: ignored
    ]
    sums = rolling_sums(inc, NOW)
    assert sums == {1: 48.0, 3: 56.0, 6: 60.0, 12: 60.0, 24: 63.0}
    assert rolling_sums(list(reversed(inc)), NOW) == sums
    assert rolling_sums([], NOW) == {1: 0.0, 3: 0.0, 6: 0.0, 12: 0.0, 24: 0.0}
    assert rolling_sums(inc, NOW, windows=(2,)) == {2: 48.0}


def test_rolling_sums_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        rolling_sums([(NOW, -0.5)], NOW)
    with pytest.raises(ValueError):
        rolling_sums([(NOW, 1.0)], NOW, windows=(0,))


@given(st.lists(st.tuples(st.integers(NOW - 30 * H, NOW + H), st.floats(0, 50)), max_size=60))
def test_rolling_sums_grow_with_the_window(inc: list[tuple[int, float]]) -> None:
    sums = rolling_sums(inc, NOW)
    values = [sums[w] for w in (1, 3, 6, 12, 24)]
    assert all(a <= b + 1e-9 for a, b in pairwise(values))
    assert sums[24] == pytest.approx(sum(mm for t, mm in inc if NOW - 24 * H < t <= NOW), abs=1e-9)


@given(st.floats(0, 1000), st.floats(0, 1000), st.sampled_from([12, 24]))
def test_more_rain_never_lowers_the_grade(a: float, b: float, hours: int) -> None:
    lo, hi = sorted((a, b))
    g_lo, g_hi = rain_grade(lo, hours), rain_grade(hi, hours)
    assert (g_lo.rank if g_lo else 0) <= (g_hi.rank if g_hi else 0)


def _signal(s3: float, s6: float, s12: float) -> str | None:
    sig = rainstorm_signal({3: s3, 6: s6, 12: s12})
    return None if sig is None else sig.colour


@pytest.mark.parametrize(
    ("s3", "s6", "s12", "colour"),
    [
        (10.0, 20.0, 49.9, None),
        (10.0, 20.0, 50.0, "blue"),
        (10.0, 50.0, 50.0, "yellow"),
        (50.0, 50.0, 50.0, "orange"),
        (99.9, 120.0, 150.0, "orange"),
        (100.0, 100.0, 100.0, "red"),
    ],
)
def test_rainstorm_signal_criteria(s3: float, s6: float, s12: float, colour: str | None) -> None:
    assert _signal(s3, s6, s12) == colour


def test_rainstorm_signal_details_and_input() -> None:
    sums = rolling_sums([(NOW - 4 * H, 30.0), (NOW - 2 * H, 25.0)], NOW)
    sig = rainstorm_signal(sums)
    assert sig is not None
    assert (sig.colour, sig.name_zh, sig.severity, sig.window_h, sig.threshold_mm, sig.observed_mm) == (
        "yellow",
        "暴雨黄色预警信号",
        2,
        6,
        50.0,
        55.0,
    )
    with pytest.raises(ValueError, match="3"):
        rainstorm_signal({6: 10.0, 12: 10.0})
