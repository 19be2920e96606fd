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
    # Outbox relay (devices.relay): registry changes are committed with an outbox row and
    # published from there. While Kafka is down it retries after base × 2ⁿ seconds (at most max).
    registry_outbox_retry_base_s: float = 0.5
    registry_outbox_retry_max_s: float = 15.0
    registry_outbox_batch: int = 500  # outbox rows per Kafka round trip
    # How long one publish attempt may take before it counts as failed (producer request timeout).
    registry_kafka_timeout_s: float = 10.0
    # How often the relay compares the topic's end offsets with what it published, to notice a
    # broker that lost the topic (Tansu keeps topics in memory) and republish the full registry.
    registry_topic_check_s: float = 5.0
    # Pause between noticing a reset topic and republishing, so that registry followers (which
    # check every second) see the emptied topic and rewind before it fills again.
    registry_reset_settle_s: float = 3.0
    # A change request waits at most this long for Kafka's acknowledgement before it answers
    # (it does not wait while the relay is known to be failing); the change is committed either way.
    registry_publish_wait_s: float = 5.0

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
