"""SL 651-2014 (hydrological telemetry): CRC, stream framer, HEX/BCD and ASCII parser, readings,
the center's confirmations, multi-packet (M3) reassembly.

Pure code: no sockets, no Kafka, no clock reads (time comes in as parameters).

HEX/BCD frame (``specs/protocols.md`` §2.3; big-endian throughout)::

    offset  bytes  field
    0       2      7E 7E                         start
    2       1      center address (HEX)          \\ downlink: RTU address (5) first,
    3       5      RTU address (BCD/HEX)         / then the center address (1)
    8       2      password (HEX)
    10      1      function code (FC)
    11      2      high nibble: direction (0 up, 8 down); low 12 bits: body length L
    13      1      STX 02 (single packet) or SYN 16 (M3 multi-packet)
    (14     3)     SYN only: high 12 bits total packets, low 12 bits this packet's number
    14      L      body (for SYN the 3 packet bytes are counted in L)
    14+L    1      end: ETX 03 / ETB 17 (uplink), ENQ 05 / ACK 06 / NAK 15 / EOT 04 / ESC 1B (downlink)
    15+L    2      CRC-16/MODBUS over bytes 0 .. 14+L, HIGH byte first

ASCII frame (§2.4): ``SOH`` · center (2 hex chars) · RTU address (10) · password (4) · FC (2) ·
direction + length (4) · STX (or SYN + 6 chars total/number) · body text · end char · CRC as 4
hex chars over every byte from SOH through the end char. Downlink swaps the two addresses.

A byte stream is split by the length word, never by searching ``7E 7E`` (bodies contain 7E,
e.g. a keep-alive with serial ``7E 08``).

Body of an uplink report (§2.8, HEX/BCD)::

    serial (2 B HEX)  send time (6 B BCD YYMMDDhhmmss)
    F1 F1  station address (5 B)  station class (1 B ASCII)
    F0 F0  observation time (5 B BCD YYMMDDhhmm)
    <guide> <definition> <data> ...           definition: high 5 bits length, low 3 bits decimals
    [F0 F0 <time> more elements ...]

Real devices write ``F0 28`` / ``F1 28`` for the two markers: accepted, named in ``deviations``.
Elements: guide ``FF xx <def>`` is a user extension (``FFxx``); an unknown guide with a sane
definition is decoded as BCD (``Xnn``) or skipped; one whose definition makes no sense (private
vendor blocks such as ``79 79 …``) stops decoding (``Report.truncated_at``), after which the
longest run of standard elements that ends the body exactly is still taken (the tail).
Series: F4 DRP and F5..FC DRZn give 12 values stamped at each 5-minute slot end; in 31H/38H
reports the time step ``04 18`` makes an element a uniform-interval series.
ASCII bodies: ``<serial 4 hex><send time 12 digits>ST <addr> <class> TT <YYMMDDhhmm> Z 6.38 VT 12.50 ``
(every token followed by one space; a missing value is ``M``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from math import isfinite
from typing import Final, Literal

from ingest.decoders.sl651_elements import (
    DRP_GUIDE,
    DRZ_GUIDES,
    GUIDE_NAMES,
    RAIN_SOURCES,
)
from ingest.errors import RejectedMessage
from stationflow.contracts import DeviceRecord, Quality, Reading

__all__ = [
    "ACK",
    "DEVIATIONS",
    "END_CHARS",
    "ENQ",
    "EOT",
    "ESC",
    "ETB",
    "ETX",
    "NAK",
    "REPORT_FCS",
    "SOH",
    "STX",
    "SYN",
    "Decoded",
    "Element",
    "Frame",
    "Framer",
    "Packets",
    "Report",
    "Sl651Error",
    "ack_etb",
    "confirmation",
    "crc16",
    "dedup_key",
    "encode_ascii_frame",
    "encode_hex_frame",
    "nak",
    "parse_frame",
    "parse_report",
    "to_readings",
]

SOH: Final = 0x01
STX: Final = 0x02
ETX: Final = 0x03
EOT: Final = 0x04
ENQ: Final = 0x05
ACK: Final = 0x06
NAK: Final = 0x15
SYN: Final = 0x16
ETB: Final = 0x17
ESC: Final = 0x1B
END_CHARS: Final[frozenset[int]] = frozenset({ETX, ETB, ENQ, ACK, NAK, EOT, ESC})
HEX_START: Final = b"\x7e\x7e"
KEEPALIVE: Final = 0x2F
# Uplink reports this module decodes: test, uniform interval, timed, additional, hourly, manual,
# and the answers to the center's real-time / period / element queries.
REPORT_FCS: Final[frozenset[int]] = frozenset({0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37, 0x38, 0x3A})
# FCs whose elements after a time step (04 18) are uniform-interval series.
SERIES_FCS: Final[frozenset[int]] = frozenset({0x31, 0x38})

DEVIATIONS: Final[dict[str, str]] = {
    "obs_time_marker_F028": "the observation-time marker is F0 28 instead of F0 F0",
    "station_marker_F128": "the station-address marker is F1 28 instead of F1 F1",
    "time_step_binary": "the time step 04 18 is written as binary bytes instead of BCD",
}

_HEX_HEADER: Final = 14  # bytes before the body (through STX/SYN)
_ASCII_HEADER: Final = 24
_MAX_BODY: Final = 0xFFF
# While a frame start waits for the bytes its length announces, later starts are examined (at
# most this many, and this many CRC checks) per feed to find a real frame behind a false start.
LOOKAHEAD_CRC_CHECKS: Final = 8
LOOKAHEAD_STARTS: Final = 256
# After a private block, a standard tail is looked for in the body's last this-many bytes
# (bounds the work an adversarial body can cause).
TAIL_WINDOW: Final = 64
_HEXDIGITS: Final = frozenset(b"0123456789ABCDEFabcdef")
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9]{0,15}")
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?")
_DRZ_TOKEN = re.compile(r"DRZ[1-8]")
_STEP_TOKEN = re.compile(r"DR([DHN])([0-9]{2})")
_STEP_MINUTES: Final[dict[str, int]] = {"D": 1440, "H": 60, "N": 1}


class Sl651Error(RejectedMessage):
    """A refused SL 651 frame or byte run; ``code`` starts with ``sl651_``.

    ``payload`` holds the bytes concerned when the framer skipped them (garbage, a bad CRC,
    an oversize length), so the collector can dead-letter them.
    """

    def __init__(self, code: str, reason: str, *, payload: bytes = b"", device_id: str | None = None) -> None:
        super().__init__(code, reason, device_id=device_id)
        self.payload = payload


# --------------------------------------------------------------------------------------- CRC


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (reflected 0x8005, init FFFF, no final XOR); SL 651 sends it HIGH byte first."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


# ------------------------------------------------------------------------------------- frame


@dataclass(frozen=True, slots=True)
class Frame:
    """One CRC-checked frame; ``body`` is everything between STX/SYN(+3) and the end char."""

    raw: bytes
    encoding: Literal["hex", "ascii"]
    center: int
    address: str  # RTU address, 10 upper-case hex digits
    password: str  # 4 upper-case hex digits
    fc: int
    upstream: bool
    body: bytes
    end: int
    packet: tuple[int, int] | None = None  # (total, number) for SYN (M3)
    deviations: tuple[str, ...] = ()


def _fail(code: str, reason: str) -> Sl651Error:
    return Sl651Error(f"sl651_{code}", reason)


def _hex_length(raw: bytes | bytearray, at: int = 0) -> tuple[int, int]:
    """(direction nibble, body length) of the HEX header at ``at`` (at least 13 bytes)."""
    word = (raw[at + 11] << 8) | raw[at + 12]
    return word >> 12, word & _MAX_BODY


def _hex_length_text(text: bytes) -> tuple[int, int]:
    word = int(text, 16)
    return word >> 12, word & _MAX_BODY


def _ascii_length(raw: bytes | bytearray, at: int = 0) -> tuple[int, int] | None:
    """(direction, body length) of the ASCII header at ``at`` (23 bytes), None if not hex text."""
    text = bytes(raw[at + 19 : at + 23])
    if not all(c in _HEXDIGITS for c in text):
        return None
    word = int(text, 16)
    return word >> 12, word & _MAX_BODY


def parse_frame(raw: bytes) -> Frame:
    """Parse one complete frame (HEX/BCD or ASCII) and check its length and CRC."""
    if raw[:2] == HEX_START:
        frame = _parse_hex_frame(raw)
    elif raw[:1] == bytes([SOH]):
        frame = _parse_ascii_frame(raw)
    else:
        raise _fail("format", "a frame starts with 7E 7E (HEX/BCD) or SOH 01 (ASCII)")
    if (
        frame.fc in REPORT_FCS
        and frame.encoding == "hex"
        and frame.upstream
        and frame.packet in (None, (1, 1))
    ):
        deviations = _prescan_deviations(frame.body)
        if deviations:
            frame = replace(frame, deviations=deviations)
    return frame


def _parse_hex_frame(raw: bytes) -> Frame:
    if len(raw) < _HEX_HEADER + 3:
        raise _fail("truncated", f"{len(raw)} bytes are too short for a HEX/BCD frame (at least 17)")
    direction, length = _hex_length(raw)
    if direction not in (0, 8):
        raise _fail("format", f"direction nibble {direction:X} is neither 0 (up) nor 8 (down)")
    expected = _HEX_HEADER + length + 3
    if len(raw) != expected:
        raise _fail("length", f"the length field says {expected} bytes in all, the frame has {len(raw)}")
    start, end = raw[13], raw[_HEX_HEADER + length]
    _check_start_end(start, end, length, 3)
    crc_sent = (raw[-2] << 8) | raw[-1]
    crc_calc = crc16(raw[:-2])
    if crc_sent != crc_calc:
        raise _fail("crc", f"CRC in frame {crc_sent:04X}, computed {crc_calc:04X}")
    upstream = direction == 0
    if upstream:
        center, address = raw[2], raw[3:8].hex().upper()
    else:
        address, center = raw[2:7].hex().upper(), raw[7]
    packet = None
    body = raw[_HEX_HEADER : _HEX_HEADER + length]
    if start == SYN:
        word = int.from_bytes(body[:3], "big")
        packet = _packet(word >> 12, word & 0xFFF)
        body = body[3:]
    return Frame(
        raw=raw,
        encoding="hex",
        center=center,
        address=address,
        password=raw[8:10].hex().upper(),
        fc=raw[10],
        upstream=upstream,
        body=body,
        end=end,
        packet=packet,
    )


def _parse_ascii_frame(raw: bytes) -> Frame:
    if len(raw) < _ASCII_HEADER + 5:
        raise _fail("truncated", f"{len(raw)} bytes are too short for an ASCII frame (at least 29)")
    header = raw[1:23]
    if not all(c in _HEXDIGITS for c in header):
        raise _fail("format", "the ASCII header (addresses, password, FC, length) is not hex text")
    direction, length = _hex_length_text(header[18:22])
    if direction not in (0, 8):
        raise _fail("format", f"direction digit {direction:X} is neither 0 (up) nor 8 (down)")
    expected = _ASCII_HEADER + length + 5
    if len(raw) != expected:
        raise _fail("length", f"the length field says {expected} bytes in all, the frame has {len(raw)}")
    start, end = raw[23], raw[_ASCII_HEADER + length]
    _check_start_end(start, end, length, 6)
    crc_text = raw[-4:]
    if not all(c in _HEXDIGITS for c in crc_text):
        raise _fail("crc", f"the CRC {crc_text!r} is not 4 hex characters")
    crc_sent, crc_calc = int(crc_text, 16), crc16(raw[:-4])
    if crc_sent != crc_calc:
        raise _fail("crc", f"CRC in frame {crc_sent:04X}, computed {crc_calc:04X}")
    text = header.decode("ascii").upper()
    upstream = direction == 0
    if upstream:
        center, address = int(text[0:2], 16), text[2:12]
    else:
        address, center = text[0:10], int(text[10:12], 16)
    body = raw[_ASCII_HEADER : _ASCII_HEADER + length]
    packet = None
    if start == SYN:
        if not all(c in _HEXDIGITS for c in body[:6]):
            raise _fail("format", "the M3 packet field is not 6 hex characters")
        packet = _packet(int(body[:3], 16), int(body[3:6], 16))
        body = body[6:]
    return Frame(
        raw=raw,
        encoding="ascii",
        center=center,
        address=address,
        password=text[12:16],
        fc=int(text[16:18], 16),
        upstream=upstream,
        body=body,
        end=end,
        packet=packet,
    )


def _check_start_end(start: int, end: int, length: int, packet_len: int) -> None:
    if start not in (STX, SYN):
        raise _fail("format", f"byte {start:02X} after the header is neither STX 02 nor SYN 16")
    if start == SYN and length < packet_len:
        raise _fail("format", "an M3 (SYN) frame without its packet field")
    if end not in END_CHARS:
        raise _fail("format", f"end character {end:02X} is not ETX/ETB/ENQ/ACK/NAK/EOT/ESC")


def _packet(total: int, number: int) -> tuple[int, int]:
    if not 1 <= number <= total:
        raise _fail("format", f"M3 packet number {number} of {total} is out of range")
    return total, number


# ------------------------------------------------------------------------------------ framer


class Framer:
    """Split a TCP byte stream into candidate frames by their length field.

    Finds ``7E 7E`` (or SOH for ASCII), reads the length word, waits for the whole frame and
    checks its CRC; on a failure it advances one byte and resynchronises. Skipped bytes (garbage,
    a frame with a bad CRC, an oversize header) come out as one ``Sl651Error`` per run, carrying
    them in ``.payload``.
    """

    def __init__(self, *, max_frame_bytes: int = 8192) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes | Sl651Error]:
        """Add bytes; return the complete frames and the skipped runs, in stream order."""
        self._buf += data
        out: list[bytes | Sl651Error] = []
        buf, pos = self._buf, 0
        skipped_from: int | None = None
        why: tuple[str, str] | None = None
        while pos < len(buf):
            start = self._next_start(pos)
            if start is None:
                keep = 1 if buf[-1] == 0x7E else 0
                if len(buf) - keep > pos and skipped_from is None:
                    skipped_from = pos
                pos = len(buf) - keep
                break
            if start > pos and skipped_from is None:
                skipped_from = pos
            pos = start
            status, size, reason = self._candidate(pos)
            if status == "need":
                later = self._complete_frame_after(pos)
                if later is None:
                    break
                # a false start (7E 7E in noise announcing a long frame) must not hold back
                # the real frames behind it until its length is reached
                skipped_from = pos if skipped_from is None else skipped_from
                pos = later
                continue
            if status == "frame":
                if skipped_from is not None:
                    out.append(self._skipped(bytes(buf[skipped_from:pos]), why))
                    skipped_from, why = None, None
                out.append(bytes(buf[pos : pos + size]))
                pos += size
                continue
            if skipped_from is None:
                skipped_from = pos
            if why is None or why[0] == "sl651_garbage":
                why = (status, reason)
            pos += 1
        if skipped_from is not None:
            out.append(self._skipped(bytes(buf[skipped_from:pos]), why))
        del buf[:pos]
        return out

    def pending(self) -> int:
        """Bytes of a partial frame held back."""
        return len(self._buf)

    def flush(self) -> bytes:
        """Give up the partial frame and return its bytes."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def _next_start(self, pos: int) -> int | None:
        buf = self._buf
        hex_at = buf.find(HEX_START, pos)
        soh_at = buf.find(SOH, pos, hex_at if hex_at >= 0 else len(buf))
        if soh_at >= 0:
            return soh_at
        return hex_at if hex_at >= 0 else None

    def _complete_frame_after(self, pos: int) -> int | None:
        """Start of a complete, CRC-valid frame after ``pos`` (a few CRC checks at most)."""
        checks, at = 0, pos + 1
        for _ in range(LOOKAHEAD_STARTS):
            start = self._next_start(at)
            if start is None:
                return None
            status, _, _ = self._candidate(start)
            if status == "frame":
                return start
            if status in ("sl651_crc", "sl651_format"):
                checks += 1
                if checks >= LOOKAHEAD_CRC_CHECKS:
                    return None
            at = start + 1
        return None

    def _candidate(self, pos: int) -> tuple[str, int, str]:
        """("need" | "frame" | error code, frame size, reason) for a start at ``pos``."""
        buf = self._buf
        avail = len(buf) - pos
        ascii_frame = buf[pos] == SOH
        header, tail, packet_len = (_ASCII_HEADER, 5, 6) if ascii_frame else (_HEX_HEADER, 3, 3)
        if ascii_frame:
            hexlen = min(avail, 23) - 1
            if not all(c in _HEXDIGITS for c in buf[pos + 1 : pos + 1 + hexlen]):
                return "sl651_garbage", 0, "not a frame start"
        if avail < header - 1:
            return "need", 0, ""
        parsed = _ascii_length(buf, pos) if ascii_frame else _hex_length(buf, pos)
        if parsed is None or parsed[0] not in (0, 8):
            return "sl651_garbage", 0, "not a frame start"
        size = header + parsed[1] + tail
        if size > self.max_frame_bytes:
            return "sl651_oversize", 0, f"a header announcing {size} bytes (limit {self.max_frame_bytes})"
        if avail < header:
            return "need", 0, ""
        start = buf[pos + header - 1]
        if start not in (STX, SYN) or (start == SYN and parsed[1] < packet_len):
            return "sl651_garbage", 0, "not a frame start"
        if avail < size:
            return "need", 0, ""
        if buf[pos + header + parsed[1]] not in END_CHARS:
            return "sl651_format", 0, "a frame whose end character is not at the position its length gives"
        candidate = bytes(buf[pos : pos + size])
        if ascii_frame:
            text = candidate[-4:]
            ok = all(c in _HEXDIGITS for c in text) and int(text, 16) == crc16(candidate[:-4])
        else:
            ok = ((candidate[-2] << 8) | candidate[-1]) == crc16(candidate[:-2])
        if not ok:
            return "sl651_crc", 0, "a frame with a bad CRC"
        return "frame", size, ""

    @staticmethod
    def _skipped(data: bytes, why: tuple[str, str] | None) -> Sl651Error:
        code, what = why if why is not None else ("sl651_garbage", "bytes outside any frame")
        if code == "sl651_garbage":
            what = "bytes outside any frame"
        return Sl651Error(
            code,
            f"{len(data)} bytes skipped ({what}); the stream resynchronised on the next frame start",
            payload=data,
        )


# ------------------------------------------------------------------------------------ report


@dataclass(frozen=True, slots=True)
class Element:
    """One value of one element; ``value`` None = missing (all F / ``M``); ``observed`` UTC."""

    name: str
    value: float | None
    observed: datetime
    decimals: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    """A decoded uplink report (a 2F keep-alive has no elements)."""

    serial: int
    sent: datetime
    station: str | None
    station_class: str | None
    elements: list[Element]
    truncated_at: str | None = None  # parsing stopped at this private / undecodable block
    deviations: tuple[str, ...] = field(default=())


def parse_report(frame: Frame, *, tz: tzinfo) -> Report:
    """Decode the body of an uplink report; times are local (``tz``) on the wire, UTC here."""
    if frame.fc != KEEPALIVE and frame.fc not in REPORT_FCS:
        raise _fail(
            "unsupported_fc", f"function code {frame.fc:02X}H is not an uplink report this decoder reads"
        )
    if frame.encoding == "hex":
        return _HexBody(frame.body, frame.fc, tz).parse()
    return _AsciiBody(frame.body, frame.fc, tz).parse()


def _bcd_digits(data: bytes | bytearray) -> str | None:
    text = data.hex()
    return text if text.isdigit() else None


def _local_time(digits: str, tz: tzinfo) -> datetime:
    """YYMMDDhhmm[ss] (local, 20YY) → aware UTC."""
    try:
        ts = datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12] or 0),
            tzinfo=tz,
        )
    except ValueError as exc:
        raise _fail("format", f"time {digits} is not a valid YYMMDDhhmm[ss]: {exc}") from None
    return ts.astimezone(UTC)


class _Stop(Exception):
    """Stop decoding the body here (private or undecodable block); ``resumable``: try the tail."""

    def __init__(self, at: str, *, resumable: bool = True) -> None:
        super().__init__(at)
        self.at = at
        self.resumable = resumable


class _HexBody:
    """Walk a HEX/BCD body: guide, definition byte, data (``specs/protocols.md`` §2.8-2.9)."""

    def __init__(self, body: bytes, fc: int, tz: tzinfo, *, strict: bool = False) -> None:
        self.body, self.fc, self.tz, self.strict = body, fc, tz, strict
        self.pos = 0
        self.elements: list[Element] = []
        self.deviations: list[str] = []
        self.station: str | None = None
        self.station_class: str | None = None
        self.observed: datetime | None = None
        self.step_min = 0

    def parse(self) -> Report:
        body = self.body
        if len(body) < 8:
            raise _fail(
                "truncated", f"the body has {len(body)} bytes, a report needs at least 8 (serial, time)"
            )
        serial = int.from_bytes(body[0:2], "big")
        digits = _bcd_digits(body[2:8])
        if digits is None:
            raise _fail("format", f"send time {body[2:8].hex().upper()} is not BCD")
        sent = _local_time(digits, self.tz)
        self.pos = 8
        truncated_at = self._walk() if self.fc != KEEPALIVE else None
        return Report(
            serial=serial,
            sent=sent,
            station=self.station,
            station_class=self.station_class,
            elements=self.elements,
            truncated_at=truncated_at,
            deviations=tuple(dict.fromkeys(self.deviations)),
        )

    def _walk(self) -> str | None:
        """Decode every element; at an undecodable block stop there and look for a standard tail.

        Returns the name of the block where decoding stopped (None: the whole body decoded).
        A body that breaks before its first element is refused (``Sl651Error``).
        """
        at = self.pos
        try:
            while self.pos < len(self.body):
                at = self.pos
                self._element()
        except _Stop as stop:
            if stop.resumable:
                self._recover_tail(at + 1)
            return stop.at
        except Sl651Error:
            if not self.elements:
                raise
            return f"{self.body[at]:02X}"
        return None

    def _recover_tail(self, after: int) -> None:
        """After a private block: the longest tail of standard elements that ends the body exactly.

        Vendors put private series before the standard tail (e.g. ``79 79 …`` then ``VT``); only
        the last ``TAIL_WINDOW`` bytes are tried, each candidate must decode strictly (standard
        guides, valid BCD) to the last byte, and the elements keep the current observation time.
        """
        for start in range(max(after, len(self.body) - TAIL_WINDOW), len(self.body) - 2):
            tail = _HexBody(self.body, self.fc, self.tz, strict=True)
            tail.pos, tail.observed, tail.station = start, self.observed, self.station
            try:
                while tail.pos < len(self.body):
                    tail._element()
            except (_Stop, Sl651Error):
                continue
            if tail.elements:
                self.elements.extend(tail.elements)
                return

    def _take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.body):
            raise _fail(
                "truncated",
                f"{what} needs {n} bytes at body offset {self.pos}, only {len(self.body) - self.pos} left",
            )
        data = self.body[self.pos : self.pos + n]
        self.pos += n
        return data

    def _element(self) -> None:
        at = self.pos
        guide = self.body[at]
        if guide == 0xF0:
            self._marker(0xF0, "obs_time_marker_F028")
            digits = _bcd_digits(self._take(5, "an observation time"))
            if digits is None:
                raise _fail("format", f"observation time at body offset {at + 2} is not BCD")
            self.observed = _local_time(digits, self.tz)
            self.step_min = 0
            return
        if guide == 0xF1:
            self._marker(0xF1, "station_marker_F128")
            address = self._take(5, "a station address").hex().upper()
            cls = self._take(1, "a station class")[0]
            if self.station is not None and address != self.station:
                # a second station packed into the report: its values are not this RTU's
                raise _Stop(f"F1F1 {address}", resumable=False)
            self.station = address
            self.station_class = chr(cls) if 0x41 <= cls <= 0x5A else f"{cls:02X}"
            return
        if guide in (0xF2, 0xF3):  # manual-entry text / picture: the rest of the body
            raise _Stop(f"{guide:02X}{guide:02X}", resumable=False)
        if self.observed is None:
            raise _fail(
                "format", f"element {guide:02X} at body offset {at} comes before any observation time"
            )
        if self.strict and guide not in GUIDE_NAMES and guide != 0xF0:
            raise _Stop(f"{guide:02X}")
        if guide == 0xFF:  # FF <guide> <definition>: user-extended identifier
            guide2, definition = self._take(3, "an extended identifier")[1:]
            self._bcd_element(f"FF{guide2:02X}", definition, at, strict=False)
            return
        definition = self._take(2, "an element guide and definition")[1]
        if guide == 0x04:
            self._time_step(definition)
        elif guide == DRP_GUIDE or guide in DRZ_GUIDES:
            self._five_minute_series(guide, definition)
        elif guide == 0x45:
            data = self._take(definition >> 3, "ZT")
            self._add("ZT", int.from_bytes(data, "big") if any(b != 0xFF for b in data) else None, 0)
        elif guide in GUIDE_NAMES:
            self._bcd_element(GUIDE_NAMES[guide], definition, at, strict=True)
        elif self._sane(guide, definition):
            self._bcd_element(f"X{guide:02X}", definition, at, strict=False)
        else:
            raise _Stop(f"{guide:02X}")

    def _marker(self, guide: int, deviation: str) -> None:
        second = self.body[self.pos + 1] if self.pos + 1 < len(self.body) else None
        if second == 0x28:
            self.deviations.append(deviation)
        elif second != guide:
            raise _Stop(f"{guide:02X}{second:02X}" if second is not None else f"{guide:02X}")
        self.pos += 2

    def _time_step(self, definition: int) -> None:
        """``04 18 d h m``: 3 BCD bytes (days, hours, minutes); some RTUs write them as binary."""
        data = self._take(definition >> 3, "a time step")
        if len(data) != 3:
            raise _Stop(f"04{definition:02X}")
        digits = _bcd_digits(data)
        if digits is None:
            self.deviations.append("time_step_binary")
            day, hour, minute = data
        else:
            day, hour, minute = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
        self.step_min = day * 1440 + hour * 60 + minute

    def _five_minute_series(self, guide: int, definition: int) -> None:
        """F4 DRP: 1 byte HEX per slot, 0.1 mm; F5..FC DRZn: 2 bytes HEX, cm; all-FF invalid."""
        width = 1 if guide == DRP_GUIDE else 2
        name = GUIDE_NAMES[guide]
        data = self._take(definition >> 3, name)
        invalid = (1 << (8 * width)) - 1
        for i in range(len(data) // width):
            raw = int.from_bytes(data[i * width : (i + 1) * width], "big")
            value = None if raw == invalid else (raw / 10 if width == 1 else raw / 100)
            # the tag is the end of the first slot; slot i ends 5 min later each
            self._add(name, value, 1 if width == 1 else 2, offset_min=5 * i)

    @staticmethod
    def _sane(guide: int, definition: int) -> bool:
        """A plausible definition byte for an unknown guide (private blocks repeat the guide)."""
        length, decimals = definition >> 3, definition & 7
        return definition != guide and 1 <= length <= 8 and decimals <= 2 * length

    def _bcd_element(self, name: str, definition: int, at: int, *, strict: bool) -> None:
        length, decimals = definition >> 3, definition & 7
        if length == 0:
            raise _Stop(f"{self.body[at]:02X}")
        count = self._series_count(length)
        for i in range(count):
            data = self._take(length, name)
            value, ok = _bcd_value(data, decimals)
            if not ok:
                if strict or self.strict:
                    raise _Stop(f"{self.body[at]:02X}")
                continue
            self._add(name, value, decimals, offset_min=i * self.step_min)

    def _series_count(self, length: int) -> int:
        """How many values follow: several only in a uniform-interval report after a time step."""
        if self.fc not in SERIES_FCS or self.step_min <= 0:
            return 1
        left = len(self.body) - self.pos
        if left % length == 0:
            return max(1, left // length)
        per_hour = 60 // self.step_min if 60 % self.step_min == 0 else 0
        end = self.pos + per_hour * length
        if per_hour and end < len(self.body) and (self.body[end] in GUIDE_NAMES or self.body[end] == 0xF0):
            return per_hour
        return 1

    def _add(self, name: str, value: float | None, decimals: int, *, offset_min: int = 0) -> None:
        if self.observed is None:  # checked by _element
            raise _fail("format", f"element {name} comes before any observation time")
        observed = self.observed + timedelta(minutes=offset_min) if offset_min else self.observed
        self.elements.append(Element(name, value, observed, decimals))


def _bcd_value(data: bytes, decimals: int) -> tuple[float | None, bool]:
    """(value, ok) of a BCD field: all FF = missing; a leading FF byte = negative."""
    if all(b == 0xFF for b in data):
        return None, True
    sign = 1
    if data[0] == 0xFF:
        sign, data = -1, data[1:]
    text = data.hex()
    if sign < 0 and text[:1] == "f":  # odd digit count: F F 0 then the digits
        text = text[1:]
    if not text.isdigit():
        return None, False
    return sign * int(text) / 10**decimals, True


def _prescan_deviations(body: bytes) -> tuple[str, ...]:
    """Marker deviations of a HEX report body (for counting before the report is decoded)."""
    try:
        return _HexBody(body, 0x30, UTC).parse().deviations
    except Sl651Error:
        return ()


class _AsciiBody:
    """Walk an ASCII body: ``<serial><time>`` then space-terminated tokens (§2.4)."""

    def __init__(self, body: bytes, fc: int, tz: tzinfo) -> None:
        self.fc, self.tz = fc, tz
        try:
            self.text = body.decode("ascii")
        except UnicodeDecodeError:
            raise _fail("format", "an ASCII body with non-ASCII bytes") from None
        self.elements: list[Element] = []
        self.observed: datetime | None = None
        self.step_min = 0

    def parse(self) -> Report:
        text = self.text
        head = text[:16]
        if (
            len(head) < 16
            or not all(c in "0123456789ABCDEFabcdef" for c in head[:4])
            or not head[4:].isdigit()
        ):
            raise _fail("format", "an ASCII body starts with a 4-hex-digit serial and a 12-digit send time")
        serial, sent = int(head[:4], 16), _local_time(head[4:16], self.tz)
        tokens = text[16:].split(" ")
        if tokens and tokens[-1] == "":
            tokens.pop()
        station = station_class = None
        truncated_at: str | None = None
        it = _Tokens(tokens)
        if self.fc != KEEPALIVE:
            try:
                station, station_class = self._walk(it)
            except _Stop as stop:
                truncated_at = stop.at
                station, station_class = it.station, it.station_class
            except Sl651Error:
                if not self.elements:
                    raise
                truncated_at = (it.peek() or "end")[:16]
                station, station_class = it.station, it.station_class
        return Report(serial, sent, station, station_class, self.elements, truncated_at)

    def _walk(self, it: _Tokens) -> tuple[str | None, str | None]:
        for word in it:
            if word == "ST":
                it.station = it.next("ST")
                if it.peek() is not None and len(it.peek() or "") == 1:
                    it.station_class = it.next("ST")
            elif word == "TT":
                value = it.next("TT")
                if not (value.isdigit() and len(value) in (10, 12)):
                    raise _Stop("TT")
                self.observed, self.step_min = _local_time(value, self.tz), 0
            elif m := _STEP_TOKEN.fullmatch(word):
                self.step_min = _STEP_MINUTES[m.group(1)] * int(m.group(2))
            elif word == "DRP" or _DRZ_TOKEN.fullmatch(word):
                self._five_minute_series(word, it.next(word))
            elif _IDENT.fullmatch(word):
                self._values(word, it)
            else:
                raise _Stop(word[:16])
        return it.station, it.station_class

    def _five_minute_series(self, name: str, text: str) -> None:
        width = 2 if name == "DRP" else 4
        if len(text) % width or not all(c in "0123456789ABCDEFabcdef" for c in text):
            raise _Stop(name)
        invalid = (1 << (4 * width)) - 1
        for i in range(len(text) // width):
            raw = int(text[i * width : (i + 1) * width], 16)
            value = None if raw == invalid else (raw / 10 if width == 2 else raw / 100)
            self._add(name, value, 1 if width == 2 else 2, 5 * i)

    def _values(self, name: str, it: _Tokens) -> None:
        series = self.fc in SERIES_FCS and self.step_min > 0
        i = 0
        while True:
            nxt = it.peek()
            if nxt is None or not (nxt == "M" or _NUMBER.fullmatch(nxt)):
                break
            it.next(name)
            value = None if nxt == "M" else float(nxt)
            if value is not None and not isfinite(value):
                raise _Stop(name)
            decimals = len(nxt.partition(".")[2]) if value is not None else 0
            self._add(name, value, decimals, i * self.step_min)
            i += 1
            if not series:
                break
        if i == 0:
            raise _Stop(name)

    def _add(self, name: str, value: float | None, decimals: int, offset_min: int) -> None:
        if self.observed is None:
            raise _fail("format", f"element {name} comes before any observation time (TT)")
        self.elements.append(Element(name, value, self.observed + timedelta(minutes=offset_min), decimals))


class _Tokens:
    """A cursor over the space-separated tokens of an ASCII body."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.i = tokens, 0
        self.station: str | None = None
        self.station_class: str | None = None

    def __iter__(self) -> Iterator[str]:
        while self.i < len(self.tokens):
            self.i += 1
            yield self.tokens[self.i - 1]

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self, what: str) -> str:
        if self.i >= len(self.tokens):
            raise _Stop(what)
        self.i += 1
        return self.tokens[self.i - 1]


# ---------------------------------------------------------------------------------- readings


@dataclass(frozen=True, slots=True)
class Decoded:
    """Readings of one report, and the element names the device type does not map."""

    readings: list[Reading]
    unknown: tuple[str, ...]


def to_readings(report: Report, record: DeviceRecord) -> Decoded:
    """Map a report's elements to the device type's metrics (``MetricSpec.sl651_code``).

    ``rain`` (an increment in mm) comes from the finest period rainfall present, DRP > PN05 >
    PN10 > PN30 > PN01 > P1, never two of them, whatever code the ``rain`` spec names (each value
    is stamped at the end of its period, so a DRP slot and a PN05 of the same 5 minutes land on
    the same timestamp); cumulative counters (PJ, PT, PD) are stored only under metrics of their
    own. ``level`` without a code is Z; a level read from Z also takes DRZ1 (the 5-min stage).
    DRZn values get the station's level base (``Sl651Link.level_base_m``). Missing values are skipped.
    """
    by_code = {spec.sl651_code: spec for spec in record.metrics.values() if spec.sl651_code}
    level = record.metrics.get("level")
    if level is not None and level.sl651_code is None:
        by_code.setdefault("Z", level)  # a type without SL 651 codes: level is the river stage Z
    if level is not None and by_code.get("Z") is level:
        # DRZ1 is the same stage every 5 minutes (its last slot equals Z): the finer series of level
        by_code.setdefault("DRZ1", level)
    rain_spec = record.metrics.get("rain")
    present = {e.name for e in report.elements}
    rain_source = next((name for name in RAIN_SOURCES if name in present), None) if rain_spec else None
    base = record.sl651.level_base_m if record.sl651 is not None else 0.0
    readings: list[Reading] = []
    unknown: dict[str, None] = {}
    # a measured value beats a 5-min series slot (DRZ, cm) at the same instant (Z has mm)
    exact = {
        (by_code[e.name].metric, e.observed)
        for e in report.elements
        if e.name in by_code and e.value is not None and not e.name.startswith("DRZ")
    }
    for element in report.elements:
        spec = by_code.get(element.name)
        if rain_spec is not None and element.name in RAIN_SOURCES:
            if element.name != rain_source:
                continue
            spec = rain_spec
        elif spec is not None and spec is rain_spec:
            continue  # the rain metric's own code when it is not a rain source is ignored
        if spec is None:
            unknown[element.name] = None
            continue
        if element.value is None:
            continue
        if element.name.startswith("DRZ"):
            if (spec.metric, element.observed) in exact:
                continue
            value = element.value + base
        else:
            value = element.value
        readings.append(
            Reading(
                metric=spec.metric, value=value, unit=spec.unit, ts=element.observed, quality=Quality.NORMAL
            )
        )
    return Decoded(readings=readings, unknown=tuple(unknown))


def dedup_key(frame: Frame, report: Report) -> tuple[str, int, int, datetime | None]:
    """(RTU address, FC, serial, first observation time): a resent report keeps all four."""
    first = report.elements[0].observed if report.elements else None
    return frame.address, frame.fc, report.serial, first


# ---------------------------------------------------------------------------------- encoders


def encode_hex_frame(
    *,
    center: int,
    address: str,
    password: str,
    fc: int,
    body: bytes,
    upstream: bool = True,
    end: int = ETX,
    packet: tuple[int, int] | None = None,
) -> bytes:
    """A HEX/BCD frame (§2.3); downlink frames put the RTU address first."""
    addr = bytes.fromhex(address)
    if len(addr) != 5 or not 0 <= center <= 0xFF:
        raise ValueError("address must be 10 hex digits and center 0..255")
    head = bytes([center]) + addr if upstream else addr + bytes([center])
    payload = body if packet is None else (packet[0] << 12 | packet[1]).to_bytes(3, "big") + body
    if len(payload) > _MAX_BODY:
        raise ValueError(f"body of {len(payload)} bytes exceeds 4095")
    word = (0 if upstream else 0x8000) | len(payload)
    frame = (
        HEX_START
        + head
        + bytes.fromhex(password)
        + bytes([fc])
        + word.to_bytes(2, "big")
        + bytes([STX if packet is None else SYN])
        + payload
        + bytes([end])
    )
    return frame + crc16(frame).to_bytes(2, "big")


def encode_ascii_frame(
    *,
    center: int,
    address: str,
    password: str,
    fc: int,
    body: bytes,
    upstream: bool = True,
    end: int = ETX,
    packet: tuple[int, int] | None = None,
) -> bytes:
    """An ASCII frame (§2.4); the CRC is sent as 4 upper-case hex characters."""
    addrs = f"{center:02X}{address}" if upstream else f"{address}{center:02X}"
    payload = body if packet is None else f"{packet[0]:03X}{packet[1]:03X}".encode() + body
    if len(payload) > _MAX_BODY:
        raise ValueError(f"body of {len(payload)} bytes exceeds 4095")
    word = (0 if upstream else 0x8000) | len(payload)
    head = f"{addrs}{password}{fc:02X}{word:04X}".encode("ascii")
    frame = bytes([SOH]) + head + bytes([STX if packet is None else SYN]) + payload + bytes([end])
    return frame + f"{crc16(frame):04X}".encode("ascii")


def _serial_of(frame: Frame) -> bytes:
    """The report's serial as written in the frame (2 bytes HEX / 4 hex chars ASCII)."""
    size = 2 if frame.encoding == "hex" else 4
    if len(frame.body) < size:
        raise _fail("truncated", "the body has no serial number to confirm")
    return frame.body[:size]


def _reply(frame: Frame, now_local: datetime, end: int, packet: tuple[int, int] | None) -> bytes:
    stamp = now_local.strftime("%y%m%d%H%M%S")
    if frame.encoding == "hex":
        body = _serial_of(frame) + bytes.fromhex(stamp)
        encode = encode_hex_frame
    else:
        body = _serial_of(frame) + stamp.encode("ascii")
        encode = encode_ascii_frame
    return encode(
        center=frame.center,
        address=frame.address,
        password=frame.password,
        fc=frame.fc,
        body=body,
        upstream=False,
        end=end,
        packet=packet,
    )


def confirmation(frame: Frame, now_local: datetime, end: Literal["eot", "esc"] = "eot") -> bytes:
    """The center's M2/M3 confirmation: same FC and serial, the center's local time, EOT or ESC.

    For a reassembled M3 group the packet field is total/total (§2.11).
    """
    packet = (frame.packet[0], frame.packet[0]) if frame.packet is not None else None
    return _reply(frame, now_local, EOT if end == "eot" else ESC, packet)


def ack_etb(frame: Frame, now_local: datetime) -> bytes:
    """The ACK-terminated confirmation of a frame ending with ETB (more frames follow)."""
    return _reply(frame, now_local, ACK, None)


def nak(frame: Frame, packet_no: int, now_local: datetime) -> bytes:
    """Ask for M3 packet ``packet_no`` again (NAK; the packet field names it)."""
    total = frame.packet[0] if frame.packet is not None else packet_no
    stamp = now_local.strftime("%y%m%d%H%M%S")
    body = bytes(2) + bytes.fromhex(stamp) if frame.encoding == "hex" else b"0000" + stamp.encode("ascii")
    encode = encode_hex_frame if frame.encoding == "hex" else encode_ascii_frame
    return encode(
        center=frame.center,
        address=frame.address,
        password=frame.password,
        fc=frame.fc,
        body=body,
        upstream=False,
        end=NAK,
        packet=(total, packet_no),
    )


# ---------------------------------------------------------------------------------- packets


@dataclass
class _Group:
    first_seen: float
    total: int
    frames: dict[int, Frame]


class Packets:
    """M3 reassembly: SYN frames of one (address, FC) collected until every packet is in."""

    def __init__(self, *, timeout_s: float = 120.0, max_pending: int = 200) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._groups: dict[tuple[str, int], _Group] = {}
        self._evicted: list[list[Frame]] = []

    def add(self, frame: Frame, now: float) -> Frame | None:
        """Hold a packet; return the merged frame (bodies in packet order) once complete."""
        if frame.packet is None:
            return frame
        total, number = frame.packet
        key = (frame.address, frame.fc)
        group = self._groups.get(key)
        if group is not None and (group.total != total or (number == 1 and 1 in group.frames)):
            self._evicted.append(self._sorted(self._groups.pop(key)))  # a new group replaces it
            group = None
        if group is None:
            if len(self._groups) >= self.max_pending:
                oldest = min(self._groups, key=lambda k: self._groups[k].first_seen)
                self._evicted.append(self._sorted(self._groups.pop(oldest)))
            group = self._groups[key] = _Group(now, total, {})
        group.frames[number] = frame
        if len(group.frames) < total:
            return None
        del self._groups[key]
        frames = self._sorted(group)
        body = b"".join(f.body for f in frames)
        deviations = _prescan_deviations(body) if frame.encoding == "hex" and frame.fc in REPORT_FCS else ()
        return replace(
            frames[0],
            raw=b"".join(f.raw for f in frames),
            body=body,
            end=frames[-1].end,
            packet=(total, total),
            deviations=deviations,
        )

    def expire(self, now: float) -> list[list[Frame]]:
        """Give up groups older than ``timeout_s`` (and groups pushed out); return their frames."""
        out, self._evicted = self._evicted, []
        for key in [k for k, g in self._groups.items() if now - g.first_seen >= self.timeout_s]:
            out.append(self._sorted(self._groups.pop(key)))
        return out

    def pending(self) -> int:
        """Groups waiting for packets."""
        return len(self._groups)

    @staticmethod
    def _sorted(group: _Group) -> list[Frame]:
        return [group.frames[n] for n in sorted(group.frames)]
