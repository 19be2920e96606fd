"""Rainfall grades (GB/T 28592-2012), rolling rainfall sums and rainstorm warning signals.

GB/T 28592-2012 grades only 12 h and 24 h totals. The 1 h grades below are an operational
convention that the spec marks UNVERIFIED; they carry that in ``RainGrade.source``. The
rainstorm signals (暴雨预警信号, CMA 2007) are evaluated on observed sums only: "forecast to
reach" is a forecaster's call and stays outside this module. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

__all__ = [
    "GRADES",
    "RAINSTORM_SIGNALS",
    "SHORT_DURATION_HEAVY_RAIN_MM_1H",
    "WINDOWS_H",
    "RainGrade",
    "RainstormSignal",
    "is_short_duration_heavy_rain",
    "rain_grade",
    "rainstorm_signal",
    "rolling_sums",
]

STANDARD = "GB/T 28592-2012"
UNVERIFIED_1H = "operational convention (unverified, not GB/T 28592-2012)"

# Gauges report 0.1 mm and the grade tables are written to 0.1 mm, so totals are rounded to
# 0.1 mm before lookup (this also absorbs float noise from summing increments: 9.99999 -> 10.0).
RESOLUTION_DECIMALS = 1
# Less than this is trace precipitation (微量), which has no grade.
MIN_GRADED_MM = 0.1


@dataclass(frozen=True, slots=True)
class RainGrade:
    """One grade row: ``low_mm`` <= total <= ``high_mm`` (``high_mm`` None = open-ended)."""

    code: str  # light, moderate, heavy, rainstorm, heavy_rainstorm, extreme_rainstorm
    name_zh: str
    name_en: str
    hours: int
    low_mm: float
    high_mm: float | None
    source: str = STANDARD

    @property
    def rank(self) -> int:
        """1 (小雨) .. 6 (特大暴雨), comparable across 12 h and 24 h tables."""
        return _CODES.index(self.code) + 1


_CODES = ("light", "moderate", "heavy", "rainstorm", "heavy_rainstorm", "extreme_rainstorm")
_NAMES = (
    ("小雨", "light rain"),
    ("中雨", "moderate rain"),
    ("大雨", "heavy rain"),
    ("暴雨", "rainstorm"),
    ("大暴雨", "heavy rainstorm"),
    ("特大暴雨", "extreme rainstorm"),
)


def _table(hours: int, lows: Iterable[float], source: str = STANDARD) -> tuple[RainGrade, ...]:
    lows = tuple(lows)
    highs = [round(nxt - 0.1, 1) for nxt in lows[1:]]
    return tuple(
        RainGrade(code, zh, en, hours, low, high, source)
        for code, (zh, en), low, high in zip(_CODES, _NAMES, lows, [*highs, None], strict=False)
    )


# GB/T 28592-2012 降水量等级, lower bounds in mm (24 h: 0.1-9.9, 10.0-24.9, 25.0-49.9,
# 50.0-99.9, 100.0-249.9, >= 250.0; 12 h: 0.1-4.9, 5.0-14.9, 15.0-29.9, 30.0-69.9, 70.0-139.9,
# >= 140.0). Storm rows confirmed; lighter rows the widely quoted values (protocols.md §3).
# 1 h: <= 2.5 light, 2.6-8.0 moderate, 8.1-15.9 heavy, >= 16 rainstorm intensity (UNVERIFIED).
GRADES: Mapping[int, tuple[RainGrade, ...]] = MappingProxyType(
    {
        24: _table(24, (0.1, 10.0, 25.0, 50.0, 100.0, 250.0)),
        12: _table(12, (0.1, 5.0, 15.0, 30.0, 70.0, 140.0)),
        1: _table(1, (0.1, 2.6, 8.1, 16.0), UNVERIFIED_1H),
    }
)

# 短时强降水 (short-duration heavy rain), >= 20 mm in 1 h: operational convention, UNVERIFIED.
SHORT_DURATION_HEAVY_RAIN_MM_1H = 20.0


def _round_mm(total_mm: float) -> float:
    return round(total_mm, RESOLUTION_DECIMALS)


def rain_grade(total_mm: float, hours: int) -> RainGrade | None:
    """Grade of a ``hours`` (24, 12, or 1 = unverified convention) total; None below 0.1 mm."""
    table = GRADES.get(hours)
    if table is None:
        raise ValueError(f"no rainfall grades for {hours} h; GB/T 28592-2012 grades 12 h and 24 h")
    if not math.isfinite(total_mm) or total_mm < 0:
        raise ValueError(f"rainfall total must be finite and >= 0, not {total_mm}")
    mm = _round_mm(total_mm)
    if mm < MIN_GRADED_MM:
        return None
    return next(g for g in reversed(table) if mm >= g.low_mm)


def is_short_duration_heavy_rain(mm_1h: float) -> bool:
    """短时强降水: >= 20 mm within 1 h (operational convention, UNVERIFIED)."""
    return _round_mm(mm_1h) >= SHORT_DURATION_HEAVY_RAIN_MM_1H


WINDOWS_H: tuple[int, ...] = (1, 3, 6, 12, 24)


def rolling_sums(
    increments: Sequence[tuple[int, float]],
    now_s: int,
    windows: Sequence[int] = WINDOWS_H,
) -> dict[int, float]:
    """Rainfall in each trailing window (hours) ending at ``now_s``, keyed by window hours.

    Each increment ``(epoch_s, mm)`` is the rain of the interval that *ends* at ``epoch_s`` (how
    gauges and SL 651 5-min blocks report it), so it counts in a window of ``h`` hours when
    ``now_s - h*3600 < epoch_s <= now_s``; later increments are ignored. Order does not matter.
    Negative or non-finite increments raise ValueError (reset counters are the decoder's job).
    """
    if any(w <= 0 for w in windows):
        raise ValueError(f"windows must be positive hours, not {tuple(windows)}")
    if not increments:
        return dict.fromkeys(windows, 0.0)
    arr = np.asarray(increments, dtype=np.float64).reshape(-1, 2)
    t, mm = arr[:, 0], arr[:, 1]
    if not np.all(np.isfinite(arr)) or np.any(mm < 0):
        raise ValueError("rain increments must be finite and >= 0")
    order = np.argsort(t, kind="stable")
    t, mm = t[order], mm[order]
    cum = np.concatenate(([0.0], np.cumsum(mm)))
    end = int(np.searchsorted(t, now_s, side="right"))  # count t <= now
    out: dict[int, float] = {}
    for w in windows:
        start = int(np.searchsorted(t, now_s - w * 3600, side="right"))  # drop t <= now - w
        out[w] = max(0.0, float(cum[end] - cum[start])) if end > start else 0.0
    return out


@dataclass(frozen=True, slots=True)
class RainstormSignal:
    """A rainstorm warning signal (暴雨预警信号) whose observed-amount criterion is met."""

    colour: str  # blue, yellow, orange, red
    name_zh: str
    severity: int  # 1 (blue) .. 4 (red)
    window_h: int
    threshold_mm: float
    observed_mm: float


# CMA 《气象灾害预警信号发布与传播办法》 (2007), 暴雨预警信号: (colour, 中文, window h, mm),
# criterion ">= mm within window_h". Ordered from most to least severe.
RAINSTORM_SIGNALS: tuple[tuple[str, str, int, float], ...] = (
    ("red", "暴雨红色预警信号", 3, 100.0),
    ("orange", "暴雨橙色预警信号", 3, 50.0),
    ("yellow", "暴雨黄色预警信号", 6, 50.0),
    ("blue", "暴雨蓝色预警信号", 12, 50.0),
)


def rainstorm_signal(sums: Mapping[int, float]) -> RainstormSignal | None:
    """Most severe signal whose amount criterion the observed rolling sums (mm by hours) meet.

    ``sums`` must hold the 3, 6 and 12 h windows (as :func:`rolling_sums` returns them). The
    full criterion also needs "rain continuing" or a forecast; that judgement is the caller's.
    """
    missing = sorted({w for _, _, w, _ in RAINSTORM_SIGNALS} - set(sums))
    if missing:
        raise ValueError(f"rainstorm signals need the {missing} h sums")
    for severity, (colour, name, window, threshold) in zip((4, 3, 2, 1), RAINSTORM_SIGNALS, strict=True):
        observed = sums[window]
        if _round_mm(observed) >= threshold:
            return RainstormSignal(colour, name, severity, window, threshold, observed)
    return None
