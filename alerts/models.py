"""Alert service database (SQLAlchemy 2; SQLite by default, PostgreSQL by URL).

- ``alerts``: one row per occurrence of an alert (``alert_id`` × ``raised_at``), its
  lifecycle (open → acknowledged → resolved) and escalation position;
- ``alert_history``: everything that happened to it (events applied, acknowledgement,
  comments, escalations, notifications, resolution), append-only; the unique ``event_key``
  makes a replayed or duplicate Kafka event a no-op;
- ``silences``; ``policies`` and ``contact_groups`` (routing and escalation);
- ``alert_outbox``: every notification to send, written in the same transaction as the change that
  caused it, and marked sent only after the channel accepted it;
- ``api_keys`` (roles as in the registry).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stationflow.apikeys import ApiKeyColumns, UtcDateTime, utcnow

__all__ = ["Alert", "ApiKey", "Base", "ContactGroup", "History", "Outbox", "Policy", "Silence"]


class Base(DeclarativeBase):
    """Declarative base; timestamps are timezone-aware UTC."""

    type_annotation_map = {datetime: UtcDateTime()}


class Alert(Base):
    """One occurrence of an alert."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("alert_id", "raised_at", name="uq_alert_occurrence"),
        Index("ix_alerts_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(200), index=True)
    raised_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # open | acknowledged | resolved
    condition: Mapped[str] = mapped_column(String(16))  # raised | updated | cleared (last event)
    severity: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    domain: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    station_id: Mapped[str | None] = mapped_column(String(128))
    device_id: Mapped[str | None] = mapped_column(String(128))
    region: Mapped[str | None] = mapped_column(String(64))
    basin: Mapped[str | None] = mapped_column(String(64))
    metric: Mapped[str | None] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    window: Mapped[str | None] = mapped_column(String(16))
    explanation: Mapped[str] = mapped_column(Text)
    explanation_zh: Mapped[str] = mapped_column(Text, default="")
    last_seq: Mapped[int] = mapped_column(Integer)
    observed_at: Mapped[datetime]
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)  # when the service learnt of it
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    ack_comment: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(100))  # "condition cleared" or a person
    silenced_by: Mapped[str | None] = mapped_column(String(200))  # silence id or "maintenance"
    policy_id: Mapped[int | None] = mapped_column(Integer)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    next_escalation_at: Mapped[datetime | None]
    next_renotify_at: Mapped[datetime | None]
    trend: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[observed_at iso, value], ...]


class History(Base):
    """An entry in an alert's history."""

    __tablename__ = "alert_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    what: Mapped[str] = mapped_column(String(32))  # event | acknowledged | resolved | comment | ...
    actor: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    event_key: Mapped[str | None] = mapped_column(String(300), unique=True)  # alert_id|raised_at|seq


class Silence(Base):
    """Suppresses notifications (not recording) for matching alerts between start and end."""

    __tablename__ = "alert_silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[str | None] = mapped_column(String(128))
    device_id: Mapped[str | None] = mapped_column(String(128))
    rule: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(64))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactGroup(Base):
    """Who gets notified, and how: members are ``{"channel": ..., "target": ...}``."""

    __tablename__ = "alert_contact_groups"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    members: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class Policy(Base):
    """Routing: alerts matching every set field go to ``groups[0]``, escalating along the list."""

    __tablename__ = "alert_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    priority: Mapped[int] = mapped_column(Integer, default=100)  # lower first; first match wins
    domain: Mapped[str | None] = mapped_column(String(32))
    min_severity: Mapped[str | None] = mapped_column(String(16))
    region: Mapped[str | None] = mapped_column(String(64))
    basin: Mapped[str | None] = mapped_column(String(64))
    station_id: Mapped[str | None] = mapped_column(String(128))
    rule: Mapped[str | None] = mapped_column(String(100))
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    ack_timeout_s: Mapped[float] = mapped_column(Float, default=900.0)
    renotify_s: Mapped[float | None] = mapped_column(Float)
    notify_resolved: Mapped[bool] = mapped_column(default=True)


class Outbox(Base):
    """A notification to deliver; ``dedupe_key`` keeps one row per (alert, reason, recipient)."""

    __tablename__ = "alert_outbox"
    __table_args__ = (Index("ix_alert_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(String(64), unique=True)
    dedupe_key: Mapped[str] = mapped_column(String(400), unique=True)
    alert: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(500))
    group_name: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(Text)
    title_zh: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    event_observed_at: Mapped[datetime | None]  # for notification latency


class ApiKey(ApiKeyColumns, Base):
    """An API key of the alert service (columns and handling: ``stationflow.apikeys``)."""

    __tablename__ = "alert_api_keys"
