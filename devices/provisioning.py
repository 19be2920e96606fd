"""MQTT credentials of registered devices: issue, rotate, follow status changes, remove.

The broker account of a device is its id as username with a random password; the registry
stores only the password's scrypt hash (``Device.mqtt_password_hash``). A device whose hash is
None has no broker account (registered while provisioning was off).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from stationflow.contracts import DeviceStatus

from . import crud
from .broker import BrokerAccounts, BrokerError
from .credentials import hash_password
from .importer import ImportResult
from .models import Device
from .schemas import MqttCredentials

__all__ = ["IssuedPassword", "Provisioner", "readings_topic", "status_action"]

logger = logging.getLogger(__name__)
RETIRED = DeviceStatus.RETIRED.value


def readings_topic(device_id: str) -> str:
    """Where a device publishes its readings."""
    return f"devices/{device_id}/readings"


def status_action(old: str, new: str) -> Literal["disable", "enable"] | None:
    """What a status change means for the broker account: retiring disables, un-retiring enables."""
    if new == RETIRED and old != RETIRED:
        return "disable"
    if old == RETIRED and new != RETIRED:
        return "enable"
    return None


@dataclass(frozen=True, slots=True)
class IssuedPassword:
    """A password issued to a device created by an import."""

    device_id: str
    password: str


@dataclass(slots=True)
class Provisioner:
    """The broker accounts plus the address handed to devices with their credentials."""

    broker: BrokerAccounts
    host: str
    port: int

    def credentials(self, device_id: str, password: str) -> MqttCredentials:
        """The login a device is given."""
        return MqttCredentials(
            username=device_id,
            password=password,
            host=self.host,
            port=self.port,
            topic=readings_topic(device_id),
        )

    async def _store_hash(self, session: Session, device_id: str, password: str) -> None:
        row = session.get(Device, device_id)
        if row is None:
            raise LookupError(f"device '{device_id}' vanished while its credentials were issued")
        row.mqtt_password_hash = await asyncio.to_thread(hash_password, password)
        session.commit()

    async def issue(self, session: Session, device_id: str) -> MqttCredentials | None:
        """Create the broker account of a committed device (disabled if retired); store the hash."""
        password = await self.broker.create(device_id)
        if password is None:
            return None
        row = session.get(Device, device_id)
        if row is not None and row.status == RETIRED:
            await self.broker.disable(device_id)
        await self._store_hash(session, device_id, password)
        logger.info("mqtt credentials issued device_id=%s", device_id)
        return self.credentials(device_id, password)

    async def rotate(self, session: Session, device: Device) -> MqttCredentials | None:
        """A new password (an account is created if the device has none); the old one stops working."""
        if device.mqtt_password_hash is None:
            return await self.issue(session, device.id)
        password = await self.broker.rotate(device.id)
        if password is None:
            return None
        await self._store_hash(session, device.id, password)
        logger.info("mqtt password rotated device_id=%s", device.id)
        return self.credentials(device.id, password)

    async def follow_status(self, device: Device, old: str, new: str) -> None:
        """Disable (retired) or enable (no longer retired) the device's broker account, if it has one."""
        action = status_action(old, new)
        if action is None or device.mqtt_password_hash is None:
            return
        if action == "disable":
            await self.broker.disable(device.id)
        else:
            await self.broker.enable(device.id)
        logger.info("mqtt account %sd device_id=%s status=%s", action, device.id, new)

    async def remove(self, device_id: str) -> None:
        """Delete the device's broker account (absent is fine)."""
        await self.broker.delete(device_id)

    async def discard(self, session: Session, device_id: str) -> None:
        """Undo a registration whose credentials failed: delete the row and any broker account."""
        session.rollback()
        row = session.get(Device, device_id)
        if row is not None:
            session.delete(row)
            # The relay may already have published the registration: follow it with a tombstone.
            crud.queue_changes(session, device_ids=[device_id])
            session.commit()
        try:
            await self.broker.delete(device_id)
        except BrokerError as exc:
            logger.warning("broker cleanup failed device_id=%s error=%s", device_id, exc)
        logger.warning("registration undone device_id=%s", device_id)

    async def follow_import(self, session: Session, result: ImportResult) -> list[IssuedPassword]:
        """Issue credentials to the imported new devices and follow status changes.

        A new device whose credentials fail is removed again and reported as a failed row; after
        one broker failure the remaining new devices are not attempted (and removed too).
        """
        issued = await self._issue_created(session, result)
        await self._follow_statuses(session, result)
        return issued

    async def _issue_created(self, session: Session, result: ImportResult) -> list[IssuedPassword]:
        issued: list[IssuedPassword] = []
        failure: BrokerError | None = None
        for row, device_id in list(result.created_ids):
            if failure is None:
                try:
                    mqtt = await self.issue(session, device_id)
                except BrokerError as exc:
                    failure = exc
                else:
                    issued.extend([IssuedPassword(device_id, mqtt.password)] if mqtt else [])
                    continue
            await self.discard(session, device_id)
            result.drop_created(row, device_id, f"not registered: MQTT credentials failed: {failure}")
        return issued

    async def _follow_statuses(self, session: Session, result: ImportResult) -> None:
        for row, device_id, old, new in result.status_changes:
            device = session.get(Device, device_id)
            if device is None:
                continue
            try:
                await self.follow_status(device, old, new)
            except BrokerError as exc:
                result.errors.append(
                    (row, f"status saved as '{new}' but the broker account was not updated: {exc}")
                )
