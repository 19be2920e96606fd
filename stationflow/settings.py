"""Settings shared by every service (env prefix ``STATIONFLOW_``).

Each service extends :class:`CommonSettings` with its own fields in ``<svc>/settings.py``.
Build the object once in ``main()`` and pass it down; nothing reads ``os.environ`` directly.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CommonSettings", "InfluxDialect", "masked"]


class InfluxDialect(StrEnum):
    """Which InfluxDB write API to speak."""

    V1 = "v1"  # /write?db=  (InfluxDB 1.x; the local stack and the tests)
    V2 = "v2"  # /api/v2/write via influxdb-client (InfluxDB 2.x / 3.x)


class CommonSettings(BaseSettings):
    """Connection settings every service needs."""

    model_config = SettingsConfigDict(env_prefix="STATIONFLOW_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    topic_partitions: int = 4

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None

    influx_dialect: InfluxDialect = InfluxDialect.V1
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "stationflow"  # v1 database
    influx_org: str = "stationflow"  # v2 organisation
    influx_bucket: str = "stationflow"  # v2 bucket
    influx_token: SecretStr | None = None  # v2 token (v1: optional "user:password")

    state_dir: Path = Path(".state")
    log_level: str = "INFO"
    # A development machine: the well-known default secret ``change-me`` is accepted as an admin
    # key (with a warning) instead of refusing to start.
    dev: bool = False

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``readings.raw``."""
        return f"{self.topic_prefix}{name}"


def masked(settings: BaseSettings) -> dict[str, Any]:
    """Settings as a dict that is safe to log (secrets shown as ``**********``)."""
    out: dict[str, Any] = {}
    for name, value in settings.model_dump().items():
        out[name] = str(value) if isinstance(value, SecretStr) else value
    return out
