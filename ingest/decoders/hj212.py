"""HJ 212 (HJ 212-2017, HJ/T 212-2005): CRC, stream framer, frame parser, readings, replies.

Pure code: no sockets, no Kafka, no clock reads (time comes in as parameters).

Byte layout of one frame (``specs/protocols.md`` §1.2; all ASCII, ``-Info`` text UTF-8)::

    ##  dddd  QN=…;ST=..;CN=....;PW=…;MN=…;Flag=.;[PNUM=..;PNO=..;]CP=&&<data area>&&  XXXX  \\r\\n
    |   |     |<----------------------- data segment: dddd bytes ---------------------->|  |     |
    |   |                                                                                 |     +- tail CR LF
    |   |                                                         CRC16 of the segment -+
    |   |                                                         (4 hex digits, %04X)
    |   +- byte length of the data segment, decimal, zero-padded to 4 digits (≤ 1024)
    +- header

* ``Flag`` bits, MSB first: ``V5..V0 D A``: version (0 = 2005, 1 = 2017, 2 = 2025), D = PNUM/PNO
  present, A = the receiver must acknowledge.
* The data area (``CP``) is ``key=value`` items separated by ``;`` (different items) and ``,``
  (values of one pollutant): ``DataTime=20220513162600;a34004-Avg=14,a34004-Flag=N;…``.
  A pollutant field is ``<code>-<suffix>`` (``Rtd``, ``Avg``, ``Min``, ``Max``, ``Cou``, ``Flag``…).
* Three CRC variants occur in the field (§1.5): the standard's algorithm (``hj212``), plain
  CRC-16/MODBUS (``modbus``) and Modbus written low byte first (``modbus_swapped``).

Liberal parsing (§1.12): what real devices get wrong but is unambiguous is accepted and named
in ``Frame.deviations`` (see ``DEVIATIONS``); ``strict=True`` refuses each of them instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from math import isfinite
from typing import Final, Literal

from ingest.decoders.hj212_codes import canonical_code, quality_of_flag
from ingest.errors import RejectedMessage
from stationflow.contracts import DeviceRecord, MetricSpec, Quality, Reading

__all__ = [
    "CRC_VARIANTS",
    "DATA_CNS",
    "DEVIATIONS",
    "CpValue",
    "CrcVariant",
    "Decoded",
    "Frame",
    "Framer",
    "Hj212Error",
    "SubPackets",
    "crc16",
    "crc16_modbus",
    "crc_of",
    "decode_mqtt",
    "encode_frame",
    "make_qn",
    "parse_cp",
    "parse_frame",
    "reply_9011",
    "reply_9012",
    "reply_9013",
    "reply_9014",
    "set_time_1012",
    "station_clock_drift",
    "to_readings",
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
_HEX4 = re.compile(rb"[0-9A-Fa-f]{4}")
_DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


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
    digits = _digit_run(body, 2, limit=len(body))
    if digits not in (4, 8):
        raise Hj212Error("hj212_length", f"the length field after '##' must be 4 digits, found {digits}")
    if digits == 8:
        deviations.append("length_8_digits")
    start = 2 + digits
    if len(body) < start + 4:
        raise Hj212Error("hj212_truncated", "the frame ends before its CRC")
    crc_text = body[-4:]
    if not _HEX4.fullmatch(crc_text):
        raise Hj212Error(
            "hj212_format", f"the frame must end with 4 hex CRC digits and CR LF, found {crc_text!r}"
        )
    if crc_text != crc_text.upper():
        deviations.append("crc_lowercase")
    return body[start:-4], int(body[2:start]), int(crc_text, 16)


def _digit_run(buf: bytes | bytearray, pos: int, *, limit: int) -> int:
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


# --------------------------------------------------------------------------------------------
# Byte-stream framer (§1.12.1–3)

# The end of a frame: closing "&&", 4 hex CRC digits, then CR LF, or a lone LF, or a lone CR
# followed by something else, or no tail at all when the next frame's "##" follows at once.
_TERMINATOR = re.compile(rb"&&[0-9A-Fa-f]{4}(?:\r\n|\n|\r(?=[^\n])|(?=##))")
_BLANK = b"\r\n\t \x00"  # between frames: dropped without complaint (extra line ends, padding)


class Framer:
    """Split an HJ 212 byte stream into candidate frames (not yet CRC-checked).

    ``feed`` returns, in stream order, complete frames (``bytes``) and ``Hj212Error`` items for
    bytes it skipped (``.payload``): ``hj212_garbage`` between frames, ``hj212_truncated`` for
    a frame cut off by the next ``##``, ``hj212_too_long`` past ``max_frame_bytes``,
    ``hj212_length`` for a frame whose length field is not 4 (or 8) digits.

    A frame is taken at its declared length when the CRC digits and the tail sit there; when
    the length is wrong, at the first ``&&`` + 4 hex + CR LF (§1.12.2). A missing CR LF is
    tolerated when the next ``##`` follows, or when the declared length ends exactly at the end
    of the bytes received so far (``parse_frame`` then records ``no_crlf``).
    """

    def __init__(self, *, max_frame_bytes: int = 16384) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[bytes | Hj212Error]:
        """Add received bytes; return the frames and skipped runs now complete."""
        self._buf += data
        out: list[bytes | Hj212Error] = []
        while self._buf:
            start = self._buf.find(b"##")
            if start != 0:
                keep = 1 if start < 0 and self._buf.endswith(b"#") else 0
                cut = start if start > 0 else len(self._buf) - keep
                if cut == 0:
                    break
                self._skip(cut, out)
                continue
            item = self._frame_at_start()
            if item is None:
                break
            out.append(item)
        return out

    def pending(self) -> int:
        """Bytes buffered (a partial frame)."""
        return len(self._buf)

    def flush(self) -> bytes:
        """Give up the buffered partial frame (e.g. on idle timeout) and return its bytes."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def take_unterminated(self) -> bytes | None:
        """The buffered bytes if they are one whole frame lacking only its CR LF, else None.

        For a station that never sends CR LF: call it once the stream has been quiet for a
        moment (a frame that ends exactly at the end of a read may still get its CR LF in the
        next one, so ``feed`` waits for the next ``##`` rather than guess).
        """
        buf = self._buf
        digits = _digit_run(buf, 2, limit=9)
        if not buf.startswith(b"##") or digits not in (4, 8):
            return None
        crc_end = 2 + digits + int(buf[2 : 2 + digits]) + 4
        at_end = _TERMINATOR.search(bytes(buf) + b"##", 2)
        if at_end is None or at_end.end() != len(buf) or crc_end not in (len(buf), len(buf) - 1):
            return None
        return self._take(len(buf))

    def finish(self) -> list[bytes | Hj212Error]:
        """End of stream: the buffered bytes as a last frame without CR LF, or ``hj212_truncated``."""
        data = self.flush()
        if not data.strip(_BLANK):
            return []
        if data.startswith(b"##"):
            end = _TERMINATOR.search(data + b"##", 2)
            if end is not None and end.end() >= len(data.rstrip(b"\r\n")):
                return [data]
        return [Hj212Error("hj212_truncated", f"{len(data)} bytes of an unfinished frame", payload=data)]

    def _skip(self, cut: int, out: list[bytes | Hj212Error]) -> None:
        chunk = bytes(self._buf[:cut])
        del self._buf[:cut]
        if chunk.strip(_BLANK):
            out.append(
                Hj212Error("hj212_garbage", f"{len(chunk)} bytes outside a frame skipped", payload=chunk)
            )

    def _frame_at_start(self) -> bytes | Hj212Error | None:
        """The buffer starts with ``##``: a frame or skipped run, or None to wait for more bytes."""
        buf = self._buf
        if buf[2:3] == b"#":  # "###…": the frame starts one byte later
            return self._take_error(1, "hj212_garbage", "a stray '#' before a frame")
        digits = _digit_run(buf, 2, limit=9)
        if 2 + digits == len(buf) and digits <= 8:
            return None  # the length field is still arriving
        nxt = buf.find(b"##", 2)
        if digits in (4, 8):
            end = self._declared_end(digits, nxt)
            if end:
                return self._take(end)
        match = _TERMINATOR.search(buf, 2, len(buf) if nxt < 0 else nxt + 2)
        if match is not None:
            if digits not in (4, 8):
                return self._take_error(
                    match.end(),
                    "hj212_length",
                    f"the length field after '##' must be 4 digits, found {digits}",
                )
            return self._take(match.end())
        if nxt >= 0:
            return self._take_error(nxt, "hj212_truncated", "the frame was cut off by the start of another")
        if len(buf) > self._max:
            return self._take_error(
                len(buf), "hj212_too_long", f"no frame end within {self._max} bytes (max_frame_bytes)"
            )
        return None

    def _declared_end(self, digits: int, nxt: int) -> int | None:
        """End of the frame at its declared length if CRC digits and a tail sit there, else None."""
        buf = self._buf
        crc_end = 2 + digits + int(buf[2 : 2 + digits]) + 4
        if len(buf) <= crc_end or not _HEX4.fullmatch(buf, crc_end - 4, crc_end):
            return None  # not there yet (the tail may still be on its way), or the length is wrong
        if 0 <= nxt < crc_end - 4 and buf[crc_end - 6 : crc_end - 4] != b"&&":
            return None  # another "##" inside and no closing "&&": trust the terminator scan
        tail = buf[crc_end : crc_end + 2]
        if tail == b"\r\n":
            return crc_end + 2
        if tail == b"##":
            return crc_end
        if tail[:1] == b"\n" or (tail[:1] == b"\r" and len(tail) == 2):
            return crc_end + 1
        return None

    def _take(self, end: int) -> bytes:
        frame = bytes(self._buf[:end])
        del self._buf[:end]
        return frame

    def _take_error(self, end: int, code: str, reason: str) -> Hj212Error:
        return Hj212Error(code, reason, payload=self._take(end))


# --------------------------------------------------------------------------------------------
# The data area (§1.9)


@dataclass(frozen=True, slots=True)
class CpValue:
    """One pollutant field ``<code>-<suffix>=<value>``, e.g. ``("a34004", "Avg", "35.2")``."""

    code: str
    suffix: str
    value: str


def parse_cp(cp: str) -> tuple[dict[str, str], list[CpValue]]:
    """Split a data area into plain parameters (``DataTime``, ``QnRtn``…) and pollutant fields.

    Items are separated by ``;`` and ``,``; each splits at its first ``=``, and a key with a
    ``-`` at its first ``-`` (code, suffix). Log text between ``//`` delimiters (``-Info``) may
    contain separators. Whitespace around items is ignored.
    """
    params: dict[str, str] = {}
    values: list[CpValue] = []
    for key, value in _cp_items(cp):
        code, dash, suffix = key.partition("-")
        if dash and code and suffix:
            values.append(CpValue(code, suffix, value))
        else:
            params[key] = value
    return params, values


def _cp_items(cp: str) -> Iterable[tuple[str, str]]:
    pos, size = 0, len(cp)
    while pos < size:
        eq = _next_of(cp, "=;,", pos)
        if eq == size or cp[eq] != "=":
            token = cp[pos:eq].strip()
            if token:
                raise Hj212Error("hj212_cp_format", f"data area item {token[:40]!r} has no '='")
            pos = eq + 1
            continue
        key = cp[pos:eq].strip()
        if not key:
            raise Hj212Error("hj212_cp_format", f"data area item without a name at {cp[pos : pos + 20]!r}")
        start = eq + 1
        if cp.startswith("//", start):
            close = cp.find("//", start + 2)
            end = size if close < 0 else close + 2
        else:
            end = start
        end = _next_of(cp, ";,", end)
        yield key, cp[start:end].strip()
        pos = end + 1


def _next_of(text: str, chars: str, pos: int) -> int:
    """Index of the first of ``chars`` at or after ``pos``, or ``len(text)``."""
    best = len(text)
    for ch in chars:
        at = text.find(ch, pos, best)
        if at >= 0:
            best = at
    return best


# --------------------------------------------------------------------------------------------
# Readings (§1.9, §1.10)

# Data uploads and the suffix whose value is the metric itself (the others become
# "<metric>_<suffix>" when the device type declares such a metric).
DATA_CNS: Final[dict[str, str]] = {"2011": "Rtd", "2051": "Avg", "2061": "Avg", "2031": "Avg"}
# Uploads and notifications that are not measurements: no readings, no error (the collector
# answers them: 1013 wants 9013 + 1012; 1011 carries SystemTime; 2021/2041/2081/3020 are
# equipment state, running time, restart time and field-device information).
_NON_DATA_CNS: Final = frozenset({"1011", "1013", "2021", "2041", "2081", "3015", "3020"})
_NOT_A_VALUE: Final = frozenset({"Flag"})


@dataclass(frozen=True, slots=True)
class Decoded:
    """The readings of one frame and what was left out."""

    readings: list[Reading]
    data_time: datetime | None  # UTC
    unknown_codes: tuple[str, ...] = ()
    not_stored: tuple[str, ...] = ()  # e.g. "a34004-Min": parsed, but the type has no such metric
    frame: Frame | None = None


def to_readings(frame: Frame, record: DeviceRecord, *, tz: tzinfo) -> Decoded:
    """The readings of a data upload (CN 2011/2051/2061/2031) for the device's type.

    ``ts`` is ``DataTime`` (station local time in ``tz``; for 2051/2061/2031 the interval
    start) converted to UTC. Codes map to metrics through ``MetricSpec.hj212_code`` (2005 codes
    through their 2017 alias). Replies (9xxx) and non-measurement uploads give no readings;
    other CNs are refused as ``hj212_unsupported_cn``. A frame whose values are all unknown
    gives an empty ``readings`` with ``unknown_codes`` set (the caller decides).
    """
    primary = DATA_CNS.get(frame.cn)
    if primary is None:
        return _non_data(frame)
    params, values = parse_cp(frame.cp)
    data_time = _data_time(params, tz)
    metrics = _code_index(record.metrics)
    default_flag = params.get("Flag")
    flags = {v.code: v.value for v in values if v.suffix == "Flag"}
    readings: list[Reading] = []
    unknown: dict[str, None] = {}
    not_stored: list[str] = []
    for item in values:
        if item.suffix in _NOT_A_VALUE:
            continue
        name = _metric_name(item, primary, metrics, record.metrics)
        if name is None:
            if _lookup(metrics, item.code) is None:
                unknown[item.code] = None
            else:
                not_stored.append(f"{item.code}-{item.suffix}")
            continue
        if not item.value:
            not_stored.append(f"{item.code}-{item.suffix}")
            continue
        spec = record.metrics[name]
        quality = _quality(item.code, flags.get(item.code, default_flag))
        readings.append(
            Reading(
                metric=name,
                value=_number(item),
                unit=spec.unit,
                ts=data_time,
                quality=quality,
            )
        )
    return Decoded(readings, data_time, tuple(unknown), tuple(not_stored), frame)


def _non_data(frame: Frame) -> Decoded:
    if frame.cn.startswith("9") or frame.cn in _NON_DATA_CNS:
        try:
            _, values = parse_cp(frame.cp)
        except Hj212Error:
            values = []
        return Decoded([], None, (), tuple(f"{v.code}-{v.suffix}" for v in values), frame)
    raise Hj212Error(
        "hj212_unsupported_cn",
        f"CN {frame.cn} is not a data upload this platform handles (2011, 2051, 2061, 2031)",
    )


def _code_index(metrics: dict[str, MetricSpec]) -> dict[str, str]:
    """2017 code (and its lowercase) → metric name; a base metric wins over "<metric>_<suffix>"."""
    index: dict[str, str] = {}
    for name, spec in metrics.items():
        if not spec.hj212_code:
            continue
        code = canonical_code(spec.hj212_code)
        for key in (code, code.lower()):
            if key not in index or len(name) < len(index[key]):
                index[key] = name
    return index


def _lookup(index: dict[str, str], code: str) -> str | None:
    canonical = canonical_code(code)
    return index.get(canonical) or index.get(canonical.lower())


def _metric_name(
    item: CpValue, primary: str, index: dict[str, str], metrics: dict[str, MetricSpec]
) -> str | None:
    base = _lookup(index, item.code)
    if base is None:
        return None
    if item.suffix == primary:
        return base
    derived = f"{base}_{item.suffix.lower()}"
    return derived if derived in metrics else None


def _data_time(params: dict[str, str], tz: tzinfo) -> datetime:
    text = params.get("DataTime")
    if text is None:
        raise Hj212Error("hj212_datatime", "the data area has no DataTime")
    return _local_time(text, "DataTime", tz).astimezone(UTC)


def _local_time(text: str, name: str, tz: tzinfo | None = None) -> datetime:
    """``YYYYMMDDhhmmss`` (or with ``zzz`` milliseconds) → aware datetime (naive if tz None)."""
    if len(text) not in (14, 17) or not text.isdigit() or not text.isascii():
        raise Hj212Error("hj212_datatime", f"{name} {text[:20]!r} is not YYYYMMDDhhmmss")
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
            int(text[14:17] or 0) * 1000,
            tzinfo=tz,
        )
    except ValueError as exc:
        raise Hj212Error("hj212_datatime", f"{name} {text!r} is not a valid time ({exc})") from exc


def _quality(code: str, flag: str | None) -> Quality:
    if flag is None or not flag.strip():
        return Quality.NORMAL
    quality = quality_of_flag(flag)
    if quality is None:
        raise Hj212Error("hj212_flag", f"{code}-Flag {flag[:12]!r} is not a data flag (N F M S D C T B)")
    return quality


def _number(item: CpValue) -> float:
    text = item.value.replace(" ", "")
    if not _NUMBER.fullmatch(text):
        raise Hj212Error("hj212_value", f"{item.code}-{item.suffix} {item.value[:20]!r} is not a number")
    value = float(text)
    if not isfinite(value):
        raise Hj212Error("hj212_value", f"{item.code}-{item.suffix} {item.value[:20]!r} is not finite")
    return value


# --------------------------------------------------------------------------------------------
# Sub-packets (§1.12.9)

SubPacketKey = tuple[str, ...]


@dataclass(slots=True)
class _Group:
    first_seen: float
    parts: dict[int, Frame] = field(default_factory=dict)


class SubPackets:
    """Reassembly of PNUM/PNO sub-packets; pure: the caller passes the time (monotonic seconds).

    A sub-packet whose data area parses on its own with a valid ``DataTime`` is complete by
    itself (the standard's way, 1.6-E: each packet its own QN, DataTime and whole pollutant
    groups). Otherwise the fragments are grouped by (MN, CN, PNUM, QN of the group) and their
    data areas concatenated in PNO order (srdgame's way), with a timeout. A fragment whose PNO
    the open group already holds starts a new group; the old one is given up (``expire``).
    """

    def __init__(self, *, timeout_s: float = 60.0, max_pending: int = 1000) -> None:
        self._timeout = timeout_s
        self._max = max_pending
        self._groups: dict[SubPacketKey, _Group] = {}
        self._given_up: list[tuple[SubPacketKey, list[Frame]]] = []

    def add(self, frame: Frame, now: float) -> Frame | None:
        """The complete frame (merged, or the frame itself), or None while fragments are missing."""
        if frame.pnum is None or frame.pno is None or frame.pnum <= 1 or _self_contained(frame):
            return frame
        slot = (frame.mn or "", frame.cn, str(frame.pnum))
        key = next((k for k in self._groups if k[:3] == slot), None)
        if key is not None and frame.pno in self._groups[key].parts:
            self._give_up(key)
            key = None
        if key is None:
            key = (*slot, frame.qn or "")
            self._groups[key] = _Group(first_seen=now)
            while len(self._groups) > self._max:
                self._give_up(next(iter(self._groups)))
        group = self._groups[key]
        group.parts[frame.pno] = frame
        if len(group.parts) < frame.pnum:
            return None
        del self._groups[key]
        return _merge([group.parts[n] for n in sorted(group.parts)])

    def expire(self, now: float) -> list[tuple[SubPacketKey, list[Frame]]]:
        """Groups given up: timed out, superseded or evicted; key = (MN, CN, PNUM, first QN)."""
        for key in [k for k, g in self._groups.items() if now - g.first_seen >= self._timeout]:
            self._give_up(key)
        given_up, self._given_up = self._given_up, []
        return given_up

    def pending(self) -> int:
        """Number of incomplete groups held."""
        return len(self._groups)

    def _give_up(self, key: SubPacketKey) -> None:
        group = self._groups.pop(key)
        self._given_up.append((key, [group.parts[n] for n in sorted(group.parts)]))


def _self_contained(frame: Frame) -> bool:
    try:
        params, _ = parse_cp(frame.cp)
        _local_time(params["DataTime"], "DataTime")
    except (Hj212Error, KeyError):
        return False
    return True


def _merge(parts: list[Frame]) -> Frame:
    """One frame from fragments in PNO order: the first's header, the data areas concatenated."""
    first = parts[0]
    cp = "".join(p.cp for p in parts)
    header = first.segment[: first.segment.find("CP=&&")]
    deviations = tuple(dict.fromkeys(d for p in parts for d in p.deviations))
    return replace(
        first,
        raw=b"".join(p.raw for p in parts),
        segment=f"{header}CP=&&{cp}&&",
        cp=cp,
        pno=None,
        deviations=deviations,
    )


# --------------------------------------------------------------------------------------------
# What the center sends (§1.8): replies echo QN, PW, MN and use the CRC variant received.


def encode_frame(segment: str, crc: CrcVariant = "hj212") -> bytes:
    """``##%04d<segment>%04X\\r\\n`` with the segment's UTF-8 length and CRC."""
    data = segment.encode()
    return b"##%04d%s%04X\r\n" % (len(data), data, crc_of(data, crc))


def make_qn(now_local: datetime) -> str:
    """A QN ``YYYYMMDDhhmmsszzz`` for a request of the center (station local time)."""
    return now_local.strftime("%Y%m%d%H%M%S") + f"{now_local.microsecond // 1000:03d}"


def _reply(frame: Frame, cn: str, items: list[str]) -> bytes:
    """2017+: QN in the header, Flag = version bits; 2005: no QN in the header, ``CP=&&QN=…``."""
    fields = []
    if frame.version >= 1 and frame.qn is not None:
        fields.append(f"QN={frame.qn}")
    fields += ["ST=91", f"CN={cn}"]
    if frame.pw is not None:
        fields.append(f"PW={frame.pw}")
    if frame.mn is not None:
        fields.append(f"MN={frame.mn}")
    fields.append(f"Flag={frame.version << 2}")
    if frame.version == 0 and frame.qn is not None:
        items = [f"QN={frame.qn}", *items]
    return encode_frame(";".join(fields) + ";CP=&&" + ";".join(items) + "&&", frame.crc_variant)


def reply_9014(frame: Frame) -> bytes:
    """Data acknowledgement (to an upload whose Flag has bit A set)."""
    return _reply(frame, "9014", [])


def reply_9011(frame: Frame, qn_rtn: int = 1) -> bytes:
    """Request acknowledgement (``QnRtn``: 1 ready, 2 rejected, 3 PW error, 4 MN error …)."""
    return _reply(frame, "9011", [f"QnRtn={qn_rtn}"])


def reply_9012(frame: Frame, exe_rtn: int = 1) -> bytes:
    """Execution result (``ExeRtn``: 1 success, 2 failed, 100 no data …)."""
    return _reply(frame, "9012", [f"ExeRtn={exe_rtn}"])


def reply_9013(frame: Frame) -> bytes:
    """Notification acknowledgement (e.g. to a 1013 time-calibration request)."""
    return _reply(frame, "9013", [])


def set_time_1012(frame: Frame, now_local: datetime, qn: str) -> bytes:
    """Request CN=1012 setting the station's clock to ``now_local`` (its local time).

    A request of the center: new ``qn`` in the header (both versions), the station's ST,
    PW and MN, Flag with bit A (the station answers 9011 then 9012).
    """
    st = frame.st if frame.st and frame.st != "91" else "91"
    fields = [f"QN={qn}", f"ST={st}", "CN=1012"]
    if frame.pw is not None:
        fields.append(f"PW={frame.pw}")
    if frame.mn is not None:
        fields.append(f"MN={frame.mn}")
    fields.append(f"Flag={frame.version << 2 | 1}")
    cp = f"SystemTime={now_local.strftime('%Y%m%d%H%M%S')}"
    return encode_frame(";".join(fields) + f";CP=&&{cp}&&", frame.crc_variant)


def station_clock_drift(frame: Frame, params: dict[str, str], now_utc: datetime, tz: tzinfo) -> float | None:
    """Seconds the station's clock is ahead (+) or behind (-): from ``SystemTime`` if present
    (a 1011 upload), else from the QN (the station's time of sending); None if unknown."""
    try:
        if "SystemTime" in params:
            station = _local_time(params["SystemTime"], "SystemTime", tz)
        elif frame.qn is not None and len(frame.qn) == 13 and frame.qn.isdigit():
            station = datetime.fromtimestamp(int(frame.qn) / 1000, UTC)
        elif frame.qn is not None:
            station = _local_time(frame.qn, "QN", tz)
        else:
            return None
    except (Hj212Error, ValueError, OverflowError, OSError):
        return None
    return (station - now_utc).total_seconds()


# --------------------------------------------------------------------------------------------
# HJ 212 over MQTT (DTU gateways publishing the frame text)


def decode_mqtt(
    payload: bytes, *, record: DeviceRecord, received_at: datetime, tz: tzinfo, strict: bool = False
) -> Decoded:
    """One HJ 212 frame as an MQTT payload (CR LF optional) → readings of ``record``.

    The MN must be the device's (``hj212_mn_mismatch``); the CRC variant and strict mode follow
    the registry (``record.hj212``). The password is not checked here (the caller holds the
    ``PasswordCache``: ``decoded.frame.pw``).
    """
    del received_at  # HJ 212 frames carry their own DataTime
    link = record.hj212
    try:
        if link is None:
            raise Hj212Error("hj212_not_configured", "the device has no HJ 212 settings (MN) in the registry")
        data = payload.strip(_BLANK) + b"\r\n"
        frame = parse_frame(data, strict=strict or link.strict, crc=link.crc)
        if frame.mn != link.mn:
            raise Hj212Error(
                "hj212_mn_mismatch", f"MN {frame.mn!r} in the frame is not the device's MN {link.mn!r}"
            )
        if frame.pnum is not None and frame.pnum > 1 and not _self_contained(frame):
            raise Hj212Error(
                "hj212_subpacket",
                "over MQTT every sub-packet must be complete in itself (its own DataTime and whole fields)",
            )
        return to_readings(frame, record, tz=tz)
    except Hj212Error as exc:
        exc.device_id = record.device_id
        raise
