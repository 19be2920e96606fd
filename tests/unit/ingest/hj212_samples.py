"""HJ 212 frames for the decoder tests: the verified frames of ``specs/protocols.md`` §1, and helpers.

Every frame is quoted as the spec and its source print it (length field and CRC included);
the tests recompute both with ``reference_crc16``, the spec's own 10-line algorithm, kept
here apart from the implementation under test.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from stationflow.contracts import DeviceRecord, Hj212Link, MetricSpec, StationInfo


def reference_crc16(data: bytes) -> int:
    """HJ 212 Appendix A CRC, verbatim from protocols.md §1.5 (independent of ingest.decoders)."""
    reg = 0xFFFF
    for b in data:
        reg = (reg >> 8) ^ b
        for _ in range(8):
            lsb = reg & 1
            reg >>= 1
            if lsb:
                reg ^= 0xA001
    return reg


def reference_modbus(data: bytes) -> int:
    """Textbook bitwise CRC-16/MODBUS."""
    reg = 0xFFFF
    for b in data:
        reg ^= b
        for _ in range(8):
            lsb = reg & 1
            reg >>= 1
            if lsb:
                reg ^= 0xA001
    return reg


def build(segment: str, crc: str = "hj212", *, length: int | None = None, tail: bytes = b"\r\n") -> bytes:
    """A frame around ``segment`` with a correct CRC (reference implementations) and tail."""
    data = segment.encode()
    value = reference_crc16(data) if crc == "hj212" else reference_modbus(data)
    if crc == "modbus_swapped":
        value = ((value & 0xFF) << 8) | (value >> 8)
    size = len(data) if length is None else length
    return b"##%04d%s%04X%s" % (size, data, value, tail)


# 1.6-A: the standard's own example (set real-time interval); 1C80 [STD, VER]
FRAME_A = (
    b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&RtdInterval=30&&1C80\r\n"
)
# 1.6-B: ambient-air minute data (Go parse_test.go); D641
FRAME_B = (
    b"##0411QN=20220513162608370;ST=22;CN=2051;PW=123456;MN=JLYP01_AIR01_0001;Flag=4;CP=&&DataTime=20220513162600;"
    b"a21004-Avg=4,a21004-Flag=N;a05024-Avg=63,a05024-Flag=N;a21026-Avg=6,a21026-Flag=N;a21005-Avg=0.427,a21005-Flag=N;"
    b"a34004-Avg=14,a34004-Flag=N;a34002-Avg=31,a34002-Flag=N;a01007-Avg=1,a01007-Flag=N;a01008-Avg=11,a01008-Flag=N;"
    b"a01001-Avg=17,a01001-Flag=N;a01002-Avg=85,a01002-Flag=N;a01006-Avg=95,a01006-Flag=N&&D641\r\n"
)
# 1.6-C: waste-water real-time data with Flag=5 (tracy4262/hj212 App.java, the full text the
# spec abbreviates with "..."); A141
FRAME_C = (
    b"##0354QN=20230803171130538;ST=31;CN=2011;PW=123456;MN=88888880000001234567;Flag=5;CP=&&DataTime=20230803165500;"
    b"w01001-Rtd=0.000,w01001-Flag=N;w21003-Rtd=0.000,w21003-Flag=N;w01018-Rtd=0.000,w01018-Flag=N;"
    b"e01002-Rtd=0.000,e01002-Flag=N;w01010-Rtd=0.000,w01010-Flag=N;e01001-Rtd=0.000,e01001-Flag=N;"
    b"w01003-Rtd=0.000,w01003-Flag=N;w21011-Rtd=0.000,w21011-Flag=N&&A141\r\n"
)
# 1.6-C: the 9014 the platform answers to FRAME_C; 5D80
ACK_C = b"##0083QN=20230803171130538;ST=91;CN=9014;PW=123456;MN=88888880000001234567;Flag=4;CP=&&&&5D80\r\n"
# 1.6-D: HJ/T 212-2005 minute data, no QN, no Flag, 3-digit codes (PHP comment, full text); 7640
FRAME_D = (
    b"##0245ST=32;CN=2051;PW=123456;MN=12091200160055;CP=&&DataTime=20150430135700;"
    b"B01-Min=895.13,B01-Avg=909.87,B01-Max=932.28,B01-Cou=54.59;011-Min=999.99,011-Avg=999.99,011-Max=999.99,"
    b"011-Cou=54.59;060-Min=30.18,060-Avg=30.18,060-Max=30.18,060-Cou=1.65&&7640\r\n"
)
# 1.5 #5: noise real-time data, Hutool CRC16Test vector (note the space in "; LA-Rtd"); 1E00
FRAME_NOISE = (
    b"##0123QN=20160801085857223;ST=23;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&DataTime=20160801085857; LA-Rtd=50.1&&1E00\r\n"
)
# 1.5 #6: PNO/PNUM without Flag (PNO before PNUM), Java sample; 2800
FRAME_PNO = (
    b"##0204QN=20191112091100598;ST=31;CN=2051;PW=123456;MN=14513567846884;PNO=0002;PNUM=0002;"
    b"CP=&&DataTime=20191112090000;a01006-Avg=101.85,a01006-Min=101.84,a01006-Max=101.87,"
    b"a01006-ValidNum=10,a01006-TotalNum=10&&2800\r\n"
)
# 1.5 #7: 2005-style 9013 with plain Modbus CRC (linqiu126/hcu test data); 1CBA
FRAME_9013_MODBUS = (
    b"##0076ST=91;CN=9013;PW=123456;MN=ABCDEFG1234567;Flag=0;CP=&&QN=20170516010101001&&1CBA\r\n"
)
# 1.5 #8: README sample of xiaoyao9184/hj-t212-parser; its CRC matches no variant (sample edited)
FRAME_EDITED = (
    b"##0136ST=32;CN=2011;PW=123456;MN=LD130133000015;CP=&&DataTime=20160824003817;B01-Rtd=36.91;"
    b"011-Rtd=231.0,011-Flag=N;060-Rtd=1.803,060-Flag=N&&4980\r\n"
)
# Same hcu test set: a 2005 request with Modbus CRC, answered by FRAME_9013_MODBUS; E476
FRAME_1072_MODBUS = (
    b"##0086QN=20170516010101001;ST=22;CN=1072;PW=123456;MN=ABCDEFG1234567;Flag=3;CP=&&PW=654321&&E476\r\n"
)
# Real-world sample with a lowercase CRC (same Java file as FRAME_PNO); cc01
FRAME_LOWERCASE = (
    b"##0317QN=20191012133710130;ST=22;CN=2011;PW=123456;MN=Y80110010000010;Flag=4;CP=&&DataTime=20191012133710;"
    b"a21005-Rtd=0.00,a21005-Flag=N;a21004-Rtd=0.00,a21004-Flag=N;a21007-Rtd=0.033,a21007-Flag=N;"
    b"a21006-Rtd=0.036,a21006-Flag=N;a21001-Rtd=25.40,a21001-Flag=N;a21003-Rtd=101.94,a21003-Flag=N;"
    b"a21002-Rtd=49.20,a21002-Flag=N&&cc01\r\n"
)
# 2005 real-time data with flags (same PHP file as FRAME_D); F881
FRAME_2005_RTD = (
    b"##0149ST=32;CN=2011;PW=123456;MN=12091200160055;CP=&&DataTime=20150430135830;"
    b"B01-Rtd=880.17,B01-Flag=N;011-Rtd=999.99,011-Flag=N;060-Rtd=30.18,060-Flag=N&&F881\r\n"
)

# name → (frame, CRC variant it carries): every frame of §1 whose length and CRC were verified
VERIFIED = {
    "A": (FRAME_A, "hj212"),
    "B": (FRAME_B, "hj212"),
    "C": (FRAME_C, "hj212"),
    "C-ack": (ACK_C, "hj212"),
    "D": (FRAME_D, "hj212"),
    "noise": (FRAME_NOISE, "hj212"),
    "pno": (FRAME_PNO, "hj212"),
    "9013-modbus": (FRAME_9013_MODBUS, "modbus"),
    "1072-modbus": (FRAME_1072_MODBUS, "modbus"),
    "lowercase": (FRAME_LOWERCASE, "hj212"),
    "2005-rtd": (FRAME_2005_RTD, "hj212"),
}

_T0 = datetime(2026, 11, 30, tzinfo=UTC)


def record(metrics: Mapping[str, tuple[str, str | None]], *, mn: str = "MN1", **link: object) -> DeviceRecord:
    """A registered HJ 212 device whose type has ``metrics`` (name → (unit, hj212 code))."""
    return DeviceRecord(
        device_id="st-1",
        device_type="test-type",
        domain="air",
        station=StationInfo(station_id="s1", name="S1"),
        metrics={
            name: MetricSpec(metric=name, unit=unit, hj212_code=code)
            for name, (unit, code) in metrics.items()
        },
        protocol="hj212",
        hj212=Hj212Link(mn=mn, **link),
        updated_at=_T0,
    )


AIR = {
    "no2": ("ug/m3", "a21004"),
    "o3": ("ug/m3", "a05024"),
    "so2": ("ug/m3", "a21026"),
    "co": ("mg/m3", "a21005"),
    "pm25": ("ug/m3", "a34004"),
    "pm10": ("ug/m3", "a34002"),
    "wind_speed": ("m/s", "a01007"),
    "wind_dir": ("deg", "a01008"),
    "temperature": ("degC", "a01001"),
    "humidity": ("%", "a01002"),
    "pressure": ("kPa", "a01006"),
}
WATER = {
    "ph": ("pH", "w01001"),
    "nh3n": ("mg/L", "w21003"),
    "cod": ("mg/L", "w01018"),
    "water_temp": ("degC", "w01010"),
    "turbidity": ("NTU", "w01003"),
    "tp": ("mg/L", "w21011"),
}
