"""REST bodies of the registry: XBase / XCreate / XUpdate / XPublic / XsPublic families."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from stationflow.contracts import (
    DEVICE_ID_PATTERN,
    METRIC_PATTERN,
    Calibration,
    DeviceStatus,
    Hj212Crc,
    MetricSpec,
    Protocol,
    Sl651Ack,
)
from stationflow.tagtext import TagText

__all__ = [
    "ERRORS",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyPublic",
    "ApiKeysPublic",
    "DeviceChanged",
    "DeviceCreate",
    "DeviceCreated",
    "DeviceFields",
    "DevicePublic",
    "DeviceTypeCreate",
    "DeviceTypePublic",
    "DeviceTypeUpdate",
    "DeviceTypesPublic",
    "DeviceUpdate",
    "DevicesPublic",
    "Hj212LinkIn",
    "Hj212LinkPublic",
    "Message",
    "MqttCredentials",
    "ProtocolPassword",
    "ProtocolPasswordSet",
    "Responses",
    "Role",
    "Sl651LinkIn",
    "Sl651LinkPublic",
    "StationBase",
    "StationCreate",
    "StationKind",
    "StationPublic",
    "StationUpdate",
    "StationsPublic",
]

TYPE_NAME_PATTERN = r"^[a-z][a-z0-9_.\-]{0,63}$"
Metric = Annotated[str, Field(pattern=METRIC_PATTERN)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
WaterClass = Literal["I", "II", "III", "IV", "V"]


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL (SQLite can): refuse it here, alike on every backend.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
"""Free text stored in a text column (ids, names with a pattern cannot contain NUL anyway)."""


class Role(StrEnum):
    """API key roles, each allowed what the previous one is plus more."""

    READ_ONLY = "read-only"
    INTEGRATOR = "integrator"
    ADMIN = "admin"


class StationKind(StrEnum):
    """What a station is; decides which attributes it may carry."""

    AIR = "air"
    WATER = "water"
    GAUGE = "gauge"  # river / reservoir level
    RAIN = "rain"
    COLDCHAIN = "coldchain"
    OTHER = "other"


_Strict = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- device types


class MetricDef(MetricSpec):
    """A metric of a device type; ``min`` must not exceed ``max``."""

    unit: TagText = Field(max_length=32, description="canonical unit, e.g. 'ug/m3', 'degC', 'm'")
    min: Finite | None = None
    max: Finite | None = None

    @field_validator("metric")
    @classmethod
    def _not_reserved(cls, metric: str) -> str:
        if metric == "time":
            raise ValueError("'time' is reserved by InfluxDB and cannot name a metric")
        return metric

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


def _unique_metrics(metrics: list[MetricDef] | None) -> None:
    names = [m.metric for m in metrics or []]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"metric names must be unique, repeated: {', '.join(dupes)}")


def _unique_codes(metrics: list[MetricDef] | None) -> None:
    """A protocol code names one metric of a type, or a decoder could not tell which."""
    for attr in ("hj212_code", "sl651_code"):
        codes = [getattr(m, attr) for m in metrics or [] if getattr(m, attr) is not None]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"{attr} must name one metric, repeated: {', '.join(dupes)}")


class DeviceTypeBase(BaseModel):
    """Fields of a device type."""

    model_config = _Strict

    domain: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="InfluxDB measurement")
    description: Text = Field(default="", max_length=500)
    metrics: list[MetricDef] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _unique_metrics(self.metrics)
        return self


class DeviceTypeCreate(DeviceTypeBase):
    """Body of ``POST /device-types``."""

    name: str = Field(pattern=TYPE_NAME_PATTERN)

    @model_validator(mode="after")
    def _codes(self) -> Self:
        _unique_codes(self.metrics)
        return self


class DeviceTypeUpdate(BaseModel):
    """Body of ``PATCH /device-types/{name}``; metrics, when given, replace the list."""

    model_config = _Strict

    domain: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,31}$")
    description: Text | None = Field(default=None, max_length=500)
    metrics: list[MetricDef] | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _unique_metrics(self.metrics)
        _unique_codes(self.metrics)
        for name in ("domain", "description", "metrics"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep the current value")
        return self


class DeviceTypePublic(DeviceTypeBase):
    """A device type as returned."""

    name: str
    builtin: bool
    updated_at: datetime


class DeviceTypesPublic(BaseModel):
    """A list of device types."""

    data: list[DeviceTypePublic]
    count: int


# ---------------------------------------------------------------- stations


class StationBase(BaseModel):
    """Fields of a station; attributes are checked against its kind."""

    model_config = _Strict

    # name, region and basin become InfluxDB tags (or may): no control characters (TagText)
    name: TagText = Field(min_length=1, max_length=200)
    kind: StationKind = StationKind.OTHER
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    region: TagText | None = Field(default=None, max_length=100)
    basin: TagText | None = Field(default=None, max_length=100)
    warning_level: Finite | None = Field(default=None, description="m, gauges only (警戒水位)")
    guaranteed_level: Finite | None = Field(default=None, description="m, gauges only (保证水位)")
    target_class: WaterClass | None = Field(default=None, description="GB 3838 class, water only")
    thresholds: dict[Metric, Finite] = Field(default_factory=dict, description="overrides by name")
    public: bool = Field(default=False, description="published by the open-data service")

    @model_validator(mode="after")
    def _per_kind(self) -> Self:
        levels = self.warning_level is not None or self.guaranteed_level is not None
        if levels and self.kind is not StationKind.GAUGE:
            raise ValueError(f"warning_level/guaranteed_level are for kind 'gauge', not '{self.kind}'")
        if self.target_class is not None and self.kind is not StationKind.WATER:
            raise ValueError(f"target_class is for kind 'water', not '{self.kind}'")
        w, g = self.warning_level, self.guaranteed_level
        if w is not None and g is not None and g < w:
            raise ValueError(f"guaranteed_level ({g}) must be >= warning_level ({w})")
        return self


class StationCreate(StationBase):
    """Body of ``POST /stations``."""

    id: str = Field(pattern=DEVICE_ID_PATTERN)


class StationUpdate(BaseModel):
    """Body of ``PATCH /stations/{id}``; the merged station is validated again."""

    model_config = _Strict

    name: TagText | None = Field(default=None, min_length=1, max_length=200)
    kind: StationKind | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    region: TagText | None = Field(default=None, max_length=100)
    basin: TagText | None = Field(default=None, max_length=100)
    warning_level: Finite | None = None
    guaranteed_level: Finite | None = None
    target_class: WaterClass | None = None
    thresholds: dict[Metric, Finite] | None = None
    public: bool | None = None


class StationPublic(StationCreate):
    """A station as returned."""

    updated_at: datetime


class StationsPublic(BaseModel):
    """A list of stations."""

    data: list[StationPublic]
    count: int


# ---------------------------------------------------------------- devices


# HJ 212 PW is at most 9 characters (protocols.md 1.2); ';', ',', '=' and '&' delimit fields.
HJ212_PW_PATTERN = r"^[\x21-\x7e]{1,9}$"
HJ212_PW_DELIMITERS = ";,=&"
SL651_ADDRESS_PATTERN = r"^[0-9A-Fa-f]{10}$"
SL651_PW_PATTERN = r"^[0-9A-Fa-f]{4}$"


def _networks(values: list[str]) -> list[str]:
    """CIDRs (or single addresses) in canonical form; host bits set are an error, not a guess."""
    out: list[str] = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value.strip(), strict=True)))
        except ValueError as exc:
            raise ValueError(f"'{value}' is not an IP network in CIDR notation: {exc}") from exc
    return list(dict.fromkeys(out))


AllowFrom = Annotated[
    list[Annotated[str, Field(max_length=64)]],
    Field(default_factory=list, max_length=100, description="source IP networks (CIDR); empty: any"),
    AfterValidator(_networks),
]


def _hj212_password(value: str | None) -> str | None:
    if value is not None and any(c in HJ212_PW_DELIMITERS for c in value):
        raise ValueError(f"must not contain any of {HJ212_PW_DELIMITERS!r} (HJ 212 field delimiters)")
    return value


class Hj212LinkIn(BaseModel):
    """How an HJ 212 station is recognised (request body); the password is stored hashed."""

    model_config = _Strict

    mn: str = Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$", description="station MN, unique")
    password: Annotated[str | None, AfterValidator(_hj212_password)] = Field(
        default=None,
        pattern=HJ212_PW_PATTERN,
        description="PW the station sends (1-9 printable characters); omitted on create: generated",
    )
    crc: Hj212Crc | None = Field(default=None, description="pinned CRC variant; null accepts all three")
    strict: bool = Field(default=False, description="refuse frames with deviations instead of counting them")
    allow_from: AllowFrom


class Hj212LinkPublic(BaseModel):
    """An HJ 212 link as returned: never the password, only whether one is set."""

    mn: str
    password_set: bool
    crc: Hj212Crc | None
    strict: bool
    allow_from: list[str]


def _upper(value: str | None) -> str | None:
    return None if value is None else value.upper()


class Sl651LinkIn(BaseModel):
    """How an SL 651 RTU is recognised (request body); the password is stored hashed."""

    model_config = _Strict

    address: Annotated[str, AfterValidator(_upper)] = Field(
        pattern=SL651_ADDRESS_PATTERN, description="RTU address, 10 hex digits (stored upper case), unique"
    )
    password: Annotated[str | None, AfterValidator(_upper)] = Field(
        default=None,
        pattern=SL651_PW_PATTERN,
        description="4 hex digits; omitted: not checked (see generate_password)",
    )
    generate_password: bool = Field(
        default=False, description="let the registry choose the password (returned once)"
    )
    ack: Sl651Ack = Field(default="eot", description="confirmation end character; 'none' for M1 RTUs")
    level_base_m: Finite = Field(default=0.0, description="DRZ level base (水位基值), m")
    allow_from: AllowFrom

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if self.password is not None and self.generate_password:
            raise ValueError("give a password or generate_password, not both")
        return self


class Sl651LinkPublic(BaseModel):
    """An SL 651 link as returned: never the password, only whether one is set."""

    address: str
    password_set: bool
    ack: Sl651Ack
    level_base_m: float
    allow_from: list[str]


class DeviceFields(BaseModel):
    """Fields of a device other than its protocol links."""

    model_config = _Strict

    type: str = Field(pattern=TYPE_NAME_PATTERN, description="device type name")
    station_id: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)
    status: DeviceStatus = DeviceStatus.ACTIVE
    calibration: dict[Metric, Calibration] = Field(default_factory=dict)
    expected_interval_s: int | None = Field(default=None, gt=0, le=31_536_000)
    protocol: Protocol = Field(default="json", description="what the device speaks")


class DeviceBase(DeviceFields):
    """Fields of a device, with the protocol links as written.

    ``protocol: hj212`` needs an ``hj212`` link and ``sl651`` an ``sl651`` link: checked by
    ``crud.check_device`` on the stored device with the fields given here (a CSV import that
    leaves the protocol fields out keeps the device's own).
    """

    hj212: Hj212LinkIn | None = None
    sl651: Sl651LinkIn | None = None


class DeviceCreate(DeviceBase):
    """Body of ``POST /devices``."""

    id: str = Field(pattern=DEVICE_ID_PATTERN)


class DeviceUpdate(BaseModel):
    """Body of ``PATCH /devices/{id}``; a link given replaces the link (its password omitted: kept)."""

    model_config = _Strict

    type: str | None = Field(default=None, pattern=TYPE_NAME_PATTERN)
    station_id: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)
    status: DeviceStatus | None = None
    calibration: dict[Metric, Calibration] | None = None
    expected_interval_s: int | None = Field(default=None, gt=0, le=31_536_000)
    protocol: Protocol | None = None
    hj212: Hj212LinkIn | None = Field(default=None, description="null removes the link")
    sl651: Sl651LinkIn | None = Field(default=None, description="null removes the link")

    @model_validator(mode="after")
    def _not_null(self) -> Self:
        if "protocol" in self.model_fields_set and self.protocol is None:
            raise ValueError("protocol cannot be null; leave it out to keep the current value")
        return self


class DevicePublic(DeviceFields):
    """A device as returned."""

    id: str
    hj212: Hj212LinkPublic | None = None
    sl651: Sl651LinkPublic | None = None
    updated_at: datetime


class DevicesPublic(BaseModel):
    """A list of devices."""

    data: list[DevicePublic]
    count: int


class MqttCredentials(BaseModel):
    """How a device logs in to the MQTT broker; the password is shown only in this answer."""

    username: str
    password: str
    host: str
    port: int
    topic: str = Field(description="where the device publishes its readings (QoS 1)")


class DeviceChanged(DevicePublic):
    """A device after a change, with a protocol password the registry generated (shown only here)."""

    hj212_password: str | None = Field(default=None, description="generated HJ 212 PW, shown once")
    sl651_password: str | None = Field(default=None, description="generated SL 651 password, shown once")


class DeviceCreated(DeviceChanged):
    """Answer of ``POST /devices``: the device and its MQTT credentials (null: none issued)."""

    mqtt: MqttCredentials | None


class ProtocolPasswordSet(BaseModel):
    """Body of ``POST /devices/{id}/protocol-password`` (optional): a password, or none to generate one."""

    model_config = _Strict

    protocol: Literal["hj212", "sl651"] | None = Field(
        default=None, description="which link; default: the device's protocol, else its only link"
    )
    password: str | None = Field(default=None, max_length=16, description="omitted: generated")
    clear: bool = Field(default=False, description="remove the password: it is no longer checked")

    @model_validator(mode="after")
    def _one(self) -> Self:
        if self.clear and self.password is not None:
            raise ValueError("give a password or clear, not both")
        return self


class ProtocolPassword(BaseModel):
    """Answer of ``POST /devices/{id}/protocol-password``."""

    device_id: str
    protocol: Literal["hj212", "sl651"]
    password_set: bool
    password: str | None = Field(
        description="the generated password, shown only here; null if given or cleared"
    )


# ---------------------------------------------------------------- API keys


class ApiKeyCreate(BaseModel):
    """Body of ``POST /api-keys``."""

    model_config = _Strict

    name: Text = Field(min_length=1, max_length=100)
    role: Role


class ApiKeyPublic(BaseModel):
    """An API key as listed (never the token)."""

    id: int
    name: str
    role: Role
    prefix: str = Field(description="first characters of the token, to recognise it")
    created_at: datetime


class ApiKeyCreated(ApiKeyPublic):
    """Answer of ``POST /api-keys``: the token, shown this once."""

    token: str


class ApiKeysPublic(BaseModel):
    """A list of API keys."""

    data: list[ApiKeyPublic]
    count: int


class Message(BaseModel):
    """An error or a plain answer."""

    detail: str


Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    400: {"model": Message, "description": "the body could not be parsed"},
    401: {"model": Message, "description": "no or unknown API key"},
    403: {"model": Message, "description": "the key's role is not allowed this"},
}
