"""Settings of the device registry service (env prefix ``STATIONFLOW_REGISTRY_``)."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from stationflow.settings import CommonSettings

__all__ = ["RegistrySettings"]


class RegistrySettings(CommonSettings):
    """Registry API: database, bind address, bootstrap admin key, status consumer group, dynsec admin."""

    registry_database_url: str | None = None  # default: sqlite under state_dir
    registry_host: str = "127.0.0.1"
    registry_port: int = 8080
    # An admin key accepted from the first start on, so the first real keys can be created.
    registry_admin_key: SecretStr | None = None
    registry_group_id: str = "stationflow-registry"
    # The Mosquitto dynsec admin (broker at mqtt_host:mqtt_port): when set, devices get MQTT
    # credentials on registration; when not, none are issued.
    registry_dynsec_username: str | None = None
    registry_dynsec_password: SecretStr | None = None

    @field_validator("registry_dynsec_username", "registry_dynsec_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty variable (e.g. from docker-compose defaults) means "not configured"."""
        return None if value == "" else value

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the registry database."""
        if self.registry_database_url:
            return self.registry_database_url
        return f"sqlite:///{self.state_dir}/registry.db"
