"""The bytes of a device's analytics state in the worker's ``devices`` table (pure).

A device reporting six metrics once a minute holds about 650 window entries (the open hour's
minute slots, 48 closed hours, 24 h of rain). As the JSON of ``DeviceState.dump`` that is
~24 kB, and ~0.4 ms per batch to decode and encode: ``load`` and ``dump`` rebuild every entry
in Python (``[key, *values]`` lists, ``int(key)``). msgpack (msgspec) takes the window maps
as they are, ``{key: [values]}`` with integer keys, in C (measured: decode ~3x, encode ~7x
faster than the JSON, 15 % smaller). Floats are float64 on the wire: back bit for bit.

Format: ``b"\\x02"`` + msgpack ``[wm, seen, closed, late, excluded, spikes, oor, emitted,
metrics, rules, shipments, hours, applied, counted]`` (``counted``: per metric, the times of
the readings last counted as late, flagged or spikes, as little-endian float64 bytes; values
written before ``applied`` or ``counted`` were kept end earlier and decode with them unknown or
empty), metrics ``{metric: [raw, hours, last, flat, means]}`` (``means``: the remembered window means,
``MetricState.means``; a value written before them has four fields and decodes without). From
``COMPRESS_FROM`` bytes on, the metrics go as LZ4-compressed msgpack (bytes instead of a map):
a device with 48 h of hours of six metrics is ~21 kB of windows, ~9 kB as a table value (zlib
made ~7 kB), and the table holds every device's value in memory (10,000 such devices: ~90 MB
instead of ~210 MB). From ``HOURS_APART_FROM`` closed hours on, the closed hours of all metrics
go as the twelfth field, on their own, LZ4-compressed msgpack ``{metric: hours}`` (the metrics'
own ``hours`` are then nil): they change once an hour, and the compressed bytes read or written
last are reused until then (``DeviceState.packed_hours``), so a batch compresses only the open
hour's windows (measured, 48 h of six metrics: encode ~280 -> ~140 µs per batch). The header
fields stay outside, so :func:`peek_device` never decompresses. A value that starts with ``{``
is the JSON an earlier worker wrote (a changelog restored after an upgrade) and decodes as
before; one that starts with ``b"\\x01"`` has zlib blobs (written before 2026-12-02) and
decodes too. LZ4 instead of zlib level 1: measured on a device with 48 h of six metrics among
1,000 (``stationflow bench analytics``), zlib's compress and decompress were ~100 and ~40 µs
per call, a third of the update's CPU; LZ4 is several times faster for values about a fifth
larger (8.7 instead of 7.2 kB for that device; the windows' blob ~2.9 instead of ~2.1 kB)."""

from __future__ import annotations

import zlib
from typing import Any

import lz4.block
import msgspec
import orjson

from streams.analytics.device import DeviceState, MetricState, load_hours

__all__ = [
    "COMPRESS_FROM",
    "HOURS_APART_FROM",
    "VERSION",
    "ZLIB_VERSION",
    "decode_device",
    "encode_device",
    "peek_device",
]

VERSION = b"\x02"  # blobs in LZ4
ZLIB_VERSION = b"\x01"  # blobs in zlib: values written before 2026-12-02, read, never written
COMPRESS_FROM = 4096  # bytes of msgpack windows; below, compressing saves too little for its cost
HOURS_APART_FROM = 48  # closed hours (all metrics) from which they are compressed on their own
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()
_R = msgspec.Raw  # a field left undecoded
# msgspec.Raw, untyped: msgspec's stubs call Raw a subclass of bytes, so mypyc checks a Raw it
# is typed to return for being bytes (it is not) and refuses it at run time
_INLINE: Any = msgspec.Raw
_PEEK = msgspec.msgpack.Decoder(list[_R])  # 11 to 14 fields (see the format)
_SEEN = msgspec.msgpack.Decoder(float)
_RULES = msgspec.msgpack.Decoder(dict[str, list[Any]])


def encode_device(state: DeviceState) -> bytes:
    """The table value of ``state``."""
    hours = _packed_hours(state)
    packed = _ENCODER.encode(
        {
            name: (m.raw, None if hours else m.hours, m.last, m.flat, m.means)
            for name, m in state.metrics.items()
        }
    )
    # below COMPRESS_FROM the map goes inline as the msgpack already made (msgspec.Raw), not
    # encoded a second time: the same bytes, about 1.3 µs less per update of a new device
    metrics: object = _compress(packed) if len(packed) >= COMPRESS_FROM else _INLINE(packed)
    fields = (
        state.wm,
        state.seen,
        state.closed,
        state.late,
        state.excluded,
        state.spikes,
        state.out_of_range,
        state.emitted,
        metrics,
        state.rules,
        state.shipments,
    )
    return VERSION + _ENCODER.encode((*fields, hours, state.applied, state.counted))


def _packed_hours(state: DeviceState) -> bytes | None:
    """The compressed ``{metric: hours}`` of ``state`` (None: small enough to go inline).

    Compressed once per closed hour, not once per batch: the blob read or written last is
    reused while ``(closed, metric count)`` is unchanged (hours change only when hours close,
    which moves ``closed``; a metric first seen has none).
    """
    signature = (state.closed, len(state.metrics))
    known = state.packed_hours
    if known is not None and known[:2] == signature:
        return known[2]
    load_hours(state)  # (a metric first seen in a lazily decoded state: hours packed anew)
    if sum(len(m.hours) for m in state.metrics.values()) < HOURS_APART_FROM:
        state.packed_hours = None
        return None
    blob = _compress(_ENCODER.encode({name: m.hours for name, m in state.metrics.items()}))
    state.packed_hours = (*signature, blob)
    return blob


def decode_device(value: bytes | None, *, lazy: bool = False) -> DeviceState:
    """The state in a table value (None or empty: a fresh state; JSON: an earlier worker's).

    ``lazy``: closed hours that went on their own stay packed until the update needs them
    (``DeviceState.hours_loader``, :func:`streams.analytics.device.load_hours`); the worker's
    way. The state then compares equal to the eager one only after ``load_hours``.
    """
    if not value:
        return DeviceState()
    version = value[:1]
    if version != VERSION and version != ZLIB_VERSION:
        return DeviceState.load(orjson.loads(value))
    decompress = _decompress if version == VERSION else zlib.decompress
    wm, seen, closed, late, excluded, spikes, oor, emitted, metrics, rules, ships, *rest = _DECODER.decode(
        memoryview(value)[1:]
    )
    apart = rest[0] if rest else None  # the closed hours, when they go on their own
    applied = rest[1] if len(rest) > 1 else None
    counted = rest[2] if len(rest) > 2 else {}
    if isinstance(metrics, bytes):
        metrics = _DECODER.decode(decompress(metrics))
    loader = None
    if apart and lazy:
        blob = apart

        def loader() -> dict[str, dict[int, list[float]]]:
            return _DECODER.decode(decompress(blob))  # type: ignore[no-any-return]

        for fields in metrics.values():
            fields[1] = {}
    elif apart:  # the closed hours of every metric, compressed on their own
        hours = _DECODER.decode(decompress(apart))
        for name, fields in metrics.items():
            fields[1] = hours.get(name, {})
    state = DeviceState(
        wm=wm,
        seen=seen,
        closed=closed,
        late=late,
        excluded=excluded,
        spikes=spikes,
        out_of_range=oor,
        emitted=emitted,
        metrics={name: _metric(*fields) for name, fields in metrics.items()},
        rules=rules,
        shipments=ships,
        applied=applied,
        counted=counted,
        hours_loader=loader,
    )
    if apart and version == VERSION:  # a zlib blob is compressed anew (in LZ4) when written
        state.packed_hours = (closed, len(state.metrics), apart)
    return state


def _compress(data: bytes) -> bytes:
    # the uncompressed size goes first (store_size), which decompress reads
    blob: bytes = lz4.block.compress(data)
    return blob


def _decompress(blob: bytes) -> bytes:
    data: bytes = lz4.block.decompress(blob)
    return data


def _metric(
    raw: dict[int, list[float]],
    hours: dict[int, list[float]],
    last: list[float] | None,
    flat: int,
    means: dict[int, list[Any]] | None = None,  # absent in values written before it was kept
) -> MetricState:
    return MetricState(raw=raw, hours=hours, last=last, flat=flat, means=means or {})


def peek_device(value: bytes | None) -> tuple[float, dict[str, list[Any]]]:
    """``(seen, rules)`` of a table value without building its windows (~50x cheaper than
    :func:`decode_device` for a device with 48 h of hours): what the no-data timer and the
    alert sync read of every device."""
    if not value:
        return 0.0, {}
    if value[:1] != VERSION and value[:1] != ZLIB_VERSION:
        doc = orjson.loads(value)
        return float(doc["seen"]), doc.get("rules", {})
    fields = _PEEK.decode(memoryview(value)[1:])
    return _SEEN.decode(fields[1]), _RULES.decode(fields[9])
