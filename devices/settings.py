"""Settings of the device registry service (env prefix ``STATIONFLOW_REGISTRY_``)."""

from __future__ import annotations

from pydantic import SecretStr

from stationflow.settings import CommonSettings

__all__ = ["RegistrySettings"]


class RegistrySettings(CommonSettings):
    """Registry API: database, bind address, bootstrap admin key, status consumer group."""

    registry_database_url: str | None = None  # default: sqlite under state_dir
    registry_host: str = "127.0.0.1"
    registry_port: int = 8080
    # An admin key accepted from the first start on, so the first real keys can be created.
    registry_admin_key: SecretStr | None = None
    registry_group_id: str = "stationflow-registry"

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the registry database."""
        if self.registry_database_url:
            return self.registry_database_url
        return f"sqlite:///{self.state_dir}/registry.db"
