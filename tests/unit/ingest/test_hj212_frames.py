"""HJ 212 CRC, frame parser, deviations and reply encoders against the verified frames of protocols.md §1."""

from __future__ import annotations

from datetime import datetime

import pytest

from ingest.decoders import hj212
from tests.unit.ingest.hj212_samples import (
    ACK_C,
    FRAME_1072_MODBUS,
    FRAME_9013_MODBUS,
    FRAME_A,
    FRAME_C,
    FRAME_D,
    FRAME_EDITED,
    FRAME_LOWERCASE,
    FRAME_PNO,
    VERIFIED,
    build,
    reference_crc16,
    reference_modbus,
)


def _envelope(frame: bytes) -> tuple[bytes, int, int]:
    """(segment, declared length, CRC) read straight from the bytes, as the spec describes them."""
    return frame[6:-6], int(frame[2:6]), int(frame[-6:-2], 16)


@pytest.mark.parametrize("name", list(VERIFIED))
def test_verified_frame_length_and_crc_recomputed(name: str) -> None:
    frame, variant = VERIFIED[name]
    segment, declared, printed = _envelope(frame)
    assert declared == len(segment)
    expected = hj212.crc16(segment) if variant == "hj212" else hj212.crc16_modbus(segment)
    assert expected == printed
    reference = reference_crc16(segment) if variant == "hj212" else reference_modbus(segment)
    assert expected == reference
    parsed = hj212.parse_frame(frame)
    assert parsed.crc_variant == variant
    assert parsed.segment.encode() == segment
    assert parsed.raw == frame


def test_crc_check_values() -> None:
    """Check values of §1.5 and the table of the verified frames (HJ 212 vs Modbus column)."""
    assert hj212.crc16(b"123456789") == 0x2F80
    assert hj212.crc16_modbus(b"123456789") == 0x4B37
    assert hj212.crc_of(b"123456789", "modbus_swapped") == 0x374B
    table = {FRAME_A: (0x1C80, 0x0759), FRAME_C: (0xA141, 0x4AC8), FRAME_D: (0x7640, 0x3F69)}
    for frame, (std, modbus) in table.items():
        segment = _envelope(frame)[0]
        assert (hj212.crc16(segment), hj212.crc16_modbus(segment)) == (std, modbus)


def test_standard_crc_low_byte_is_one_of_eight_values() -> None:
    """§1.5: only 8 low bytes are possible for the standard's CRC (a cheap variant tell)."""
    lows = {hj212.crc16(bytes([a, b])) & 0xFF for a in range(256) for b in range(0, 256, 7)}
    assert lows <= {0x00, 0x01, 0x40, 0x41, 0x80, 0x81, 0xC0, 0xC1}


def test_frame_a_fields() -> None:
    frame = hj212.parse_frame(FRAME_A)
    assert (frame.qn, frame.st, frame.cn, frame.pw, frame.mn) == (
        "20160801085857223",
        "32",
        "1062",
        "100000",
        "010000A8900016F000169DC0",
    )
    assert (frame.flag, frame.version, frame.need_ack, frame.pnum, frame.pno) == (5, 1, True, None, None)
    assert frame.cp == "RtdInterval=30"
    assert frame.deviations == ()


def test_frame_d_is_2005_without_qn_or_flag() -> None:
    frame = hj212.parse_frame(FRAME_D)
    assert (frame.qn, frame.flag, frame.version, frame.need_ack) == (None, None, 0, False)
    assert frame.mn == "12091200160055"
    assert frame.cp.startswith("DataTime=20150430135700;B01-Min=895.13")
    assert frame.deviations == ()


def test_pno_without_flag_is_a_deviation() -> None:
    frame = hj212.parse_frame(FRAME_PNO)
    assert (frame.pnum, frame.pno, frame.flag) == (2, 2, None)
    assert frame.deviations == ("pno_without_flag_d",)


def test_edited_sample_is_refused_with_the_crcs_it_should_have() -> None:
    with pytest.raises(hj212.Hj212Error) as info:
        hj212.parse_frame(FRAME_EDITED)
    assert info.value.code == "hj212_crc"
    assert (
        "4980" in info.value.reason
        and "hj212 3C00" in info.value.reason
        and "modbus 522B" in info.value.reason
    )


@pytest.mark.parametrize("variant", hj212.CRC_VARIANTS)
def test_each_crc_variant_recognised_and_pinnable(variant: hj212.CrcVariant) -> None:
    segment = _envelope(FRAME_A)[0].decode()
    frame_bytes = build(segment, variant)
    assert hj212.parse_frame(frame_bytes).crc_variant == variant
    assert hj212.parse_frame(frame_bytes, crc=variant).crc_variant == variant
    for other in hj212.CRC_VARIANTS:
        if other != variant:
            with pytest.raises(hj212.Hj212Error, match="hj212_crc"):
                hj212.parse_frame(frame_bytes, crc=other)


def test_corrupted_byte_fails_crc() -> None:
    bad = FRAME_C.replace(b"w01001-Rtd=0.000", b"w01001-Rtd=9.000")
    with pytest.raises(hj212.Hj212Error) as info:
        hj212.parse_frame(bad)
    assert info.value.code == "hj212_crc"


# -- deviations seen in real device logs: accepted and named; strict mode refuses each --------

_SEG = (
    "QN=20240101120000000;ST=22;CN=2011;PW=123456;MN=AIR01;Flag=4;"
    "CP=&&DataTime=20240101120000;a34004-Rtd=35&&"
)
_LONG_CP = ";".join(f"a{n:05d}-Avg={n}.5,a{n:05d}-Flag=N" for n in range(60))


def _lower_crc(frame: bytes) -> bytes:
    return frame[:-6] + frame[-6:-2].lower() + frame[-2:]


DEVIATION_CASES = {
    "length_8_digits": b"##0000" + build(_SEG)[2:],
    "segment_over_1024": build(
        f"QN=20240101120000000;ST=22;CN=2051;PW=1;MN=AIR01;Flag=4;CP=&&DataTime=20240101120000;{_LONG_CP}&&"
    ),
    "qn_epoch_ms": build(_SEG.replace("QN=20240101120000000", "QN=1704110400000")),
    "mn_before_pw": build(_SEG.replace("PW=123456;MN=AIR01", "MN=AIR01;PW=123456")),
    "cp_unclosed": build(_SEG[:-2]),
    "crc_lowercase": _lower_crc(
        build("QN=20240101120000000;ST=22;CN=2011;PW=123456;MN=AIR01;Flag=4;CP=&&a=1&&")
    ),
    "no_crlf": build(_SEG, tail=b""),
    "length_char_count": build(
        "QN=20240101120000000;ST=22;CN=3020;PW=123456;MN=AIR01;Flag=4;CP=&&i11001-Info=//仪器故障//&&",
        length=len(
            "QN=20240101120000000;ST=22;CN=3020;PW=123456;MN=AIR01;Flag=4;CP=&&i11001-Info=//仪器故障//&&"
        ),
    ),
    "length_mismatch": build(_SEG, length=len(_SEG) + 3),
    "qn_missing": build(_SEG.replace("QN=20240101120000000;", "")),
    "header_comma": build(_SEG.replace("QN=20240101120000000;ST", "QN=20240101120000000,ST")),
    "cp_no_separator": build(_SEG.replace("Flag=4;CP=", "Flag=4CP=")),
    "header_order": build(_SEG.replace("ST=22;CN=2011", "CN=2011;ST=22")),
}


def test_crc_lowercase_case_really_has_a_letter() -> None:
    frame = DEVIATION_CASES["crc_lowercase"]
    assert frame[-6:-2] != frame[-6:-2].upper()


@pytest.mark.parametrize("deviation", list(DEVIATION_CASES))
def test_deviation_accepted_and_recorded(deviation: str) -> None:
    frame = hj212.parse_frame(DEVIATION_CASES[deviation])
    assert deviation in frame.deviations
    assert frame.cn in {"2011", "2051", "3020"}


@pytest.mark.parametrize("deviation", list(DEVIATION_CASES))
def test_strict_mode_refuses_deviation_with_reason(deviation: str) -> None:
    with pytest.raises(hj212.Hj212Error) as info:
        hj212.parse_frame(DEVIATION_CASES[deviation], strict=True)
    assert info.value.code == "hj212_deviation"
    assert deviation in info.value.reason


def test_real_lowercase_sample() -> None:
    frame = hj212.parse_frame(FRAME_LOWERCASE)
    assert frame.deviations == ("crc_lowercase",)
    assert frame.mn == "Y80110010000010"


def test_deviation_values_still_right() -> None:
    assert hj212.parse_frame(DEVIATION_CASES["cp_unclosed"]).cp == "DataTime=20240101120000;a34004-Rtd=35"
    assert hj212.parse_frame(DEVIATION_CASES["length_8_digits"]).cp.endswith("a34004-Rtd=35")
    moved = hj212.parse_frame(DEVIATION_CASES["mn_before_pw"])
    assert (moved.pw, moved.mn) == ("123456", "AIR01")
    assert hj212.parse_frame(DEVIATION_CASES["cp_no_separator"]).flag == 4
    assert hj212.parse_frame(DEVIATION_CASES["header_comma"]).st == "22"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(b"#0101" + FRAME_A[6:], "hj212_format", id="one-hash"),
        pytest.param(b"##101QN" + FRAME_A[7:], "hj212_length", id="3-digit-length"),
        pytest.param(b"##0101QN=1&&", "hj212_format", id="no-crc"),
        pytest.param(
            build("QN=20240101120000000;ST=22;PW=1;MN=A;Flag=4;CP=&&&&"), "hj212_format", id="no-cn"
        ),
        pytest.param(
            build("QN=20240101120000000;ST=22;CN=2011;PW=1;MN=A;Flag=4"), "hj212_format", id="no-cp"
        ),
        pytest.param(build("ST=22;CN=2011;MN=A;Flag=x;CP=&&&&"), "hj212_format", id="bad-flag"),
        pytest.param(build("ST=22;CN=2011;MN=A;Flag=6;PNUM=2;CP=&&&&"), "hj212_format", id="pnum-alone"),
        pytest.param(build("ST=22;CN=2011;MN=A;Flag=6;PNUM=2;PNO=3;CP=&&&&"), "hj212_format", id="pno>pnum"),
        pytest.param(build("ST=22;CN=2011;MN=A;MN=B;CP=&&&&"), "hj212_format", id="twice"),
        pytest.param(b"##0008" + b"\xff\xfe" * 4 + b"0000\r\n", "hj212_crc", id="binary"),
    ],
)
def test_malformed_frames_refused(frame: bytes, code: str) -> None:
    with pytest.raises(hj212.Hj212Error) as info:
        hj212.parse_frame(frame)
    assert info.value.code == code
    assert info.value.reason


def test_gb18030_text_accepted_as_deviation() -> None:
    segment = "ST=32;CN=3020;PW=1;MN=A;CP=&&i11001-Info=//故障//&&".encode("gb18030")
    frame = b"##%04d%s%04X\r\n" % (len(segment), segment, reference_crc16(segment))
    parsed = hj212.parse_frame(frame)
    assert "text_gb18030" in parsed.deviations
    assert "故障" in parsed.cp


# -- replies, byte for byte --------------------------------------------------------------------


def test_9014_to_flag5_upload_is_the_spec_frame() -> None:
    assert hj212.reply_9014(hj212.parse_frame(FRAME_C)) == ACK_C


def test_2005_reply_carries_qn_in_cp_and_the_modbus_crc() -> None:
    """hcu's test set: a 2005 request with Modbus CRC, and its 9013 answer (both verified)."""
    assert hj212.reply_9013(hj212.parse_frame(FRAME_1072_MODBUS)) == FRAME_9013_MODBUS


def test_9011_9012_forms() -> None:
    frame = hj212.parse_frame(FRAME_A)
    seg_9011 = (
        "QN=20160801085857223;ST=91;CN=9011;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&QnRtn=1&&"
    )
    assert hj212.reply_9011(frame) == build(seg_9011)
    seg_9012 = (
        "QN=20160801085857223;ST=91;CN=9012;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&ExeRtn=2&&"
    )
    assert hj212.reply_9012(frame, exe_rtn=2) == build(seg_9012)
    old = hj212.parse_frame(FRAME_1072_MODBUS)
    assert hj212.reply_9011(old) == build(
        "ST=91;CN=9011;PW=123456;MN=ABCDEFG1234567;Flag=0;CP=&&QN=20170516010101001;QnRtn=1&&", "modbus"
    )


def test_9014_2005_frame_without_qn() -> None:
    reply = hj212.reply_9014(hj212.parse_frame(FRAME_D))
    assert reply == build("ST=91;CN=9014;PW=123456;MN=12091200160055;Flag=0;CP=&&&&")


def test_reply_uses_swapped_crc_of_the_station() -> None:
    frame = hj212.parse_frame(build(_envelope(FRAME_C)[0].decode(), "modbus_swapped"))
    reply = hj212.reply_9014(frame)
    assert reply == build(_envelope(ACK_C)[0].decode(), "modbus_swapped")
    assert hj212.parse_frame(reply).crc_variant == "modbus_swapped"


def test_set_time_1012_byte_for_byte() -> None:
    frame = hj212.parse_frame(FRAME_C)
    now_local = datetime(2023, 8, 3, 17, 11, 31)  # noqa: DTZ001 - the station's wall clock
    out = hj212.set_time_1012(frame, now_local, hj212.make_qn(now_local))
    assert out == (
        b"##0108QN=20230803171131000;ST=31;CN=1012;PW=123456;MN=88888880000001234567;Flag=5;"
        b"CP=&&SystemTime=20230803171131&&B7C1\r\n"
    )
    parsed = hj212.parse_frame(out)
    assert (parsed.cn, parsed.need_ack, parsed.deviations) == ("1012", True, ())


def test_encode_frame_round_trip() -> None:
    segment = "QN=20240101120000000;ST=22;CN=2011;PW=1;MN=测试;Flag=4;CP=&&a=1&&"
    data = hj212.encode_frame(segment)
    assert data[2:6] == b"%04d" % len(segment.encode())
    assert hj212.parse_frame(data).mn == "测试"
