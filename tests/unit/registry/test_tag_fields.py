"""Registry strings that become InfluxDB tags or keys refuse what line protocol cannot carry.

Control characters and line separators (a region ``"440300\\nX"`` once injected a second
point into InfluxDB), a backslash before ``,``/``=``/space/``"`` or at the end, and the reserved
metric name ``time`` are refused with a 422 naming the field; human text is accepted as is.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from devices.schemas import DeviceTypeCreate, StationCreate, StationUpdate
from stationflow.contracts import Reading
from stationflow.tagtext import check_tag_text

BAD = [
    "440300\nX",
    "a\rb",
    "tab\there",
    "nul\x00",
    "del\x7f",
    "nel\x85",
    "ls\u2028",
    "ps\u2029",
    "end\\",
    "a\\,b",
    "a\\=b",
    "a\\ b",
    'a\\"b',
]
HUMAN = ["深圳市 南山区", "Pearl River, East = 东江", 'the "old" gauge', r"C:\gauges\01", "a\\\\b", "x\\y z"]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("field", ["name", "region", "basin"])
def test_station_tag_fields_refuse_what_a_tag_cannot_carry(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        StationCreate.model_validate({"id": "st-1", "name": "ok", field: value})
    (error,) = refused.value.errors()
    assert error["loc"] == (field,)
    with pytest.raises(ValidationError):
        StationUpdate.model_validate({field: value})


@pytest.mark.parametrize("value", HUMAN)
def test_human_text_is_accepted_unchanged(value: str) -> None:
    station = StationCreate(id="st-1", name=value, region=value, basin=value)
    assert (station.name, station.region, station.basin) == (value, value, value)


def test_unit_and_reserved_metric_name() -> None:
    metric = {"metric": "level", "unit": "m"}
    DeviceTypeCreate.model_validate({"name": "gauge", "domain": "hydro", "metrics": [metric]})
    for bad, loc in (({**metric, "unit": "m\n"}, "unit"), ({**metric, "metric": "time"}, "metric")):
        with pytest.raises(ValidationError) as refused:
            DeviceTypeCreate.model_validate({"name": "gauge", "domain": "hydro", "metrics": [bad]})
        assert refused.value.errors()[0]["loc"] == ("metrics", 0, loc)


@pytest.mark.parametrize("value", BAD)
def test_reading_shipment_refuses_the_same(value: str) -> None:
    with pytest.raises(ValidationError):
        Reading.model_validate(
            {"metric": "temp", "value": 4.0, "ts": "2026-11-21T00:00:00Z", "shipment": value}
        )


@given(st.text(max_size=20))
def test_contract_pattern_agrees_with_the_registry_check(value: str) -> None:
    try:
        check_tag_text(value)
        registry_ok = True
    except ValueError:
        registry_ok = False
    try:
        Reading.model_validate({"metric": "t", "value": 1.0, "ts": "2026-11-21T00:00:00Z", "shipment": value})
        contract_ok = True
    except ValidationError:
        contract_ok = len(value) > 64
    assert contract_ok == registry_ok


def test_api_refuses_a_region_with_a_newline_naming_the_field(client: TestClient) -> None:
    answer = client.post("/stations", json={"id": "st-nl", "name": "Shenzhen", "region": "440300\nX"})
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "region"] and "U+000A" in error["msg"]
    assert client.get("/stations/st-nl").status_code == 404

    client.post("/stations", json={"id": "st-ok", "name": "Shenzhen"}).raise_for_status()
    patched = client.patch("/stations/st-ok", json={"basin": "Pearl\u2028River"})
    assert patched.status_code == 422 and patched.json()["detail"][0]["loc"] == ["body", "basin"]


def test_api_keeps_human_text(client: TestClient) -> None:
    body = {"id": "st-h", "name": 'Gauge "A", 深圳 = 1', "region": r"440300 南山\x", "basin": "Pearl, East"}
    client.post("/stations", json=body).raise_for_status()
    stored = client.get("/stations/st-h").json()
    assert {k: stored[k] for k in body} == body


def test_csv_import_refuses_the_row(client: TestClient) -> None:
    csv = 'id,name,kind,region\nst-c1,Fine,air,440300\nst-c2,Bad,air,"440300\nX"\n'
    answer = client.post("/import/stations", content=csv, headers={"Content-Type": "text/csv"}).json()
    assert (answer["created"], answer["failed"]) == (1, 1)
    assert "region" in answer["errors"][0]["reason"] and "U+000A" in answer["errors"][0]["reason"]
