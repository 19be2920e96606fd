"""Broker accounts: Mosquitto runs with authentication on, locally and under compose.

The collector, the simulator and the alert service get their own accounts (roles
``collector``, ``simulator`` and ``alerts``). Under ``stationflow up`` the passwords are created
once and kept, 0600, under the state dir; under compose they come from the env file and the
``broker-init`` job (:mod:`stationflow.stack.brokerinit`) applies them with the same
:func:`ensure_service_accounts`. Devices get theirs from the registry when they are registered.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stationflow.stack.components import Component

__all__ = [
    "ALERTS_USER",
    "COLLECTOR_USER",
    "SIMULATOR_USER",
    "ServiceAccounts",
    "ensure_service_accounts",
    "provision_service_accounts",
]

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


async def ensure_service_accounts(
    host: str, port: int, admin: tuple[str, str], passwords: Mapping[str, str]
) -> None:
    """Create (or repair) the roles and the three service accounts in a dynsec-enabled Mosquitto.

    ``passwords`` maps ``COLLECTOR_USER``, ``SIMULATOR_USER`` and ``ALERTS_USER`` to their
    passwords. The one provisioning of ``stationflow up`` and of compose's ``broker-init`` job.
    """
    from devices.dynsec import ALERTS_ROLE, COLLECTOR_ROLE, SIMULATOR_ROLE, DynsecAdmin

    async with DynsecAdmin(host, port, *admin) as dynsec:
        await dynsec.ensure_roles()
        await dynsec.ensure_service_client(COLLECTOR_USER, passwords[COLLECTOR_USER], COLLECTOR_ROLE)
        await dynsec.ensure_service_client(SIMULATOR_USER, passwords[SIMULATOR_USER], SIMULATOR_ROLE)
        await dynsec.ensure_service_client(ALERTS_USER, passwords[ALERTS_USER], ALERTS_ROLE)


def provision_service_accounts(mosquitto: Component, state_dir: Path) -> ServiceAccounts:
    """Create (or check) the roles and the service accounts in a dynsec-enabled Mosquitto."""
    if mosquitto.username is None or mosquitto.password is None:
        raise ValueError("mosquitto was not started with dynamic security")
    admin = (mosquitto.username, mosquitto.password)
    passwords = _passwords(state_dir / "service-accounts.json")
    asyncio.run(ensure_service_accounts(mosquitto.host, mosquitto.port, admin, passwords))
    return ServiceAccounts(
        collector=(COLLECTOR_USER, passwords[COLLECTOR_USER]),
        simulator=(SIMULATOR_USER, passwords[SIMULATOR_USER]),
        alerts=(ALERTS_USER, passwords[ALERTS_USER]),
        admin=admin,
    )
