"""Broker accounts for the local stack: Mosquitto runs with authentication on.

The collector, the simulator and the alert service get their own accounts (roles
``collector``, ``simulator`` and ``alerts``); the passwords are created once and kept, 0600,
under the state dir. Devices get theirs from the registry when they are registered.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from stationflow.stack.components import Component

__all__ = ["ServiceAccounts", "provision_service_accounts"]

COLLECTOR_USER = "stationflow-ingest"
SIMULATOR_USER = "stationflow-simulator"
ALERTS_USER = "stationflow-alerts"


@dataclass(frozen=True)
class ServiceAccounts:
    """Broker credentials of the stack's own clients, and the dynsec admin."""

    collector: tuple[str, str]
    simulator: tuple[str, str]
    alerts: tuple[str, str]
    admin: tuple[str, str]


def _passwords(path: Path) -> dict[str, str]:
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = (COLLECTOR_USER, SIMULATOR_USER, ALERTS_USER)
    if all(user in stored for user in wanted):
        return stored
    created = {user: stored.get(user) or secrets.token_urlsafe(24) for user in wanted}
    path.touch(mode=0o600)
    path.write_text(json.dumps(created))
    return created


def provision_service_accounts(mosquitto: Component, state_dir: Path) -> ServiceAccounts:
    """Create (or check) the roles and the service accounts in a dynsec-enabled Mosquitto."""
    from devices.dynsec import ALERTS_ROLE, COLLECTOR_ROLE, SIMULATOR_ROLE, DynsecAdmin

    if mosquitto.username is None or mosquitto.password is None:
        raise ValueError("mosquitto was not started with dynamic security")
    admin = (mosquitto.username, mosquitto.password)
    passwords = _passwords(state_dir / "service-accounts.json")

    async def provision() -> None:
        async with DynsecAdmin(mosquitto.host, mosquitto.port, *admin) as dynsec:
            await dynsec.ensure_roles()
            await dynsec.ensure_service_client(COLLECTOR_USER, passwords[COLLECTOR_USER], COLLECTOR_ROLE)
            await dynsec.ensure_service_client(SIMULATOR_USER, passwords[SIMULATOR_USER], SIMULATOR_ROLE)
            await dynsec.ensure_service_client(ALERTS_USER, passwords[ALERTS_USER], ALERTS_ROLE)

    asyncio.run(provision())
    return ServiceAccounts(
        collector=(COLLECTOR_USER, passwords[COLLECTOR_USER]),
        simulator=(SIMULATOR_USER, passwords[SIMULATOR_USER]),
        alerts=(ALERTS_USER, passwords[ALERTS_USER]),
        admin=admin,
    )
