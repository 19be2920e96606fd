"""Duplicate JSON keys and empty payloads are refused, each with its own code and a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.checks import Limits
from ingest.router import Accepted, Ignored, route
from stationflow.contracts import DeadLetter

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
TS = "2026-11-21T07:59:00Z"
TOPIC = "devices/air-001/readings"

Pairs = list[tuple[str, object]]


def _p(template: str) -> str:
    return template.replace("@TS", TS)


def _route(payload: bytes) -> Accepted | DeadLetter:
    result = route(TOPIC, payload, NOW, limits=Limits())
    assert not isinstance(result, Ignored)  # only HJ 212 state uploads are ignored
    return result


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(
            _p('{"readings":[{"metric":"pm25","value":1,"value":2,"ts":"@TS"}]}'),
            'readings[0]: duplicate key "value"',
            id="value",
        ),
        pytest.param(
            _p(
                '{"readings":[{"metric":"pm25","value":1,"ts":"@TS"},'
                '{"metric":"pm10","metric":"pm25","value":1,"ts":"@TS"}]}'
            ),
            'readings[1]: duplicate key "metric"',
            id="second-reading",
        ),
        pytest.param(
            _p('{"ts":"@TS","ts":"2026-11-21T07:00:00Z","readings":[{"metric":"pm25","value":1}]}'),
            'payload: duplicate key "ts"',
            id="top-level-default-ts",
        ),
        pytest.param(
            _p('{"readings":[{"metric":"pm25","value":1,"ts":"@TS"}],"readings":[]}'),
            'payload: duplicate key "readings"',
            id="top-level-readings",
        ),
        pytest.param(
            _p('{ "readings" : [ { "metric" : "pm25" ,\n "value" : 1 , "value" : 2 , "ts" : "@TS" } ] }'),
            'readings[0]: duplicate key "value"',
            id="spaced",
        ),
        pytest.param(
            _p('{"readings":[{"metric":"pm25","value":1,"value":"high","ts":"@TS"}]}'),
            'readings[0]: duplicate key "value"',
            id="also-invalid-schema",
        ),
        pytest.param(
            _p('{"readings":[{"metric":"pm25","value":NaN,"val\\u0075e":1,"ts":"@TS"}]}'),
            'readings[0]: duplicate key "value"',
            id="escaped-key",
        ),
        pytest.param(
            _p('{"readings":[{"metric":"pm25","value":1,"unit":"a\\":","unit":"b","ts":"@TS"}]}'),
            'readings[0]: duplicate key "unit"',
            id="escaped-quote-colon-in-string",
        ),
    ],
)
def test_a_repeated_key_is_refused_naming_the_key_and_its_object(payload: str, reason: str) -> None:
    result = _route(payload.encode())
    assert isinstance(result, DeadLetter), result
    assert result.code == "invalid_json"
    assert result.reason.startswith(reason), result.reason
    assert result.device_id == "air-001"
    assert result.payload() == payload.encode()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(
            _p('{"readings":[{"metric":"pm25","value":1,"unit":"a\\":b","ts":"@TS"}]}'), id="quote-colon"
        ),
        pytest.param(
            json.dumps({"readings": [{"metric": "pm25", "value": 1, "ts": TS}]}, indent=2), id="indent"
        ),
        pytest.param(
            _p('{"readings":[{"metric":"pm25","value":1,"unit":" :","ts":"@TS"}]}'), id="space-in-string"
        ),
        pytest.param(
            _p('{"device_id":"air-001","readings":[{"metric":"pm25","value":1,"ts":"@TS"}]}'), id="id"
        ),
    ],
)
def test_messages_that_look_suspicious_but_repeat_nothing_are_accepted(payload: str) -> None:
    assert isinstance(_route(payload.encode()), Accepted)


def test_a_zero_length_payload_has_its_own_code() -> None:
    result = _route(b"")
    assert isinstance(result, DeadLetter)
    assert result.code == "empty_payload"
    assert "retained" in result.reason
    assert result.payload_size == 0


@pytest.mark.parametrize("payload", [b" ", b"\n", b"\x00"])
def test_a_blank_payload_is_not_json_rather_than_empty(payload: bytes) -> None:
    result = _route(payload)
    assert isinstance(result, DeadLetter)
    assert result.code == "invalid_json"


# -- property: refused exactly when some object repeats a key, however it is spaced ------------

_SPACE = st.sampled_from(["", "", " ", "\n", "\t", "  \r\n"])
_TEXT = st.text(alphabet=st.sampled_from([*'ab: "\\\t{}[],', "\u00e9"]), max_size=8)
# a shipment becomes an InfluxDB tag: no control characters or backslashes (stationflow.tagtext)
_SHIPMENT = st.text(alphabet=st.sampled_from([*'ab: "{}[],', "\u00e9"]), max_size=8)


def _render(node: object, draw: st.DrawFn) -> str:
    if isinstance(node, list) and node and isinstance(node[0], tuple):
        items = [
            f"{draw(_SPACE)}{json.dumps(k)}{draw(_SPACE)}:{draw(_SPACE)}{_render(v, draw)}" for k, v in node
        ]
        return "{" + ",".join(items) + draw(_SPACE) + "}"
    if isinstance(node, list):
        return "[" + ",".join(draw(_SPACE) + _render(v, draw) for v in node) + draw(_SPACE) + "]"
    return json.dumps(node, ensure_ascii=draw(st.booleans()))


@st.composite
def _reading(draw: st.DrawFn) -> Pairs:
    pairs: Pairs = [
        ("metric", draw(st.sampled_from(["pm25", "level", "o3"]))),
        ("value", draw(st.integers(-9, 9))),
    ]
    pairs.append(("ts", TS))
    if draw(st.booleans()):
        pairs.append(("unit", draw(_TEXT)))
    if draw(st.booleans()):
        pairs.append(("quality", draw(st.sampled_from("NFMT"))))
    if draw(st.booleans()):
        pairs.append(("shipment", draw(_SHIPMENT)))
    return draw(st.permutations(pairs))


@st.composite
def _message(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A valid message, maybe with one repeated key; the expected reason prefix if so."""
    readings = draw(st.lists(_reading(), min_size=1, max_size=4))
    top: Pairs = [("readings", readings)]
    if draw(st.booleans()):
        top.append(("device_id", "air-001"))
    expected = None
    where = draw(st.sampled_from(["none", "none", "top", "reading"]))
    if where == "top":
        key, value = draw(st.sampled_from(top))
        top.insert(draw(st.integers(0, len(top))), (key, value))
        expected = f'payload: duplicate key "{key}"'
    elif where == "reading":
        i = draw(st.integers(0, len(readings) - 1))
        key, value = draw(st.sampled_from(readings[i]))
        readings[i].insert(draw(st.integers(0, len(readings[i]))), (key, value))
        expected = f'readings[{i}]: duplicate key "{key}"'
    return _render(draw(st.permutations(top)), draw).encode(), expected


@settings(max_examples=400, deadline=None)
@given(_message())
def test_refused_exactly_when_an_object_repeats_a_key(message: tuple[bytes, str | None]) -> None:
    payload, expected = message
    result = _route(payload)
    if expected is None:
        assert isinstance(result, Accepted), (payload, result)
    else:
        assert isinstance(result, DeadLetter), payload
        assert result.code == "invalid_json"
        assert result.reason.startswith(expected), (payload, result.reason)
