from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from stationflow.contracts import Quality, Reading, ReadingBatch
from streams.catalog import GENERIC_DOMAIN, domain_of
from streams.lineprotocol import (
    batch_lines,
    escape_key,
    escape_measurement,
    escape_string,
    escape_tag,
    float_texts,
    line,
    parse_series,
)
from streams.normalize import ts_ns

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
NS = 1_795_248_000_000_000_000


def _batch(*readings: Reading, device: str = "air-001") -> ReadingBatch:
    return ReadingBatch(device_id=device, received_at=T0, source="t", readings=list(readings))


def test_readings_at_one_instant_become_one_point() -> None:
    lines = batch_lines(
        _batch(
            Reading(metric="pm25", value=35.2, ts=T0),
            Reading(metric="pm10", value=61, ts=T0),
            Reading(metric="pm25", value=36.0, ts=datetime(2026, 11, 21, 8, 1, tzinfo=UTC)),
        )
    )
    assert lines == [
        f"air,device=air-001 pm25=35.2,pm10=61.0 {NS}",
        f"air,device=air-001 pm25=36.0 {NS + 60 * 10**9}",
    ]


def test_quality_flag_is_kept_beside_the_value() -> None:
    (line,) = batch_lines(_batch(Reading(metric="level", value=3.5, ts=T0, quality=Quality.OVER_RANGE)))
    assert line == f'hydro,device=air-001 level=3.5,level_q="T" {NS}'


def test_extra_tags_are_escaped_and_sorted() -> None:
    (line,) = batch_lines(
        _batch(Reading(metric="ph", value=7.1, ts=T0)), {"station": "Xi Jiang, A=1", "basin": "pearl"}
    )
    assert line == rf"water,device=air-001,basin=pearl,station=Xi\ Jiang\,\ A\=1 ph=7.1 {NS}"


def test_tiny_and_huge_floats_stay_floats() -> None:
    (line,) = batch_lines(
        _batch(Reading(metric="x", value=1e-7, ts=T0), Reading(metric="y", value=1e20, ts=T0))
    )
    assert "x=1e-7" in line and "y=1e+20" in line  # orjson's texts; InfluxDB reads them as floats


@pytest.mark.parametrize(
    ("metrics", "domain"),
    [
        (["temperature", "pm25"], "air"),
        (["ph", "do"], "water"),
        (["rain"], "hydro"),
        (["temperature", "humidity"], GENERIC_DOMAIN),
    ],
)
def test_domain_of(metrics: list[str], domain: str) -> None:
    assert domain_of(metrics) == domain


def test_escape_tag() -> None:
    assert escape_tag("a b,c=d") == r"a\ b\,c\=d"


# --- escaping: one implementation for every line builder (InfluxDB 1.x rules) -----------------

R = "\ufffd"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("a b,c=d", r"a\ b\,c\=d"),
        ('say "hi"', r'say\ "hi"'),  # quotes are literal in tags
        ("深圳 南山", r"深圳\ 南山"),
        (r"C:\gauges", r"C:\gauges"),  # a backslash is stored literally ...
        ("end\\", "end" + R),  # ... but not at the end (it would escape the separator)
        ("a\\,b", "a" + R + r"\,b"),  # ... nor before an escaped character
        ("440300\nX", "440300" + R + "X"),
        ("a\rb\tc\x00d\x85e\u2028f", "a" + R + "b" + R + "c" + R + "d" + R + "e" + R + "f"),
        ("", R),
    ],
)
def test_escape_tag_rules(value: str, written: str) -> None:
    assert escape_tag(value) == written


def test_measurement_and_key_rules() -> None:
    assert escape_measurement("air quality,x") == r"air\ quality\,x"
    assert escape_measurement("#air") == R + "air"  # a line starting with # is a comment
    assert escape_measurement("a\\b") == "a" + R + "b"  # 1.x unescapes measurements twice
    assert escape_key("time") == "time_"  # 1.x refuses a field or tag named time
    assert escape_key("pm2.5 (1h)") == r"pm2.5\ (1h)"
    assert escape_string('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c' + R + 'd"'


def test_line_drops_empty_tags_sorts_and_leaves_out_non_finite_fields() -> None:
    written = line(
        "water",
        {"station": "st 1", "region": "", "basin": None, "device": "d1"},
        {"ph": 7.1, "n": 3, "ok": True, "label": "II", "bad": float("nan")},
        5,
    )
    assert written == r'water,device=d1,station=st\ 1 ph=7.1,n=3i,ok=true,label="II" 5'
    assert line("water", {"device": "d1"}, {"x": float("inf")}, 5) is None


def test_no_input_makes_a_second_line_and_replacements_are_counted() -> None:
    before = (
        REGISTRY.get_sample_value("stationflow_lineprotocol_replaced_total", {"position": "tag_value"}) or 0
    )
    written = line("air\n", {"region": "440300\nX,station=s", "device": "d\n"}, {"t\n": "x\ny"}, 1)
    assert written is not None and "\n" not in written
    assert written.startswith("air" + R + ",device=d" + R + ",region=440300" + R + r"X\,station\=s ")
    after = (
        REGISTRY.get_sample_value("stationflow_lineprotocol_replaced_total", {"position": "tag_value"}) or 0
    )
    assert after - before == 2


def test_batch_lines_replace_hostile_station_tags_and_count_each_line() -> None:
    before = REGISTRY.get_sample_value("stationflow_lineprotocol_replaced_total", {"position": "series"}) or 0
    lines = batch_lines(
        _batch(Reading(metric="pm25", value=1.0, ts=T0), device="air-inj"),
        {"station": "st", "region": "440300\nX-unique"},
    )
    assert lines == [f"air,device=air-inj,region=440300{R}X-unique,station=st pm25=1.0 {NS}"]
    after = REGISTRY.get_sample_value("stationflow_lineprotocol_replaced_total", {"position": "series"}) or 0
    assert after - before == 1


@given(
    st.text(max_size=10),
    st.dictionaries(st.sampled_from(["device", "station", "region", "a b", "k=v"]), st.text(max_size=10)),
)
def test_parse_series_reads_back_what_line_wrote(measurement: str, tags: dict[str, str]) -> None:
    written = line(measurement, tags, {"v": 1.0}, 1)
    assert written is not None
    name, parsed = parse_series(written)
    assert name == escape_measurement(measurement).replace("\\,", ",").replace("\\ ", " ")
    expected = {
        k: escape_tag(v).replace("\\,", ",").replace("\\ ", " ").replace("\\=", "=")
        for k, v in tags.items()
        if v
    }
    assert parsed == expected


_INSTANTS = [
    T0,
    datetime(2026, 11, 21, 8, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 11, 21, 16, tzinfo=timezone(timedelta(hours=8))),  # T0 again, at +08:00
]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["pm25", "level", "m0", "time"]),
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from(range(len(_INSTANTS))),
            st.sampled_from([Quality.NORMAL, Quality.OVER_RANGE]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_batch_lines_one_point_per_instant_in_reading_order(
    readings: list[tuple[str, float, int, Quality]],
) -> None:
    """One instant (the shortcut) or several: what a plain model of the rule writes."""
    batch = _batch(*(Reading(metric=m, value=v, ts=_INSTANTS[i], quality=q) for m, v, i, q in readings))
    by_ts: dict[int, list[str]] = {}
    for r in batch.readings:
        key = escape_key(r.metric)
        fields = by_ts.setdefault(ts_ns(r), [])
        fields.append(f"{key}={float(r.value)!r}")
        if r.quality is not Quality.NORMAL:
            fields.append(f'{key}_q="{r.quality.value}"')
    prefix = f"{domain_of(r.metric for r in batch.readings)},device=air-001,station=s1 "
    expected = [f"{prefix}{','.join(fields)} {ns}" for ns, fields in by_ts.items()]
    written = batch_lines(batch, {"station": "s1"})
    # the values as orjson writes them (an exponent may read 1e-5 where repr has 1e-05): the
    # same float each, and otherwise the very text of the plain model
    assert [_floats_read(w) for w in written] == [_floats_read(e) for e in expected]


def _floats_read(point: str) -> str:
    """``point`` with each float field value replaced by the float it reads as."""
    head, fields, ns = point.rsplit(" ", 2)
    parts = []
    for field in fields.split(","):
        key, _, value = field.partition("=")
        parts.append(f"{key}={value if value.startswith(chr(34)) else repr(float(value))}")
    return f"{head} {','.join(parts)} {ns}"


def test_float_texts_read_back_exactly_and_leave_non_finite_values_to_repr() -> None:
    values = [7.0, 8.1, 1.5e-7, 1e-05, 1e16, 5e-324, -0.0, 35.266666666666666]
    texts = float_texts(values)
    assert [float(t) for t in texts] == values and texts[2] == "1.5e-7"
    assert float_texts([1.0, math.nan, math.inf]) == ["1.0", "nan", "inf"]  # refused by InfluxDB, reported
    assert float_texts([]) == []
