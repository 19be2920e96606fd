"""HJ 212 code tables: 2005 → 2017 pollutant code aliases, data flags, common 2017 codes.

Units are never transmitted in HJ 212; a reading's unit comes from the device type's
``MetricSpec``. ``CODES_2017`` only documents the usual meaning and unit of the codes our
catalog uses (ambient stations send PM, SO2, NO2 and O3 in µg/m³ although the 2017 appendix,
written for emission sources, prints ng/m³ or mg/m³; see ``specs/protocols.md`` §1.10).
"""

from __future__ import annotations

from typing import Final

from stationflow.contracts import Quality

__all__ = [
    "ALIASES_2005",
    "CODES_2017",
    "FLAG_QUALITY",
    "canonical_code",
    "quality_of_flag",
]

# HJ/T 212-2005 code → HJ 212-2017 code, from the "原编码" (old code) column of the 2017
# appendix (Tables B.1, B.2). The first block is the list checked in the standard's text
# (protocols.md §1.10 [STD]); the rest is the same column as typed into the code tables of
# xiaoyao9184/hj-t212-parser (PollutionGas / PollutionWater) [IMPL]. Air codes are two
# characters, water codes three: the two sets cannot collide.
ALIASES_2005: Final[dict[str, str]] = {
    # water [STD]
    "B01": "w00000",  # waste-water flow
    "001": "w01001",  # pH
    "003": "w01012",  # suspended solids
    "011": "w01018",  # COD
    "060": "w21003",  # ammonia nitrogen
    "065": "w21001",  # total nitrogen
    "101": "w21011",  # total phosphorus
    # air / flue gas [STD]
    "B02": "a00000",  # flue-gas flow
    "01": "a34013",  # smoke / dust
    "02": "a21026",  # SO2
    "03": "a21002",  # NOx
    "04": "a21005",  # CO
    "S01": "a19001",  # O2 content
    "S02": "a01011",  # flue-gas velocity
    "S03": "a01012",  # flue-gas temperature
    "S05": "a01014",  # flue-gas humidity
    "S08": "a01013",  # flue-gas pressure
    # water [IMPL]
    "002": "w01002",  # colour
    "010": "w01017",  # BOD5
    "015": "w01020",  # TOC
    "020": "w20111",  # total mercury
    "022": "w20115",  # total cadmium
    "023": "w20116",  # total chromium
    "024": "w20117",  # hexavalent chromium
    "026": "w20119",  # total arsenic
    "027": "w20120",  # total lead
    "028": "w20121",  # total nickel
    "029": "w20122",  # total copper
    "030": "w20123",  # total zinc
    "062": "w21004",  # Kjeldahl nitrogen
    "063": "w21006",  # nitrite
    "064": "w21007",  # nitrate
    "070": "w21016",  # cyanide
    "071": "w21019",  # sulphide
    "072": "w21017",  # fluoride
    "080": "w22001",  # petroleum oils
    "090": "w21022",  # chloride
    "110": "w23002",  # volatile phenol
    # air [IMPL]
    "05": "a21028",  # H2S
    "06": "a21018",  # fluoride
    "07": "a21017",  # cyanide
    "08": "a21024",  # HCl
    "10": "a21001",  # ammonia
    "30": "a05001",  # CO2
    "S04": "a01017",  # flue-gas dynamic pressure
    "S06": "a01015",  # cooling temperature
    "S07": "a01016",  # flue cross-section
}

# 2017 codes our catalog uses: code → (meaning, unit as stations send it in practice).
CODES_2017: Final[dict[str, tuple[str, str]]] = {
    "a34004": ("PM2.5", "ug/m3"),
    "a34002": ("PM10", "ug/m3"),
    "a34001": ("TSP", "ug/m3"),
    "a34005": ("PM1.0", "ug/m3"),
    "a21026": ("SO2", "ug/m3"),
    "a21004": ("NO2", "ug/m3"),
    "a21003": ("NO", "ug/m3"),
    "a21002": ("NOx", "ug/m3"),
    "a21005": ("CO", "mg/m3"),
    "a05024": ("O3", "ug/m3"),
    "a19001": ("O2 content", "%"),
    "a34013": ("smoke / dust", "mg/m3"),
    "a24088": ("non-methane hydrocarbons", "mg/m3"),
    "a00000": ("flue-gas flow", "m3/s"),
    "a01001": ("air temperature", "degC"),
    "a01002": ("relative humidity", "%"),
    "a01006": ("air pressure", "kPa"),
    "a01007": ("wind speed", "m/s"),
    "a01008": ("wind direction", "deg"),
    "w00000": ("waste-water flow", "L/s"),
    "w01001": ("pH", "pH"),
    "w01003": ("turbidity", "NTU"),
    "w01009": ("dissolved oxygen", "mg/L"),
    "w01010": ("water temperature", "degC"),
    "w01012": ("suspended solids", "mg/L"),
    "w01014": ("conductivity", "uS/cm"),
    "w01018": ("COD", "mg/L"),
    "w01019": ("permanganate index", "mg/L"),
    "w01020": ("TOC", "mg/L"),
    "w21001": ("total nitrogen", "mg/L"),
    "w21003": ("ammonia nitrogen", "mg/L"),
    "w21011": ("total phosphorus", "mg/L"),
    "LA": ("A-weighted sound level", "dB"),
    "Leq": ("equivalent sound level", "dB"),
}

# Data flag → reading quality. 2017 letters (Table 8) map to themselves; 2005 adds P (power
# failure, 2017 calls it B, communication failure) and the digits ambient-air stations used:
# 0 calibration data, 1 meteorological parameter (a normal value), 2 abnormal, 3 normal.
FLAG_QUALITY: Final[dict[str, Quality]] = {
    **{q.value: q for q in Quality},
    "P": Quality.COMM_ERROR,
    "0": Quality.CALIBRATION,
    "1": Quality.NORMAL,
    "2": Quality.FAULT,
    "3": Quality.NORMAL,
}


def canonical_code(code: str) -> str:
    """The 2017 code of a pollutant code (2005 codes translated, others unchanged)."""
    return ALIASES_2005.get(code, code)


def quality_of_flag(flag: str) -> Quality | None:
    """The reading quality of a data flag (2017 or 2005, case-insensitive); None if unknown."""
    text = flag.strip()
    return FLAG_QUALITY.get(text) or FLAG_QUALITY.get(text.upper())
