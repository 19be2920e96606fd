"""What the worker remembers in a device's table value besides its windows (issue 12): the
8 h / 24 h window means (``MetricState.means``) change nothing the analytics compute, are
dropped whenever the closed hours change, and a value written before them still reads."""

from __future__ import annotations

import random
import zlib
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from stationflow.wire import WireReading, decode_batch
from streams.analytics.device import AnalyticsConfig, DeviceOutput, DeviceState, _window_mean, update_device
from streams.analytics.statecodec import VERSION, decode_device, encode_device

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
        if forget:
            for m in state.metrics.values():
                m.means.clear()
        outs.append(
            update_device(state, "aq-1", readings, record=None, domain="air", now=1e9 + 60 * i, config=CONFIG)
        )
        value = encode_device(state)
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
    metrics = msgspec.msgpack.decode(zlib.decompress(head[8])) if isinstance(head[8], bytes) else head[8]
    head[8] = {name: fields[:4] for name, fields in metrics.items()}  # the four fields of before
    old = VERSION + msgspec.msgpack.encode(head)
    decoded = decode_device(old)
    assert decoded == state
    assert all(not m.means for m in decoded.metrics.values())
