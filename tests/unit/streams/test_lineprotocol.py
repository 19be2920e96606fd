from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stationflow.contracts import Quality, Reading, ReadingBatch
from streams.catalog import GENERIC_DOMAIN, domain_of
from streams.lineprotocol import batch_lines, escape_tag

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
    assert "x=1e-07" in line and "y=1e+20" in line


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
