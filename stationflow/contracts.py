"""Wire contracts: the JSON schemas of every Kafka message the services exchange.

Every service imports these models and nothing else from another service. Each record
carries a schema version ``v`` so a consumer can refuse what it does not understand.

Topics and their value schemas (keys are the device id as UTF-8; ``readings.raw`` and
``readings.clean`` records have no key: each is a bundle, ``stationflow.wire``, of the
documents of devices whose id hashes to the record's partition):

=====================  ===============  ===============================================
topic                  value            produced by
=====================  ===============  ===============================================
``readings.raw``       ``ReadingBatch`` ingest (bundles: one document per device message)
``readings.clean``     ``ReadingBatch`` streams (bundles: one document per device and batch;
                                        normalised, deduplicated)
``readings.deadletter`` ``DeadLetter``  ingest and streams (anything that was refused)
``registry``           ``DeviceRecord`` devices (compacted; key device id)
``analytics.hourly``   ``HourlyValues`` streams (key station id; one device-hour)
``alerts.events``      ``AlertEvent``   streams (key alert id)
=====================  ===============  ===============================================
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

from stationflow.tagtext import TAG_TEXT_PATTERN

__all__ = [
    "SCHEMA_VERSION",
    "AlertEvent",
    "AlertState",
    "AlertSync",
    "Calibration",
    "DeadLetter",
    "DeviceRecord",
    "DeviceStatus",
    "Hj212Link",
    "HourlyValues",
    "MetricSpec",
    "Quality",
    "Reading",
    "ReadingBatch",
    "Severity",
    "Sl651Link",
    "StationInfo",
    "encode_batch",
    "to_utc",
]

SCHEMA_VERSION: Literal[1] = 1

# A metric name becomes an InfluxDB field key and a Prometheus label value: keep it to a
# conservative identifier alphabet so nothing downstream has to escape it.
METRIC_PATTERN = r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$"
# Device ids appear in MQTT topics, Kafka keys and InfluxDB tags.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"


class Quality(StrEnum):
    """Data flag of one reading, the HJ 212-2017 letters."""

    NORMAL = "N"
    OFFLINE = "F"
    MAINTENANCE = "M"
    MANUAL = "S"
    FAULT = "D"
    CALIBRATION = "C"
    OVER_RANGE = "T"
    COMM_ERROR = "B"


def to_utc(ts: datetime) -> datetime:
    """Return an aware datetime converted to UTC (naive input is refused upstream)."""
    return ts.astimezone(UTC)


# Validation stays inside pydantic-core (no Python validators): it runs once per reading on
# every hop, and Python-level validators made it 2.5x slower. Producers write UTC; any
# aware timestamp is accepted and compares correctly.
UtcDatetime = AwareDatetime
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]


class Reading(BaseModel):
    """One measured value of one metric at one instant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str = Field(pattern=METRIC_PATTERN)
    value: FiniteFloat
    unit: str | None = Field(default=None, max_length=32)
    ts: UtcDatetime
    quality: Quality = Quality.NORMAL
    shipment: str | None = Field(
        default=None,
        max_length=64,
        pattern=TAG_TEXT_PATTERN,  # an InfluxDB tag: no control characters (stationflow.tagtext)
        description="cold chain: the shipment a logger reading belongs to",
    )


class ReadingBatch(BaseModel):
    """All readings of one device message; the Kafka record is keyed by ``device_id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = SCHEMA_VERSION
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    received_at: UtcDatetime
    source: str = Field(description="where it came from, e.g. 'mqtt:devices/d1/readings'")
    readings: list[Reading] = Field(min_length=1)

    def key(self) -> bytes:
        """Kafka record key."""
        return self.device_id.encode()


class DeadLetter(BaseModel):
    """A message that was refused, with the reason in words a device integrator can act on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = SCHEMA_VERSION
    device_id: str | None = Field(default=None, description="when it could be determined")
    source: str = Field(description="MQTT topic ('mqtt:<topic>') or TCP peer ('tcp:<host>:<port>')")
    stage: Literal["ingest", "streams"] = "ingest"
    code: str = Field(description="machine-readable reason, e.g. 'invalid_json'")
    reason: str = Field(description="human-readable reason")
    received_at: UtcDatetime
    payload_b64: str = Field(description="the raw payload, base64")
    payload_size: int = Field(ge=0)

    @classmethod
    def build(
        cls,
        *,
        payload: bytes,
        source: str,
        code: str,
        reason: str,
        received_at: datetime,
        device_id: str | None = None,
        stage: Literal["ingest", "streams"] = "ingest",
        max_payload_bytes: int = 1 << 20,
    ) -> DeadLetter:
        """Build a dead letter; payloads over ``max_payload_bytes`` are truncated (size kept)."""
        return cls(
            device_id=device_id,
            source=source,
            stage=stage,
            code=code,
            reason=reason,
            received_at=received_at,
            payload_b64=base64.b64encode(payload[:max_payload_bytes]).decode(),
            payload_size=len(payload),
        )

    def payload(self) -> bytes:
        """The stored raw payload (possibly truncated, see ``payload_size``)."""
        return base64.b64decode(self.payload_b64)

    def key(self) -> bytes:
        """Kafka record key: the device id when known, else the source."""
        return (self.device_id or self.source).encode()


class _ReadingBatchDict(TypedDict):
    v: Literal[1]
    device_id: str
    received_at: datetime
    source: str
    readings: list[Reading]


_BATCH_JSON = TypeAdapter(_ReadingBatchDict)


def encode_batch(*, device_id: str, received_at: datetime, source: str, readings: list[Reading]) -> bytes:
    """``ReadingBatch`` JSON from already-validated parts, without building the model.

    The collector's hot path: same bytes as ``ReadingBatch(...)`` serialised, at about
    two thirds of the cost (tests pin the equivalence).
    """
    doc: _ReadingBatchDict = {
        "v": SCHEMA_VERSION,
        "device_id": device_id,
        "received_at": received_at,
        "source": source,
        "readings": readings,
    }
    return _BATCH_JSON.dump_json(doc)


class DeviceStatus(StrEnum):
    """Lifecycle of a registered device."""

    ACTIVE = "active"
    MAINTENANCE = "maintenance"
    RETIRED = "retired"


class MetricSpec(BaseModel):
    """One metric a device type reports: canonical unit and physically valid range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str = Field(pattern=METRIC_PATTERN)
    unit: str = Field(max_length=32, description="canonical unit, e.g. 'ug/m3', 'degC', 'm'")
    min: float | None = Field(default=None, description="values below are flagged T")
    max: float | None = Field(default=None, description="values above are flagged T")
    hj212_code: str | None = Field(default=None, description="HJ 212 pollutant code, e.g. 'a34004'")
    sl651_code: str | None = Field(
        default=None, max_length=16, description="SL 651 element (ASCII identifier), e.g. 'Z', 'PN05', 'DRP'"
    )


class Calibration(BaseModel):
    """Per-metric correction applied after unit conversion: ``value * scale + offset``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)


class StationInfo(BaseModel):
    """Where a device is installed; ``attributes`` carry domain values (warning level, target class)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    station_id: str = Field(pattern=DEVICE_ID_PATTERN)
    name: str
    lat: float | None = None
    lon: float | None = None
    region: str | None = None
    basin: str | None = None
    attributes: dict[str, float | str] = Field(default_factory=dict)
    public: bool = Field(
        default=False,
        description="published by the open-data service (opendata/); hidden stations never appear there",
    )


Protocol = Literal["json", "senml", "hj212", "sl651"]
Hj212Crc = Literal["hj212", "modbus", "modbus_swapped"]
Sl651Ack = Literal["eot", "esc", "none"]


class Hj212Link(BaseModel):
    """How an HJ 212 station (or its data logger / DTU) is recognised and answered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mn: str = Field(
        min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$", description="station MN (opaque key)"
    )
    password_hash: str | None = Field(
        default=None, description="stationflow.passwords hash of the PW field; None: PW not checked"
    )
    crc: Hj212Crc | None = Field(default=None, description="pinned CRC variant; None accepts all three")
    strict: bool = Field(
        default=False, description="refuse frames with field deviations instead of counting them"
    )
    allow_from: list[str] = Field(default_factory=list, description="source IP networks (CIDR); empty: any")


class Sl651Link(BaseModel):
    """How an SL 651 RTU is recognised and answered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field(pattern=r"^[0-9A-F]{10}$", description="RTU address, 10 hex digits as printed")
    password_hash: str | None = Field(
        default=None, description="stationflow.passwords hash of the 4-hex-digit password; None: not checked"
    )
    ack: Sl651Ack = Field(default="eot", description="confirmation end character (M2); 'none' for M1 RTUs")
    level_base_m: float = Field(default=0.0, allow_inf_nan=False, description="DRZ level base (水位基值)")
    allow_from: list[str] = Field(default_factory=list, description="source IP networks (CIDR); empty: any")


class DeviceRecord(BaseModel):
    """A registered device as the pipeline sees it; topic ``registry`` (compacted), key device id.

    A record with a null value (tombstone) means the device was deleted.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = SCHEMA_VERSION
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    device_type: str
    domain: str = Field(description="InfluxDB measurement: air, water, hydro, coldchain, …")
    status: DeviceStatus = DeviceStatus.ACTIVE
    station: StationInfo | None = None
    metrics: dict[str, MetricSpec] = Field(default_factory=dict)
    calibration: dict[str, Calibration] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict, description="station overrides by name")
    expected_interval_s: int | None = Field(default=None, gt=0)
    protocol: Protocol = Field(default="json", description="what the device speaks")
    hj212: Hj212Link | None = None
    sl651: Sl651Link | None = None
    updated_at: UtcDatetime

    def key(self) -> bytes:
        """Kafka record key."""
        return self.device_id.encode()


def utcnow() -> datetime:
    """Current time, aware, UTC."""
    return datetime.now(UTC)


class HourlyValues(BaseModel):
    """A device's closed hour: the valid hourly means of its metrics (key: station id).

    ``means`` holds only metrics whose hour met the validity rule (GB 3095 Table 4: at least
    45 minutes of data); ``counts`` the number of valid samples behind each of them; ``sums``
    the exact decimal sum of those samples (each at its shortest repr), so a consumer gets the
    exact mean ``sums[m] / counts[m]`` (a float mean cannot carry 1/3, and exact-half rounding
    must not depend on float error). ``means[m]`` is that exact mean correctly rounded.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = SCHEMA_VERSION
    station_id: str = Field(pattern=DEVICE_ID_PATTERN)
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    domain: str
    hour: UtcDatetime = Field(description="start of the hour (UTC)")
    means: dict[str, float]
    counts: dict[str, int] = Field(default_factory=dict)
    sums: dict[str, str] = Field(default_factory=dict, description="exact decimal sums behind means")

    def key(self) -> bytes:
        """Kafka record key."""
        return self.station_id.encode()


class AlertState(StrEnum):
    """What happened to an alert."""

    RAISED = "raised"
    UPDATED = "updated"  # severity changed while active
    CLEARED = "cleared"


class Severity(StrEnum):
    """Alert severity, lowest first; the four warning grades IV..I (蓝/黄/橙/红) map to minor..critical."""

    INFO = "info"
    MINOR = "minor"  # IV 级, blue
    MODERATE = "moderate"  # III 级, yellow
    MAJOR = "major"  # II 级, orange
    CRITICAL = "critical"  # I 级, red

    @property
    def rank(self) -> int:
        """0 (info) .. 4 (critical)."""
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER = list(Severity)


class AlertEvent(BaseModel):
    """One change of one alert (topic ``alerts.events``, key ``alert_id``).

    ``alert_id`` is deterministic (rule × subject): re-evaluating or replaying a condition
    yields the same id, and ``seq`` (1 for ``raised``, +1 per later event of the same
    occurrence) with ``raised_at`` lets a consumer drop what it has already applied.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = SCHEMA_VERSION
    alert_id: str
    state: AlertState
    seq: int = Field(ge=1)
    severity: Severity
    rule: str = Field(description="rule id, e.g. 'flood.level'")
    kind: str = Field(description="threshold | window | rate | sustained | nodata | index")
    domain: str
    subject: str = Field(description="what the alert is about: 'device:<id>' or 'station:<id>'")
    station_id: str | None = None
    device_id: str | None = None
    region: str | None = None
    basin: str | None = None
    metric: str | None = Field(
        default=None, description="the signal evaluated, e.g. 'level' or 'pm25.mean_24h'"
    )
    value: float | None = None
    threshold: float | None = None
    window: str | None = Field(default=None, description="e.g. '1h', '24h'; None for instantaneous values")
    raised_at: UtcDatetime = Field(description="event time the condition was first met (this occurrence)")
    observed_at: UtcDatetime = Field(description="event time of the value that caused this event")
    explanation: str
    explanation_zh: str = ""

    def key(self) -> bytes:
        """Kafka record key."""
        return self.alert_id.encode()


class AlertSync(BaseModel):
    """The alerts the analytics hold raised, for every subject they hold state of.

    Sent on ``alerts.sync`` (key ``sync:<table>:<partition>``) by each worker for the table
    partitions it owns, after its tables are recovered and then every
    ``STATIONFLOW_ANALYTICS_SYNC_S``. The alert service resolves an open alert of a listed
    subject whose ``alert_id`` is not listed, if nothing happened to it since well before
    ``at``: the analytics no longer hold that condition (their state was lost or is older
    than the alert, e.g. after a crash of the whole stack), so no clearing would ever come.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = SCHEMA_VERSION
    sync: Literal["active"] = "active"
    subjects: dict[str, list[str]] = Field(
        description="subject ('device:<id>' or 'station:<id>') -> alert ids held raised (may be empty)"
    )
    at: UtcDatetime = Field(description="wall-clock time the snapshot was taken")

    def key(self, table: str, partition: int) -> bytes:
        """Kafka record key."""
        return f"sync:{table}:{partition}".encode()
