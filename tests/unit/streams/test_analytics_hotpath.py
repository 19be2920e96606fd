"""The analytics hot path (issue 12): msgspec-decoded readings give the analytics exactly what
pydantic-decoded ones give, the small-array statistics are numpy's bit for bit, the key's
partition is the producer's, and a malformed document in a bundle is skipped on its own."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import msgspec
import numpy as np
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.contracts import DeviceRecord, DeviceStatus, MetricSpec, Quality, ReadingBatch, StationInfo
from stationflow.logs import LogThrottle
from stationflow.wire import WireReading, decode_batch, join_bundle
from streams import metrics
from streams.analytics import device, validity
from streams.analytics.device import (
    _TAGS_CACHE,
    AnalyticsConfig,
    DeviceOutput,
    DeviceState,
    MetricState,
    ReadingLike,
    _exact_mean_of_floats,
    _median,
    _stats,
    _tags,
    check_silence,
    silence_due,
    update_device,
)
from streams.analytics.packs import NODATA_RULE
from streams.analytics.rules import RuleState, Subject
from streams.analytics.statecodec import COMPRESS_FROM, VERSION, decode_device, encode_device, peek_device
from streams.analyticsworker import PartitionOf, _by_device, _load_device

CONFIG = AnalyticsConfig()
T0 = datetime(2026, 7, 1, 2, tzinfo=UTC)

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
zeros_and_more = st.one_of(finite, st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.1, 1e16]))


@settings(max_examples=400, deadline=None)
@given(st.lists(zeros_and_more, min_size=1, max_size=20))
def test_stats_are_numpys_bit_for_bit(values: list[float]) -> None:
    arr = np.asarray(values, dtype=float)
    expected = (float(arr.mean()), float(arr.min()), float(arr.max()))
    got = _stats(values)
    for e, g in zip(expected, got, strict=True):
        assert e == g or (math.isnan(e) and math.isnan(g))  # an overflowing mean is inf either way
        if e == 0.0:
            assert math.copysign(1.0, e) == math.copysign(1.0, g)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(zeros_and_more, min_size=8, max_size=140),  # a window's minute slots, and more
        st.lists(zeros_and_more, min_size=129, max_size=1100),  # halves summed apart
        st.lists(st.sampled_from([-0.0, 0.0]), min_size=8, max_size=40),
    )
)
def test_long_stats_are_numpys_bit_for_bit(values: list[float]) -> None:
    """From 8 values on numpy sums pairwise; ``_stats`` does it the same way without numpy."""
    test_stats_are_numpys_bit_for_bit.hypothesis.inner_test(values)  # type: ignore[attr-defined]


def test_pairwise_sum_is_not_a_sequential_sum() -> None:
    """The order matters: these 16 values sum to 14.0 pairwise (numpy) and 7.0 in sequence."""
    values = [1e16, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1e16, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert float(np.add.reduce(np.asarray(values))) == _stats(values)[0] * len(values)
    assert sum(values) != _stats(values)[0] * len(values)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_partition_of_is_the_producers(key: bytes, partitions: int) -> None:
    everything = list(range(partitions))
    expected = DefaultPartitioner()(key, everything, everything)
    partition_of = PartitionOf(partitions)
    assert partition_of(key) == expected == (murmur2(key) & 0x7FFFFFFF) % partitions
    assert partition_of(key) == expected  # remembered


def test_partition_of_stays_bounded() -> None:
    partition_of = PartitionOf(8, max_keys=10)
    keys = [f"dev-{i}".encode() for i in range(35)]
    got = [partition_of(k) for k in keys]
    assert len(partition_of._cached._cache) <= 10
    everything = list(range(8))
    assert got == [DefaultPartitioner()(k, everything, everything) for k in keys]


def _doc(device: str, value: float, minute: int = 0) -> bytes:
    batch = ReadingBatch.model_validate(
        {
            "device_id": device,
            "received_at": T0,
            "source": "mqtt",
            "readings": [{"metric": "level", "value": value, "ts": T0 + timedelta(minutes=minute)}],
        }
    )
    return batch.model_dump_json().encode()


def test_a_bad_document_in_a_bundle_is_skipped_alone() -> None:
    before = metrics.ANALYTICS_INVALID._value.get()
    records = [
        join_bundle([_doc("a-1", 1.0), b'{"device_id": "a-2", "readings": []}', _doc("a-3", 3.0)]),
        _doc("a-1", 2.0, minute=1),
        b"not json",
    ]
    by_device = _by_device(records, LogThrottle())
    assert list(by_device) == ["a-1", "a-3"]
    assert [b.readings[0].value for b, _ in by_device["a-1"]] == [1.0, 2.0]  # arrival order
    assert metrics.ANALYTICS_INVALID._value.get() == before + 2


RECORD = DeviceRecord(
    device_id="rtu-1",
    device_type="rtu",
    domain="hydro",
    expected_interval_s=60,
    updated_at=T0,
    metrics={"level": MetricSpec(metric="level", unit="m"), "rain": MetricSpec(metric="rain", unit="mm")},
    station=StationInfo(
        station_id="river-1",
        name="River one",
        region="sz",
        basin="basin-a",
        attributes={"warning_level": 5.0, "guaranteed_level": 6.0, "historical_max_level": 7.0},
    ),
)

level_values = st.floats(min_value=0.0, max_value=8.0, allow_nan=False).map(lambda v: round(v, 2))
quality = st.sampled_from(["N", "N", "N", "D", "T", "F"])
CHINA = timezone(timedelta(hours=8))


@st.composite
def messages(draw: st.DrawFn) -> list[bytes]:
    """A device's messages over up to 3 hours, minute by minute, some out of order, some with
    their timestamps in UTC+8 (pydantic normalises to UTC, msgspec keeps the offset)."""
    count = draw(st.integers(min_value=1, max_value=40))
    minutes = sorted(draw(st.lists(st.integers(0, 180), min_size=count, max_size=count)))
    if draw(st.booleans()) and len(minutes) > 2:
        minutes[-1], minutes[-2] = minutes[-2], minutes[-1]
    docs = []
    for minute in minutes:
        ts = T0 + timedelta(minutes=minute, seconds=draw(st.integers(0, 59)))
        if draw(st.booleans()):
            ts = ts.astimezone(CHINA)
        stamp = ts.isoformat()
        readings = [{"metric": "level", "value": draw(level_values), "ts": stamp, "quality": draw(quality)}]
        if draw(st.booleans()):
            rain = draw(st.sampled_from([0.0, 0.5, 2.0, 12.0]))
            readings.append({"metric": "rain", "value": rain, "ts": stamp})
        doc = {"device_id": "rtu-1", "received_at": stamp, "source": "mqtt", "readings": readings}
        docs.append(orjson.dumps(doc))
    return docs


def _run(docs: list[bytes], *, wire: bool) -> tuple[list[DeviceOutput], bytes]:
    """Feed the documents through update_device batch by batch, the state through the table's
    codec (``statecodec``) with msgspec readings, through the earlier JSON with pydantic ones."""
    value = b""
    outs = []
    for i in range(0, len(docs), 3):
        chunk = docs[i : i + 3]
        readings: list[ReadingLike] = []
        for d in chunk:
            readings += decode_batch(d).readings if wire else ReadingBatch.model_validate_json(d).readings
        state = _load_device(value)
        outs.append(
            update_device(state, "rtu-1", readings, record=RECORD, domain="hydro", now=1e9 + i, config=CONFIG)
        )
        value = encode_device(state) if wire else orjson.dumps(state.dump())
    return outs, value


@settings(max_examples=60, deadline=None)
@given(messages())
def test_msgspec_readings_give_what_pydantic_readings_give(docs: list[bytes]) -> None:
    pyd_outs, pyd_state = _run(docs, wire=False)
    wire_outs, wire_state = _run(docs, wire=True)
    assert decode_device(wire_state) == decode_device(pyd_state) == DeviceState.load(orjson.loads(pyd_state))
    for p, w in zip(pyd_outs, wire_outs, strict=True):
        assert w.lines == p.lines
        assert [e.model_dump() for e in w.events] == [e.model_dump() for e in p.events]
        assert [h.model_dump() for h in w.hourly] == [h.model_dump() for h in p.hourly]
        assert w.signals == p.signals
        assert w.late == p.late


def test_state_codec_round_trip_of_a_busy_device() -> None:
    docs = [_doc("rtu-1", 4.0 + m / 100, minute=m) for m in range(0, 130)]
    _, value = _run(docs, wire=True)
    assert value[:1] == VERSION
    state = _load_device(value)
    assert encode_device(state) == value
    assert peek_device(value) == (state.seen, state.rules)
    assert len(state.metrics["level"].hours) >= 1  # hours closed on the way
    legacy = orjson.dumps(state.dump())  # what a worker before the codec wrote
    assert decode_device(legacy) == state
    assert len(value) < len(legacy)
    assert decode_device(None) == decode_device(b"") == DeviceState()


keys = st.integers(min_value=0, max_value=2**40)
any_float = st.floats(allow_nan=False, width=64)
rule_states = st.lists(st.one_of(st.none(), st.integers(-1, 5), any_float), min_size=7, max_size=7)


@st.composite
def device_states(draw: st.DrawFn) -> DeviceState:
    """Any state, window maps of 0..40 entries."""
    metrics_ = {
        name: MetricState(
            raw=draw(st.dictionaries(keys, st.lists(any_float, min_size=2, max_size=2), max_size=40)),
            hours=draw(st.dictionaries(keys, st.lists(any_float, min_size=4, max_size=4), max_size=40)),
            last=draw(st.one_of(st.none(), st.lists(any_float, min_size=2, max_size=2))),
            flat=draw(st.integers(0, 10_000)),
        )
        for name in draw(st.lists(st.sampled_from(["pm25", "level", "rain", "m0"]), unique=True))
    }
    return DeviceState(
        wm=draw(any_float),
        seen=draw(any_float),
        closed=draw(st.integers(0, 2**40)),
        late=draw(st.integers(0, 2**31)),
        excluded=draw(st.integers(0, 2**31)),
        spikes=draw(st.integers(0, 2**31)),
        out_of_range=draw(st.integers(0, 2**31)),
        emitted=draw(st.integers(0, 2**40)),
        metrics=metrics_,
        rules=draw(st.dictionaries(st.sampled_from(["flood.level", "health.stuck", "nodata"]), rule_states)),
        shipments=draw(st.dictionaries(st.text(max_size=8), st.lists(any_float, min_size=11, max_size=11))),
        applied=draw(st.one_of(st.none(), st.lists(st.integers(0, 2**40), min_size=3, max_size=3))),
        counted=draw(
            st.dictionaries(
                st.sampled_from(["level", "pm25"]), st.lists(any_float, max_size=4).map(device._pack_times)
            )
        ),
    )


@settings(max_examples=150, deadline=None)
@given(device_states())
def test_state_codec_round_trip(state: DeviceState) -> None:
    decoded = decode_device(encode_device(state))
    assert decoded == state
    assert orjson.dumps(decoded.dump()) == orjson.dumps(state.dump())  # same types (int vs float)
    for name, m in decoded.metrics.items():
        assert all(type(k) is int for k in m.raw) and all(type(k) is int for k in m.hours), name


def test_tags_are_remembered_only_when_nothing_was_escaped() -> None:
    plain = Subject(kind="device", id="dev-plain-1", domain="air", station_id="st-1", region="sz")
    spaced = Subject(kind="device", id="dev 2", domain="air", station_id="st 2")
    assert _tags(plain) == "device=dev-plain-1,station=st-1,region=sz"
    assert _tags(spaced) == r"device=dev\ 2,station=st\ 2"
    assert plain in _TAGS_CACHE
    assert spaced not in _TAGS_CACHE
    assert _tags(plain) == "device=dev-plain-1,station=st-1,region=sz"


@settings(max_examples=400, deadline=None)
@given(st.lists(zeros_and_more, min_size=1, max_size=80))
def test_median_is_numpys(values: list[float]) -> None:
    expected = float(np.median(np.asarray(values, dtype=float)))
    got = _median(values)
    assert got == expected or (math.isinf(got) and math.isinf(expected))


hourly_means = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: round(v, 3)),
    finite,
    st.sampled_from([math.nan, math.inf, 0.1, 0.2, 0.3, -0.0, 1e300, 5e-324]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(hourly_means, max_size=30), st.integers(min_value=1, max_value=24))
def test_exact_window_mean_is_validitys(values: list[float], min_count: int) -> None:
    assert _exact_mean_of_floats(values, min_count) == validity.mean_if_valid(values, min_count)


@settings(max_examples=100, deadline=None)
@given(device_states())
def test_peek_reads_seen_and_rules_of_both_formats(state: DeviceState) -> None:
    assert peek_device(encode_device(state)) == (state.seen, state.rules)
    if math.isfinite(state.seen):  # a wall-clock time; JSON would write inf as null
        legacy = orjson.dumps(state.dump())
        assert peek_device(legacy) == (state.seen, orjson.loads(legacy)["rules"])
    assert peek_device(None) == (0.0, {})


@settings(max_examples=200, deadline=None)
@given(
    seen=st.floats(min_value=-10.0, max_value=1000.0),
    now=st.floats(min_value=0.0, max_value=2000.0),
    raised=st.booleans(),
    retired=st.booleans(),
)
def test_silence_due_is_what_check_silence_does(seen: float, now: float, raised: bool, retired: bool) -> None:
    record = RECORD.model_copy(update={"status": DeviceStatus.RETIRED if retired else DeviceStatus.ACTIVE})
    state = DeviceState(seen=seen)
    if raised:
        state.rules[NODATA_RULE.id] = RuleState(active=0, seq=1).dump()
    due = silence_due(seen, dict(state.rules), record=record, now=now, config=CONFIG)
    event = check_silence(state, "rtu-1", record=record, domain="hydro", now=now, config=CONFIG)
    assert due == (event is not None)


def test_large_windows_are_compressed_and_come_back() -> None:
    state = DeviceState(seen=1e9, rules={"flood.level": [0, -1, None, None, 1, 1e9, 1e9]})
    for j in range(6):
        state.metrics[f"m{j}"] = MetricState(
            raw={60 * i: [60.0 * i + 0.5, round(50 + (i * 7 + j) % 13 / 10, 1)] for i in range(60)},
            hours={3600 * h: [50.5 + j, 60.0, 49.0, 52.1] for h in range(48)},
            last=[3599.5, 51.2],
            flat=2,
        )
    value = encode_device(state)
    plain = len(
        msgspec.msgpack.encode({n: (m.raw, m.hours, m.last, m.flat) for n, m in state.metrics.items()})
    )
    assert plain >= COMPRESS_FROM
    assert len(value) < plain / 2
    assert decode_device(value) == state
    assert peek_device(value) == (1e9, state.rules)


def _is_spike_before(m: MetricState, value: float) -> bool:
    """``device._is_spike`` as it was before its early exit and its sort of the deviations' runs."""
    if len(m.raw) < 10:
        return False
    recent = [v[1] for v in m.raw.values()]
    median = float(np.median(recent))
    mad = float(np.median([abs(v - median) for v in recent]))
    scale = max(mad, 1e-6 * max(abs(median), 1.0), 1e-9)
    return abs(value - median) > 6.0 * scale * 1.4826 and abs(value - median) > 0.05 * max(abs(median), 1.0)


spiky = st.one_of(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False).map(lambda v: round(v, 1)),
    st.sampled_from([0.0, 10.0, 10.0, 10.0, 500.0, -0.0, 1e9]),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(spiky, min_size=0, max_size=70), spiky)
def test_spike_check_is_what_it_was(values: list[float], value: float) -> None:
    m = MetricState(raw={60 * i: [60.0 * i + 1, v] for i, v in enumerate(values)})
    assert device._is_spike(m, value) is _is_spike_before(m, value)


def _five_percent_off(values: list[float], value: float) -> bool:
    """The spike check's 5 % test, on the sorted values (as ``_is_spike`` makes it)."""
    median = float(np.median(values))
    return abs(value - median) > 0.05 * max(abs(median), 1.0)


near_band = st.tuples(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.lists(st.floats(min_value=0.9, max_value=1.1), min_size=10, max_size=70),
    st.floats(min_value=0.9, max_value=1.1),
)


@settings(max_examples=1500, deadline=None)
@given(near_band)
def test_near_median_only_certifies_values_within_five_percent(
    case: tuple[float, list[float], float],
) -> None:
    """Values packed around the band's edges (0.9-1.1 times a centre): whenever the count says
    "within 5 % of the median", the median of the sorted values says so too."""
    centre, factors, factor = case
    values = [centre * f for f in factors]
    value = centre * factor
    raw = {60 * i: [60.0 * i, v] for i, v in enumerate(values)}
    if device._near_median(raw, value):
        assert not _five_percent_off(values, value)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.floats(allow_nan=False), min_size=10, max_size=40), st.floats())
def test_near_median_with_infinite_or_nan_readings(values: list[float], value: float) -> None:
    """A non-finite reading is never certified, and infinite window values never mislead it."""
    raw = {60 * i: [60.0 * i, v] for i, v in enumerate(values)}
    if device._near_median(raw, value):
        assert math.isfinite(value)
        assert not _five_percent_off(values, value)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(finite, st.floats(min_value=-1e3, max_value=1e3).map(lambda v: round(v, 2))),
        min_size=1,
        max_size=70,
    )
)
def test_exact_sum_is_the_fractions_sum(values: list[float]) -> None:
    """The hourly sums and means: the same exact Fraction (and its text) as summing Fractions."""
    expected = sum((Fraction(repr(v)) for v in values), Fraction(0))
    got = device._exact_sum(values)
    assert got == expected
    assert str(got) == str(expected)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_exact_sum_refuses_what_fractions_refuse(bad: float) -> None:
    with pytest.raises(ValueError):
        sum((Fraction(repr(v)) for v in [1.0, bad]), Fraction(0))
    with pytest.raises(ValueError):
        device._exact_sum([1.0, bad])


def test_near_median_takes_the_usual_reading_without_a_sort() -> None:
    """A sensor's ordinary reading is certified (the fast path is taken), a jump is not."""
    raw = {60 * i: [60.0 * i, 50.0 + (i % 7) * 0.3] for i in range(60)}
    assert device._near_median(raw, 51.0)
    assert not device._near_median(raw, 80.0)
    assert not device._near_median(raw, float("inf"))
    assert not device._is_spike(MetricState(raw=raw), 51.0)


def _entries(summed: bool) -> st.SearchStrategy[dict[int, list[float]]]:
    """Window entries keyed as ``_place`` keys them: a reading's whole second (accumulations) or
    its minute slot's start, one entry per key."""
    times = st.floats(min_value=0.0, max_value=3 * 3600.0, allow_nan=False)

    def keyed(ts_list: list[float]) -> dict[int, list[float]]:
        raw: dict[int, list[float]] = {}
        for ts in ts_list:
            raw[int(ts) if summed else int(ts // 60) * 60] = [ts, 1.0]
        return raw

    return st.lists(times, max_size=120).map(keyed)


@settings(max_examples=400, deadline=None)
@given(st.booleans().flatmap(_entries), st.floats(min_value=0.0, max_value=3 * 3600.0, allow_nan=False))
def test_stale_entries_dropped_are_those_a_full_pass_finds(
    raw: dict[int, list[float]], keep_from: float
) -> None:
    expected = {k: v for k, v in raw.items() if v[0] >= keep_from}
    device._drop_stale(raw, keep_from)
    assert raw == expected


def test_stale_entries_before_1970_take_the_full_pass() -> None:
    raw = {-2: [-1.5, 1.0], 0: [-0.5, 2.0], 5: [5.5, 3.0]}  # int(-0.5) is 0: above its reading
    device._drop_stale(raw, 0.0)
    assert raw == {5: [5.5, 3.0]}


@settings(max_examples=400, deadline=None)
@given(st.booleans().flatmap(_entries), st.floats(min_value=0.0, max_value=3 * 3600.0, allow_nan=False))
def test_stale_entries_dropped_leave_a_lower_bound_of_what_is_kept(
    raw: dict[int, list[float]], keep_from: float
) -> None:
    bound = device._drop_stale(raw, keep_from)
    assert bound == (float(min(raw)) - 1.0 if raw else math.inf)
    assert all(v[0] > bound for v in raw.values())


class _At:
    """A reading as ``update_device`` reads it: only its time matters for the grouping."""

    def __init__(self, ts: datetime, n: int) -> None:
        self.ts, self.n = ts, n


# times within a few seconds (equal ones likely), some in UTC+8: the same instant, another object
_instants = st.builds(
    lambda s, us, east: (T0 + timedelta(seconds=s, microseconds=us)).astimezone(CHINA if east else UTC),
    st.integers(0, 3),
    st.sampled_from([0, 1, 500_000]),
    st.booleans(),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_instants, max_size=12))
def test_readings_grouped_by_event_time_as_the_sort_groups_them(times: list[datetime]) -> None:
    readings = [_At(t, i) for i, t in enumerate(times)]
    got = device._by_event_time(readings)  # type: ignore[arg-type]
    expected: dict[float, list[_At]] = {}  # the grouping before the shortcut: sort, then group
    for r in sorted(readings, key=lambda r: r.ts):
        expected.setdefault(r.ts.timestamp(), []).append(r)
    assert list(got) == list(expected)  # the same times, oldest first
    assert {ts: [r.n for r in g] for ts, g in got.items()} == {  # type: ignore[attr-defined]
        ts: [r.n for r in g]  # type: ignore[attr-defined]
        for ts, g in expected.items()
    }


class _Overlapping(frozenset[str]):
    """A set that says it shares a member with any other: ``_signals`` takes its loop."""

    def isdisjoint(self, other: object) -> bool:
        return False


@settings(max_examples=200, deadline=None)
@given(
    device_states(),
    st.sampled_from(["hydro", "air", "coldchain", "sensor"]),
    st.sets(st.sampled_from(["dq", "coldchain", "no-such-metric", "pm25", "level", "rain"])),
)
def test_signals_without_the_metric_loop_are_the_loops(
    state: DeviceState, domain: str, only: set[str]
) -> None:
    attrs = {"warning_level": 3.0, "guaranteed_level": 4.0}
    try:
        expected = device._signals(state, domain, attrs, state.wm, _Overlapping(only))
    except (OverflowError, ValueError) as exc:  # a state no update makes; both ways alike
        with pytest.raises(type(exc)):
            device._signals(state, domain, attrs, state.wm, frozenset(only))
        return
    assert device._signals(state, domain, attrs, state.wm, frozenset(only)) == expected


def test_devices_with_the_same_station_values_share_their_rules_plan() -> None:
    from streams.analytics.packs import rules_for_device
    from streams.analytics.rules import resolve_levels

    assert RECORD.station is not None
    same = RECORD.model_copy(update={"device_id": "rtu-2"})
    other_station = RECORD.station.model_copy(update={"attributes": {"warning_level": 2.0}})
    other = RECORD.model_copy(update={"device_id": "rtu-3", "station": other_station})
    first = device._plan("rtu-1", RECORD, "hydro")
    second = device._plan("rtu-2", same, "hydro")
    third = device._plan("rtu-3", other, "hydro")
    assert second.levels is first.levels and second.subject.id == "rtu-2"
    assert third.levels is not first.levels
    for plan, record in ((first, RECORD), (third, other)):
        assert record.station is not None
        expected = {
            r.id: resolve_levels(r, record.station.attributes, record.thresholds)
            for r in rules_for_device("hydro")
        }
        assert plan.levels == expected
    assert first.levels["flood.level"] != third.levels["flood.level"]


def _replayed(batches: list[list[ReadingLike]], again: tuple[int, int] | None) -> DeviceState:
    """The batches through ``update_device`` and the table codec; ``again=(j, k)``: after batch
    k the worker restarts, and batches j..k come again (the raw stage's uncommitted batches,
    sent once more as new records) before the rest."""
    order = list(range(len(batches)))
    if again is not None:
        j, k = again
        order = [*range(k + 1), *range(j, k + 1), *range(k + 1, len(batches))]
    value = b""
    for n, i in enumerate(order):
        state = _load_device(value)
        update_device(state, "rtu-1", batches[i], record=RECORD, domain="hydro", now=1e9 + n, config=CONFIG)
        value = encode_device(state)
    return decode_device(value)


@settings(max_examples=300, deadline=None)
@given(messages(), st.integers(min_value=1, max_value=3), st.data())
def test_readings_sent_again_are_not_counted_again(docs: list[bytes], per: int, data: st.DataObject) -> None:
    """A replay of batches whose readings are still in the windows (or were counted as late,
    flagged or spikes) changes no counter and no window: they are the ones without it."""
    readings = [decode_batch(d).readings for d in docs]
    batches: list[list[ReadingLike]] = [
        [r for doc in readings[i : i + per] for r in doc] for i in range(0, len(readings), per)
    ]
    k = data.draw(st.integers(0, len(batches) - 1))
    j = data.draw(st.integers(max(0, k - 2), k))
    saved = _replayed(batches[: k + 1], None)  # the state the restarted worker reads back
    keep_from = min(saved.closed, saved.wm - 3600)
    for r in (r for b in batches[j : k + 1] for r in b):
        if r.quality is Quality.NORMAL and r.ts.timestamp() < keep_from:
            return  # its window entry is gone: a reading placed then is late now (counted, as before)
    once = _replayed(batches, None)
    twice = _replayed(batches, (j, k))
    # (rule states are not compared: a replayed batch's newest time is evaluated again, with
    # what arrived out of order since, and a rule that had no state may get one)
    for name in ("late", "excluded", "spikes", "out_of_range", "counted", "closed", "wm", "metrics"):
        assert getattr(twice, name) == getattr(once, name), name


def _reading(metric: str, value: float, ts: datetime, quality: Quality = Quality.NORMAL) -> WireReading:
    return WireReading(metric=metric, value=value, ts=ts, quality=quality)


def test_a_late_reading_sent_again_after_a_restart_is_counted_once() -> None:
    first = [_reading("level", 1.0 + i / 10, T0 + timedelta(minutes=i)) for i in range(130)]
    state = DeviceState()
    update_device(state, "rtu-1", first, record=RECORD, domain="hydro", now=1e9, config=CONFIG)
    late = [_reading("level", 4.2, T0 + timedelta(minutes=5, seconds=30))]
    out = update_device(state, "rtu-1", late, record=RECORD, domain="hydro", now=1e9, config=CONFIG)
    assert out.late == 1 and state.late == 1
    restored = decode_device(encode_device(state))  # the worker killed and restarted
    out = update_device(restored, "rtu-1", late, record=RECORD, domain="hydro", now=1e9, config=CONFIG)
    assert out.late == 0 and restored.late == 1
    assert restored.counted == {"level": device._pack_times([late[0].ts.timestamp()])}
    flagged = [_reading("level", 9.9, T0 + timedelta(minutes=129, seconds=50), Quality.FAULT)]
    for _ in range(2):
        update_device(restored, "rtu-1", flagged, record=RECORD, domain="hydro", now=1e9, config=CONFIG)
        restored = decode_device(encode_device(restored))
    assert restored.excluded == 1


def _minutes(count: int) -> list[bytes]:
    """A level every minute from T0: in the five minutes after an hour's end the window still
    holds entries from before the last hour (the hour closes only after its grace)."""
    return [
        orjson.dumps(
            {
                "device_id": "rtu-1",
                "received_at": (T0 + timedelta(minutes=i)).isoformat(),
                "source": "mqtt",
                "readings": [
                    {
                        "metric": "level",
                        "value": 1.0 + (i % 7) / 10,
                        "ts": (T0 + timedelta(minutes=i)).isoformat(),
                    }
                ],
            }
        )
        for i in range(count)
    ]


@settings(max_examples=150, deadline=None)
@given(st.one_of(messages(), st.just(_minutes(70))), st.integers(min_value=1, max_value=4))
def test_the_whole_window_shortcut_gives_the_filtered_windows_signals(docs: list[bytes], per: int) -> None:
    """After every update: each window entry lies between ``m.oldest`` and the watermark, and
    the signals taken with the shortcut are those of the filtered window (``oldest`` unknown)."""
    readings = [r for d in docs for r in decode_batch(d).readings]
    value = b""
    attrs = {"warning_level": 5.0, "guaranteed_level": 6.0}
    for i in range(0, len(readings), per):
        state = _load_device(value)
        update_device(
            state, "rtu-1", readings[i : i + per], record=RECORD, domain="hydro", now=1e9, config=CONFIG
        )
        for m in state.metrics.values():
            assert all(v[0] <= state.wm for v in m.raw.values())
            assert m.oldest is None or all(v[0] >= m.oldest for v in m.raw.values())
        got = device._signals(state, "hydro", attrs, state.wm, None)
        for m in state.metrics.values():
            m.oldest = None
        assert device._signals(state, "hydro", attrs, state.wm, None) == got
        value = encode_device(state)
