"""HJ 212 data area and readings: verified frames give the values the spec states; flags, aliases, MQTT."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decoders import hj212
from ingest.decoders.hj212_codes import ALIASES_2005, canonical_code, quality_of_flag
from stationflow.contracts import Quality
from tests.unit.ingest.hj212_samples import (
    AIR,
    FRAME_2005_RTD,
    FRAME_9013_MODBUS,
    FRAME_A,
    FRAME_B,
    FRAME_C,
    FRAME_D,
    FRAME_NOISE,
    FRAME_PNO,
    WATER,
    build,
    record,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _values(decoded: hj212.Decoded) -> dict[str, tuple[float, str | None, Quality]]:
    return {r.metric: (r.value, r.unit, r.quality) for r in decoded.readings}


def test_frame_b_air_minute_data() -> None:
    """1.6-B: NO2 4, O3 63, SO2 6, CO 0.427, PM2.5 14, PM10 31, wind 1 m/s 11°, 17 °C, 85 %, 95 kPa."""
    decoded = hj212.to_readings(hj212.parse_frame(FRAME_B), record(AIR), tz=SHANGHAI)
    values = {m: v for m, (v, _, _) in _values(decoded).items()}
    assert values == {
        "no2": 4,
        "o3": 63,
        "so2": 6,
        "co": 0.427,
        "pm25": 14,
        "pm10": 31,
        "wind_speed": 1,
        "wind_dir": 11,
        "temperature": 17,
        "humidity": 85,
        "pressure": 95,
    }
    # DataTime 2022-05-13 16:26:00 Beijing time, the start of the minute
    assert decoded.data_time == datetime(2022, 5, 13, 8, 26, tzinfo=UTC)
    assert {r.ts for r in decoded.readings} == {decoded.data_time}
    assert {r.quality for r in decoded.readings} == {Quality.NORMAL}
    assert _values(decoded)["co"][1] == "mg/m3"
    assert _values(decoded)["pm25"][1] == "ug/m3"
    assert decoded.unknown_codes == ()
    assert decoded.not_stored == ()


def test_frame_c_water_realtime_with_unknown_process_codes() -> None:
    decoded = hj212.to_readings(hj212.parse_frame(FRAME_C), record(WATER), tz=SHANGHAI)
    assert _values(decoded) == {
        "ph": (0.0, "pH", Quality.NORMAL),
        "nh3n": (0.0, "mg/L", Quality.NORMAL),
        "cod": (0.0, "mg/L", Quality.NORMAL),
        "water_temp": (0.0, "degC", Quality.NORMAL),
        "turbidity": (0.0, "NTU", Quality.NORMAL),
        "tp": (0.0, "mg/L", Quality.NORMAL),
    }
    assert decoded.unknown_codes == ("e01002", "e01001")
    assert decoded.data_time == datetime(2023, 8, 3, 8, 55, tzinfo=UTC)


def test_frame_d_2005_codes_min_max_cou() -> None:
    """1.6-D: B01 → w00000, 011 → w01018, 060 → w21003; -Avg is the value, others if declared."""
    water_2005 = {
        "flow": ("L/s", "w00000"),
        "flow_cou": ("m3", None),
        "cod": ("mg/L", "011"),  # a type may declare the old code, too
        "cod_min": ("mg/L", None),
        "cod_max": ("mg/L", None),
        "nh3n": ("mg/L", "w21003"),
    }
    decoded = hj212.to_readings(hj212.parse_frame(FRAME_D), record(water_2005), tz=SHANGHAI)
    values = {m: v for m, (v, _, _) in _values(decoded).items()}
    assert values == {
        "flow": 909.87,
        "flow_cou": 54.59,
        "cod": 999.99,
        "cod_min": 999.99,
        "cod_max": 999.99,
        "nh3n": 30.18,
    }
    assert _values(decoded)["flow_cou"][1] == "m3"
    assert set(decoded.not_stored) == {"B01-Min", "B01-Max", "011-Cou", "060-Min", "060-Max", "060-Cou"}
    assert decoded.data_time == datetime(2015, 4, 30, 5, 57, tzinfo=UTC)


def test_noise_value_with_space() -> None:
    decoded = hj212.to_readings(hj212.parse_frame(FRAME_NOISE), record({"la": ("dB", "LA")}), tz=SHANGHAI)
    assert _values(decoded) == {"la": (50.1, "dB", Quality.NORMAL)}
    assert decoded.data_time == datetime(2016, 8, 1, 0, 58, 57, tzinfo=UTC)


def test_pno_frame_minute_data() -> None:
    types = {"pressure": ("kPa", "a01006"), "pressure_min": ("kPa", None)}
    decoded = hj212.to_readings(hj212.parse_frame(FRAME_PNO), record(types), tz=SHANGHAI)
    assert {m: v for m, (v, _, _) in _values(decoded).items()} == {"pressure": 101.85, "pressure_min": 101.84}
    assert set(decoded.not_stored) == {"a01006-Max", "a01006-ValidNum", "a01006-TotalNum"}


def test_2005_realtime_with_flags() -> None:
    types = {"flow": ("L/s", "B01"), "cod": ("mg/L", "w01018"), "nh3n": ("mg/L", "060")}
    decoded = hj212.to_readings(hj212.parse_frame(FRAME_2005_RTD), record(types), tz=SHANGHAI)
    assert {m: v for m, (v, _, _) in _values(decoded).items()} == {
        "flow": 880.17,
        "cod": 999.99,
        "nh3n": 30.18,
    }


def test_replies_and_non_data_cns() -> None:
    reply = hj212.to_readings(hj212.parse_frame(FRAME_9013_MODBUS), record(AIR), tz=SHANGHAI)
    assert reply.readings == [] and reply.data_time is None
    with pytest.raises(hj212.Hj212Error) as info:
        hj212.to_readings(hj212.parse_frame(FRAME_A), record(AIR), tz=SHANGHAI)
    assert info.value.code == "hj212_unsupported_cn"
    state = build(
        "QN=20240101120000000;ST=32;CN=2021;PW=1;MN=A;Flag=4;CP=&&DataTime=20240101120000;SB1-RS=1&&"
    )
    decoded = hj212.to_readings(hj212.parse_frame(state), record(AIR), tz=SHANGHAI)
    assert decoded.readings == [] and decoded.not_stored == ("SB1-RS",)


def _frame(cp: str, cn: str = "2011") -> hj212.Frame:
    return hj212.parse_frame(build(f"QN=20240101120000000;ST=22;CN={cn};PW=1;MN=MN1;Flag=4;CP=&&{cp}&&"))


@pytest.mark.parametrize(
    ("flag", "quality"),
    [
        ("N", Quality.NORMAL),
        ("F", Quality.OFFLINE),
        ("M", Quality.MAINTENANCE),
        ("S", Quality.MANUAL),
        ("D", Quality.FAULT),
        ("C", Quality.CALIBRATION),
        ("T", Quality.OVER_RANGE),
        ("B", Quality.COMM_ERROR),
        ("P", Quality.COMM_ERROR),  # 2005 power failure
        ("0", Quality.CALIBRATION),  # 2005 air digits
        ("1", Quality.NORMAL),
        ("2", Quality.FAULT),
        ("3", Quality.NORMAL),
        ("n", Quality.NORMAL),
    ],
)
def test_flags_to_quality(flag: str, quality: Quality) -> None:
    decoded = hj212.to_readings(
        _frame(f"DataTime=20240101120000;a34004-Rtd=35,a34004-Flag={flag}"), record(AIR), tz=SHANGHAI
    )
    assert decoded.readings[0].quality == quality


def test_missing_flag_is_normal_and_bare_flag_applies() -> None:
    plain = hj212.to_readings(_frame("DataTime=20240101120000;a34004-Rtd=35"), record(AIR), tz=SHANGHAI)
    assert plain.readings[0].quality == Quality.NORMAL
    bare = hj212.to_readings(
        _frame("DataTime=20240101120000;a34004-Rtd=35;a34002-Rtd=50,a34002-Flag=N;Flag=D"),
        record(AIR),
        tz=SHANGHAI,
    )
    assert {r.metric: r.quality for r in bare.readings} == {"pm25": Quality.FAULT, "pm10": Quality.NORMAL}


def test_mixed_separators_and_realtime_ignores_avg() -> None:
    decoded = hj212.to_readings(
        _frame("DataTime=20240101120000;a34004-Rtd=45.0;a34002-Rtd=62.7;a34004-Avg=40"),
        record(AIR),
        tz=SHANGHAI,
    )
    assert {r.metric: r.value for r in decoded.readings} == {"pm25": 45.0, "pm10": 62.7}
    assert decoded.not_stored == ("a34004-Avg",)


@pytest.mark.parametrize("cn", ["2051", "2061", "2031"])
def test_aggregates_take_avg_at_interval_start(cn: str) -> None:
    decoded = hj212.to_readings(
        _frame("DataTime=20240101120000;a34004-Avg=35,a34004-Max=50", cn), record(AIR), tz=SHANGHAI
    )
    assert [(r.metric, r.value) for r in decoded.readings] == [("pm25", 35.0)]
    assert decoded.data_time == datetime(2024, 1, 1, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cp", "code", "word"),
    [
        ("a34004-Rtd=35", "hj212_datatime", "DataTime"),
        ("DataTime=2024010112;a34004-Rtd=35", "hj212_datatime", "DataTime"),
        ("DataTime=20241301120000;a34004-Rtd=35", "hj212_datatime", "valid"),
        ("DataTime=20240101120000;a34004-Rtd=abc", "hj212_value", "a34004-Rtd"),
        ("DataTime=20240101120000;a34004-Rtd=nan", "hj212_value", "a34004-Rtd"),
        ("DataTime=20240101120000;a34004-Rtd=1e999", "hj212_value", "a34004-Rtd"),
        ("DataTime=20240101120000;a34004-Rtd=١٢", "hj212_value", "a34004-Rtd"),
        ("DataTime=20240101120000;a34004-Rtd=1,a34004-Flag=X", "hj212_flag", "a34004-Flag"),
        ("DataTime=20240101120000;a34004-Rtd", "hj212_cp_format", "a34004-Rtd"),
    ],
)
def test_bad_values_refused_with_reason(cp: str, code: str, word: str) -> None:
    with pytest.raises(hj212.Hj212Error) as info:
        hj212.to_readings(_frame(cp), record(AIR), tz=SHANGHAI)
    assert info.value.code == code
    assert word in info.value.reason


def test_numbers_with_spaces_signs_and_empty_values() -> None:
    decoded = hj212.to_readings(
        _frame("DataTime=20240101120000;a01001-Rtd= -3.5 ;a34004-Rtd=;a34002-Rtd=+.5"),
        record(AIR),
        tz=SHANGHAI,
    )
    assert {r.metric: r.value for r in decoded.readings} == {"temperature": -3.5, "pm10": 0.5}
    assert decoded.not_stored == ("a34004-Rtd",)


def test_datatime_with_milliseconds_and_other_zone() -> None:
    decoded = hj212.to_readings(
        _frame("DataTime=20160824003817000;a34004-Rtd=1"), record(AIR), tz=ZoneInfo("Europe/Berlin")
    )
    assert decoded.data_time == datetime(2016, 8, 23, 22, 38, 17, tzinfo=UTC)


def test_parse_cp_info_text_with_separators() -> None:
    params, values = hj212.parse_cp(
        "DataTime=20240101120000;PolId=w01018;i11001-Info=//a;b,c=d//;i12001-Info=0"
    )
    assert params == {"DataTime": "20240101120000", "PolId": "w01018"}
    assert values == [hj212.CpValue("i11001", "Info", "//a;b,c=d//"), hj212.CpValue("i12001", "Info", "0")]


def test_aliases_and_flags_tables() -> None:
    assert {k: ALIASES_2005[k] for k in ("B01", "011", "060", "01", "02", "B02")} == {
        "B01": "w00000",
        "011": "w01018",
        "060": "w21003",
        "01": "a34013",
        "02": "a21026",
        "B02": "a00000",
    }
    assert canonical_code("a34004") == "a34004"
    assert quality_of_flag("Q") is None


# -- clock drift --------------------------------------------------------------------------------


def test_station_clock_drift_from_qn_systemtime_and_epoch() -> None:
    now = datetime(2024, 1, 1, 4, 0, 0, tzinfo=UTC)  # 12:00:00 in Beijing
    frame = _frame("DataTime=20240101120000;a34004-Rtd=1")  # QN 2024-01-01 12:00:00.000
    assert hj212.station_clock_drift(frame, {}, now + timedelta(seconds=90), SHANGHAI) == -90.0
    assert hj212.station_clock_drift(frame, {"SystemTime": "20240101121000"}, now, SHANGHAI) == 600.0
    epoch = hj212.parse_frame(build("QN=1704081605000;ST=22;CN=2011;PW=1;MN=A;Flag=4;CP=&&&&"))
    assert hj212.station_clock_drift(epoch, {}, now, SHANGHAI) == 5.0
    assert hj212.station_clock_drift(hj212.parse_frame(FRAME_D), {}, now, SHANGHAI) is None


# -- MQTT --------------------------------------------------------------------------------------


def test_decode_mqtt_without_crlf_and_checks() -> None:
    air = record(AIR, mn="JLYP01_AIR01_0001")
    received = datetime(2022, 5, 13, 8, 27, tzinfo=UTC)
    decoded = hj212.decode_mqtt(FRAME_B.rstrip(), record=air, received_at=received, tz=SHANGHAI)
    assert len(decoded.readings) == 11
    assert decoded.frame is not None and decoded.frame.pw == "123456"
    assert decoded.frame.deviations == ()
    with pytest.raises(hj212.Hj212Error) as info:
        hj212.decode_mqtt(FRAME_B, record=record(AIR, mn="OTHER"), received_at=received, tz=SHANGHAI)
    assert (info.value.code, info.value.device_id) == ("hj212_mn_mismatch", "st-1")
    with pytest.raises(hj212.Hj212Error, match="hj212_crc"):
        hj212.decode_mqtt(
            FRAME_B,
            record=record(AIR, mn="JLYP01_AIR01_0001", crc="modbus"),
            received_at=received,
            tz=SHANGHAI,
        )
    lower = FRAME_B[:-6] + FRAME_B[-6:-2].lower() + FRAME_B[-2:]
    with pytest.raises(hj212.Hj212Error, match="hj212_deviation"):
        hj212.decode_mqtt(
            lower, record=record(AIR, mn="JLYP01_AIR01_0001", strict=True), received_at=received, tz=SHANGHAI
        )


# -- fuzz: every failure is an Hj212Error with a reason -----------------------------------------

_CP_ALPHABET = st.sampled_from(
    [
        "DataTime=",
        "20240101120000",
        "a34004",
        "-Rtd",
        "-Avg",
        "-Flag",
        "=",
        ";",
        ",",
        "N",
        "X",
        "1.5",
        "-",
        " ",
        "//",
        "&",
        "é",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cp=st.lists(_CP_ALPHABET, max_size=30).map("".join),
    cn=st.sampled_from(["2011", "2051", "1062", "9014", "2021"]),
)
def test_fuzz_to_readings_only_hj212_errors(cp: str, cn: str) -> None:
    segment = f"QN=20240101120000000;ST=22;CN={cn};PW=1;MN=MN1;Flag=4;CP=&&{cp}&&"
    try:
        frame = hj212.parse_frame(build(segment))
        decoded = hj212.to_readings(frame, record(AIR), tz=SHANGHAI)
    except hj212.Hj212Error as exc:
        assert exc.code.startswith("hj212_") and exc.reason
        return
    for reading in decoded.readings:
        assert reading.ts.tzinfo is not None


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_fuzz_parse_frame_only_hj212_errors(data: bytes) -> None:
    for raw in (data, b"##%04d" % len(data) + data + b"0000\r\n", build(data.decode("utf-8", "replace"))):
        try:
            frame = hj212.parse_frame(raw)
        except hj212.Hj212Error as exc:
            assert exc.code.startswith("hj212_") and exc.reason
            continue
        assert frame.cn.isdigit()
        try:
            hj212.to_readings(frame, record(AIR), tz=SHANGHAI)
        except hj212.Hj212Error as exc:
            assert exc.code.startswith("hj212_") and exc.reason
