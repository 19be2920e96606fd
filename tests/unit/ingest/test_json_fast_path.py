"""The native JSON fast path (msgspec) accepts only what the pydantic path accepts, with equal readings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from msgspec import UNSET

from ingest.decoders import native_json
from ingest.decoders.native_json import JsonReading, decode
from ingest.errors import RejectedMessage
from stationflow.contracts import Quality, Reading

DEVICE = "air-001"
NOW = datetime(2026, 11, 21, 8, tzinfo=UTC)

GOOD_TS = ["2026-11-21T07:59:00Z", "2026-11-21T15:59:00+08:00", "2026-11-21T07:59:00.25Z"]
ODD_TS = [
    "2026-11-21T07:59:00z",
    "2026-11-21t07:59:00Z",
    "2026-11-21 07:59:00Z",
    "2026-11-21T07:59:00.123456Z",
    "2026-11-21T07:59:00.1234567Z",
    "2026-11-21T07:59:00.9999999Z",
    "2026-11-21T07:59:00.123456789+05:30",
    "2026-11-21T15:59:00+0800",
    "2026-11-21T07:59:00-00:00",
    "2026-11-21T07:59:00+00:00",
    "2026-11-21T07:59Z",
    "2026-11-21T07:59:60Z",
    "2026-11-21T24:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-21T07:59:00",
    "2026-11-21",
    "20261121T075900Z",
    "2026-11-21T07:59:00+24:00",
    "2026-11-21T07:59:00+23:59",
    "2026-11-21T07:59:00+08:30:15",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "yesterday",
    "",
]
timestamps = st.sampled_from(GOOD_TS) | st.sampled_from(ODD_TS) | st.integers(0, 10**13) | st.none()
ODD_VALUES: list[object] = [True, None, "1", [], {}, 10**400, 1e308, 5e-324, -0.0]
values = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(10**30), 10**30)
    | st.sampled_from(ODD_VALUES)
)
SAMPLES = [
    "",
    "a" * 32,
    "a" * 33,
    "a" * 64,
    "a" * 65,
    "x\n",
    "é",
    "\\",
    "\u2028",
    "a\\ b",
    "\x00",
    "\x85",
    '"',
]
texts = st.sampled_from(["ug/m3", "S-1", "degC"]) | st.sampled_from(SAMPLES) | st.text(max_size=70)
ODD_METRICS = ["9x", "", "pm 25", "pm25\n", "m\u00e9", "a" * 64, "a" * 65, "PM2.5", "a34004", "m-1_2."]
metrics = st.sampled_from(["pm25", "level"]) | st.sampled_from(ODD_METRICS)
qualities = st.sampled_from([q.value for q in Quality]) | st.sampled_from(["X", "n", "", None])


def _mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` four times in five."""
    return st.integers(0, 4).flatmap(lambda n: odd if n == 0 else good)


@st.composite
def readings(draw: st.DrawFn) -> dict[str, Any]:
    reading: dict[str, Any] = {
        "metric": draw(_mostly(st.sampled_from(["pm25", "level"]), metrics)),
        "value": draw(_mostly(st.floats(-1e6, 1e6) | st.integers(-1000, 1000), values)),
    }
    if draw(st.integers(0, 9)):
        reading["ts"] = draw(_mostly(st.sampled_from(GOOD_TS), timestamps))
    good = st.sampled_from(["ug/m3", "S-1", None])
    optional = (("unit", _mostly(good, texts)), ("quality", qualities), ("shipment", _mostly(good, texts)))
    for key, strategy in optional:
        if draw(st.booleans()):
            reading[key] = draw(strategy)
    if draw(st.integers(0, 20)) == 0:
        reading["extra"] = 1
    return reading


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    count = draw(st.sampled_from([0, 1, 1, 1]))
    doc: dict[str, Any] = {"readings": draw(st.lists(readings(), min_size=count, max_size=4))}
    if draw(st.integers(0, 3)) == 0:
        doc["ts"] = draw(timestamps)
    if draw(st.integers(0, 3)) == 0:
        doc["device_id"] = draw(st.sampled_from([DEVICE, "air-002", None, 5]))
    if draw(st.integers(0, 3)):
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(doc)
    if draw(st.integers(0, 5)) == 0 and '"value":' in text:  # a repeated key
        text = text.replace('"value":', '"value":1,"value":', 1)
    return text.encode("utf-8", "surrogatepass")


def _pydantic(payload: bytes) -> list[Reading] | str:
    try:
        return native_json._decode_pydantic(payload, DEVICE)
    except RejectedMessage as exc:
        return f"{exc.code}: {exc.reason}"


def _as_reading(r: JsonReading) -> Reading:
    return Reading(
        metric=r.metric,
        value=r.value,
        unit=None if r.unit is UNSET else r.unit,
        ts=r.ts,
        quality=Quality.NORMAL if r.quality is UNSET else r.quality,
        shipment=None if r.shipment is UNSET else r.shipment,
    )


@settings(max_examples=1500, deadline=None)
@given(payload=payloads())
def test_what_the_fast_path_accepts_the_pydantic_path_accepts_alike(payload: bytes) -> None:
    fast = native_json._decode_fast(payload, DEVICE)
    event("fast path" if fast is not None else "pydantic path")
    if fast is None:
        return
    reference = _pydantic(payload)
    assert not isinstance(reference, str), f"fast path accepted what pydantic refuses: {reference}"
    assert [_as_reading(r) for r in fast] == reference
    assert all(r.ts.tzinfo is UTC for r in fast)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"readings":[{"metric":"pm25","value":1,"value":2,"ts":"2026-11-21T07:59:00Z"}]}',
        b'{"readings":[{"metric":"pm25\\n","value":1,"ts":"2026-11-21T07:59:00Z"}]}',
        b'{"readings":[{"metric":"pm25","value":1,"ts":"2026-11-21T07:59:00.1234567Z"}]}',
        b'{"readings":[{"metric":"pm25","value":1}],"ts":"2026-11-21T07:59:00Z"}',
        b'{"device_id":"air-002","readings":[{"metric":"pm25","value":1,"ts":"2026-11-21T07:59:00Z"}]}',
        b'{"readings":[]}',
    ],
    ids=["repeated-key", "escape", "7-decimals", "top-level-ts", "other-device", "empty"],
)
def test_messages_the_fast_path_leaves_to_pydantic(payload: bytes) -> None:
    assert native_json._decode_fast(payload, DEVICE) is None
    try:
        expected: object = native_json._decode_pydantic(payload, DEVICE)
    except RejectedMessage as exc:
        with pytest.raises(RejectedMessage) as raised:
            decode(payload, device_id=DEVICE, received_at=NOW)
        assert (raised.value.code, raised.value.reason) == (exc.code, exc.reason)
    else:
        assert decode(payload, device_id=DEVICE, received_at=NOW) == expected


def test_a_plain_message_takes_the_fast_path() -> None:
    payload = b'{"readings":[{"metric":"pm25","value":35.2,"unit":"ug/m3","ts":"2026-11-21T15:59:00+08:00"}]}'
    readings = decode(payload, device_id=DEVICE, received_at=NOW)
    assert readings == [
        JsonReading(metric="pm25", value=35.2, unit="ug/m3", ts=datetime(2026, 11, 21, 7, 59, tzinfo=UTC))
    ]
