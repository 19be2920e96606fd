"""The msgspec codec of the hot path agrees with the pydantic contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stationflow.contracts import Quality, Reading, ReadingBatch
from stationflow.wire import decode_batch, encode_wire_batch, join_bundle, split_bundle

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)

readings = st.builds(
    Reading,
    metric=st.from_regex(r"\A[A-Za-z][A-Za-z0-9_.\-]{0,20}\Z"),
    value=st.floats(allow_nan=False, allow_infinity=False),
    unit=st.none() | st.text(max_size=32),
    ts=st.datetimes(timezones=st.just(UTC)),
    quality=st.sampled_from(list(Quality)),
    shipment=st.none() | st.from_regex(r"\A[A-Za-z0-9_-]{1,20}\Z"),
)
batches = st.builds(
    ReadingBatch,
    device_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:\-]{0,30}\Z"),
    received_at=st.datetimes(timezones=st.just(UTC)),
    source=st.text(max_size=40),
    readings=st.lists(readings, min_size=1, max_size=5),
)


@settings(max_examples=200)
@given(batches)
def test_pydantic_json_decodes_to_the_same_batch(batch: ReadingBatch) -> None:
    wire = decode_batch(batch.model_dump_json().encode())
    assert ReadingBatch.model_validate_json(encode_wire_batch(wire)) == batch
    assert wire.device_id == batch.device_id
    assert [(r.metric, r.value, r.ts, r.quality) for r in wire.readings] == [
        (r.metric, r.value, r.ts, r.quality) for r in batch.readings
    ]


def _doc(**overrides: object) -> bytes:
    reading = {"metric": "pm25", "value": 1.5, "ts": "2026-11-30T10:00:00Z"}
    doc: dict[str, object] = {
        "v": 1,
        "device_id": "d1",
        "received_at": "2026-11-30T10:00:01Z",
        "source": "mqtt:devices/d1/readings",
        "readings": [reading],
    }
    if "reading" in overrides:
        doc["readings"] = [{**reading, **overrides.pop("reading")}]  # type: ignore[dict-item]
    doc.update(overrides)
    return msgspec.json.encode(doc)


@pytest.mark.parametrize(
    "bad",
    [
        _doc(readings=[]),
        _doc(device_id="bad id"),
        _doc(v=2),
        _doc(extra=1),
        _doc(received_at="2026-11-30T10:00:01"),
        _doc(reading={"metric": "1abc"}),
        _doc(reading={"value": "1.5"}),
        _doc(reading={"value": True}),
        _doc(reading={"quality": "Z"}),
        _doc(reading={"unit": "x" * 33}),
        _doc(reading={"other": 1}),
        _doc(reading={"ts": "2026-11-30T10:00:00"}),
        _doc(device_id="d1\n"),  # Python's `$` would match before a final newline
        _doc(reading={"metric": "pm25\n"}),
        _doc(reading={"shipment": "s1\n"}),
        b'{"v":1,"device_id":"d1","received_at":"2026-11-30T10:00:01Z","source":"s",'
        b'"readings":[{"metric":"m","value":1e999,"ts":"2026-11-30T10:00:00Z"}]}',
        b"not json",
        b"",
    ],
)
def test_refuses_what_the_contract_refuses(bad: bytes) -> None:
    with pytest.raises(ValidationError):
        ReadingBatch.model_validate_json(bad)
    with pytest.raises(msgspec.ValidationError if bad.startswith(b"{") else msgspec.DecodeError):
        decode_batch(bad)


def test_offset_timestamps_compare_in_utc() -> None:
    east8 = timezone(timedelta(hours=8))
    raw = _doc(reading={"ts": T0.astimezone(east8).isoformat()})
    assert decode_batch(raw).readings[0].ts == T0


def test_bundle_round_trip() -> None:
    docs = [_doc(device_id=f"d{n}") for n in range(3)]
    assert split_bundle(join_bundle(docs)) == docs
    assert split_bundle(docs[0]) == [docs[0]]
    assert [decode_batch(d).device_id for d in split_bundle(join_bundle(docs))] == ["d0", "d1", "d2"]


def test_a_trailing_newline_is_no_device_id_or_metric() -> None:
    from ingest.decoders.senml import _METRIC
    from ingest.errors import RejectedMessage
    from ingest.topics import parse_topic

    with pytest.raises(RejectedMessage):
        parse_topic("devices/d1\n/readings")
    assert _METRIC.match("pm25\n") is None


def test_names_are_checked_every_time_and_errors_name_the_first_failure() -> None:
    """decode_batch remembers accepted device ids and metrics; a bad one is still refused, and the
    error is msgspec's for the first failed check in document order (as with the pattern in msgspec)."""
    reading = {"metric": "pm25", "value": 1.5, "ts": "2026-11-30T10:00:00Z"}
    for _ in range(2):
        assert decode_batch(_doc()).readings[0].metric == "pm25"
    with pytest.raises(msgspec.ValidationError, match=r"regex .* - at `\$\.readings\[1\]\.metric`"):
        decode_batch(_doc(readings=[reading, {**reading, "metric": "1abc"}]))
    with pytest.raises(msgspec.ValidationError, match=r"regex .* - at `\$\.readings\[0\]\.metric`"):
        decode_batch(_doc(readings=[{**reading, "metric": "pm25\n"}, {**reading, "value": "x"}]))
    with pytest.raises(msgspec.ValidationError, match=r"`float`, got `str` - at `\$\.readings\[0\]\.value`"):
        decode_batch(_doc(readings=[{**reading, "value": "x"}, {**reading, "metric": "1abc"}]))
    with pytest.raises(msgspec.ValidationError, match=r"regex .* - at `\$\.device_id`"):
        decode_batch(_doc(device_id="d1 ", readings=[{**reading, "value": "x"}]))


def test_the_strict_structs_have_the_wire_structs_fields() -> None:
    """The structs decode_batch raises errors with stay field for field the ones it returns."""
    from stationflow import wire

    def shape(struct: type) -> list[tuple[str, object]]:
        return [(f.name, f.default) for f in msgspec.structs.fields(struct)]

    assert shape(wire._StrictBatch) == shape(wire.WireBatch)
    assert shape(wire._StrictReading) == shape(wire.WireReading)
