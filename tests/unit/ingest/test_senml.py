"""SenML (RFC 8428) decoder: the RFC's examples adapted to catalog metrics, and hostile packs."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decoders import DECODERS
from ingest.decoders.senml import UNITS, decode
from ingest.errors import RejectedMessage
from stationflow.contracts import Quality, Reading

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
DEVICE = "10e2073a01080063"  # the RFC's 1-Wire id as a stationflow device id
BN = f"urn:dev:ow:{DEVICE}:"


def _decode(pack: object, device_id: str = DEVICE) -> list[Reading]:
    body = pack if isinstance(pack, bytes) else json.dumps(pack).encode()
    return decode(body, device_id=device_id, received_at=NOW)


def _refused(pack: object, device_id: str = DEVICE) -> RejectedMessage:
    with pytest.raises(RejectedMessage) as caught:
        _decode(pack, device_id)
    assert caught.value.device_id == device_id
    assert caught.value.reason
    return caught.value


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_registered_as_a_decoder() -> None:
    assert DECODERS["senml"] is decode


def test_rfc_5_1_1_single_datapoint() -> None:
    # RFC: [{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}] (name + metric here)
    [reading] = _decode([{"n": f"urn:dev:ow:{DEVICE}:temperature", "u": "Cel", "v": 23.1}])
    assert reading == Reading(metric="temperature", value=23.1, unit="degC", ts=NOW, quality=Quality.NORMAL)


def test_rfc_5_1_2_multiple_datapoints_share_the_base_name() -> None:
    # RFC: voltage V / current A; here the catalog's temperature Cel / humidity %RH
    readings = _decode(
        [{"bn": BN, "n": "temperature", "u": "Cel", "v": 23.1}, {"n": "humidity", "u": "%RH", "v": 41}]
    )
    assert [(r.metric, r.value, r.unit, r.ts) for r in readings] == [
        ("temperature", 23.1, "degC", NOW),
        ("humidity", 41.0, "%", NOW),
    ]


def test_rfc_5_1_3_base_time_base_unit_and_relative_times() -> None:
    # RFC 5.1.3 (bt 1.276020076001e+09, bu, bver 5, t -5 .. 0) with a river level in metres
    bt = 1.276020076001e09
    pack = [
        {"bn": BN, "bt": bt, "bu": "m", "bver": 5, "n": "level", "v": 2.41},
        {"n": "level", "t": -5, "v": 2.40},
        {"n": "level", "t": -4, "v": 2.39},
        {"n": "flow", "u": "m3/s", "t": -3, "v": 12.5},
        {"n": "level", "t": -2, "v": 2.38},
    ]
    readings = _decode(pack)
    assert [(r.metric, r.value, r.unit) for r in readings] == [
        ("level", 2.41, "m"),
        ("level", 2.40, "m"),
        ("level", 2.39, "m"),
        ("flow", 12.5, "m3/s"),
        ("level", 2.38, "m"),
    ]
    assert [r.ts for r in readings] == [_at(bt), _at(bt - 5), _at(bt - 4), _at(bt - 3), _at(bt - 2)]


def test_rfc_5_1_4_resolved_pack_is_read_as_is() -> None:
    pack = [
        {"n": f"{BN}level", "u": "m", "t": 1.320067464e09, "v": 2.41},
        {"n": f"{BN}level", "u": "m", "t": 1.320067524e09, "v": 2.38},
    ]
    assert [r.ts for r in _decode(pack)] == [_at(1.320067464e09), _at(1.320067524e09)]


def test_peers_spec_river_gauge_example() -> None:
    # peers.md §4: battery at another time, rain with ut; battery (V) and rain intensity here in mm
    pack = [
        {"bn": "urn:dev:mac:0024befffe804ff1:", "bt": 1.7245e9, "bu": "m", "n": "level", "v": 2.41},
        {"n": "level", "t": -600, "v": 2.37},
        {"n": "rain", "u": "mm", "v": 12.5, "ut": 600},
        {"n": "batt", "u": "V", "v": 3.61, "t": -3600},
    ]
    readings = _decode(pack, "0024befffe804ff1")
    assert [(r.metric, r.value, r.unit, r.ts) for r in readings] == [
        ("level", 2.41, "m", _at(1.7245e9)),
        ("level", 2.37, "m", _at(1.7245e9 - 600)),
        ("rain", 12.5, "mm", _at(1.7245e9)),
        ("batt", 3.61, "V", _at(1.7245e9 - 3600)),
    ]


def test_times_below_2_pow_28_are_relative_to_reception() -> None:
    readings = _decode(
        [
            {"n": "pm25", "u": "ug/m3", "v": 35, "t": -60},
            {"n": "pm25", "v": 36},
            {"bt": -30, "n": "pm10", "v": 1, "t": -0.5},
        ]
    )
    assert [r.ts for r in readings] == [NOW - timedelta(seconds=60), NOW, NOW - timedelta(seconds=30.5)]
    assert readings[1].unit is None  # no unit at all: the metric's canonical unit


def test_time_limit_is_2_pow_28() -> None:
    [absolute] = _decode([{"n": "pm25", "v": 1, "t": 2**28}])
    [relative] = _decode([{"n": "pm25", "v": 1, "t": 2**28 - 1}])
    assert absolute.ts == _at(2**28)
    assert relative.ts == NOW + timedelta(seconds=2**28 - 1)


def test_base_value_is_added_and_base_fields_carry_until_replaced() -> None:
    pack = [
        {"bn": f"{DEVICE}/", "bv": 100, "bu": "hPa", "n": "pressure", "v": 13.25},
        {"n": "pressure", "v": -1},
        {"bn": "", "bv": 0, "bu": "Cel", "n": "temperature", "v": 5},
    ]
    readings = _decode(pack)
    assert [(r.metric, r.value, r.unit) for r in readings] == [
        ("pressure", 113.25, "hPa"),
        ("pressure", 99.0, "hPa"),
        ("temperature", 5.0, "degC"),
    ]


@pytest.mark.parametrize(
    ("name", "device_id"),
    [
        pytest.param("pm25", "air-001", id="metric-only"),
        pytest.param("air-001/pm25", "air-001", id="slash"),
        pytest.param("air-001:pm25", "air-001", id="colon"),
        pytest.param("urn:dev:stationflow:air-001:pm25", "air-001", id="urn"),
        pytest.param("urn:dev:x:site:1:pm25", "site:1", id="id-with-colon"),
        pytest.param("stations/s1/air-001/pm25", "air-001", id="path"),
    ],
)
def test_names_of_the_topic_device(name: str, device_id: str) -> None:
    [reading] = _decode([{"n": name, "v": 1}], device_id)
    assert reading.metric == "pm25"


@pytest.mark.parametrize(
    ("pack", "code", "words"),
    [
        pytest.param(
            [{"bn": "urn:dev:ow:other:", "n": "pm25", "v": 1}],
            "senml_other_device",
            "urn:dev:ow:other",
            id="other",
        ),
        pytest.param([{"n": "air-002/pm25", "v": 1}], "senml_other_device", "air-002", id="other-slash"),
        pytest.param(
            [{"n": f"x{DEVICE}:pm25", "v": 1}], "senml_other_device", "may only publish", id="suffix-not-id"
        ),
        pytest.param([{"bn": BN, "v": 1}], "senml_bad_name", "metric", id="no-metric"),
        pytest.param([{"n": "pm 25", "v": 1}], "senml_bad_name", "letters", id="space"),
        pytest.param([{"n": "-pm25", "v": 1}], "senml_bad_name", "starting", id="leading-dash"),
        pytest.param([{"n": "25pm", "v": 1}], "senml_bad_name", "metric", id="metric-digit"),
        pytest.param([{"v": 1}], "senml_bad_name", "name", id="no-name"),
        pytest.param([{"n": "pm25", "vs": "high"}], "senml_non_numeric", "'vs'", id="vs"),
        pytest.param([{"n": "pm25", "vb": True}], "senml_non_numeric", "'vb'", id="vb"),
        pytest.param([{"n": "pm25", "vd": "aGk"}], "senml_non_numeric", "'vd'", id="vd"),
        pytest.param([{"n": "pm25", "v": 1, "vs": "1"}], "senml_bad_record", "exactly one", id="two-values"),
        pytest.param([{"n": "rain", "s": 12}], "senml_no_value", "sum", id="sum-only"),
        pytest.param([{"bs": 3, "n": "rain"}], "senml_no_value", "sum", id="base-sum-only"),
        pytest.param([{"n": "rain"}], "senml_no_value", "no value", id="no-value"),
        pytest.param([{"n": "pm25", "v": "35"}], "senml_bad_field", "v must be a number", id="string-v"),
        pytest.param([{"n": "pm25", "v": True}], "senml_bad_field", "v must be a number", id="bool-v"),
        pytest.param([{"n": "pm25", "v": None}], "senml_bad_field", "got null", id="null-v"),
        pytest.param([{"n": 25, "v": 1}], "senml_bad_field", "n must be a string", id="number-n"),
        pytest.param(
            [{"n": "pm25", "v": 1, "t": "now"}], "senml_bad_field", "t must be a number", id="string-t"
        ),
        pytest.param(
            [{"n": "current", "u": "A", "v": 1.2}], "senml_unknown_unit", "Cel, K, %RH", id="unit-A"
        ),
        pytest.param(
            [{"bu": "degC", "n": "temperature", "v": 1}],
            "senml_unknown_unit",
            "degC",
            id="not-senml-unit",
        ),
        pytest.param([{"bver": 11, "n": "pm25", "v": 1}], "senml_version", "up to version 10", id="bver-11"),
        pytest.param(
            [{"bver": 5, "n": "pm25", "v": 1}, {"bver": 6, "n": "pm25", "v": 1}],
            "senml_version",
            "one version",
            id="bver-mixed",
        ),
        pytest.param([{"bver": "10", "n": "pm25", "v": 1}], "senml_version", "integer", id="bver-string"),
        pytest.param(
            [{"n": "pm25", "v": 1, "crit_": 1}], "senml_must_understand", "crit_", id="must-understand"
        ),
        pytest.param([{"n": "pm25", "v": 1, "t": 1e300}], "senml_bad_time", "out of range", id="time-far"),
        pytest.param(
            [{"n": "pm25", "v": 1, "t": -1e15}], "senml_bad_time", "out of range", id="relative-far"
        ),
        pytest.param([{"bv": 1e308, "n": "pm25", "v": 1e308}], "non_finite", "finite", id="bv-overflow"),
        pytest.param(b'[{"n":"pm25","v":1e999}]', "non_finite", "finite", id="inf"),
        pytest.param(b'[{"n":"pm25","v":NaN}]', "invalid_json", "NaN", id="nan"),
        pytest.param(b'[{"n":"pm25","v":1,"v":2}]', "invalid_json", 'duplicate key "v"', id="duplicate-key"),
        pytest.param(b"[{", "invalid_json", "not valid JSON", id="truncated"),
        pytest.param(b"\xff[]", "invalid_json", "UTF-8", id="binary"),
        pytest.param(b"[" * 100_000, "invalid_json", "", id="deep"),
        pytest.param({"n": "pm25", "v": 1}, "senml_not_a_pack", "JSON object", id="object"),
        pytest.param([1], "senml_not_a_pack", "records[0]", id="number-record"),
        pytest.param([], "empty_batch", "no records", id="empty"),
    ],
)
def test_refused_with_a_reason(pack: object, code: str, words: str) -> None:
    refused = _refused(pack)
    assert refused.code == code, refused.reason
    assert words in refused.reason


def test_unknown_unit_reason_lists_every_accepted_unit() -> None:
    refused = _refused([{"n": "x", "u": "furlong", "v": 1}])
    for unit in UNITS:
        assert unit in refused.reason


def test_unknown_labels_are_ignored_and_bver_10_is_read() -> None:
    [reading] = _decode([{"bver": 10, "n": "pm25", "v": 1, "colour": "red", "ut": 600, "s": 4}])
    assert reading.value == 1.0


def test_the_refused_record_is_named() -> None:
    refused = _refused([{"n": "pm25", "v": 1}, {"n": "pm25", "v": 2}, {"n": "pm25", "vs": "x"}])
    assert refused.reason.startswith("records[2]")


json_scalars = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.text(max_size=12)
)
labels = st.sampled_from(
    ["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut", "x", "x_"]
)
names = st.sampled_from(["pm25", f"{DEVICE}/pm25", BN, "level", "urn:dev:ow:other:", "", "a b", "Cel"])
units = st.sampled_from([*UNITS, "A", "", "degC"])
field_values = json_scalars | names | units | st.lists(json_scalars, max_size=2)
records = st.dictionaries(labels, field_values, max_size=6) | json_scalars


@settings(max_examples=400, deadline=None)
@given(
    pack=st.lists(records, max_size=5)
    | json_scalars
    | st.dictionaries(st.text(max_size=3), json_scalars, max_size=2)
)
def test_any_json_is_read_or_refused_with_a_reason(pack: object) -> None:
    body = json.dumps(pack).encode()
    try:
        readings = decode(body, device_id=DEVICE, received_at=NOW)
    except RejectedMessage as exc:
        assert exc.code and exc.reason
        assert exc.device_id == DEVICE
        return
    for reading in readings:  # what is accepted is a valid contract
        assert Reading.model_validate_json(reading.model_dump_json()) == reading
        assert math.isfinite(reading.value)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200))
def test_any_bytes_are_read_or_refused_with_a_reason(body: bytes) -> None:
    try:
        decode(body, device_id=DEVICE, received_at=NOW)
    except RejectedMessage as exc:
        assert exc.reason
