from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stationflow.contracts import (
    Calibration,
    DeviceRecord,
    DeviceStatus,
    MetricSpec,
    Quality,
    Reading,
    ReadingBatch,
    StationInfo,
)
from streams.enrich import Enriched, Rejection, enrich
from streams.units import canonical_unit, converter

T0 = datetime(2026, 11, 21, 8, tzinfo=UTC)


def _record(**kw: object) -> DeviceRecord:
    base: dict[str, object] = {
        "device_id": "cold-001",
        "device_type": "coldchain_logger",
        "domain": "coldchain",
        "station": StationInfo(station_id="wh-3", name="Warehouse 3", region="440300", basin=None),
        "metrics": {
            "temperature": MetricSpec(metric="temperature", unit="degC", min=-40, max=60),
            "pm25": MetricSpec(metric="pm25", unit="ug/m3", min=0, max=1000),
        },
        "updated_at": T0,
    }
    base.update(kw)
    return DeviceRecord.model_validate(base)


def _batch(*readings: tuple[str, float, str | None]) -> ReadingBatch:
    return ReadingBatch(
        device_id="cold-001",
        received_at=T0,
        source="mqtt:devices/cold-001/readings",
        readings=[Reading(metric=m, value=v, unit=u, ts=T0) for m, v, u in readings],
    )


def test_units_are_converted_to_canonical() -> None:
    out = enrich(_batch(("temperature", 41.0, "°F"), ("pm25", 0.035, "mg/m³")), _record())
    assert isinstance(out, Enriched)
    temp, pm = out.batch.readings
    assert temp.value == pytest.approx(5.0) and temp.unit == "degC"
    assert pm.value == pytest.approx(35.0) and pm.unit == "ug/m3"
    assert out.domain == "coldchain"
    assert out.tags == (("station", "wh-3"), ("region", "440300"))


def test_unknown_unit_is_refused_with_the_reason() -> None:
    out = enrich(_batch(("temperature", 5.0, "furlongs")), _record())
    assert isinstance(out, Rejection) and out.code == "unknown_unit"
    assert "'furlongs'" in out.reason and "degC" in out.reason


def test_calibration_after_conversion() -> None:
    record = _record(calibration={"temperature": Calibration(scale=2.0, offset=-1.0)})
    out = enrich(_batch(("temperature", 41.0, "degF")), record)
    assert isinstance(out, Enriched)
    assert out.batch.readings[0].value == pytest.approx(9.0)


def test_out_of_range_kept_and_flagged_t() -> None:
    out = enrich(_batch(("temperature", 75.0, None)), _record())
    assert isinstance(out, Enriched)
    assert out.batch.readings[0].value == 75.0 and out.batch.readings[0].quality is Quality.OVER_RANGE


@pytest.mark.parametrize(
    ("record", "code"),
    [
        pytest.param(None, "unknown_device", id="unknown"),
        pytest.param(_record(status=DeviceStatus.RETIRED), "retired_device", id="retired"),
    ],
)
def test_unknown_and_retired_devices_are_refused(record: DeviceRecord | None, code: str) -> None:
    out = enrich(_batch(("temperature", 4.0, None)), record)
    assert isinstance(out, Rejection) and out.code == code and "cold-001" in out.reason


def test_metric_not_of_the_type_is_refused() -> None:
    out = enrich(_batch(("level", 4.0, "m")), _record())
    assert isinstance(out, Rejection) and out.code == "unknown_metric" and "temperature" in out.reason


def test_maintenance_flags_m() -> None:
    out = enrich(_batch(("temperature", 4.0, None)), _record(status=DeviceStatus.MAINTENANCE))
    assert isinstance(out, Enriched) and out.batch.readings[0].quality is Quality.MAINTENANCE


@pytest.mark.parametrize(
    ("unit", "target", "value", "expected"),
    [
        ("K", "degC", 273.15, 0.0),
        ("cm", "m", 250.0, 2.5),
        ("µg/m3", "ug/m3", 12.0, 12.0),
        ("℃", "degC", 3.0, 3.0),
        ("in", "mm", 1.0, 25.4),
    ],
)
def test_conversions(unit: str, target: str, value: float, expected: float) -> None:
    convert = converter(unit, target)
    assert convert is not None and convert(value) == pytest.approx(expected)


def test_unknown_spelling() -> None:
    assert canonical_unit("parsecs") is None
    assert converter("m", "degC") is None


def test_a_batch_the_registry_does_not_change_is_returned_itself() -> None:
    """The worker forwards such a document as it came instead of encoding it again."""
    from stationflow.wire import WireBatch, WireReading

    reading = WireReading(metric="temperature", value=4.0, unit="degC", ts=T0)
    batch = WireBatch(device_id="cold-001", received_at=T0, source="t", readings=[reading])
    kept = enrich(batch, _record())
    assert isinstance(kept, Enriched) and kept.batch is batch
    unitless = WireBatch(
        device_id="cold-001",
        received_at=T0,
        source="t",
        readings=[WireReading(metric="temperature", value=4.0, ts=T0)],
    )
    filled = enrich(unitless, _record())
    assert isinstance(filled, Enriched) and filled.batch is not unitless
    assert filled.batch.readings[0].unit == "degC"
