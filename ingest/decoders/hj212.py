"""HJ 212 (HJ 212-2017 and HJ/T 212-2005), the one import for collectors.

Pure code, no I/O and no clock reads; the pieces live in small modules:

* ``hj212_frame``: CRC variants, ``parse_frame`` (the byte layout is documented there),
  the deviations it tolerates and ``strict`` mode;
* ``hj212_stream``: ``Framer`` (byte stream → candidate frames) and ``SubPackets``;
* ``hj212_cp``: the data area, ``to_readings`` and ``decode_mqtt`` (a frame as MQTT payload);
* ``hj212_replies``: the 9011/9012/9013/9014 replies, the 1012 time set, clock drift;
* ``hj212_codes``: 2005 → 2017 pollutant codes and data flags.

A TCP session, in short::

    framer, packets = Framer(), SubPackets()
    for item in framer.feed(data):
        if isinstance(item, Hj212Error): dead-letter item.payload with item.code / item.reason
        frame = parse_frame(item, strict=link.strict, crc=link.crc)   # after the MN lookup
        if frame.need_ack: send reply_9014(frame)
        merged = packets.add(frame, now)
        if merged is not None: publish to_readings(merged, record, tz=tz).readings
"""

from __future__ import annotations

from ingest.decoders.hj212_cp import DATA_CNS, CpValue, Decoded, decode_mqtt, parse_cp, to_readings
from ingest.decoders.hj212_frame import (
    CRC_VARIANTS,
    DEVIATIONS,
    CrcVariant,
    Frame,
    Hj212Error,
    crc16,
    crc16_modbus,
    crc_of,
    parse_frame,
)
from ingest.decoders.hj212_replies import (
    encode_frame,
    make_qn,
    reply_9011,
    reply_9012,
    reply_9013,
    reply_9014,
    set_time_1012,
    station_clock_drift,
)
from ingest.decoders.hj212_stream import Framer, SubPacketKey, SubPackets

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
    "SubPacketKey",
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
