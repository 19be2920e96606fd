"""Unit spellings and conversions to a metric's canonical unit (pure).

Devices write units many ways (``µg/m³``, ``ug/m3``, ``°C``, ``degC``); ``canonical_unit``
folds the spellings, ``converter`` returns the affine function from one unit to another or
None when no conversion is known (the reading is then refused with that reason).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["canonical_unit", "converter"]

_SPELLINGS: dict[str, str] = {
    "ug/m3": "ug/m3", "µg/m3": "ug/m3", "μg/m3": "ug/m3", "µg/m³": "ug/m3", "μg/m³": "ug/m3",
    "ug/m³": "ug/m3", "ugm3": "ug/m3",
    "mg/m3": "mg/m3", "mg/m³": "mg/m3",
    "degc": "degC", "°c": "degC", "℃": "degC", "c": "degC", "celsius": "degC",
    "degf": "degF", "°f": "degF", "℉": "degF", "f": "degF", "fahrenheit": "degF",
    "k": "K", "kelvin": "K",
    "m": "m", "cm": "cm", "mm": "mm", "ft": "ft", "in": "in",
    "m3/s": "m3/s", "m³/s": "m3/s", "l/s": "L/s",
    "v": "V", "volt": "V",
    "%": "%", "%rh": "%", "rh%": "%",
    "mg/l": "mg/L", "ug/l": "ug/L", "µg/l": "ug/L", "μg/l": "ug/L",
    "ntu": "NTU", "ph": "pH",
    "pa": "Pa", "hpa": "hPa", "kpa": "kPa", "mbar": "hPa",
    "m/s": "m/s", "deg": "deg", "degree": "deg", "°": "deg",
    "us/cm": "uS/cm", "µs/cm": "uS/cm", "μs/cm": "uS/cm", "db": "dB", "db(a)": "dB",
}  # fmt: skip

Affine = tuple[float, float]  # value * a + b

_CONVERSIONS: dict[tuple[str, str], Affine] = {
    ("mg/m3", "ug/m3"): (1000.0, 0.0),
    ("ug/m3", "mg/m3"): (0.001, 0.0),
    ("degF", "degC"): (5.0 / 9.0, -32.0 * 5.0 / 9.0),
    ("K", "degC"): (1.0, -273.15),
    ("cm", "m"): (0.01, 0.0),
    ("mm", "m"): (0.001, 0.0),
    ("ft", "m"): (0.3048, 0.0),
    ("m", "mm"): (1000.0, 0.0),
    ("cm", "mm"): (10.0, 0.0),
    ("in", "mm"): (25.4, 0.0),
    ("L/s", "m3/s"): (0.001, 0.0),
    ("ug/L", "mg/L"): (0.001, 0.0),
    ("Pa", "hPa"): (0.01, 0.0),
    ("kPa", "hPa"): (10.0, 0.0),
    ("hPa", "kPa"): (0.1, 0.0),
    ("Pa", "kPa"): (0.001, 0.0),
}


def canonical_unit(unit: str) -> str | None:
    """The standard spelling of a unit, or None if it is not known."""
    return _SPELLINGS.get(unit.strip().lower().replace(" ", ""))


def converter(unit: str, target: str) -> Callable[[float], float] | None:
    """Function converting values in ``unit`` to ``target``; None if there is no known conversion."""
    source = canonical_unit(unit)
    goal = canonical_unit(target) or target
    if source is None:
        return None
    if source == goal:
        return _identity
    factors = _CONVERSIONS.get((source, goal))
    if factors is None:
        return None
    a, b = factors
    return lambda value: value * a + b


def _identity(value: float) -> float:
    return value
