"""The line-protocol writer against a real InfluxDB 1.x: arbitrary text in every position.

Each example writes a few points whose measurement, tag keys, tag values, field keys and string
field values are arbitrary strings (weighted towards the characters line protocol treats
specially), then reads the database back: exactly the intended measurements exist, each holds
exactly one point, with the intended tags and fields, or the documented replacement
(``streams.lineprotocol``: U+FFFD for what InfluxDB cannot store, ``time`` → ``time_``).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stationflow.contracts import Quality, Reading, ReadingBatch
from stationflow.stack import Component, influx_create_db
from stationflow.stack.components import influx_query, influx_quote
from streams.analytics.device import DeviceState, _derived_lines, subject_for
from streams.lineprotocol import FieldValue, batch_lines, encode, line

NS = 1_795_248_000_000_000_000
R = "\ufffd"
# The documented rules, written out independently of the implementation.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

SPECIAL = ',= "\\\n\r\t#\x00\x0b\x1f\x7f\x85\u2028\u2029\ufeff中é😀'
chunks = st.lists(
    st.one_of(
        st.sampled_from(list(SPECIAL)),
        st.characters(),
        st.sampled_from(["time", "水位", "\\,", '\\"', "\\\\", "\\=", "\\ ", "\\n"]),
    ),
    max_size=6,
)
text = chunks.map("".join)


def stored_name(value: str) -> str:
    value = _CONTROL.sub(R, value)
    # a backslash before a character that gets escaped, or at the end, cannot be stored
    value = "".join(
        R if c == "\\" and value[i + 1 : i + 2] in ("", ",", "=", " ", '"') else c
        for i, c in enumerate(value)
    )
    return value or R


def stored_key(value: str) -> str:
    value = stored_name(value)
    return "time_" if value == "time" else value


def stored_measurement(value: str) -> str:
    value = _CONTROL.sub(R, value).replace("\\", R)
    if value.startswith("#"):
        value = R + value[1:]
    return value or R


def stored_string(value: str) -> str:
    return _CONTROL.sub(R, value)


field_value = st.one_of(
    text,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
)
point = st.tuples(
    text,
    st.dictionaries(text, text, max_size=4),
    st.dictionaries(text, field_value, min_size=1, max_size=4),
)


def _expected(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue]
) -> tuple[str, dict[str, Any]] | None:
    """The stored measurement and columns; None if the example is ambiguous by construction."""
    tag_cols = {stored_key(k): stored_name(v) for k, v in tags.items() if v}
    field_cols = {stored_key(k): stored_string(v) if isinstance(v, str) else v for k, v in fields.items()}
    if len(tag_cols) != len([v for v in tags.values() if v]) or len(field_cols) != len(fields):
        return None  # two keys that map to one stored key
    if set(tag_cols) & set(field_cols):
        return None  # InfluxDB returns such a field as "<key>_1"
    return stored_measurement(measurement), {**tag_cols, **field_cols}


def _write(influxd: Component, db: str, lines: list[str]) -> None:
    """Write ``lines`` to ``db`` as the sink does (nanoseconds); InfluxDB must take them all."""
    response = httpx.post(
        f"{influxd.url}/write", params={"db": db, "precision": "ns"}, content=encode(lines), timeout=30
    )
    assert response.status_code == 204, (response.text, lines)


def _stored_row(influxd: Component, db: str, point: str, measurement: str) -> dict[str, Any]:
    """Write one point and read it back: its row, column -> value."""
    _write(influxd, db, [point])
    (series,) = influx_query(influxd.url, db, f"SELECT * FROM {influx_quote(measurement)}")  # noqa: S608
    return dict(zip(series["columns"], series["values"][0], strict=True))


@pytest.fixture
def fresh_db(influxd: Component) -> Any:
    created: list[str] = []

    def make(n: list[int] = [0]) -> str:  # noqa: B006  (a counter shared by the examples)
        n[0] += 1
        name = f"lp{id(created)}_{n[0]}"
        influx_create_db(influxd.url, name)
        created.append(name)
        return name

    yield make
    for name in created:
        httpx.post(f"{influxd.url}/query", params={"q": f"DROP DATABASE {influx_quote(name)}"}, timeout=30)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(points=st.lists(point, min_size=1, max_size=3))
def test_arbitrary_strings_make_exactly_the_intended_points(
    influxd: Component, fresh_db: Any, points: list[tuple[str, dict[str, str], dict[str, FieldValue]]]
) -> None:
    expected: dict[str, tuple[int, dict[str, Any]]] = {}
    lines = []
    for i, (measurement, tags, fields) in enumerate(points):
        want = _expected(measurement, tags, fields)
        assume(want is not None)
        assert want is not None
        name, columns = want
        assume(name not in expected)
        expected[name] = (NS + i, columns)
        written = line(measurement, tags, fields, NS + i)
        assert written is not None and "\n" not in written
        lines.append(written)
    db = fresh_db()
    _write(influxd, db, lines)

    shown = influx_query(influxd.url, db, "SHOW MEASUREMENTS")
    names = {row[0] for row in shown[0]["values"]} if shown else set()
    assert names == set(expected), lines
    for name, (ts, columns) in expected.items():
        query = f"SELECT * FROM {influx_quote(name)}"  # noqa: S608 - a quoted identifier
        (series,) = influx_query(influxd.url, db, query)
        assert len(series["values"]) == 1, (name, lines)
        row = dict(zip(series["columns"], series["values"][0], strict=True))
        assert row.pop("time") == ts
        got = {k: v for k, v in row.items() if v is not None}
        assert got.keys() == columns.keys(), (lines, got, columns)
        for key, want in columns.items():
            if isinstance(want, float):
                assert math.isclose(got[key], want, rel_tol=0, abs_tol=0) or got[key] == want
            else:
                assert got[key] == want and type(got[key]) is type(want), (key, got[key], want)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(measurement=text, station=text, region=text, basin=text)
def test_the_hot_path_stores_arbitrary_station_tags_exactly(
    influxd: Component, fresh_db: Any, measurement: str, station: str, region: str, basin: str
) -> None:
    """``batch_lines`` (the raw → InfluxDB path, tags from the registry) under the same rules."""
    t0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    batch = ReadingBatch(
        device_id="dev-1",
        received_at=t0,
        source="t",
        readings=[
            Reading(metric="pm25", value=35.5, ts=t0),
            Reading(metric="level", value=1.25, ts=t0, quality=Quality.OVER_RANGE),
        ],
    )
    tags = {"station": station, "region": region, "basin": basin}
    written = batch_lines(batch, tags, measurement)
    assert len(written) == 1 and "\n" not in written[0]
    db = fresh_db()
    _write(influxd, db, written)
    name = stored_measurement(measurement) if measurement else "air"  # none given: the metrics' domain
    shown = influx_query(influxd.url, db, "SHOW MEASUREMENTS")
    assert {row[0] for row in shown[0]["values"]} == {name}
    query = f"SELECT * FROM {influx_quote(name)}"  # noqa: S608 - a quoted identifier
    (series,) = influx_query(influxd.url, db, query)
    (values,) = series["values"]
    row = {k: v for k, v in zip(series["columns"], values, strict=True) if v is not None}
    want_tags = {k: stored_name(v) for k, v in tags.items() if v}
    assert row == {
        "time": int(t0.timestamp()) * 10**9,
        "device": "dev-1",
        "pm25": 35.5,
        "level": 1.25,
        "level_q": "T",
        **want_tags,
    }


EXPONENTS = [
    1.5e-7,
    1e-05,
    0.0001234,
    1e16,
    1.2345678901234568e20,
    5e-324,
    1.7976931348623157e308,
    -0.0,
    35.266666666666666,
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=12))
def test_window_values_are_stored_bit_for_bit(influxd: Component, fresh_db: Any, values: list[float]) -> None:
    """The derived ``windows`` point writes its floats as orjson does (``1.5e-7``, ``0.00001``
    where repr writes ``1.5e-07``, ``1e-05``): InfluxDB must read back the very same float64."""
    values = [*values, *EXPONENTS]
    state = DeviceState()
    state.wm = NS / 1e9
    signals = {f"m{i}.mean_1h": v for i, v in enumerate(values)}
    lines = _derived_lines(state, subject_for("dev-1", None, "air"), signals, {}, True)
    (windows,) = [ln for ln in lines if ln.startswith("windows,")]
    row = _stored_row(influxd, fresh_db(), windows, "windows")
    for i, want in enumerate(values):
        got = row[f"m{i}_mean_1h"]
        assert float(got) == want, (i, got, want, windows)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=12))
def test_reading_values_are_stored_bit_for_bit(
    influxd: Component, fresh_db: Any, values: list[float]
) -> None:
    """The raw path (``batch_lines``) writes its floats as orjson does too: one point per
    instant, every reading read back as the very same float64."""
    values = [*values, *EXPONENTS]
    at = datetime.fromtimestamp(NS / 1e9, tz=UTC)
    batch = ReadingBatch(
        device_id="dev-1",
        received_at=at,
        source="t",
        readings=[Reading(metric=f"m{i}", value=v, ts=at) for i, v in enumerate(values)],
    )
    (point,) = batch_lines(batch, None, "air")
    row = _stored_row(influxd, fresh_db(), point, "air")
    for i, want in enumerate(values):
        assert float(row[f"m{i}"]) == want, (i, row[f"m{i}"], want, point)
