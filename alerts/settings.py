"""Settings of the alert service (env prefix ``STATIONFLOW_ALERTS_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from stationflow.kafka import FETCH_MAX_WAIT_MS
from stationflow.settings import CommonSettings

__all__ = ["AlertsSettings"]


class AlertsSettings(CommonSettings):
    """Database, API, Kafka consumer, channels and timing of the alert service."""

    alerts_database_url: str | None = None  # default: sqlite under state_dir
    alerts_host: str = "127.0.0.1"
    alerts_port: int = 8090
    alerts_admin_key: SecretStr | None = None  # accepted from the first start on
    alerts_group_id: str = "stationflow-alerts"
    # Longest the broker may hold a fetch of alerts.events that found nothing: on Tansu an
    # event arriving meanwhile waits for it (up to half of it, measured), so it is short.
    alerts_fetch_max_wait_ms: int = Field(default=FETCH_MAX_WAIT_MS, ge=1)
    # An open alert is reconciled with the analytics' active set (AlertSync) only if nothing
    # happened to it for this long before the snapshot (events in flight, clock skew).
    alerts_sync_grace_s: float = 30.0
    # Follow the device registry (maintenance status silences a device's alerts).
    alerts_registry: bool = True
    # The console's station board: how often the page refreshes it (besides on every alert change).
    alerts_board_refresh_s: float = 15.0
    # Escalation / re-notification scheduler and outbox dispatcher.
    alerts_tick_s: float = 1.0
    alerts_retry_base_s: float = 1.0
    alerts_retry_max_s: float = 10.0
    alerts_max_attempts: int = 0  # 0 = retry until delivered (a down channel must not lose messages)
    alerts_send_timeout_s: float = 5.0
    alerts_dispatch_concurrency: int = 8
    # Channels.
    alerts_webhook_secret: SecretStr = SecretStr("change-me")  # HMAC-SHA256 key of webhook bodies
    alerts_smtp_host: str = "127.0.0.1"
    alerts_smtp_port: int = 25
    alerts_smtp_from: str = "stationflow@localhost"
    alerts_smtp_username: str | None = None
    alerts_smtp_password: SecretStr | None = None
    alerts_smtp_starttls: bool = False
    alerts_sms_url: str = "http://127.0.0.1:9099/sms"
    # JSON body template of the SMS gateway request: {to} and {text} are filled in.
    alerts_sms_template: str = '{"to": "{to}", "text": "{text}"}'
    alerts_sms_headers: dict[str, str] = {}
    # Public base URL of the console, used in notification texts.
    alerts_public_url: str = "http://127.0.0.1:8090"

    @field_validator("alerts_smtp_username", "alerts_smtp_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the alert database."""
        if self.alerts_database_url:
            return self.alerts_database_url
        return f"sqlite:///{self.state_dir}/alerts.db"
