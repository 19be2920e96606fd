"""``stationflow broker-init``: compose's one-shot job that provisions the MQTT broker.

Mosquitto's dynamic-security store is created by the broker container with the admin login
(``mosquitto/init-dynsec.sh``); this job then logs in as that admin and creates (or repairs)
the roles and the collector, simulator and alert-service accounts with the passwords from the
env file, through :func:`stationflow.stack.auth.ensure_service_accounts`, the same provisioning
``stationflow up`` runs. Devices get their credentials from the registry, which holds the
admin login too. Every password is required: there are no defaults.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from pydantic import Field, SecretStr, ValidationError

from devices.dynsec import DynsecError
from stationflow.logs import setup_logging
from stationflow.settings import CommonSettings
from stationflow.stack.auth import ALERTS_USER, COLLECTOR_USER, SIMULATOR_USER, ensure_service_accounts

__all__ = ["BrokerInitSettings", "run_broker_init"]

logger = logging.getLogger(__name__)

RETRY_S = 2.0
# Passwords shorter than this are refused: the broker is reachable from the network.
MIN_PASSWORD = 16


class BrokerInitSettings(CommonSettings):
    """The broker's dynsec admin login and the service accounts' passwords (all required)."""

    broker_admin_username: str = Field(min_length=1)
    broker_admin_password: SecretStr = Field(min_length=MIN_PASSWORD)
    broker_collector_password: SecretStr = Field(min_length=MIN_PASSWORD)
    broker_simulator_password: SecretStr = Field(min_length=MIN_PASSWORD)
    broker_alerts_password: SecretStr = Field(min_length=MIN_PASSWORD)
    # How long to keep trying while the broker is not (yet) answering.
    broker_init_wait_s: float = Field(default=60.0, gt=0)

    def passwords(self) -> dict[str, str]:
        """Service account username → password."""
        return {
            COLLECTOR_USER: self.broker_collector_password.get_secret_value(),
            SIMULATOR_USER: self.broker_simulator_password.get_secret_value(),
            ALERTS_USER: self.broker_alerts_password.get_secret_value(),
        }


async def provision(settings: BrokerInitSettings) -> None:
    """Provision the broker, retrying while it cannot be reached (bounded by the settings)."""
    admin = (settings.broker_admin_username, settings.broker_admin_password.get_secret_value())
    deadline = time.monotonic() + settings.broker_init_wait_s
    while True:
        try:
            await ensure_service_accounts(settings.mqtt_host, settings.mqtt_port, admin, settings.passwords())
            return
        except (DynsecError, OSError) as exc:
            if time.monotonic() > deadline:
                raise
            logger.warning(
                "broker not ready host=%s port=%s reason=%s", settings.mqtt_host, settings.mqtt_port, exc
            )
            await asyncio.sleep(RETRY_S)


def run_broker_init() -> int:
    """Read the settings, provision the broker: 0 done, 1 broker failure, 2 settings refused."""
    try:
        settings = BrokerInitSettings()  # required fields: from the env
    except ValidationError as exc:
        # names the missing or too short STATIONFLOW_BROKER_* variables, never their values
        problems = "; ".join(
            f"STATIONFLOW_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
            for e in exc.errors(include_input=False)
        )
        print(f"broker-init: settings refused: {problems}", file=sys.stderr)  # noqa: T201 - before logging
        return 2
    setup_logging(settings.log_level, service="broker-init")
    try:
        asyncio.run(provision(settings))
    except (DynsecError, OSError) as exc:
        logger.error(
            "broker provisioning failed host=%s port=%s reason=%s",
            settings.mqtt_host,
            settings.mqtt_port,
            exc,
        )
        return 1
    logger.info(
        "broker provisioned host=%s port=%s accounts=%s",
        settings.mqtt_host,
        settings.mqtt_port,
        ",".join(sorted(settings.passwords())),
    )
    return 0
