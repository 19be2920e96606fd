"""Replays after a restart: a record the device's state already holds is not applied twice."""

from __future__ import annotations

import msgspec
import pytest

from streams.analytics.device import DeviceState
from streams.analytics.statecodec import VERSION, decode_device, encode_device
from streams.analyticsworker import Position, already_applied

APPLIED = [2, 100, 1_796_000_000_000]  # partition 2, offset 100, its Kafka timestamp (ms)


@pytest.mark.parametrize(
    ("at", "skipped"),
    [
        pytest.param(Position(2, 100, 1_796_000_000_000), True, id="the last record applied"),
        pytest.param(Position(2, 57, 1_795_999_990_000), True, id="an earlier record"),
        pytest.param(Position(2, 101, 1_796_000_000_005), False, id="the next record"),
        pytest.param(Position(2, 3, 1_796_000_500_000), False, id="the topic refilled: low offset, newer"),
        pytest.param(Position(1, 50, 1_795_999_000_000), False, id="another partition"),
        pytest.param(Position(-1, -1, -1), False, id="position unknown"),
    ],
)
def test_a_record_is_skipped_only_at_or_before_the_last_applied(at: Position, skipped: bool) -> None:
    assert already_applied(APPLIED, at) is skipped


def test_nothing_is_skipped_for_a_state_that_never_recorded_a_position() -> None:
    assert not already_applied(None, Position(0, 0, 0))


def test_applied_goes_through_the_table_codec() -> None:
    state = DeviceState(wm=1.0, seen=2.0, applied=list(APPLIED))
    assert decode_device(encode_device(state)).applied == APPLIED


@pytest.mark.parametrize("hours_apart", [False, True])
def test_values_written_before_applied_was_kept_decode_without_it(hours_apart: bool) -> None:
    fields: list[object] = [5.0, 6.0, 3600, 1, 2, 0, 0, 7, {}, {}, {}]
    if hours_apart:
        fields.append(None)  # a 12th field: the closed hours on their own (here: none)
    state = decode_device(VERSION + msgspec.msgpack.encode(fields))
    assert (state.wm, state.seen, state.closed, state.late, state.emitted) == (5.0, 6.0, 3600, 1, 7)
    assert state.applied is None
