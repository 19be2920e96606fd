"""The collector's input policy: every message becomes a batch or a dead letter with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.checks import Limits
from ingest.router import Accepted, Ignored, route
from stationflow.contracts import DeadLetter, Quality, Reading, ReadingBatch
from stationflow.wire import decode_batch

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
TOPIC = "devices/air-001/readings"
LIMITS = Limits()


def _route(payload: bytes | str, topic: str = TOPIC, limits: Limits = LIMITS) -> Accepted | DeadLetter:
    body = payload.encode() if isinstance(payload, str) else payload
    result = route(topic, body, NOW, limits=limits)
    assert not isinstance(result, Ignored)  # only HJ 212 state uploads are ignored
    return result


def _msg(**overrides: object) -> str:
    reading = {"metric": "pm25", "value": 35.2, "unit": "ug/m3", "ts": "2026-11-21T07:59:00Z"}
    reading.update(overrides)
    return json.dumps({"readings": [reading]})


def test_good_message_becomes_batch_keyed_by_device() -> None:
    payload = json.dumps(
        {
            "readings": [
                {"metric": "pm25", "value": 35.2, "unit": "ug/m3", "ts": "2026-11-21T15:59:00+08:00"},
                {"metric": "pm10", "value": 61, "ts": "2026-11-21T07:59:00Z", "quality": "T"},
            ]
        }
    )
    result = _route(payload)
    assert isinstance(result, Accepted)
    assert result.device_id == "air-001"
    assert result.key() == b"air-001"
    assert result.source == f"mqtt:{TOPIC}"
    assert [r.metric for r in result.readings] == ["pm25", "pm10"]
    assert result.readings[0].ts == datetime(2026, 11, 21, 7, 59, tzinfo=UTC)  # +08:00 → UTC
    assert result.readings[0].ts.tzinfo is UTC
    assert result.readings[1].value == 61.0
    assert result.readings[1].quality is Quality.OVER_RANGE
    # survives the wire: the record is the ReadingBatch of these readings
    model = ReadingBatch(
        device_id="air-001",
        received_at=NOW,
        source=f"mqtt:{TOPIC}",
        readings=[
            Reading(metric="pm25", value=35.2, unit="ug/m3", ts=datetime(2026, 11, 21, 7, 59, tzinfo=UTC)),
            Reading(
                metric="pm10", value=61, ts=datetime(2026, 11, 21, 7, 59, tzinfo=UTC), quality=Quality("T")
            ),
        ],
    )
    assert ReadingBatch.model_validate_json(result.to_json()) == model
    assert decode_batch(result.to_json()) == decode_batch(model.model_dump_json().encode())


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": "), (",", " : ")])
def test_fast_and_pydantic_paths_write_the_same_batch(separators: tuple[str, str]) -> None:
    """A space after a key sends the message down the pydantic path; both give one record."""
    doc = {
        "device_id": "air-001",
        "readings": [
            {"metric": "pm25", "value": 35.2, "unit": None, "ts": "2026-11-21T15:59:00.5+08:00"},
            {"metric": "t", "value": -3, "ts": "2026-11-21T07:59:00Z", "quality": "M", "shipment": "S-1"},
        ],
    }
    result = _route(json.dumps(doc, separators=separators))
    assert isinstance(result, Accepted)
    reference = ReadingBatch(
        device_id="air-001",
        received_at=NOW,
        source=f"mqtt:{TOPIC}",
        readings=[
            Reading(metric="pm25", value=35.2, ts=datetime(2026, 11, 21, 7, 59, 0, 500000, tzinfo=UTC)),
            Reading(
                metric="t",
                value=-3.0,
                ts=datetime(2026, 11, 21, 7, 59, tzinfo=UTC),
                quality=Quality.MAINTENANCE,
                shipment="S-1",
            ),
        ],
    )
    assert ReadingBatch.model_validate_json(result.to_json()) == reference
    assert decode_batch(result.to_json()) == decode_batch(reference.model_dump_json().encode())


def test_top_level_ts_applies_to_readings_without_one() -> None:
    payload = json.dumps({"ts": "2026-11-21T07:00:00Z", "readings": [{"metric": "rain", "value": 0.5}]})
    result = _route(payload)
    assert isinstance(result, Accepted)
    assert result.readings[0].ts == datetime(2026, 11, 21, 7, tzinfo=UTC)


def test_epoch_timestamps_are_accepted() -> None:
    epoch = int(datetime(2026, 11, 21, 7, 0, tzinfo=UTC).timestamp())
    for value in (epoch, epoch * 1000):
        result = _route(_msg(ts=value))
        assert isinstance(result, Accepted), result
        assert result.readings[0].ts == datetime(2026, 11, 21, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "topic", "code", "words"),
    [
        pytest.param("not json", TOPIC, "invalid_json", "not valid JSON", id="not-json"),
        pytest.param(b"\xff\xfe\x00", TOPIC, "invalid_json", "not valid JSON", id="binary"),
        pytest.param("[1,2]", TOPIC, "invalid_schema", "JSON object", id="array"),
        pytest.param("{}", TOPIC, "invalid_schema", "readings", id="no-readings"),
        pytest.param('{"readings": []}', TOPIC, "empty_batch", "empty", id="empty"),
        pytest.param(_msg(value="35.2"), TOPIC, "invalid_schema", "readings[0].value", id="string-value"),
        pytest.param(_msg(value=None), TOPIC, "invalid_schema", "readings[0].value", id="null-value"),
        pytest.param(_msg(value=True), TOPIC, "invalid_schema", "readings[0].value", id="bool-value"),
        pytest.param(
            '{"readings":[{"metric":"pm25","value":NaN,"ts":"2026-11-21T07:59:00Z"}]}',
            TOPIC,
            "non_finite",
            "finite",
            id="nan",
        ),
        pytest.param(
            '{"readings":[{"metric":"pm25","value":1e999,"ts":"2026-11-21T07:59:00Z"}]}',
            TOPIC,
            "non_finite",
            "finite",
            id="overflow-inf",
        ),
        pytest.param(_msg(ts="2026-11-21T07:59:00"), TOPIC, "naive_timestamp", "UTC offset", id="naive"),
        pytest.param(_msg(ts="yesterday"), TOPIC, "invalid_schema", "readings[0].ts", id="bad-ts"),
        pytest.param(_msg(ts="2026-11-21T09:00:00Z"), TOPIC, "ts_future", "device clock", id="future"),
        pytest.param(_msg(ts="2020-01-01T00:00:00Z"), TOPIC, "ts_past", "device clock", id="past"),
        pytest.param(_msg(metric="pm 2.5"), TOPIC, "invalid_schema", "readings[0].metric", id="bad-metric"),
        pytest.param(
            _msg(metric="pm 2.5"), TOPIC, "invalid_schema", "metric must be a letter then", id="metric-words"
        ),
        pytest.param(
            _msg(shipment="SH-1\nX"),
            TOPIC,
            "invalid_schema",
            "readings[0].shipment: shipment must not contain control characters",
            id="shipment-newline",
        ),
        pytest.param(_msg(quality="X"), TOPIC, "invalid_schema", "readings[0].quality", id="bad-quality"),
        pytest.param(_msg(colour="red"), TOPIC, "invalid_schema", "unknown field", id="extra-field"),
        pytest.param(
            json.dumps({"readings": [{"metric": "pm25", "value": 1}]}),
            TOPIC,
            "missing_ts",
            "no 'ts'",
            id="missing-ts",
        ),
        pytest.param(
            json.dumps({"device_id": "air-002", "readings": json.loads(_msg())["readings"]}),
            TOPIC,
            "topic_mismatch",
            "air-002",
            id="topic-mismatch",
        ),
        pytest.param(_msg(), "devices//readings", "bad_device_id", "device id", id="empty-device"),
        pytest.param(_msg(), "devices/a+b/readings", "bad_device_id", "device id", id="bad-device-chars"),
        pytest.param(_msg(), "devices/air-001", "bad_topic", "devices/<device_id>/<readings|", id="topic"),
        pytest.param(
            _msg(), "devices/air-001/status", "unknown_subtopic", "devices/air-001/senml", id="subtopic"
        ),
    ],
)
def test_bad_input_becomes_dead_letter_with_reason(
    payload: str | bytes, topic: str, code: str, words: str
) -> None:
    result = _route(payload, topic)
    assert isinstance(result, DeadLetter), result
    assert result.code == code
    assert words in result.reason
    raw = payload.encode() if isinstance(payload, str) else payload
    assert result.payload() == raw  # the integrator can see exactly what was sent
    assert result.source == f"mqtt:{topic}"


def test_oversized_message_is_refused_before_parsing() -> None:
    limits = Limits(max_payload_bytes=100)
    result = _route("x" * 101, limits=limits)
    assert isinstance(result, DeadLetter)
    assert result.code == "oversized"
    assert "101 bytes" in result.reason
    assert result.payload_size == 101
    assert len(result.payload()) == 100  # stored truncated, size kept


def test_too_many_readings() -> None:
    readings = [{"metric": "m", "value": i, "ts": "2026-11-21T07:59:00Z"} for i in range(11)]
    result = _route(json.dumps({"readings": readings}), limits=Limits(max_readings=10))
    assert isinstance(result, DeadLetter)
    assert result.code == "too_many_readings"


def test_device_id_named_in_dead_letter_when_known() -> None:
    result = _route("nope")
    assert isinstance(result, DeadLetter)
    assert result.device_id == "air-001"
    assert result.key() == b"air-001"


def test_dead_letter_round_trips_on_the_wire() -> None:
    result = _route("nope")
    assert isinstance(result, DeadLetter)
    assert DeadLetter.model_validate_json(result.model_dump_json()) == result


def test_future_window_edge() -> None:
    inside = _route(_msg(ts=(NOW + timedelta(minutes=4)).isoformat()))
    outside = _route(_msg(ts=(NOW + timedelta(minutes=6)).isoformat()))
    assert isinstance(inside, Accepted)
    assert isinstance(outside, DeadLetter)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=512), topic=st.text(max_size=60))
def test_hostile_bytes_never_raise(payload: bytes, topic: str) -> None:
    result = _route(payload, topic)
    assert isinstance(result, Accepted | DeadLetter)
    if isinstance(result, DeadLetter):
        assert result.reason
        assert result.payload() == payload


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.sampled_from(["readings", "ts", "device_id", "x"]), json_values, max_size=3))
def test_hostile_json_never_raises(doc: dict[str, object]) -> None:
    result = _route(json.dumps(doc))
    assert isinstance(result, Accepted | DeadLetter)


@settings(max_examples=200, deadline=None)
@given(
    readings=st.lists(
        st.fixed_dictionaries(
            {
                "metric": st.sampled_from(["pm25", "level", "", "a" * 70, "ok_1"]),
                "value": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text(max_size=3),
                "ts": st.sampled_from(["2026-11-21T07:59:00Z", "2026-11-21T07:59:00", 0, "x", 1e30]),
            }
        ),
        max_size=5,
    )
)
def test_hostile_readings_never_raise_and_accepted_ones_are_valid(readings: list[dict[str, object]]) -> None:
    result = _route(json.dumps({"readings": readings}))
    if isinstance(result, Accepted):
        ReadingBatch.model_validate_json(result.to_json())  # what we accept is a valid contract
    else:
        assert result.code
