"""The registry's seam to the MQTT broker's device accounts (Mosquitto dynamic security).

Routes speak to a :class:`BrokerAccounts`: :class:`DynsecAccounts` when the registry has the
dynsec admin login (``STATIONFLOW_REGISTRY_DYNSEC_USERNAME`` / ``..._PASSWORD``), else
:class:`NoBrokerAccounts`, which issues no credentials. Broker failures surface as
:class:`BrokerError`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from .dynsec import ERR_CLIENT_NOT_FOUND, DynsecAdmin, DynsecError
from .settings import RegistrySettings

__all__ = ["BrokerAccounts", "BrokerError", "DynsecAccounts", "NoBrokerAccounts", "open_broker_accounts"]

logger = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker could not carry out an account change (unreachable, refused, timed out)."""


class BrokerAccounts(Protocol):
    """Device accounts on the MQTT broker; passwords are returned in clear exactly once."""

    @property
    def enabled(self) -> bool:
        """Whether credentials are issued at all."""
        ...

    async def create(self, device_id: str) -> str | None:
        """Create the device's account; its password, or None when provisioning is off."""
        ...

    async def rotate(self, device_id: str) -> str | None:
        """Give the account a new password (creating a missing account); None when off."""
        ...

    async def disable(self, device_id: str) -> None:
        """Refuse the device's logins and drop its connection."""
        ...

    async def enable(self, device_id: str) -> None:
        """Accept the device's logins again."""
        ...

    async def delete(self, device_id: str) -> None:
        """Remove the account (absent is fine) and drop its connection."""
        ...


class NoBrokerAccounts:
    """No broker provisioning: nothing is issued, status changes touch no broker."""

    enabled = False

    async def create(self, device_id: str) -> str | None:
        """No credentials."""
        return None

    async def rotate(self, device_id: str) -> str | None:
        """No credentials."""
        return None

    async def disable(self, device_id: str) -> None:
        """Nothing to do."""

    async def enable(self, device_id: str) -> None:
        """Nothing to do."""

    async def delete(self, device_id: str) -> None:
        """Nothing to do."""


class DynsecAccounts:
    """Device accounts through a started :class:`DynsecAdmin`; plugin errors become BrokerError."""

    enabled = True

    def __init__(self, admin: DynsecAdmin) -> None:
        self.admin = admin

    async def create(self, device_id: str) -> str | None:
        """Create the client and its private role; its password."""
        try:
            return await self.admin.create_device(device_id)
        except DynsecError as exc:
            raise BrokerError(f"could not create the broker account of '{device_id}': {exc}") from exc

    async def rotate(self, device_id: str) -> str | None:
        """A new password; a client missing on the broker is created again."""
        try:
            return await self.admin.set_password(device_id)
        except DynsecError as exc:
            if exc.error != ERR_CLIENT_NOT_FOUND:
                raise BrokerError(f"could not rotate the password of '{device_id}': {exc}") from exc
        logger.warning("broker account missing, creating it device_id=%s", device_id)
        return await self.create(device_id)

    async def disable(self, device_id: str) -> None:
        """Disable the client (the broker drops it at once)."""
        try:
            await self.admin.disable(device_id)
        except DynsecError as exc:
            raise BrokerError(f"could not disable the broker account of '{device_id}': {exc}") from exc

    async def enable(self, device_id: str) -> None:
        """Enable the client again."""
        try:
            await self.admin.enable(device_id)
        except DynsecError as exc:
            raise BrokerError(f"could not enable the broker account of '{device_id}': {exc}") from exc

    async def delete(self, device_id: str) -> None:
        """Delete the client and its private role (idempotent)."""
        try:
            await self.admin.delete(device_id)
        except DynsecError as exc:
            raise BrokerError(f"could not delete the broker account of '{device_id}': {exc}") from exc


@asynccontextmanager
async def open_broker_accounts(settings: RegistrySettings) -> AsyncIterator[BrokerAccounts]:
    """DynsecAccounts on one long-lived admin connection when configured, else NoBrokerAccounts."""
    username, password = settings.registry_dynsec_username, settings.registry_dynsec_password
    if username is None or password is None:
        logger.info("broker provisioning off: no dynsec admin configured, devices get no MQTT credentials")
        yield NoBrokerAccounts()
        return
    admin = DynsecAdmin(settings.mqtt_host, settings.mqtt_port, username, password.get_secret_value())
    async with admin:
        await admin.ensure_roles()
        logger.info("broker provisioning on host=%s port=%s", settings.mqtt_host, settings.mqtt_port)
        yield DynsecAccounts(admin)
