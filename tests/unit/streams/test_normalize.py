from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.contracts import Reading, ReadingBatch
from streams.normalize import RecentKeys, normalize, ts_ns

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def _batch(device: str, *readings: tuple[str, datetime, float]) -> ReadingBatch:
    return ReadingBatch(
        device_id=device,
        received_at=T0,
        source="test",
        readings=[Reading(metric=m, value=v, ts=ts) for m, ts, v in readings],
    )


def test_ts_ns_is_exact() -> None:
    r = Reading(metric="x", value=1, ts=datetime(2026, 11, 21, 8, 0, 0, 123456, tzinfo=UTC))
    assert ts_ns(r) == 1_795_248_000_123_456_000


def test_ts_ns_does_not_depend_on_the_offset() -> None:
    r = Reading(metric="x", value=1, ts=datetime(2026, 11, 21, 16, tzinfo=timezone(timedelta(hours=8))))
    assert ts_ns(r) == ts_ns(Reading(metric="x", value=1, ts=T0))


def test_duplicates_within_and_across_batches_are_dropped() -> None:
    recent = RecentKeys()
    first, dropped = normalize(_batch("d1", ("a", T0, 1), ("a", T0, 2), ("b", T0, 3)), recent)
    assert dropped == 1
    assert first is not None and [(r.metric, r.value) for r in first.batch.readings] == [("a", 1), ("b", 3)]
    assert first.ts_ns == [ts_ns(r) for r in first.batch.readings]
    again, dropped = normalize(_batch("d1", ("a", T0, 1), ("b", T0, 3)), recent)
    assert again is None and dropped == 2
    other_device, dropped = normalize(_batch("d2", ("a", T0, 1)), recent)
    assert other_device is not None and dropped == 0
    later, dropped = normalize(_batch("d1", ("a", T0 + timedelta(seconds=1), 1)), recent)
    assert later is not None and dropped == 0


def test_unchanged_batch_is_returned_as_is() -> None:
    batch = _batch("d1", ("a", T0, 1))
    out, dropped = normalize(batch, RecentKeys())
    assert out is not None and out.batch is batch and dropped == 0


def test_memory_is_bounded_per_device_and_over_devices() -> None:
    recent = RecentKeys(per_device=2, max_devices=2)
    for i in range(4):
        recent.check_and_add("d1", ("a", i))
    assert recent.check_and_add("d1", ("a", 0)) is True  # up to twice per_device kept
    recent.check_and_add("d1", ("a", 4))  # the fifth key: only the 2 newest are kept
    assert recent.check_and_add("d1", ("a", 1)) is False  # forgotten
    assert recent.check_and_add("d1", ("a", 4)) is True
    recent.check_and_add("d2", ("a", 0))
    recent.check_and_add("d3", ("a", 0))  # evicts d1 (least recently used)
    assert recent.check_and_add("d1", ("a", 4)) is False


@settings(max_examples=300, deadline=None)
@given(
    per_device=st.integers(1, 6),
    batches=st.lists(
        st.tuples(
            st.sampled_from(["d1", "d2"]),
            st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 5)), max_size=8),
        ),
        max_size=30,
    ),
)
def test_new_keys_matches_a_plain_model(
    per_device: int, batches: list[tuple[str, list[tuple[str, int]]]]
) -> None:
    """Fast path (nothing seen, no repeat) or not: the first of a key wins; past 2 x per_device
    keys, the newest per_device are kept."""
    recent = RecentKeys(per_device=per_device)
    model: dict[str, list[tuple[str, int]]] = {}
    for device, keys in batches:
        remembered = model.setdefault(device, [])
        expected = []
        for key in keys:
            new = key not in remembered
            expected.append(new)
            if new:
                remembered.append(key)
        if len(remembered) > 2 * per_device:
            del remembered[:-per_device]
        assert recent.new_keys(device, keys) == expected


def test_stamps_of_readings_sharing_instants_and_offsets_are_each_exact() -> None:
    """normalize reuses a timestamp while the instant repeats; each stamp is still the reading's own."""
    later = T0 + timedelta(microseconds=1)
    same_at_8 = datetime(2026, 11, 21, 16, tzinfo=timezone(timedelta(hours=8)))  # T0
    batch = _batch("d1", ("a", T0, 1), ("b", T0, 2), ("c", later, 3), ("d", same_at_8, 4), ("e", T0, 5))
    kept, dropped = normalize(batch, RecentKeys())
    assert dropped == 0 and kept is not None
    assert kept.ts_ns == [ts_ns(r) for r in batch.readings]
    assert kept.ts_ns[2] == kept.ts_ns[0] + 1000 and kept.ts_ns[3] == kept.ts_ns[0]
