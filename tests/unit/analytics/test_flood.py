from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.analytics.flood import flood_signal, level_rise_per_hour

WARN = 22.0
GUAR = 24.5
HIST = 26.0


def _colour(level: float, **kw: float) -> str | None:
    sig = flood_signal(level, WARN, GUAR, **kw)
    return None if sig is None else sig.colour


@pytest.mark.parametrize(
    ("level", "colour"),
    [
        pytest.param(21.0, None, id="well-below"),
        pytest.param(21.49, None, id="just-outside-approach-margin"),
        pytest.param(21.5, "blue", id="approaching-warning"),
        pytest.param(22.0, "yellow", id="at-warning"),
        pytest.param(24.49, "yellow", id="below-guaranteed"),
        pytest.param(24.5, "orange", id="at-guaranteed"),
        pytest.param(26.0, "red", id="at-historical-max"),
    ],
)
def test_level_conditions(level: float, colour: str | None) -> None:
    assert _colour(level, historical_max_m=HIST) == colour


@pytest.mark.parametrize(
    ("rp", "colour"),
    [(3.9, None), (4.0, "blue"), (5.0, "yellow"), (19.9, "yellow"), (20.0, "orange"), (50.0, "red")],
)
def test_return_period_alone_suffices(rp: float, colour: str | None) -> None:
    assert _colour(15.0, return_period_y=rp) == colour


def test_most_severe_condition_wins_and_margins() -> None:
    sig = flood_signal(22.8, WARN, GUAR, return_period_y=25.0)
    assert sig is not None
    assert (sig.colour, sig.colour_zh, sig.name_zh, sig.severity) == ("orange", "橙色", "洪水橙色预警", 3)
    assert sig.reasons == ("return period >= 20 y",)
    assert sig.over_warning_m == pytest.approx(0.8)
    assert sig.over_guaranteed_m == pytest.approx(-1.7)


def test_yellow_reports_over_warning() -> None:
    sig = flood_signal(22.35, WARN, GUAR)
    assert sig is not None and sig.colour == "yellow" and sig.reasons == ("level >= warning level",)
    assert sig.over_warning_m == pytest.approx(0.35)


def test_red_needs_a_historical_maximum_or_return_period() -> None:
    assert _colour(30.0) == "orange"
    assert _colour(30.0, historical_max_m=HIST) == "red"


def test_fast_rise_counts_as_approaching() -> None:
    assert _colour(20.0) is None
    assert _colour(20.0, rise_m_per_h=0.4) == "blue"  # reaches 22.0 in 5 h
    assert _colour(20.0, rise_m_per_h=0.3) is None  # 6.7 h
    assert _colour(20.0, rise_m_per_h=-1.0) is None
    assert _colour(21.8, approach_margin_m=0.1) is None


def test_bad_thresholds_raise() -> None:
    with pytest.raises(ValueError, match="guaranteed"):
        flood_signal(20.0, 24.0, 22.0)
    with pytest.raises(ValueError):
        flood_signal(float("nan"), WARN, GUAR)


@given(st.floats(0, 40), st.floats(0, 5))
def test_higher_level_never_lowers_the_signal(level: float, extra: float) -> None:
    def sev(x: float) -> int:
        s = flood_signal(x, WARN, GUAR, historical_max_m=HIST)
        return 0 if s is None else s.severity

    assert sev(level + extra) >= sev(level)


def test_rise_rate_least_squares_over_the_last_hour() -> None:
    t0 = 1_795_248_000
    # 5-min readings rising 0.12 m/h, plus an old flat stretch that falls outside the window.
    old = [(t0 - 7200 + i * 300, 10.0) for i in range(12)]
    recent = [(t0 + i * 300, 10.0 + 0.01 * i) for i in range(13)]
    assert level_rise_per_hour(old + recent) == pytest.approx(0.12)
    # One quantised reading at the end barely moves a least-squares slope.
    bumped = [*recent[:-1], (recent[-1][0], recent[-1][1] + 0.02)]
    rate = level_rise_per_hour(bumped)
    assert rate is not None and abs(rate - 0.12) < 0.02
    falling = [(t, 12.0 - 0.5 * (t - t0) / 3600) for t, _ in recent]
    assert level_rise_per_hour(falling) == pytest.approx(-0.5)


def test_rise_rate_needs_enough_span() -> None:
    t0 = 1_795_248_000
    assert level_rise_per_hour([]) is None
    assert level_rise_per_hour([(t0, 1.0)]) is None
    assert level_rise_per_hour([(t0, 1.0), (t0 + 60, 1.01)]) is None  # 1 min: too short
    assert level_rise_per_hour([(t0, 1.0), (t0 + 900, 1.05)]) == pytest.approx(0.2)
    assert level_rise_per_hour([(t0, 1.0), (t0 + 900, 1.05)], now_s=t0 + 7200) is None  # stale
