"""Surface-water class by single-factor evaluation (GB 3838-2002 Table 1; MEE 环办[2011]22号).

Each parameter gets the best class whose limit it meets; the site class is the worst of the
assessed parameters (单因子评价). Worse than Class V is 劣V, class 6 here. Pure: no I/O.

Parameter names are the keys of :data:`LIMITS` (``nh3_n``, ``codmn``, ``tp`` ...); a few other
spellings used by devices (``nh3n``, ``codcr``, ``bod``) are accepted through :data:`ALIASES`,
and results are reported under the key the caller used.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "ALIASES",
    "ASSESSED",
    "DO_LIMITS",
    "DO_SATURATION_CLASS_I_PCT",
    "DO_SATURATION_KEY",
    "LABELS",
    "LAKE_TP_LIMITS",
    "LIMITS",
    "PH_RANGE",
    "QUALITY",
    "WORSE_THAN_V",
    "Quality",
    "WaterClassResult",
    "class_number",
    "exceedance_multiple",
    "parameter_class",
    "water_class",
]

WORSE_THAN_V = 6  # 劣V类
LABELS: tuple[str, ...] = ("I", "II", "III", "IV", "V", "劣V")  # index = class - 1


def class_number(value: object) -> int | None:
    """A target class as the registry stores it (``"III"``, ``"iv"`` or 3) as 1…5, else None."""
    if isinstance(value, str):
        label = value.strip().upper()
        value = LABELS.index(label) + 1 if label in LABELS[:5] else None
    if isinstance(value, int | float) and not isinstance(value, bool) and 1 <= value <= 5:
        return int(value)
    return None


# GB 3838-2002 Table 1, basic items: upper limits in mg/L (fecal coliform in count/L) for
# classes I..V. Water temperature (item 1) has no concentration limit and is not assessed.
LIMITS: Mapping[str, tuple[float, float, float, float, float]] = MappingProxyType({
    "codmn": (2, 4, 6, 10, 15),               # 4  permanganate index
    "cod": (15, 15, 20, 30, 40),              # 5  COD (CODCr)
    "bod5": (3, 3, 4, 6, 10),                 # 6  BOD5
    "nh3_n": (0.15, 0.5, 1.0, 1.5, 2.0),      # 7  ammonia nitrogen
    "tp": (0.02, 0.1, 0.2, 0.3, 0.4),         # 8  total phosphorus (as P), rivers
    "tn": (0.2, 0.5, 1.0, 1.5, 2.0),          # 9  total nitrogen (as N), lakes/reservoirs
    "cu": (0.01, 1.0, 1.0, 1.0, 1.0),         # 10 copper
    "zn": (0.05, 1.0, 1.0, 2.0, 2.0),         # 11 zinc
    "fluoride": (1.0, 1.0, 1.0, 1.5, 1.5),    # 12 fluoride (as F-)
    "se": (0.01, 0.01, 0.01, 0.02, 0.02),     # 13 selenium
    "as": (0.05, 0.05, 0.05, 0.1, 0.1),       # 14 arsenic
    "hg": (0.00005, 0.00005, 0.0001, 0.001, 0.001),  # 15 mercury
    "cd": (0.001, 0.005, 0.005, 0.005, 0.01),  # 16 cadmium
    "cr6": (0.01, 0.05, 0.05, 0.05, 0.1),     # 17 chromium (VI)
    "pb": (0.01, 0.01, 0.05, 0.05, 0.1),      # 18 lead
    "cn": (0.005, 0.05, 0.2, 0.2, 0.2),       # 19 cyanide
    "phenol": (0.002, 0.002, 0.005, 0.01, 0.1),  # 20 volatile phenol
    "oil": (0.05, 0.05, 0.05, 0.5, 1.0),      # 21 petroleum
    "las": (0.2, 0.2, 0.2, 0.3, 0.3),         # 22 anionic surfactant
    "sulfide": (0.05, 0.1, 0.2, 0.5, 1.0),    # 23 sulfide
    "fecal_coliform": (200, 2000, 10000, 20000, 40000),  # 24 count/L
})  # fmt: skip

# GB 3838-2002 Table 1 item 8, lakes and reservoirs column (replaces "tp" when lake=True).
LAKE_TP_LIMITS: tuple[float, float, float, float, float] = (0.01, 0.025, 0.05, 0.1, 0.2)

# GB 3838-2002 Table 1 item 3: dissolved oxygen lower limits (mg/L), classes I..V.
DO_LIMITS: tuple[float, float, float, float, float] = (7.5, 6, 5, 3, 2)
# Item 3, Class I alternative: "7.5 (or saturation 90 %)".
DO_SATURATION_CLASS_I_PCT = 90.0
DO_SATURATION_KEY = "do_sat"  # percent saturation; only ever lifts "do" to Class I

# GB 3838-2002 Table 1 item 2: pH 6-9 for all classes; outside counts as exceeding (-> 劣V).
PH_RANGE = (6.0, 9.0)

# 环办[2011]22号: the 21 basic items without water temperature, total nitrogen and fecal
# coliform, which are reported separately (their per-parameter class is still computed).
ASSESSED: frozenset[str] = frozenset({"ph", "do", *LIMITS} - {"tn", "fecal_coliform"})

ALIASES: Mapping[str, str] = MappingProxyType({
    "nh3n": "nh3_n", "nh4_n": "nh3_n", "codcr": "cod", "bod": "bod5", "cod_mn": "codmn",
    "f": "fluoride", "cr_vi": "cr6", "petroleum": "oil", "s2": "sulfide", "fc": "fecal_coliform",
    "dissolved_oxygen": "do",
})  # fmt: skip

# Floating-point guard only: 0.1 + 0.2 must still meet a 0.3 limit. Far below any lab precision.
_REL_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class Quality:
    """Qualitative label of a class (环办[2011]22号); colours are medium confidence."""

    zh: str
    en: str
    colour: str


# Index = class - 1: I and II share 优.
QUALITY: tuple[Quality, ...] = (
    Quality("优", "excellent", "blue"),
    Quality("优", "excellent", "blue"),
    Quality("良好", "good", "green"),
    Quality("轻度污染", "lightly polluted", "yellow"),
    Quality("中度污染", "moderately polluted", "orange"),
    Quality("重度污染", "heavily polluted", "red"),
)


@dataclass(frozen=True, slots=True)
class WaterClassResult:
    """Site class by single-factor evaluation.

    ``klass`` is 1..5 for Classes I..V and 6 for 劣V; ``deciding`` names the assessed parameters
    that have that class (in the caller's spelling, sorted); ``per_parameter`` holds the class of
    every recognised parameter given, assessed or not; ``unassessed`` lists the given keys that did
    not count toward ``klass`` (unknown, or reported separately such as ``tn``).
    """

    klass: int
    deciding: tuple[str, ...]
    per_parameter: Mapping[str, int] = field(hash=False)
    unassessed: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """ "I".."V" or "劣V"."""
        return LABELS[self.klass - 1]

    @property
    def quality(self) -> Quality:
        """优 / 良好 / 轻度污染 / 中度污染 / 重度污染."""
        return QUALITY[self.klass - 1]

    @property
    def wording(self) -> str:
        """Report wording: "符合III类" or "劣于V类"."""
        return "劣于V类" if self.klass == WORSE_THAN_V else f"符合{self.label}类"

    def worse_than(self, target: int) -> bool:
        """True if the site misses its target class (1..5), e.g. a Class III water body."""
        if not 1 <= target <= WORSE_THAN_V:
            raise ValueError(f"target class must be 1..6, not {target}")
        return self.klass > target


def _le(value: float, limit: float) -> bool:
    return value <= limit or math.isclose(value, limit, rel_tol=_REL_TOL)


def parameter_class(name: str, value: float, *, lake: bool = False) -> int:
    """Class 1..6 of one parameter (canonical name or alias); boundary values belong to the class."""
    key = ALIASES.get(name, name)
    if not math.isfinite(value):
        raise ValueError(f"{name}: value must be finite, not {value}")
    if key == "ph":
        low, high = PH_RANGE
        return 1 if low <= value <= high else WORSE_THAN_V
    if key == "do":
        return next((k for k, lim in enumerate(DO_LIMITS, 1) if _le(lim, value)), WORSE_THAN_V)
    limits = LAKE_TP_LIMITS if key == "tp" and lake else LIMITS.get(key)
    if limits is None:
        raise KeyError(f"{name}: not a GB 3838-2002 Table 1 basic item")
    # The best class wins where classes share a limit (COD 15 is Class I, not II).
    return next((k for k, lim in enumerate(limits, 1) if _le(value, lim)), WORSE_THAN_V)


def exceedance_multiple(name: str, value: float, *, lake: bool = False) -> float | None:
    """超标倍数 (C - C_III) / C_III against the Class III limit, or None if not above it.

    Not defined for pH or dissolved oxygen (None); KeyError for unknown parameters.
    """
    key = ALIASES.get(name, name)
    if key in ("ph", "do"):
        return None
    limits = LAKE_TP_LIMITS if key == "tp" and lake else LIMITS.get(key)
    if limits is None:
        raise KeyError(f"{name}: not a GB 3838-2002 Table 1 basic item")
    c3 = limits[2]
    return (value - c3) / c3 if not _le(value, c3) else None


def _known(key: str) -> bool:
    return key in ("ph", "do") or key in LIMITS


def water_class(
    values: Mapping[str, float],
    *,
    lake: bool = False,
    assessed: Collection[str] = ASSESSED,
) -> WaterClassResult:
    """Site class of one sample set: the worst class among the assessed parameters.

    ``lake`` selects the lake/reservoir TP column. ``assessed`` (canonical names) may be widened,
    e.g. ``ASSESSED | {"tn"}`` for a lake report that grades TN too. ``do_sat`` (percent) lifts
    ``do`` to Class I at >= 90 %. Raises ValueError if no assessed parameter is present or a value
    is not finite.
    """
    per: dict[str, int] = {}
    ignored: list[str] = []
    canonical: dict[str, str] = {}
    for name, value in values.items():
        key = ALIASES.get(name, name)
        if not _known(key):
            ignored.append(name)
            continue
        per[name] = parameter_class(key, value, lake=lake)
        canonical[name] = key
    sat = values.get(DO_SATURATION_KEY)
    if sat is not None and math.isfinite(sat) and sat >= DO_SATURATION_CLASS_I_PCT:
        for name, key in canonical.items():
            if key == "do":
                per[name] = 1
    counted = {name: k for name, k in per.items() if canonical[name] in assessed}
    ignored.extend(name for name in per if name not in counted)
    if not counted:
        raise ValueError(f"no assessed GB 3838 parameter among {sorted(values)}")
    worst = max(counted.values())
    deciding = tuple(sorted(name for name, k in counted.items() if k == worst))
    return WaterClassResult(worst, deciding, MappingProxyType(per), tuple(sorted(ignored)))
