"""A device's state kept decoded between its updates (``streams.livestates``) gives exactly the
table values that decoding the value at every update gives, through hours closing and closed
hours going packed on their own; and it is used only while the table holds the value it wrote."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from stationflow.contracts import Quality
from stationflow.wire import WireReading
from streams.analytics.device import AnalyticsConfig, DeviceState, update_device
from streams.analytics.statecodec import HOURS_APART_FROM, decode_device, encode_device
from streams.livestates import EXPANSION, LiveStates
from streams.metrics import ANALYTICS_STATES

T0 = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


def _messages(seed: int, hours: int) -> list[tuple[str, list[WireReading]]]:
    """Three devices reporting every 10 minutes for ``hours``, sometimes twice in a row or late."""
    rng = random.Random(seed)
    out = []
    for step in range(hours * 6):
        for device in ("a-1", "a-2", "a-3"):
            ts = T0 + timedelta(minutes=10 * step - (25 if rng.random() < 0.05 else 0))
            readings = [
                WireReading(
                    metric=f"m{j}", value=round(rng.uniform(0, 100), 2), ts=ts, quality=Quality.NORMAL
                )
                for j in range(3)
            ]
            out.append((device, readings))
    return out


def _run(messages: list[tuple[str, list[WireReading]]], live: LiveStates | None) -> list[bytes]:
    """Every update as the worker does it; the table value written after each."""
    table: dict[bytes, bytes] = {}
    written = []
    config = AnalyticsConfig()
    for device, readings in messages:
        key = device.encode()
        value = table.get(key)
        state = (live.get(key, value) if live is not None else None) or decode_device(value, lazy=True)
        update_device(state, device, readings, record=None, domain="sensor", now=1e10, config=config)
        value = table[key] = encode_device(state)
        if live is not None:
            live.keep(key, value, state)
        written.append(value)
    return written


def _count(result: str) -> float:
    return ANALYTICS_STATES.labels(result)._value.get()  # type: ignore[attr-defined,no-any-return]


def test_kept_states_write_the_values_decoding_writes() -> None:
    messages = _messages(7, HOURS_APART_FROM + 6)  # past the closed hours that go packed apart
    kept_before = _count("kept")
    live = LiveStates(1 << 30)
    assert _run(messages, live) == _run(messages, None)
    assert _count("kept") - kept_before > len(messages) / 2  # most updates took the kept state
    # and the closed hours went packed on their own: the states were lazily decoded ones too
    assert decode_device(_run(messages[-3:], None)[-1]) is not None


def test_a_value_the_worker_did_not_write_is_decoded() -> None:
    live = LiveStates(1 << 20)
    state = DeviceState()
    value = encode_device(state)
    live.keep(b"d", value, state)
    assert live.get(b"d", value) is state
    copy = value[:1] + value[1:]  # equal bytes, another object: restored, or the timer's
    assert copy == value and copy is not value
    assert live.get(b"d", copy) is None
    assert live.get(b"d", None) is None
    live.forget(b"d")
    assert live.get(b"d", value) is None and len(live) == 0 and live.estimated_bytes == 0


def test_the_least_recently_updated_go_first_beyond_the_bound() -> None:
    value = encode_device(DeviceState())
    live = LiveStates(3 * len(value) * EXPANSION)
    states = {k: DeviceState() for k in (b"a", b"b", b"c", b"d")}
    for key in (b"a", b"b", b"c"):
        live.keep(key, value, states[key])
    live.keep(b"a", value, states[b"a"])  # a updated again: b is now the oldest
    live.keep(b"d", value, states[b"d"])
    assert live.get(b"b", value) is None
    assert all(live.get(k, value) is states[k] for k in (b"a", b"c", b"d"))
    assert live.estimated_bytes == 3 * len(value) * EXPANSION
