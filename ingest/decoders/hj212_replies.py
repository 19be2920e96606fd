"""HJ 212 frames the center sends (§1.8), and the station's clock drift.

Replies echo the QN, PW and MN of what they answer, with ``ST=91`` and the CRC variant the
station used. HJ/T 212-2005 replies carry no QN in the header but ``CP=&&QN=…;…&&``; the
style follows the version bits of the received frame.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from ingest.decoders.hj212_cp import local_time
from ingest.decoders.hj212_frame import CrcVariant, Frame, Hj212Error, crc_of

__all__ = [
    "encode_frame",
    "make_qn",
    "reply_9011",
    "reply_9012",
    "reply_9013",
    "reply_9014",
    "set_time_1012",
    "station_clock_drift",
]

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
            station = local_time(params["SystemTime"], "SystemTime", tz)
        elif frame.qn is not None and len(frame.qn) == 13 and frame.qn.isdigit():
            station = datetime.fromtimestamp(int(frame.qn) / 1000, UTC)
        elif frame.qn is not None:
            station = local_time(frame.qn, "QN", tz)
        else:
            return None
    except (Hj212Error, ValueError, OverflowError, OSError):
        return None
    return (station - now_utc).total_seconds()
