"""ORM tables of the registry (SQLAlchemy 2, portable SQL: SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from stationflow.apikeys import ApiKeyColumns, UtcDateTime, utcnow

__all__ = ["ApiKey", "Base", "Device", "DeviceType", "OutboxEntry", "Station"]


class Base(DeclarativeBase):
    """Declarative base; ``metadata`` is what Alembic compares against."""

    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON}


class DeviceType(Base):
    """A kind of device: its metrics (unit, valid range, HJ 212 code) and InfluxDB domain."""

    __tablename__ = "device_types"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(500), default="")
    builtin: Mapped[bool] = mapped_column(default=False)
    # {metric: {"unit", "min", "max", "hj212_code"}}; read and written whole with the type.
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Station(Base):
    """Where devices are installed, with per-kind attributes and threshold overrides."""

    __tablename__ = "stations"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), default="other")
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    region: Mapped[str | None] = mapped_column(String(100))
    basin: Mapped[str | None] = mapped_column(String(100))
    warning_level: Mapped[float | None] = mapped_column(Float)
    guaranteed_level: Mapped[float | None] = mapped_column(Float)
    target_class: Mapped[str | None] = mapped_column(String(3))
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Published by the open-data service (opendata/) only when true; hidden by default.
    public: Mapped[bool] = mapped_column(default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    devices: Mapped[list[Device]] = relationship(back_populates="station")


class Device(Base):
    """A registered device: type, station, status, calibration, reporting interval."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type_name: Mapped[str] = mapped_column(ForeignKey("device_types.name"), index=True)
    station_id: Mapped[str | None] = mapped_column(ForeignKey("stations.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # {metric: {"scale", "offset"}}, only metrics of the device's type.
    calibration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    expected_interval_s: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # scrypt hash (devices.credentials.hash_password) of its MQTT password; None: no credentials.
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(200))
    # What it speaks (contracts.Protocol) and its protocol links: a link exists when its key
    # (MN / RTU address, each unique) is set. Passwords only as stationflow.passwords hashes.
    protocol: Mapped[str] = mapped_column(String(16), default="json", server_default="json")
    hj212_mn: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    hj212_password_hash: Mapped[str | None] = mapped_column(String(200))
    hj212_crc: Mapped[str | None] = mapped_column(String(16))
    hj212_strict: Mapped[bool | None] = mapped_column()
    hj212_allow_from: Mapped[list[str] | None] = mapped_column(JSON)
    sl651_address: Mapped[str | None] = mapped_column(String(10), unique=True, index=True)
    sl651_password_hash: Mapped[str | None] = mapped_column(String(200))
    sl651_ack: Mapped[str | None] = mapped_column(String(8))
    sl651_level_base_m: Mapped[float | None] = mapped_column(Float)
    sl651_allow_from: Mapped[list[str] | None] = mapped_column(JSON)

    device_type: Mapped[DeviceType] = relationship(lazy="joined")
    station: Mapped[Station | None] = relationship(back_populates="devices", lazy="joined")


class ApiKey(ApiKeyColumns, Base):
    """An API key of the registry (columns and handling: ``stationflow.apikeys``)."""

    __tablename__ = "api_keys"


class OutboxEntry(Base):
    """A device whose registry record must be (re)published: written in the transaction of the change.

    Only the key is kept: the relay (``devices.relay``) publishes the device's record as it is
    when it sends (a tombstone if the device is gone), so rows may be sent in any order and the
    topic still ends with the latest state of every device.
    """

    __tablename__ = "registry_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
