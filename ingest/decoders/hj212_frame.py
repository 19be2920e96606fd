"""HJ 212 frames: CRC variants and the parser of one frame, with the deviations it tolerates.

Byte layout of one frame (``specs/protocols.md`` §1.2; all ASCII, ``-Info`` text UTF-8)::

    offset    bytes  content
    0         2      "##"
    2         4      dddd: byte length of the data segment, decimal, zero-padded ("0101")
    6         dddd   data segment: QN=…;ST=..;CN=....;PW=…;MN=…;Flag=.;[PNUM=..;PNO=..;]CP=&&…&&
                     (≤ 1024 bytes by the standard)
    6+dddd    4      CRC16 of the data segment, hex "%04X" (variant: see below)
    10+dddd   2      CR LF

Header fields, in this order, ``;``-separated (Table 3): ``QN`` request id
``YYYYMMDDhhmmsszzz`` (absent in 2005 uploads), ``ST`` system code (``91`` in replies), ``CN``
command (4 digits), ``PW`` password, ``MN`` station id (opaque), ``Flag`` (bits, MSB first,
``V5..V0 D A``: version 0 = 2005, 1 = 2017, 2 = 2025; D = PNUM/PNO present; A = answer
required), ``PNUM``/``PNO`` sub-packet count and number, then ``CP=&&…&&``, always last.

The data area is cut out first (it contains ``;``), then the header is split. What real
devices get wrong but is unambiguous (§1.12) is accepted and named in ``Frame.deviations``
(``DEVIATIONS``); ``strict=True`` refuses each instead.

Three CRC variants occur in the field (§1.5): the standard's algorithm (``hj212``), plain
CRC-16/MODBUS (``modbus``) and Modbus written low byte first (``modbus_swapped``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from ingest.errors import RejectedMessage

__all__ = [
    "CRC_VARIANTS",
    "DEVIATIONS",
    "HEX4",
    "CrcVariant",
    "Frame",
    "Hj212Error",
    "crc16",
    "crc16_modbus",
    "crc_of",
    "digit_run",
    "parse_frame",
]

CrcVariant = Literal["hj212", "modbus", "modbus_swapped"]
CRC_VARIANTS: Final[tuple[CrcVariant, ...]] = ("hj212", "modbus", "modbus_swapped")

# What each deviation means (the reason strict mode gives when it refuses one).
DEVIATIONS: Final[dict[str, str]] = {
    "length_8_digits": "the length field has 8 digits instead of 4",
    "length_char_count": "the length field counts characters, not UTF-8 bytes",
    "length_mismatch": "the length field does not match the data segment",
    "segment_over_1024": "the data segment is longer than 1024 bytes",
    "no_crlf": "the frame does not end with CR LF",
    "crc_lowercase": "the CRC is written in lowercase hex",
    "text_gb18030": "the data segment is GB18030 text, not UTF-8",
    "qn_missing": "a 2017 frame without QN",
    "qn_epoch_ms": "QN is epoch milliseconds instead of YYYYMMDDhhmmsszzz",
    "qn_format": "QN is not 17 digits YYYYMMDDhhmmsszzz",
    "st_missing": "the frame has no ST field",
    "mn_before_pw": "MN comes before PW",
    "header_order": "header fields are not in the order QN;ST;CN;PW;MN;Flag;PNUM;PNO",
    "header_comma": "header fields separated by ',' instead of ';'",
    "header_unknown_field": "the header has a field the standard does not define",
    "cp_no_separator": "no ';' before CP=",
    "cp_unclosed": "the data area CP=&&… is not closed by &&",
    "pno_without_flag_d": "PNUM/PNO present but Flag bit D is not set",
}

MAX_SEGMENT: Final = 1024  # standard limit of the data segment (§1.2)
_HEADER_RANK: Final[dict[str, int]] = {
    "QN": 0,
    "ST": 1,
    "CN": 2,
    "PW": 3,
    "MN": 3,  # PW/MN order is its own deviation (mn_before_pw)
    "Flag": 5,
    "PNUM": 6,
    "PNO": 6,  # both orders seen in real samples; not counted
}
_COMMA_BEFORE_FIELD = re.compile(r",(?=(?:QN|ST|CN|PW|MN|Flag|PNUM|PNO)=)")
HEX4 = re.compile(rb"[0-9A-Fa-f]{4}")
_DIGITS = re.compile(r"[0-9]+")


class Hj212Error(RejectedMessage):
    """A refused HJ 212 frame or byte run; ``code`` starts with ``hj212_``.

    ``payload`` holds the bytes concerned when the framer skipped them (garbage, oversize,
    truncated), so the collector can dead-letter them.
    """

    def __init__(self, code: str, reason: str, *, payload: bytes = b"", device_id: str | None = None) -> None:
        super().__init__(code, reason, device_id=device_id)
        self.payload = payload


# --------------------------------------------------------------------------------------------
# CRC (§1.5)


def _crc_table() -> tuple[int, ...]:
    """The 8 shift/XOR-0xA001 steps both variants apply to one byte, for all 256 inputs."""
    table = []
    for value in range(256):
        reg = value
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
        table.append(reg)
    return tuple(table)


_TABLE: Final = _crc_table()


def crc16(data: bytes) -> int:
    """The standard's "ANSI CRC16" (Appendix A): each byte meets the *high* byte of the register.

    ``reg = (reg >> 8) ^ byte`` then 8 shift steps, so only 8 bits of state survive a byte.
    """
    reg = 0xFFFF
    for byte in data:
        reg = _TABLE[(reg >> 8) ^ byte]
    return reg


def crc16_modbus(data: bytes) -> int:
    """Plain CRC-16/MODBUS (each byte meets the low byte), as a 16-bit number."""
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ _TABLE[(reg ^ byte) & 0xFF]
    return reg


def crc_of(data: bytes, variant: CrcVariant) -> int:
    """The CRC a frame of this variant carries (written ``%04X``)."""
    if variant == "hj212":
        return crc16(data)
    value = crc16_modbus(data)
    return value if variant == "modbus" else ((value & 0xFF) << 8) | (value >> 8)


def _matching_variant(data: bytes, received: int, pinned: CrcVariant | None) -> CrcVariant:
    """The first variant whose CRC equals ``received``, or an ``hj212_crc`` error."""
    candidates = CRC_VARIANTS if pinned is None else (pinned,)
    for variant in candidates:
        if crc_of(data, variant) == received:
            return variant
    expected = ", ".join(f"{v} {crc_of(data, v):04X}" for v in candidates)
    raise Hj212Error("hj212_crc", f"CRC {received:04X} in the frame does not match the data ({expected})")


# --------------------------------------------------------------------------------------------
# One frame


@dataclass(frozen=True, slots=True)
class Frame:
    """One HJ 212 frame, checked (length, CRC) and split into its header fields and data area."""

    raw: bytes
    segment: str
    qn: str | None
    st: str | None
    cn: str
    pw: str | None
    mn: str | None
    flag: int | None
    pnum: int | None
    pno: int | None
    cp: str  # the text between CP=&& and the closing &&
    crc_variant: CrcVariant
    deviations: tuple[str, ...] = ()

    @property
    def version(self) -> int:
        """Protocol version bits: 0 = HJ/T 212-2005 (also when Flag is absent), 1 = 2017, 2 = 2025."""
        return 0 if self.flag is None else self.flag >> 2

    @property
    def need_ack(self) -> bool:
        """Flag bit A: the sender expects an answer (9014 for data)."""
        return self.flag is not None and bool(self.flag & 1)

    @property
    def has_subpackets(self) -> bool:
        """Flag bit D: PNUM and PNO are present."""
        return self.flag is not None and bool(self.flag & 2)


def parse_frame(raw: bytes, *, strict: bool = False, crc: CrcVariant | None = None) -> Frame:
    """Parse one frame ``##dddd<segment>XXXX\\r\\n``.

    ``crc=None`` accepts any of the three CRC variants and records which one matched; a pinned
    variant accepts only itself. ``strict=True`` refuses every deviation (``hj212_deviation``).
    """
    deviations: list[str] = []
    segment_bytes, declared, received = _split_envelope(raw, deviations)
    variant = _matching_variant(segment_bytes, received, crc)
    text = _decode_text(segment_bytes, deviations)
    if declared != len(segment_bytes):
        deviations.append("length_char_count" if declared == len(text) else "length_mismatch")
    if len(segment_bytes) > MAX_SEGMENT:
        deviations.append("segment_over_1024")
    header, cp = _split_cp(text, deviations)
    fields = _header_fields(header, deviations)
    frame = _build_frame(raw, text, fields, cp, variant, deviations)
    if strict and frame.deviations:
        name = frame.deviations[0]
        raise Hj212Error("hj212_deviation", f"strict mode refuses a frame where {DEVIATIONS[name]} ({name})")
    return frame


def _split_envelope(raw: bytes, deviations: list[str]) -> tuple[bytes, int, int]:
    """``##`` + length digits + segment + CRC + tail → (segment bytes, declared length, CRC)."""
    if not raw.startswith(b"##"):
        raise Hj212Error("hj212_format", "a frame starts with '##'")
    body = raw
    if body.endswith(b"\r\n"):
        body = body[:-2]
    else:
        deviations.append("no_crlf")
        body = body.rstrip(b"\r\n")
    digits = digit_run(body, 2, limit=len(body))
    if digits not in (4, 8):
        raise Hj212Error("hj212_length", f"the length field after '##' must be 4 digits, found {digits}")
    if digits == 8:
        deviations.append("length_8_digits")
    start = 2 + digits
    if len(body) < start + 4:
        raise Hj212Error("hj212_truncated", "the frame ends before its CRC")
    crc_text = body[-4:]
    if not HEX4.fullmatch(crc_text):
        raise Hj212Error(
            "hj212_format", f"the frame must end with 4 hex CRC digits and CR LF, found {crc_text!r}"
        )
    if crc_text != crc_text.upper():
        deviations.append("crc_lowercase")
    return body[start:-4], int(body[2:start]), int(crc_text, 16)


def digit_run(buf: bytes | bytearray, pos: int, *, limit: int) -> int:
    """Number of ASCII digits at ``buf[pos:]``, counting at most ``limit``."""
    end = pos
    stop = min(len(buf), pos + limit)
    while end < stop and 0x30 <= buf[end] <= 0x39:
        end += 1
    return end - pos


def _decode_text(data: bytes, deviations: list[str]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise Hj212Error("hj212_encoding", f"the data segment is not UTF-8 text (byte {exc.start})") from exc
    deviations.append("text_gb18030")
    return text


def _split_cp(text: str, deviations: list[str]) -> tuple[str, str]:
    """Cut the data area out first: it contains ``;`` and must not be split with the header."""
    at = text.find("CP=&&")
    if at < 0:
        raise Hj212Error("hj212_format", "the data segment has no 'CP=&&' data area")
    header = text[:at]
    if header and not header.endswith(";"):
        deviations.append("cp_no_separator")
    rest = text[at + 5 :]
    if rest.endswith("&&"):
        return header, rest[:-2]
    deviations.append("cp_unclosed")
    return header, rest.rstrip("&")


def _header_fields(header: str, deviations: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in header.split(";"):
        pieces = _COMMA_BEFORE_FIELD.split(part)
        if len(pieces) > 1:
            deviations.append("header_comma")
        for piece in pieces:
            if not piece.strip():
                continue
            name, eq, value = piece.partition("=")
            name = name.strip()
            if not eq:
                raise Hj212Error("hj212_format", f"header field {piece[:40]!r} has no '='")
            if name not in _HEADER_RANK:
                deviations.append("header_unknown_field")
                continue
            if name in fields:
                raise Hj212Error("hj212_format", f"header field {name} appears twice")
            fields[name] = value.strip()
    _check_order(list(fields), deviations)
    return fields


def _check_order(names: list[str], deviations: list[str]) -> None:
    if "MN" in names and "PW" in names and names.index("MN") < names.index("PW"):
        deviations.append("mn_before_pw")
    ranks = [_HEADER_RANK[n] for n in names]
    if ranks != sorted(ranks):
        deviations.append("header_order")


def _build_frame(
    raw: bytes, text: str, fields: dict[str, str], cp: str, variant: CrcVariant, deviations: list[str]
) -> Frame:
    cn = fields.get("CN")
    if cn is None or len(cn) != 4 or not cn.isdigit() or not cn.isascii():
        raise Hj212Error("hj212_format", f"CN must be 4 digits, found {cn!r}")
    flag = _small_int(fields, "Flag", 255)
    pnum = _small_int(fields, "PNUM", 9999)
    pno = _small_int(fields, "PNO", 9999)
    if (pnum is None) != (pno is None):
        raise Hj212Error("hj212_format", "PNUM and PNO must come together")
    if pnum is not None and pno is not None:
        if not 1 <= pno <= pnum:
            raise Hj212Error("hj212_format", f"PNO {pno} is not between 1 and PNUM {pnum}")
        if flag is None or not flag & 2:
            deviations.append("pno_without_flag_d")
    qn = fields.get("QN")
    _check_qn(qn, flag, deviations)
    if "ST" not in fields:
        deviations.append("st_missing")
    return Frame(
        raw=raw,
        segment=text,
        qn=qn,
        st=fields.get("ST"),
        cn=cn,
        pw=fields.get("PW"),
        mn=fields.get("MN") or None,
        flag=flag,
        pnum=pnum,
        pno=pno,
        cp=cp,
        crc_variant=variant,
        deviations=tuple(dict.fromkeys(deviations)),
    )


def _small_int(fields: dict[str, str], name: str, maximum: int) -> int | None:
    text = fields.get(name)
    if text is None:
        return None
    if not _DIGITS.fullmatch(text) or len(text) > 4 or int(text) > maximum:
        raise Hj212Error("hj212_format", f"{name} must be a number 0..{maximum}, found {text[:12]!r}")
    return int(text)


def _check_qn(qn: str | None, flag: int | None, deviations: list[str]) -> None:
    if qn is None:
        if flag is not None and flag >> 2 >= 1:
            deviations.append("qn_missing")
        return
    if len(qn) == 17 and qn.isdigit() and qn.isascii():
        return
    if len(qn) == 13 and qn.isdigit() and qn.isascii():
        deviations.append("qn_epoch_ms")
    else:
        deviations.append("qn_format")
