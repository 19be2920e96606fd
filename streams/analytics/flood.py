"""Water-regime (水情) flood warning signals from a level and a station's thresholds; level rise rate.

Signals of the Ministry of Water Resources as given in protocols.md §3; either the level (or
flow) condition or the return-period condition suffices, and the most severe signal wins:

=======  ===================================  ====================
Signal   Level / flow condition               Return period
=======  ===================================  ====================
Blue     approaching the warning level        approaching 5 years
Yellow   at or above the warning level        >= 5 years
Orange   at or above the guaranteed level     >= 20 years
Red      at or above the historical maximum   >= 50 years
=======  ===================================  ====================

"Approaching" is not quantified by the source; see :func:`flood_signal` for the rule used. The
functions work unchanged on flows (警戒流量 / 保证流量) if all inputs are flows. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "APPROACH_LEAD_TIME_H",
    "APPROACH_MARGIN_M",
    "APPROACH_RETURN_PERIOD_Y",
    "RISE_MIN_SPAN_S",
    "RISE_WINDOW_S",
    "SIGNALS",
    "FloodSignal",
    "flood_signal",
    "level_rise_per_hour",
]

Colour = Literal["blue", "yellow", "orange", "red"]

# (colour, 中文, 洪水预警 name, return period in years), least to most severe (severity 1..4).
SIGNALS: tuple[tuple[Colour, str, str, float], ...] = (
    ("blue", "蓝色", "洪水蓝色预警", 5.0),  # "approaching 5 years": see APPROACH_RETURN_PERIOD_Y
    ("yellow", "黄色", "洪水黄色预警", 5.0),
    ("orange", "橙色", "洪水橙色预警", 20.0),
    ("red", "红色", "洪水红色预警", 50.0),
)

# "Approaching the warning level" is not quantified by the source. Our defaults, per station
# overridable: within 0.5 m below it, or projected to reach it within 6 h at the current rise
# rate (a patrol shift's warning), or a return period of 4 years (80 % of the 5-year yellow).
APPROACH_MARGIN_M = 0.5
APPROACH_LEAD_TIME_H = 6.0
APPROACH_RETURN_PERIOD_Y = 4.0

# Rise rate: least-squares slope over the last hour, needing >= 15 min of data so that 1 cm gauge
# steps between two close readings do not read as metres per hour.
RISE_WINDOW_S = 3600.0
RISE_MIN_SPAN_S = 900.0


@dataclass(frozen=True, slots=True)
class FloodSignal:
    """A water-regime warning signal with the margins to the station's levels.

    ``over_warning_m`` is level - warning level (positive = 超警戒 by that much),
    ``over_guaranteed_m`` level - guaranteed level (negative = still below 保证水位);
    ``reasons`` says which conditions met the signal.
    """

    colour: Colour
    colour_zh: str
    name_zh: str
    severity: int  # 1 blue .. 4 red
    over_warning_m: float
    over_guaranteed_m: float
    reasons: tuple[str, ...]


def _check(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value}")


def flood_signal(
    level_m: float,
    warning_m: float,
    guaranteed_m: float,
    *,
    historical_max_m: float | None = None,
    return_period_y: float | None = None,
    rise_m_per_h: float | None = None,
    approach_margin_m: float = APPROACH_MARGIN_M,
    approach_lead_time_h: float = APPROACH_LEAD_TIME_H,
    approach_return_period_y: float = APPROACH_RETURN_PERIOD_Y,
) -> FloodSignal | None:
    """Most severe water-regime signal met, or None.

    Red: level >= historical maximum (if known) or return period >= 50 y. Orange: level >=
    guaranteed level or >= 20 y. Yellow: level >= warning level or >= 5 y. Blue ("approaching"):
    level >= warning - ``approach_margin_m``, or a positive ``rise_m_per_h`` that would reach the
    warning level within ``approach_lead_time_h``, or return period >= ``approach_return_period_y``.
    """
    for name, value in (
        ("level_m", level_m),
        ("warning_m", warning_m),
        ("guaranteed_m", guaranteed_m),
        ("historical_max_m", historical_max_m),
        ("return_period_y", return_period_y),
        ("rise_m_per_h", rise_m_per_h),
    ):
        _check(name, value)
    if guaranteed_m < warning_m:
        raise ValueError(f"guaranteed level ({guaranteed_m}) below warning level ({warning_m})")
    rp = return_period_y
    met: list[list[str]] = [[], [], [], []]
    if level_m >= warning_m - approach_margin_m:
        met[0].append(f"level within {approach_margin_m:g} m of warning level")
    if (
        rise_m_per_h is not None
        and rise_m_per_h > 0
        and level_m + rise_m_per_h * approach_lead_time_h >= warning_m
    ):
        met[0].append(
            f"rising {rise_m_per_h:.3g} m/h reaches warning level within {approach_lead_time_h:g} h"
        )
    if rp is not None and rp >= approach_return_period_y:
        met[0].append(f"return period >= {approach_return_period_y:g} y")
    if level_m >= warning_m:
        met[1].append("level >= warning level")
    if level_m >= guaranteed_m:
        met[2].append("level >= guaranteed level")
    if historical_max_m is not None and level_m >= historical_max_m:
        met[3].append("level >= historical maximum")
    for i, (_, _, _, years) in enumerate(SIGNALS[1:], start=1):
        if rp is not None and rp >= years:
            met[i].append(f"return period >= {years:g} y")
    severity = max((i + 1 for i, reasons in enumerate(met) if reasons), default=0)
    if severity == 0:
        return None
    colour, colour_zh, name, _ = SIGNALS[severity - 1]
    return FloodSignal(
        colour=colour,
        colour_zh=colour_zh,
        name_zh=name,
        severity=severity,
        over_warning_m=level_m - warning_m,
        over_guaranteed_m=level_m - guaranteed_m,
        reasons=tuple(met[severity - 1]),
    )


def level_rise_per_hour(
    samples: Sequence[tuple[float, float]],
    *,
    now_s: float | None = None,
    window_s: float = RISE_WINDOW_S,
    min_span_s: float = RISE_MIN_SPAN_S,
) -> float | None:
    """Rise rate in m/h: least-squares slope of ``(epoch_s, level_m)`` over the trailing window.

    The window ends at ``now_s`` (default: the latest sample) and includes samples with
    ``now_s - window_s <= t <= now_s``. Least squares rather than last-minus-first so that a
    single noisy or quantised reading at either end does not set the rate. None when the samples
    in the window span less than ``min_span_s``. Negative = falling.
    """
    if not samples:
        return None
    arr = np.asarray(samples, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(arr)):
        raise ValueError("level samples must be finite")
    t, y = arr[:, 0], arr[:, 1]
    end = float(t.max()) if now_s is None else now_s
    keep = (t >= end - window_s) & (t <= end)
    t, y = t[keep], y[keep]
    if t.size < 2 or float(t.max() - t.min()) < min_span_s:
        return None
    tc = t - t.mean()
    slope_per_s = float(np.dot(tc, y - y.mean()) / np.dot(tc, tc))
    return slope_per_s * 3600.0
