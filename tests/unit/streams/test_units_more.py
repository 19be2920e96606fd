"""Units SenML devices and HJ 212 stations send: pressure, speed, conductivity, noise."""

from __future__ import annotations

import pytest

from streams.units import converter


@pytest.mark.parametrize(
    ("unit", "target", "value", "expected"),
    [
        ("hPa", "hPa", 1013.2, 1013.2),
        ("Pa", "hPa", 101320.0, 1013.2),
        ("kPa", "hPa", 101.32, 1013.2),
        ("hPa", "kPa", 1013.2, 101.32),
        ("m/s", "m/s", 3.5, 3.5),
        ("uS/cm", "uS/cm", 250.0, 250.0),
        ("µS/cm", "uS/cm", 250.0, 250.0),
        ("dB", "dB", 55.1, 55.1),
    ],
)
def test_known_units_convert(unit: str, target: str, value: float, expected: float) -> None:
    convert = converter(unit, target)
    assert convert is not None
    assert convert(value) == pytest.approx(expected)


def test_pressure_is_not_a_speed() -> None:
    assert converter("hPa", "m/s") is None
