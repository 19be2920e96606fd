"""The MQTT side of the simulator: SenML packs, DTU frames, registration bodies, who runs where."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson
import pytest

from simulator.fleet import AIR_DTU, AIR_HJ212, AIR_SENML, RTU_SL651, WATER_HJ212, AirStation, default_fleet
from simulator.hj212 import AIR_CODES
from simulator.mqtt import _model_fleet, device_body, is_mqtt, message, render
from simulator.stations import hj212_stations, sl651_rtus
from tests.unit.simulator.test_hj212 import parse

WALL = datetime(2026, 7, 1, 4, 0, 30, tzinfo=UTC)
MODEL = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def resolve(pack: list[dict[str, object]]) -> list[tuple[str, float, object, float]]:
    """RFC 8428 §4.6 resolution, written from the spec: (name, value, unit, time)."""
    out = []
    bn, bt, bu = "", 0.0, None
    for record in pack:
        bn = str(record.get("bn", bn))
        bt = float(str(record.get("bt", bt)))
        bu = record.get("bu", bu)
        value, rel = float(str(record["v"])), float(str(record.get("t", 0.0)))
        out.append((bn + str(record["n"]), value, record.get("u", bu), bt + rel))
    return out


def test_senml_pack_resolves_to_two_samples_of_every_metric() -> None:
    topic, payload, count = message(AIR_SENML, MODEL, WALL, random.Random(1), step_s=60.0)
    assert topic == "devices/air-senml-001/senml"
    pack = orjson.loads(payload)
    assert set(pack[0]) >= {"bn", "bt", "bu"} and pack[0]["bn"] == "urn:dev:stationflow:air-senml-001:"
    assert all("bn" not in r and "bt" not in r for r in pack[1:])
    records = resolve(pack)
    assert count == len(records) == 16
    times = sorted({t for *_, t in records})
    assert times == [WALL.timestamp() - 30, WALL.timestamp()]
    units = {name.rsplit(":", 1)[1]: unit for name, _, unit, _ in records}
    assert units == {
        "pm25": "ug/m3",
        "pm10": "ug/m3",
        "so2": "ug/m3",
        "no2": "ug/m3",
        "o3": "ug/m3",
        "co": "mg/m3",
        "temperature": "Cel",
        "humidity": "%RH",
    }
    assert all(name.startswith("urn:dev:stationflow:air-senml-001:") for name, *_ in records)


def test_a_dtu_forwards_one_real_time_frame_without_ack_request() -> None:
    topic, frame, count = message(AIR_DTU, MODEL, WALL, random.Random(1))
    assert topic == "devices/air-dtu-001/hj212"
    header, items = parse(frame)
    assert header["CN"] == "2011" and header["Flag"] == "4"
    assert header["MN"] == "440300A0000000000000A002" and header["PW"] == "123456"
    assert items["DataTime"] == "20260701120030"  # Beijing local wall time
    assert count == len(AIR_CODES) == sum(1 for k in items if k.endswith("-Rtd"))


def test_a_json_device_still_publishes_readings() -> None:
    spec = AirStation("air-009")
    topic, payload, count = message(spec, MODEL, WALL, random.Random(1))
    assert topic == "devices/air-009/readings"
    assert (payload, count) == render(spec, MODEL, WALL, random.Random(1))


def test_the_mqtt_simulator_leaves_tcp_stations_to_run_stations() -> None:
    fleet = default_fleet()
    mqtt_ids = {s.device_id for s in fleet if is_mqtt(s)}
    assert {"air-dtu-001", "air-senml-001", "air-001", "cold-003"} <= mqtt_ids
    assert mqtt_ids.isdisjoint({"air-hj-001", "water-hj-001", "rtu-001"})
    assert [s.device_id for s in hj212_stations(fleet)] == ["air-hj-001", "water-hj-001"]
    assert [s.device_id for s in sl651_rtus(fleet)] == ["rtu-001"]
    stepped = _model_fleet([RTU_SL651], step_s=300.0)
    assert stepped[0].interval_s == 300.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("spec", "extra"),
    [
        (AirStation("air-001"), {}),
        (AIR_SENML, {"protocol": "senml"}),
        (
            AIR_HJ212,
            {
                "protocol": "hj212",
                "hj212": {
                    "mn": "440300A0000000000000A001",
                    "password": "123456",
                    "crc": None,
                    "strict": False,
                    "allow_from": [],
                },
            },
        ),
        (
            RTU_SL651,
            {
                "protocol": "sl651",
                "sl651": {
                    "address": "0012345678",
                    "password": "A000",
                    "ack": "esc",
                    "level_base_m": 0.0,
                    "allow_from": [],
                },
            },
        ),
    ],
)
def test_registration_carries_the_protocol_link(spec: AirStation, extra: dict[str, object]) -> None:
    body = device_body(spec, "t", "st-x", interval_s=60.0)
    assert body == {
        "id": spec.device_id,
        "type": "t",
        "station_id": "st-x",
        "expected_interval_s": 60,
        **extra,
    }


def test_water_station_uses_its_system_code() -> None:
    assert WATER_HJ212.link is not None and WATER_HJ212.link.st == "21"  # type: ignore[union-attr]
