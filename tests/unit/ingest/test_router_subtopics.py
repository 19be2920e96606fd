"""Routing by subtopic: SenML, HJ 212 over MQTT (with the registry record), unknown subtopics."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stationflow.passwords
from ingest import mqtt_hj212
from ingest.checks import Limits
from ingest.mqtt_hj212 import Hj212Registry
from ingest.router import Accepted, Hj212Context, Ignored, route
from ingest.settings import IngestSettings
from stationflow.contracts import DeadLetter, DeviceRecord, Quality, ReadingBatch
from stationflow.passwords import PasswordCache, hash_password
from tests.unit.ingest.hj212_samples import AIR, build, record

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 16:00 in Beijing
SHANGHAI = ZoneInfo("Asia/Shanghai")
PASSWORD = "123456"  # noqa: S105 - the HJ 212 PW of a test station
HASH = hash_password(PASSWORD)
STATION = record(AIR, mn="MN1", password_hash=HASH)  # device st-1
PLAIN = DeviceRecord(device_id="plain-1", device_type="air-station", domain="air", updated_at=NOW)
REGISTRY = {STATION.device_id: STATION, PLAIN.device_id: PLAIN}
CONTEXT = Hj212Context(lookup=REGISTRY.get, passwords=PasswordCache(), tz=SHANGHAI)


def _frame(
    cp: str = "DataTime=20261130155900;a34004-Rtd=35.2,a34004-Flag=N;a21005-Rtd=0.4,a21005-Flag=M",
    *,
    cn: str = "2011",
    pw: str = PASSWORD,
    mn: str = "MN1",
    crc: str = "hj212",
) -> bytes:
    return build(f"QN=20261130160000000;ST=22;CN={cn};PW={pw};MN={mn};Flag=4;CP=&&{cp}&&", crc)


def _route(topic: str, payload: bytes, ctx: Hj212Context | None = CONTEXT) -> Accepted | Ignored | DeadLetter:
    return route(topic, payload, NOW, limits=Limits(), hj212=ctx)


def _dead(
    topic: str, payload: bytes, code: str, words: str, ctx: Hj212Context | None = CONTEXT
) -> DeadLetter:
    result = _route(topic, payload, ctx)
    assert isinstance(result, DeadLetter), result
    assert result.code == code, result.reason
    assert words in result.reason
    assert result.payload() == payload
    assert result.source == f"mqtt:{topic}"
    return result


def test_senml_pack_becomes_a_batch() -> None:
    pack = [
        {"bn": "urn:dev:stationflow:air-001:", "bt": NOW.timestamp(), "bu": "ug/m3", "n": "pm25", "v": 35},
        {"n": "temperature", "u": "Cel", "v": 21.5, "t": -30},
    ]
    result = _route("devices/air-001/senml", json.dumps(pack).encode())
    assert isinstance(result, Accepted), result
    assert result.source == "mqtt:devices/air-001/senml"
    batch = ReadingBatch.model_validate_json(result.to_json())
    assert batch.device_id == "air-001"
    assert [(r.metric, r.value, r.unit) for r in batch.readings] == [
        ("pm25", 35.0, "ug/m3"),
        ("temperature", 21.5, "degC"),
    ]


def test_senml_refusals_and_time_window() -> None:
    other = json.dumps([{"bn": "urn:dev:stationflow:air-002:", "n": "pm25", "v": 1}]).encode()
    letter = _dead("devices/air-001/senml", other, "senml_other_device", "air-002")
    assert letter.device_id == "air-001"
    old = json.dumps([{"n": "pm25", "v": 1, "t": 1.7e9}]).encode()  # Nov 2023
    _dead("devices/air-001/senml", old, "ts_past", "device clock")
    _dead("devices/air-001/senml", b'{"readings":[]}', "senml_not_a_pack", "JSON array")


@pytest.mark.parametrize("subtopic", ["status", "readings/extra", "", "SenML", "json"])
def test_unknown_subtopic_is_dead_lettered_naming_the_supported_ones(subtopic: str) -> None:
    letter = _dead(f"devices/air-001/{subtopic}", b"{}", "unknown_subtopic", "devices/air-001/readings")
    for supported in ("senml", "hj212"):
        assert f"devices/air-001/{supported}" in letter.reason
    assert letter.device_id == "air-001"


def test_hj212_frame_becomes_a_batch_through_the_device_type() -> None:
    result = _route("devices/st-1/hj212", _frame())
    assert isinstance(result, Accepted), result
    beijing_1559 = datetime(2026, 11, 30, 7, 59, tzinfo=UTC)
    assert [(r.metric, r.value, r.unit, r.ts, r.quality) for r in result.readings] == [
        ("pm25", 35.2, "ug/m3", beijing_1559, Quality.NORMAL),
        ("co", 0.4, "mg/m3", beijing_1559, Quality.MAINTENANCE),
    ]
    assert result.unknown_codes == ()
    assert ReadingBatch.model_validate_json(result.to_json()).source == "mqtt:devices/st-1/hj212"


@pytest.mark.parametrize("crc", ["hj212", "modbus", "modbus_swapped"])
def test_hj212_crc_variants_and_optional_crlf(crc: str) -> None:
    result = _route("devices/st-1/hj212", _frame(crc=crc).rstrip(b"\r\n"))
    assert isinstance(result, Accepted), result


def test_hj212_unknown_codes_are_kept_and_reported() -> None:
    cp = "DataTime=20261130155900;a34004-Rtd=35.2,a34004-Flag=N;a99999-Rtd=1,a99999-Flag=N"
    result = _route("devices/st-1/hj212", _frame(cp))
    assert isinstance(result, Accepted), result
    assert [r.metric for r in result.readings] == ["pm25"]
    assert result.unknown_codes == ("a99999",)


def test_hj212_refusals() -> None:
    topic = "devices/st-1/hj212"
    _dead(topic, _frame(pw="654321"), "hj212_bad_password", "PW does not match")
    _dead("devices/nobody/hj212", _frame(), "unknown_device", "not registered")
    _dead("devices/plain-1/hj212", _frame(), "hj212_not_configured", "no HJ 212 settings")
    _dead(topic, _frame(mn="MN2"), "hj212_mn_mismatch", "MN2")
    _dead(topic, _frame()[:-6] + b"0000\r\n", "hj212_crc", "CRC")
    _dead(topic, _frame("DataTime=20261130155900;a99999-Rtd=1"), "hj212_no_readings", "a99999")
    _dead(topic, _frame("DataTime=20221130155900;a34004-Rtd=1"), "ts_past", "device clock")
    _dead(topic, _frame(cn="1234"), "hj212_unsupported_cn", "1234")
    _dead(topic, b"", "empty_payload", "empty")
    _dead(topic, _frame(), "hj212_unavailable", "HJ 212", ctx=None)


def test_hj212_without_a_registered_password_is_not_checked() -> None:
    open_station = record(AIR, mn="MN1")
    ctx = Hj212Context(lookup={"st-1": open_station}.get, passwords=PasswordCache(), tz=SHANGHAI)
    assert isinstance(_route("devices/st-1/hj212", _frame(pw="anything"), ctx), Accepted)


def test_hj212_reply_or_state_upload_is_acknowledged_without_a_record() -> None:
    result = _route("devices/st-1/hj212", _frame("", cn="9014"))
    assert isinstance(result, Ignored), result
    assert result.device_id == "st-1"
    assert "9014" in result.reason


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300), subtopic=st.sampled_from(["hj212", "senml", "readings", "x"]))
def test_hostile_payloads_on_every_subtopic_never_raise(payload: bytes, subtopic: str) -> None:
    result = _route(f"devices/st-1/{subtopic}", payload)
    assert isinstance(result, Accepted | Ignored | DeadLetter)
    if isinstance(result, DeadLetter):
        assert result.code and result.reason
        assert result.code != "internal_error", result.reason


@settings(max_examples=200, deadline=None)
@given(
    fields=st.lists(
        st.tuples(
            st.sampled_from(["a34004", "a21005", "a99999", "B02", "DataTime", ""]),
            st.sampled_from(["Rtd", "Flag", "Avg", ""]),
            st.sampled_from(["1", "-2.5", "N", "", "x", "1e999", "20261130155900"]),
        ),
        max_size=5,
    )
)
def test_hostile_hj212_data_areas_never_raise(fields: list[tuple[str, str, str]]) -> None:
    cp = ";".join(
        f"{code}-{suffix}={value}" if suffix else f"{code}={value}" for code, suffix, value in fields
    )
    result = _route("devices/st-1/hj212", _frame(cp))
    assert isinstance(result, Accepted | Ignored | DeadLetter)
    if isinstance(result, DeadLetter):
        assert result.code != "internal_error", result.reason


def test_passwords_checked_off_the_loop_are_not_hashed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = PasswordCache()
    try:
        asyncio.run(passwords.warm(PASSWORD, HASH))
        asyncio.run(passwords.warm("wrong", HASH))

        def no_scrypt(password: str, stored: str) -> bool:
            raise AssertionError("scrypt ran on the event loop")

        monkeypatch.setattr(stationflow.passwords, "verify_password", no_scrypt)
        assert passwords.verify(PASSWORD, HASH) is True
        assert passwords.verify("wrong", HASH) is False
        with pytest.raises(AssertionError):
            passwords.verify("never-warmed", HASH)
    finally:
        passwords.close()


def test_prepare_warms_the_frames_password_and_lookup_needs_a_loaded_registry() -> None:
    registry = Hj212Registry(IngestSettings(ingest_registry_wait_s=0.01))
    try:
        letter = route("devices/st-1/hj212", _frame(), NOW, limits=Limits(), hj212=registry.context)
        assert isinstance(letter, DeadLetter)
        assert letter.code == "registry_unavailable"
        registry.view.apply(STATION.key(), STATION.model_dump_json().encode())
        registry.view.ready.set()
        asyncio.run(registry.prepare("st-1", _frame()))
        assert (HASH, PASSWORD) in registry.passwords._known
        result = route("devices/st-1/hj212", _frame(), NOW, limits=Limits(), hj212=registry.context)
        assert isinstance(result, Accepted), result
    finally:
        registry.close()


def test_unknown_codes_are_reported_once_an_hour_per_code_set() -> None:
    registry = Hj212Registry(IngestSettings())
    try:
        assert registry.unknown_codes_due("st-1", ("a99999",), 0.0)
        assert not registry.unknown_codes_due("st-1", ("a99999",), 3599.0)
        assert registry.unknown_codes_due("st-1", ("a99998",), 3599.0)
        assert registry.unknown_codes_due("st-2", ("a99999",), 3599.0)
        assert registry.unknown_codes_due("st-1", ("a99999",), 3600.0)
    finally:
        registry.close()


def test_an_unknown_device_is_looked_up_again_after_catching_up_with_the_registry() -> None:
    registry = Hj212Registry(IngestSettings())
    calls: list[float] = []

    async def catch_up(timeout_s: float) -> bool:  # the record arrives while catching up
        calls.append(timeout_s)
        registry.view.apply(STATION.key(), STATION.model_dump_json().encode())
        return True

    registry.view._catch_up = catch_up
    registry.view.ready.set()
    try:
        asyncio.run(registry.prepare("st-1", _frame()))
        assert calls == [mqtt_hj212.CATCH_UP_S]
        assert isinstance(
            route("devices/st-1/hj212", _frame(), NOW, limits=Limits(), hj212=registry.context), Accepted
        )
        asyncio.run(registry.prepare("st-1", _frame()))  # known now: no second catch-up
        assert calls == [mqtt_hj212.CATCH_UP_S]
    finally:
        registry.close()
