"""Cold-chain indicators: temperature classes, mean kinetic temperature and excursions.

GB 31605-2020 requires monitoring, recording and alarming on the *required* temperature range
but gives no universal numbers; the range comes from the product profile (label, contract,
product standard). The classes below are practice defaults (spec §4.2), and the excursion
rules are the engineering practice of spec §4.3. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "CHILLED",
    "CHILLED_FRESH",
    "DEFAULT_MIN_DURATION_S",
    "DELTA_H_J_PER_MOL",
    "FROZEN",
    "GAS_CONSTANT",
    "PERISHABLE_TRANSPORT_AMBIENT_EXPOSURE_MAX_S",
    "PERISHABLE_TRANSPORT_MAX_CHANGE_C",
    "TEMPERATURE_CLASSES",
    "Excursion",
    "ExcursionSummary",
    "TemperatureClass",
    "excursions",
    "interval_weights",
    "mkt",
    "mkt_add",
    "mkt_from_sums",
    "mkt_series",
    "mkt_weights",
]

KELVIN_OFFSET = 273.15
# USP <1079> / WHO usage (spec §4.3): ΔH = 83.144 kJ/mol, R = 8.3144621 J/(mol·K), ΔH/R ≈ 10 000 K.
DELTA_H_J_PER_MOL = 83_144.0
GAS_CONSTANT = 8.3144621

# Alarm delay D: spec §4.3 suggests 10-30 min so door openings and defrost cycles do not alarm;
# the lower end keeps real excursions visible early. Profiles should override it.
DEFAULT_MIN_DURATION_S = 10 * 60
# "No data for more than 2x the logging interval" is a sensor fault (spec §4.3 rule 4).
GAP_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class TemperatureClass:
    """A storage/transport temperature class; None = no limit on that side."""

    code: str
    name_zh: str
    name_en: str
    low_c: float | None
    high_c: float | None
    critical_high_c: float | None  # alarm with no delay above this
    source: str


# Spec §4.2 "Temperature classes used in practice".
FROZEN = TemperatureClass(
    "frozen",
    "冷冻食品",
    "frozen food",
    None,
    -18.0,  # product core, GB/T 24616-2019; EU Dir. 89/108/EEC
    -15.0,  # brief rise to -15 °C only in transport/distribution/display (EU 89/108/EEC)
    "GB/T 24616-2019; EU Dir. 89/108/EEC",
)
CHILLED = TemperatureClass(
    "chilled",
    "冷藏食品",
    "chilled food",
    0.0,  # "above the freezing point": 0 °C stands in; the product's freezing point is better
    8.0,  # "below 8 °C"
    None,
    "GB/T 24616-2019",
)
CHILLED_FRESH = TemperatureClass(
    "chilled_fresh",
    "冷却肉/冰鲜",
    "chilled meat, fish, dairy",
    0.0,
    4.0,  # common operating band 0-4 °C, or as labelled
    None,
    "common practice",
)
TEMPERATURE_CLASSES: tuple[TemperatureClass, ...] = (FROZEN, CHILLED, CHILLED_FRESH)

# GB/T 22918-2008 practice (medium-low confidence; replaced by GB/T 22918-2025 from 2026-05-01):
# product temperature change <= 3 °C in transport, and <= 0.5 h exposure to ambient in transfer.
PERISHABLE_TRANSPORT_MAX_CHANGE_C = 3.0
PERISHABLE_TRANSPORT_AMBIENT_EXPOSURE_MAX_S = 30 * 60

FloatArray = npt.NDArray[np.float64]


def mkt(
    temps_c: Sequence[float],
    weights: Sequence[float] | FloatArray | None = None,
    *,
    delta_h_j_per_mol: float = DELTA_H_J_PER_MOL,
    gas_constant: float = GAS_CONSTANT,
) -> float:
    """Mean kinetic temperature in °C (USP <1079>), optionally time-weighted.

    ``MKT = (ΔH/R) / -ln(Σ wᵢ·exp(-ΔH/(R·Tᵢ)) / Σ wᵢ)`` with Tᵢ in kelvin; equal weights when
    ``weights`` is None. Weights may be the intervals from :func:`interval_weights`.
    """
    t = np.asarray(temps_c, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError("mkt needs at least one temperature")
    if not np.all(np.isfinite(t)) or np.any(t <= -KELVIN_OFFSET):
        raise ValueError("temperatures must be finite and above absolute zero")
    w = np.ones_like(t) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != t.shape:
        raise ValueError(f"{w.size} weights for {t.size} temperatures")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError("weights must be finite, >= 0 and not all zero")
    ratio = delta_h_j_per_mol / gas_constant
    x = -ratio / (t + KELVIN_OFFSET)
    # log-sum-exp: exp(-10000/T) is ~1e-16 at room temperature, so shift before summing.
    top = float(x[w > 0].max())
    log_mean = top + math.log(float(np.sum(w * np.exp(x - top))) / float(w.sum()))
    return -ratio / log_mean - KELVIN_OFFSET


def mkt_weights(times_s: Sequence[float] | FloatArray, max_gap_s: float | None = None) -> FloatArray:
    """Seconds each sample stands for in the MKT mean (the one MKT of the whole service).

    Each sample stands for the interval since the previous one, capped at ``max_gap_s`` (None =
    2x the median interval), and the first sample for the first interval, so equally spaced
    samples get equal weights and the MKT is the spec's ``(1/n)·Σ`` formula (§4.3) including
    the newest reading; unequal spacing gives the time-weighted mean of §4.3. A single sample
    gets weight 1. Times must be strictly increasing. The weights are fixed as soon as a sample
    arrives, which is what lets the worker keep the sum incrementally (:func:`mkt_add`).
    """
    t = np.asarray(times_s, dtype=np.float64)
    if t.size <= 1:
        return np.ones_like(t)
    dt = np.diff(t)
    if np.any(dt <= 0):
        raise ValueError("sample times must be strictly increasing")
    cap = _default_gap(dt) if max_gap_s is None else max_gap_s
    w = np.minimum(dt, cap)
    return np.concatenate((w[:1], w))


def mkt_series(times_s: Sequence[float], temps_c: Sequence[float], max_gap_s: float | None = None) -> float:
    """MKT (°C) of a logged series: :func:`mkt` with :func:`mkt_weights`."""
    return mkt(temps_c, mkt_weights(times_s, max_gap_s))


def _mkt_term(temp_c: float) -> float:
    return math.exp(-DELTA_H_J_PER_MOL / GAS_CONSTANT / (temp_c + KELVIN_OFFSET))


def mkt_add(sum_wx: float, sum_w: float, prev_c: float, temp_c: float, dt_s: float) -> tuple[float, float]:
    """Fold the next sample into running MKT sums, exactly as :func:`mkt_weights` weighs it.

    ``sum_wx`` = Σ wᵢ·exp(-ΔH/(R·Tᵢ)), ``sum_w`` = Σ wᵢ; ``prev_c`` is the previous sample,
    ``dt_s`` the (already capped) seconds since it. The first interval also weighs the first
    sample (``sum_w`` still 0). The caller moves forward in event time only, so a replayed
    reading (not newer than the last one) never reaches this and cannot inflate the sums.
    """
    if sum_w <= 0:
        sum_wx, sum_w = dt_s * _mkt_term(prev_c), dt_s
    return sum_wx + dt_s * _mkt_term(temp_c), sum_w + dt_s


def mkt_from_sums(sum_wx: float, sum_w: float, last_c: float) -> float | None:
    """MKT (°C) from :func:`mkt_add` sums; a single sample so far is its own MKT."""
    if sum_w <= 0:
        return last_c
    if sum_wx <= 0:
        return None
    return DELTA_H_J_PER_MOL / GAS_CONSTANT / -math.log(sum_wx / sum_w) - KELVIN_OFFSET


def interval_weights(times_s: Sequence[float] | FloatArray, max_gap_s: float | None = None) -> FloatArray:
    """Seconds each sample stands for: the interval to the next sample, capped at ``max_gap_s``.

    The last sample gets 0 (the record ends there). ``max_gap_s`` None = 2x the median interval.
    Times must be strictly increasing.
    """
    t = np.asarray(times_s, dtype=np.float64)
    dt = np.diff(t)
    if np.any(dt <= 0):
        raise ValueError("sample times must be strictly increasing")
    cap = _default_gap(dt) if max_gap_s is None else max_gap_s
    return np.append(np.minimum(dt, cap), 0.0)


def _default_gap(dt: FloatArray) -> float:
    return GAP_FACTOR * float(np.median(dt)) if dt.size else 0.0


@dataclass(frozen=True, slots=True)
class Excursion:
    """One run of consecutive readings on the same side outside [low, high].

    ``duration_s`` counts observed time only (sample weights, gaps capped); ``end_s`` is when the
    run's last reading stops counting. ``ongoing`` = the record ends inside the run.
    """

    side: Literal["above", "below"]
    start_s: float
    end_s: float
    duration_s: float
    peak_c: float  # warmest reading above, coldest below
    ongoing: bool


@dataclass(frozen=True, slots=True)
class ExcursionSummary:
    """Time in/out of [low, high] and the excursion events (breaches lasting >= min duration)."""

    time_above_s: float
    time_below_s: float
    time_in_range_s: float
    time_missing_s: float  # gap time beyond max_gap: neither in nor out of range
    excursions: tuple[Excursion, ...]
    breaches: int  # runs outside the range of any length, including ones shorter than D

    @property
    def count(self) -> int:
        """Number of excursion events."""
        return len(self.excursions)

    @property
    def longest(self) -> Excursion | None:
        """The excursion with the longest duration (the first one on a tie)."""
        return max(self.excursions, key=lambda e: e.duration_s, default=None)

    @property
    def time_out_of_range_s(self) -> float:
        """Cumulative time above plus below, for a per-shipment budget."""
        return self.time_above_s + self.time_below_s


def excursions(
    samples: Sequence[tuple[float, float]],
    low: float | None,
    high: float | None,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    *,
    max_gap_s: float | None = None,
) -> ExcursionSummary:
    """Summarise ``(epoch_s, temp_c)`` samples against [low, high] (spec §4.3).

    A reading strictly outside the range is a breach; a limit value itself is in range. Each
    sample stands for the interval to the next one, capped at ``max_gap_s`` (default 2x the
    median interval); the rest of a longer gap is missing time, not in range. A breach run
    continues across a gap when the readings on both sides are out on the same side. Runs whose
    observed duration is >= ``min_duration_s`` are excursions. Samples are sorted by time;
    duplicate times raise ValueError.
    """
    if low is not None and high is not None and low > high:
        raise ValueError(f"low ({low}) > high ({high})")
    if not samples:
        return ExcursionSummary(0.0, 0.0, 0.0, 0.0, (), 0)
    arr = np.asarray(sorted(samples), dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(arr)):
        raise ValueError("samples must be finite")
    t, temp = arr[:, 0], arr[:, 1]
    dt = np.diff(t)
    cap = _default_gap(dt) if max_gap_s is None else max_gap_s
    w = interval_weights(t, cap)
    missing = float(np.sum(np.maximum(dt - cap, 0.0)))
    side = np.zeros(t.size, dtype=np.int8)  # -1 below, 0 in range, +1 above
    if high is not None:
        side[temp > high] = 1
    if low is not None:
        side[temp < low] = -1
    runs = _runs(t, temp, w, side)
    return ExcursionSummary(
        time_above_s=float(w[side == 1].sum()),
        time_below_s=float(w[side == -1].sum()),
        time_in_range_s=float(w[side == 0].sum()),
        time_missing_s=missing,
        excursions=tuple(r for r in runs if r.duration_s >= min_duration_s),
        breaches=len(runs),
    )


def _runs(t: FloatArray, temp: FloatArray, w: FloatArray, side: npt.NDArray[np.int8]) -> list[Excursion]:
    # Boundaries where the side changes; each run of nonzero side is a breach.
    edges = np.flatnonzero(np.diff(side)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [t.size]))
    out = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        s = int(side[a])
        if s == 0:
            continue
        seg = temp[a:b]
        out.append(
            Excursion(
                side="above" if s > 0 else "below",
                start_s=float(t[a]),
                end_s=float(t[b - 1] + w[b - 1]),
                duration_s=float(w[a:b].sum()),
                peak_c=float(seg.max() if s > 0 else seg.min()),
                ongoing=b == t.size,
            )
        )
    return out
