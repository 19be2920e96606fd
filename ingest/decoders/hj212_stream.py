"""HJ 212 on a byte stream: the framer (§1.12.1–3) and sub-packet reassembly (§1.12.9).

Both are pure: bytes and time come in as arguments. See ``hj212_frame`` for the frame layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TypeGuard

from ingest.decoders.hj212_cp import is_self_contained
from ingest.decoders.hj212_frame import HEX4, Frame, Hj212Error, digit_run

__all__ = ["BLANK", "Framer", "SubPacketKey", "SubPackets"]

# Byte-stream framer (§1.12.1–3)

# The end of a frame: closing "&&", 4 hex CRC digits, then CR LF, or a lone LF, or a lone CR
# followed by something else, or no tail at all when the next frame's "##" follows at once.
_TERMINATOR = re.compile(rb"&&[0-9A-Fa-f]{4}(?:\r\n|\n|\r(?=[^\n])|(?=##))")
BLANK = b"\r\n\t \x00"  # between frames: dropped without complaint (extra line ends, padding)


class Framer:
    """Split an HJ 212 byte stream into candidate frames (not yet CRC-checked).

    ``feed`` returns, in stream order, complete frames (``bytes``) and ``Hj212Error`` items for
    bytes it skipped (``.payload``): ``hj212_garbage`` between frames, ``hj212_truncated`` for
    a frame cut off by the next ``##``, ``hj212_too_long`` past ``max_frame_bytes``,
    ``hj212_length`` for a frame whose length field is not 4 (or 8) digits.

    A frame is taken at its declared length when the CRC digits and a tail sit there; when
    the length is wrong, at the first ``&&`` + 4 hex + CR LF (§1.12.2). A missing CR LF is
    tolerated when other bytes follow the CRC at the declared length (or the next ``##`` at
    once), at the end of the stream (``finish``), or after a quiet moment
    (``take_unterminated``); ``parse_frame`` then records ``no_crlf``.
    A lone LF, or a lone CR followed by more bytes, also ends a frame. Blank bytes (CR, LF,
    space, tab, NUL) between frames are dropped without an error.
    """

    def __init__(self, *, max_frame_bytes: int = 16384) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[bytes | Hj212Error]:
        """Add received bytes; return the frames and skipped runs now complete.

        Adjacent skipped runs of the same kind come as one error (one dead letter for a burst
        of junk, not one per ``##``).
        """
        self._buf += data
        out: list[bytes | Hj212Error] = []
        joinable = False  # the last item is an error that ended where the next item starts
        while self._buf:
            start = self._buf.find(b"##")
            if start != 0:
                keep = 1 if start < 0 and self._buf.endswith(b"#") else 0
                cut = start if start > 0 else len(self._buf) - keep
                if cut == 0:
                    break
                item: bytes | Hj212Error | None = self._skip(cut)
            else:
                item = self._frame_at_start()
                if item is None:
                    break
            if item is None:
                joinable = False
            elif joinable and isinstance(item, Hj212Error) and _same_kind(last := out[-1], item):
                out[-1] = _joined(last, item)
            else:
                out.append(item)
                joinable = isinstance(item, Hj212Error)
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
        digits = digit_run(buf, 2, limit=9)
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
        if not data.strip(BLANK):
            return []
        if data.startswith(b"##"):
            end = _TERMINATOR.search(data + b"##", 2)
            if end is not None and end.end() >= len(data.rstrip(b"\r\n")):
                return [data]
        return [Hj212Error("hj212_truncated", f"{len(data)} bytes of an unfinished frame", payload=data)]

    def _skip(self, cut: int) -> Hj212Error | None:
        """Drop bytes outside a frame: an ``hj212_garbage`` error, or None if they were blank."""
        chunk = self._take(cut)
        if not chunk.strip(BLANK):
            return None
        return Hj212Error("hj212_garbage", f"{len(chunk)} bytes outside a frame skipped", payload=chunk)

    def _frame_at_start(self) -> bytes | Hj212Error | None:
        """The buffer starts with ``##``: a frame or skipped run, or None to wait for more bytes."""
        buf = self._buf
        if buf[2:3] == b"#":  # "###…": the frame starts one byte later
            return self._take_error(1, "hj212_garbage", "a stray '#' before a frame")
        digits = digit_run(buf, 2, limit=9)
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
        if len(buf) <= crc_end or not HEX4.fullmatch(buf, crc_end - 4, crc_end):
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
        if tail[:1] != b"\r" and buf[crc_end - 6 : crc_end - 4] == b"&&":
            return crc_end  # "&&" + CRC at the declared length, then other bytes: no CR LF
        return None

    def _take(self, end: int) -> bytes:
        frame = bytes(self._buf[:end])
        del self._buf[:end]
        return frame

    def _take_error(self, end: int, code: str, reason: str) -> Hj212Error:
        return Hj212Error(code, reason, payload=self._take(end))


def _same_kind(previous: bytes | Hj212Error, item: Hj212Error) -> TypeGuard[Hj212Error]:
    """Whether ``previous`` is an error of the same code as ``item``."""
    return isinstance(previous, Hj212Error) and previous.code == item.code


def _joined(previous: Hj212Error, item: Hj212Error) -> Hj212Error:
    """Two adjacent skipped runs of the same kind as one error."""
    payload = previous.payload + item.payload
    if item.code == "hj212_garbage":
        reason = f"{len(payload)} bytes outside a frame skipped"
    else:
        reason = f"{previous.reason.split(' (')[0]} (several runs, {len(payload)} bytes)"
    return Hj212Error(item.code, reason, payload=payload)


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
        if frame.pnum is None or frame.pno is None or frame.pnum <= 1 or is_self_contained(frame):
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
