"""What the worker remembers in a device's table value besides its windows (issue 12): the
8 h / 24 h window means (``MetricState.means``) and the compressed closed hours
(``DeviceState.packed_hours``) change nothing the analytics compute or the table holds, are
renewed whenever the closed hours change, and a value written before them still reads."""

from __future__ import annotations

import math
import random
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import lz4.block
import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.wire import WireReading, decode_batch
from streams.analytics import device
from streams.analytics.device import (
    AnalyticsConfig,
    DeviceOutput,
    DeviceState,
    _fields,
    _window_mean,
    update_device,
)
from streams.analytics.statecodec import (
    HOURS_APART_FROM,
    VERSION,
    ZLIB_VERSION,
    decode_device,
    encode_device,
    peek_device,
)
from streams.lineprotocol import escape_string

CONFIG = AnalyticsConfig()
T0 = datetime(2026, 7, 1, tzinfo=UTC)
HOUR = 3600


def _batches(seed: int, hours: int, every_min: int) -> list[list[WireReading]]:
    """An air device's messages (pm25, pm10, o3) every ``every_min`` minutes, a few swapped."""
    rnd = random.Random(seed)
    level = {"pm25": 35.0, "pm10": 60.0, "o3": 80.0}
    out = []
    minutes = list(range(0, hours * 60, every_min))
    for i in range(0, len(minutes) - 1, 7):
        minutes[i], minutes[i + 1] = minutes[i + 1], minutes[i]  # out of order now and then
    for minute in minutes:
        ts = (T0 + timedelta(minutes=minute, seconds=rnd.randint(0, 59))).isoformat()
        readings = []
        for metric in level:
            level[metric] = max(0.0, level[metric] + rnd.gauss(0, 3))
            readings.append({"metric": metric, "value": round(level[metric], 1), "ts": ts})
        doc = msgspec.json.encode(
            {"device_id": "aq-1", "received_at": ts, "source": "mqtt", "readings": readings}
        )
        out.append(decode_batch(doc).readings)
    return out


def _run(batches: list[list[WireReading]], *, forget: bool) -> tuple[list[DeviceOutput], DeviceState]:
    """Every batch through the table's codec; ``forget``: the remembered means dropped first."""
    value = b""
    outs = []
    state = DeviceState()
    for i, readings in enumerate(batches):
        state = decode_device(value)
        assert encode_device(state) == value or not value
        if forget:
            state.packed_hours = None
            for m in state.metrics.values():
                m.means.clear()
        outs.append(
            update_device(state, "aq-1", readings, record=None, domain="air", now=1e9 + 60 * i, config=CONFIG)
        )
        value = encode_device(state)
        assert decode_device(value) == state
    return outs, state


@pytest.mark.parametrize("seed", [1, 2])
def test_remembered_window_means_change_no_output(seed: int) -> None:
    batches = _batches(seed, hours=27, every_min=10)
    kept, kept_state = _run(batches, forget=False)
    fresh, fresh_state = _run(batches, forget=True)
    assert any("pm25.mean_24h" in o.signals for o in kept)
    assert any("pm25.mean_8h" in o.signals for o in kept)
    for k, f in zip(kept, fresh, strict=True):
        assert k.signals == f.signals
        assert k.lines == f.lines
        assert [e.model_dump() for e in k.events] == [e.model_dump() for e in f.events]
        assert [h.model_dump() for h in k.hourly] == [h.model_dump() for h in f.hourly]
    assert kept_state == fresh_state
    assert any(m.means for m in kept_state.metrics.values())  # kept in the table value


def test_means_are_dropped_when_hours_close() -> None:
    batches = _batches(3, hours=12, every_min=10)
    _, state = _run(batches, forget=False)
    m = state.metrics["pm25"]
    end = float(state.closed)
    before = _window_mean(m, end, 8, 6)
    assert before is not None and m.means[8][:2] == [end, 6]
    more = _batches(3, hours=14, every_min=10)[len(batches) :]  # two more hours close
    update_device(
        state, "aq-1", [r for b in more for r in b], record=None, domain="air", now=2e9, config=CONFIG
    )
    assert state.closed > end
    assert 8 not in m.means or m.means[8][0] == float(state.closed)
    values = [v[0] for h, v in m.hours.items() if state.closed - 8 * HOUR <= h < state.closed and v[1] > 0]
    assert _window_mean(m, float(state.closed), 8, 6) == pytest.approx(sum(values) / len(values), rel=1e-12)


def test_a_value_without_remembered_means_still_reads() -> None:
    _, state = _run(_batches(4, hours=10, every_min=10), forget=False)
    value = encode_device(state)
    head = msgspec.msgpack.decode(value[1:])
    metrics = msgspec.msgpack.decode(lz4.block.decompress(head[8])) if isinstance(head[8], bytes) else head[8]
    head[8] = {name: fields[:4] for name, fields in metrics.items()}  # the four fields of before
    old = VERSION + msgspec.msgpack.encode(head)
    decoded = decode_device(old)
    assert decoded == state
    assert all(not m.means for m in decoded.metrics.values())


def test_closed_hours_are_compressed_once_per_closed_hour() -> None:
    batches = _batches(5, hours=20, every_min=10)
    _, state = _run(batches, forget=False)
    assert sum(len(m.hours) for m in state.metrics.values()) >= HOURS_APART_FROM
    value = encode_device(state)
    assert isinstance(msgspec.msgpack.decode(value[1:])[11], bytes)  # the hours apart
    again = decode_device(value)
    assert again == state and peek_device(value) == (state.seen, state.rules)
    blob = again.packed_hours
    assert blob is not None
    # a batch within the same hour: the same compressed hours, not compressed again
    update_device(
        again,
        "aq-1",
        _batches(5, hours=21, every_min=10)[len(batches)][:1],
        record=None,
        domain="air",
        now=2e9,
        config=CONFIG,
    )
    assert again.closed == state.closed
    encode_device(again)
    assert again.packed_hours is blob
    # hours closing: compressed anew, and what is read back is the new hours
    later = _batches(5, hours=23, every_min=10)[len(batches) :]
    update_device(
        again, "aq-1", [r for b in later for r in b], record=None, domain="air", now=3e9, config=CONFIG
    )
    assert again.closed > state.closed
    value = encode_device(again)
    assert again.packed_hours is not blob
    assert decode_device(value) == again
    fresh = decode_device(value)
    fresh.packed_hours = None
    assert encode_device(fresh) == value  # the same bytes as compressing from scratch


def test_a_value_with_hours_inline_still_reads() -> None:
    _, state = _run(_batches(6, hours=20, every_min=10), forget=False)
    value = encode_device(state)
    head = msgspec.msgpack.decode(value[1:])
    assert head.pop() == {}  # counted: nothing late, flagged or a spike in this run
    assert head.pop() is None  # applied: no record position in this run
    hours = msgspec.msgpack.decode(lz4.block.decompress(head.pop()))
    metrics = msgspec.msgpack.decode(lz4.block.decompress(head[8])) if isinstance(head[8], bytes) else head[8]
    for name, fields in metrics.items():
        fields[1] = hours[name]
    head[8] = metrics  # eleven fields, every metric's hours in its own entry (as before)
    old = VERSION + msgspec.msgpack.encode(head)
    assert decode_device(old) == state
    assert peek_device(old) == peek_device(value)


def _fields_before(values: dict[str, float | int | str]) -> str:
    """``device._fields`` as it was before its fast path for floats (the reference)."""
    parts = []
    for k, v in values.items():
        if isinstance(v, str):
            parts.append(f"{k}={escape_string(v)}")
        elif isinstance(v, int) and not isinstance(v, bool):
            parts.append(f"{k}={v}i")
        elif math.isfinite(v):
            parts.append(f"{k}={float(v)!r}")
    return ",".join(parts) or "empty=true"


field_values = st.one_of(
    st.floats(width=64),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text(max_size=6),
    st.floats(allow_nan=False).map(np.float64),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["mean_1h", "n", "grade", "x", "valid"]), field_values))
def test_fields_are_written_as_before(values: dict[str, float | int | str]) -> None:
    assert _fields(values) == _fields_before(values)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), per_batch=st.integers(1, 40), rain=st.booleans())
def test_kept_oldest_bound_drops_the_same_stale_windows(seed: int, per_batch: int, rain: bool) -> None:
    """``MetricState.oldest`` (the lower bound that lets a batch skip the stale-entry scan)
    leaves the windows exactly as a scan at every event time does: the same batches of many
    timestamps, some out of order, with the bound forgotten before every ``_close_hours``."""
    messages = _batches(seed, hours=3, every_min=2)
    if rain:  # accumulating: 24 h of raw entries, one per timestamp
        messages = [[*m, WireReading(metric="rain", value=0.5, ts=m[0].ts)] for m in messages]
    original = device._close_hours

    def scan_always(state: DeviceState, *args: Any) -> Any:
        for m in state.metrics.values():
            m.oldest = None
        return original(state, *args)

    kept, scanned = DeviceState(), DeviceState()
    for start in range(0, len(messages), per_batch):
        readings = [r for m in messages[start : start + per_batch] for r in m]
        out_kept = update_device(kept, "aq-1", readings, record=None, domain="air", now=1e9, config=CONFIG)
        with patch.object(device, "_close_hours", scan_always):
            out_scanned = update_device(
                scanned, "aq-1", readings, record=None, domain="air", now=1e9, config=CONFIG
            )
        assert [h.model_dump() for h in out_kept.hourly] == [h.model_dump() for h in out_scanned.hourly]
        assert out_kept.lines == out_scanned.lines
        assert kept == scanned
        for m in kept.metrics.values():
            assert m.oldest is None or all(m.oldest <= v[0] for v in m.raw.values())


def test_a_value_with_zlib_blobs_still_reads_and_is_written_in_lz4() -> None:
    """Values written before the codec moved to LZ4 (version 1: zlib) restore after an upgrade."""
    _, state = _run(_batches(7, hours=20, every_min=1), forget=False)
    value = encode_device(state)
    head = msgspec.msgpack.decode(value[1:])
    assert isinstance(head[8], bytes) and isinstance(head[11], bytes)  # both blobs present
    head[8] = zlib.compress(lz4.block.decompress(head[8]), 1)
    head[11] = zlib.compress(lz4.block.decompress(head[11]), 1)
    old = ZLIB_VERSION + msgspec.msgpack.encode(head)
    decoded = decode_device(old)
    assert decoded == state
    assert peek_device(old) == peek_device(value)
    assert decoded.packed_hours is None  # the zlib blob is not reused in an LZ4 value
    assert encode_device(decoded) == value


def _with_a_new_metric(batches: list[list[WireReading]], from_batch: int) -> list[list[WireReading]]:
    """The same messages, with a fourth metric (no2) from ``from_batch`` on."""
    out = []
    for i, readings in enumerate(batches):
        if i >= from_batch:
            readings = [*readings, WireReading(metric="no2", value=20.0 + i % 7, ts=readings[0].ts)]
        out.append(readings)
    return out


@pytest.mark.parametrize(("seed", "every_min"), [(1, 10), (2, 1), (3, 20)])
def test_hours_left_packed_until_needed_change_nothing(seed: int, every_min: int) -> None:
    """The worker decodes a value's closed hours only when an update needs them (an hour
    closing, a window mean not remembered, a metric first seen): every batch's output and
    the value written are the same as with the hours decoded up front."""
    hours = 30 if every_min >= 10 else 27
    batches = _with_a_new_metric(
        _batches(seed, hours=hours, every_min=every_min),
        from_batch=len(_batches(seed, hours=hours, every_min=every_min)) * 4 // 5,
    )
    eager_value = lazy_value = b""
    packed_batches = stayed_packed = 0
    for i, readings in enumerate(batches):
        eager = decode_device(eager_value)
        lazy = decode_device(lazy_value, lazy=True)
        packed = lazy.hours_loader is not None
        now = 1e9 + 60 * i
        a = update_device(eager, "aq-1", readings, record=None, domain="air", now=now, config=CONFIG)
        b = update_device(lazy, "aq-1", readings, record=None, domain="air", now=now, config=CONFIG)
        packed_batches += packed
        stayed_packed += packed and lazy.hours_loader is not None
        assert a.signals == b.signals and a.lines == b.lines and a.late == b.late
        assert [e.model_dump() for e in a.events] == [e.model_dump() for e in b.events]
        assert [h.model_dump() for h in a.hourly] == [h.model_dump() for h in b.hourly]
        eager_value, lazy_value = encode_device(eager), encode_device(lazy)
        assert lazy_value == eager_value
    # hours go apart from 48 closed hours on (16 h of three metrics); then most batches never
    # decoded them
    assert packed_batches > len(batches) // 4 and stayed_packed > packed_batches // 2
    final = decode_device(lazy_value, lazy=True)
    assert final != decode_device(lazy_value)  # hours still packed
    device.load_hours(final)
    assert final == decode_device(lazy_value)
    assert final.dump() == decode_device(lazy_value).dump()
