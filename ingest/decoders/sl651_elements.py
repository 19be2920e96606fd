"""SL 651-2014 element identifiers (Appendix C): the HEX guide byte ↔ the ASCII identifier.

The guide byte precedes each element in HEX/BCD bodies; ASCII bodies write the identifier.
Units are the standard's (``specs/protocols.md`` §2.9): rainfall mm, levels m, flows m³/s,
velocities m/s, voltage V. A device type maps identifiers to its metrics through
``MetricSpec.sl651_code``; this table only names what is on the wire.

Special guides handled by the parser itself, not by this table's value decoding:

* ``F0`` observation time (``TT``), ``F1`` station address (``ST``), ``F2`` manual data,
  ``F3`` picture, ``04`` time step (``DRxnn``), ``FF`` extended identifier (3 bytes);
* ``F4`` ``DRP`` and ``F5``..``FC`` ``DRZ1``..``DRZ8`` (HEX series of 12 five-minute values);
* ``45`` ``ZT`` status and alarm word (4 bytes HEX, not BCD).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DRP_GUIDE",
    "DRZ_GUIDES",
    "GUIDE_NAMES",
    "HEX_GUIDES",
    "NAME_GUIDES",
    "RAIN_SOURCES",
    "guide_name",
]


def _numbered(first: int, prefix: str, count: int) -> dict[int, str]:
    return {first + i: f"{prefix}{i + 1}" for i in range(count)}


GUIDE_NAMES: Final[dict[int, str]] = {
    0x01: "AC",  # cross-section area, m²
    0x02: "AI",  # instantaneous air temperature, °C
    0x03: "C",  # instantaneous water temperature, °C
    0x05: "DT",  # period length (HH.mm)
    0x06: "ED",  # daily evaporation, mm
    0x07: "EJ",  # current evaporation, mm
    0x08: "FL",  # air pressure, hPa
    0x09: "GH",  # gate opening height, m
    0x0A: "GN",  # gate (group) number
    0x0B: "GS",  # water-conveyance equipment class
    0x0C: "GT",  # number of open gates
    0x0D: "GTP",  # ground temperature, °C
    0x0E: "H",  # groundwater depth, m
    0x0F: "HW",  # wave height, m
    0x10: "M10",  # soil moisture at 10 cm, %
    0x11: "M20",
    0x12: "M30",
    0x13: "M40",
    0x14: "M50",
    0x15: "M60",
    0x16: "M80",
    0x17: "M100",
    0x18: "MST",  # humidity, %
    0x19: "NS",  # number of running units
    0x1A: "P1",  # 1-hour period rainfall, mm
    0x1B: "P2",
    0x1C: "P3",
    0x1D: "P6",
    0x1E: "P12",
    0x1F: "PD",  # daily rainfall (08:00 → 08:00), mm
    0x20: "PJ",  # rainfall since the start of the hydrological day, mm
    0x21: "PN01",  # 1-minute period rainfall, mm
    0x22: "PN05",
    0x23: "PN10",
    0x24: "PN30",
    0x25: "PR",  # rainstorm amount, mm
    0x26: "PT",  # accumulated rainfall counter, mm
    0x27: "Q",  # instantaneous discharge, m³/s
    **_numbered(0x28, "Q", 8),  # Q1..Q8 intake/outfall flows
    0x30: "QA",  # total outflow, m³/s
    0x31: "QZ",  # gate-group flow, m³/s
    0x32: "SW",  # sediment transport, 10⁴ t
    0x33: "UC",  # wind direction
    0x34: "UE",  # wind force (grade)
    0x35: "US",  # wind speed, m/s
    0x36: "VA",  # section mean velocity, m/s
    0x37: "VJ",  # current point velocity, m/s
    0x38: "VT",  # supply voltage, V
    0x39: "Z",  # instantaneous river stage / tide level, m
    0x3A: "ZB",  # downstream level, m
    0x3B: "ZU",  # upstream level, m
    **_numbered(0x3C, "Z", 8),  # Z1..Z8 intake/outfall levels
    0x44: "SQ",  # sediment concentration, kg/m³
    0x45: "ZT",  # status and alarm word (HEX)
    0x46: "pH",
    0x47: "DO",  # dissolved oxygen, mg/L
    0x48: "COND",  # conductivity, µS/cm
    0x49: "TURB",  # turbidity
    0x4A: "CODMN",  # permanganate index, mg/L
    0x4B: "REDOX",  # redox potential, mV
    0x4C: "NH4N",  # ammonia nitrogen, mg/L
    0x4D: "TP",  # total phosphorus, mg/L
    0x4E: "TN",  # total nitrogen, mg/L
    0x4F: "TOC",  # total organic carbon, mg/L
    0x50: "CU",
    0x51: "ZN",
    0x52: "SE",
    0x53: "AS",
    0x54: "THG",
    0x55: "CD",
    0x56: "PB",
    0x57: "CHLA",  # chlorophyll a, mg/L
    **_numbered(0x58, "WP", 8),  # water pressure 1..8, kPa
    **_numbered(0x60, "SYL", 8),  # water meter remaining volume 1..8, m³
    **_numbered(0x68, "SBL", 8),  # water meter hourly volume 1..8, m³/h
    0x70: "VTA",  # AC phase voltages, V
    0x71: "VTB",
    0x72: "VTC",
    0x73: "VIA",  # AC phase currents, A
    0x74: "VIB",
    0x75: "VIC",
    0xF4: "DRP",  # 12 × 5-minute rainfall, HEX 0.1 mm
    **{0xF5 + i: f"DRZ{i + 1}" for i in range(8)},  # 12 × 5-minute relative level, HEX cm
}

NAME_GUIDES: Final[dict[str, int]] = {name: guide for guide, name in GUIDE_NAMES.items()}
DRP_GUIDE: Final = 0xF4
DRZ_GUIDES: Final[frozenset[int]] = frozenset(range(0xF5, 0xFD))
# Elements whose data is binary (HEX), not BCD.
HEX_GUIDES: Final[frozenset[int]] = frozenset({0x45, DRP_GUIDE, *DRZ_GUIDES})
# Where the increment metric "rain" comes from, finest first; only one of them per report.
RAIN_SOURCES: Final[tuple[str, ...]] = ("DRP", "PN05", "PN10", "PN30", "PN01", "P1")


def guide_name(guide: int) -> str | None:
    """The ASCII identifier of a standard guide byte, or None if the standard has none."""
    return GUIDE_NAMES.get(guide)
