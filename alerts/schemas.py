"""Request and response bodies of the alert service API."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from stationflow.contracts import Severity

__all__ = [
    "AckBody",
    "AlertOut",
    "ApiKeyIn",
    "CommentBody",
    "ContactGroupIn",
    "HistoryOut",
    "Member",
    "PolicyIn",
    "Role",
    "SilenceIn",
    "Utc",
]

_Strict = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Utc = Annotated[datetime, AfterValidator(_utc)]
"""A datetime the API always shows with its UTC offset."""


class Role(StrEnum):
    """API key roles, lowest first: read-only (GET), operator (acknowledge, resolve, comment,
    silences: the officer on duty), admin (also policies, contact groups, API keys)."""

    READ_ONLY = "read-only"
    OPERATOR = "operator"
    ADMIN = "admin"


class AlertOut(BaseModel):
    """An alert occurrence as the API and the console show it."""

    id: int
    alert_id: str
    status: str
    condition: str
    severity: str
    rule: str
    kind: str
    domain: str
    subject: str
    station_id: str | None
    device_id: str | None
    region: str | None
    basin: str | None
    metric: str | None
    value: float | None
    threshold: float | None
    window: str | None
    explanation: str
    explanation_zh: str
    raised_at: Utc
    observed_at: Utc
    opened_at: Utc
    updated_at: Utc
    acknowledged_at: Utc | None
    acknowledged_by: str | None
    ack_comment: str | None
    resolved_at: Utc | None
    resolved_by: str | None
    silenced_by: str | None
    escalation_level: int
    trend: list[Any]

    model_config = ConfigDict(from_attributes=True)


class HistoryOut(BaseModel):
    """One history entry."""

    at: Utc
    what: str
    actor: str
    detail: dict[str, Any]

    model_config = ConfigDict(from_attributes=True)


class AckBody(BaseModel):
    """Acknowledge or resolve, optionally with a comment."""

    model_config = _Strict
    comment: str | None = Field(default=None, max_length=2000)


class CommentBody(BaseModel):
    """A comment on an alert."""

    model_config = _Strict
    text: str = Field(min_length=1, max_length=2000)


class SilenceIn(BaseModel):
    """A silence or maintenance window: at least one matcher, end after start."""

    model_config = _Strict
    station_id: str | None = None
    device_id: str | None = None
    rule: str | None = Field(default=None, description="exact rule id, or a prefix ending in '*'")
    region: str | None = None
    starts_at: datetime | None = Field(default=None, description="default: now")
    ends_at: datetime
    reason: str = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not any((self.station_id, self.device_id, self.rule, self.region)):
            raise ValueError("a silence needs at least one of station_id, device_id, rule, region")
        if self.starts_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a UTC offset, e.g. 'Z' or '+08:00'")
        return self


class Member(BaseModel):
    """A recipient: channel and target (URL, MQTT topic, e-mail address, phone number)."""

    model_config = _Strict
    channel: Literal["webhook", "mqtt", "email", "sms"]
    target: str = Field(
        min_length=1,
        max_length=500,
        description="webhook: http(s) URL; mqtt: topic without wildcards ('{station}' is replaced "
        "by the alert's station); email: address; sms: phone number",
    )

    @model_validator(mode="after")
    def _check_target(self) -> Self:
        target = self.target
        if self.channel == "webhook" and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", target):
            raise ValueError(f"webhook target must be an http:// or https:// URL, got {target!r}")
        if self.channel == "mqtt" and (any(c in target for c in "#+\0") or target.startswith("$")):
            raise ValueError(f"mqtt target must be a topic without wildcards or '$', got {target!r}")
        if self.channel == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", target):
            raise ValueError(f"email target must be an e-mail address, got {target!r}")
        if self.channel == "sms" and not re.fullmatch(r"\+?[0-9][0-9 \-]{4,31}", target):
            raise ValueError(f"sms target must be a phone number, got {target!r}")
        return self


class ContactGroupIn(BaseModel):
    """A contact group."""

    model_config = _Strict
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
    members: list[Member] = Field(min_length=1, max_length=100)


class PolicyIn(BaseModel):
    """A notification policy: every set matcher must match; groups in escalation order."""

    model_config = _Strict
    name: str = Field(min_length=1, max_length=100)
    priority: int = Field(default=100, ge=0, le=10000)
    domain: str | None = None
    min_severity: Severity | None = None
    region: str | None = None
    basin: str | None = None
    station_id: str | None = None
    rule: str | None = None
    groups: list[str] = Field(min_length=1, max_length=10)
    ack_timeout_s: float = Field(default=900.0, gt=0, le=7 * 86400)
    renotify_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    notify_resolved: bool = True


class ApiKeyIn(BaseModel):
    """A new API key."""

    model_config = _Strict
    name: str = Field(min_length=1, max_length=100)
    role: Role
