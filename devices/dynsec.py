"""Async client for Mosquitto's dynamic-security control API (clients, roles, ACLs over MQTT).

Commands are JSON published to ``$CONTROL/dynamic-security/v1``; the plugin answers on
``$CONTROL/dynamic-security/v1/response`` with one entry per command, matched here by the
``correlationData`` each command carries. Any plugin error is raised as :class:`DynsecError`
with the plugin's text; no answer within ``timeout`` raises :class:`DynsecTimeout`.

Roles (see ``ROLE_ACLS``): each device has a private role ``device:<id>`` that lets it publish
only under ``devices/<id>/`` (plus the shared, ACL-free ``device`` role that marks it),
``collector`` may subscribe to and receive every device subtopic and ``$SYS``, ``simulator``
may publish under any device's ``devices/<id>/``, ``alerts`` may publish notifications under
``stations/+/alerts`` and ``alerts/#``. Everything not allowed by a role is denied (``DEFAULT_ACL_ACCESS``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import gmqtt

from stationflow.contracts import DEVICE_ID_PATTERN

__all__ = [
    "ALERTS_ROLE",
    "COLLECTOR_ROLE",
    "CONTROL_TOPIC",
    "DEFAULT_ACL_ACCESS",
    "DEVICE_ROLE",
    "RESPONSE_TOPIC",
    "ROLE_ACLS",
    "SIMULATOR_ROLE",
    "Acl",
    "DynsecAdmin",
    "DynsecError",
    "DynsecTimeout",
    "check_device_id",
    "device_role",
    "device_role_acls",
    "new_password",
]

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
# A loopback broker answers in milliseconds; seconds of silence mean it is gone or overloaded.
DEFAULT_TIMEOUT_S = 10.0
KEEPALIVE_S = 30
MQTT_V5 = 5

DEVICE_ROLE = "device"
COLLECTOR_ROLE = "collector"
SIMULATOR_ROLE = "simulator"
ALERTS_ROLE = "alerts"  # the alert service's MQTT channel (sirens, LED boards at stations)

# Plugin error texts (mosquitto 2.0.x) that idempotent operations treat as "already so".
ERR_CLIENT_NOT_FOUND = "Client not found"
ERR_ROLE_NOT_FOUND = "Role not found"

_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
# 32 random bytes -> 43 URL-safe characters (256 bits).
PASSWORD_BYTES = 32


def new_password() -> str:
    """A random URL-safe password (43 characters, 256 bits)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


@dataclass(frozen=True)
class Acl:
    """One dynsec ACL entry of a role."""

    acltype: str
    topic: str
    allow: bool = True

    def as_json(self) -> dict[str, Any]:
        """The entry as the plugin's JSON (priority 0: entries of one role never overlap)."""
        return {"acltype": self.acltype, "topic": self.topic, "allow": self.allow, "priority": 0}


# Mosquitto 2.0.11 dynsec does NOT substitute %c / %u in ACL topics (measured: an ACL
# `devices/%c/#` only matches the literal topic), so each device gets a private role
# `device:<id>` (see device_role_acls) on top of the shared, ACL-free role `device`.
ROLE_ACLS: Mapping[str, tuple[Acl, ...]] = {
    DEVICE_ROLE: (),
    COLLECTOR_ROLE: (
        # every device subtopic (readings, senml, hj212; others are dead-lettered: ingest.topics)
        Acl("subscribePattern", "$share/+/devices/#"),
        Acl("subscribePattern", "devices/#"),
        Acl("subscribePattern", "$SYS/#"),
        Acl("publishClientReceive", "devices/#"),
        Acl("publishClientReceive", "$SYS/#"),
    ),
    SIMULATOR_ROLE: (Acl("publishClientSend", "devices/+/#"),),
    ALERTS_ROLE: (Acl("publishClientSend", "stations/+/alerts"), Acl("publishClientSend", "alerts/#")),
}

# Deny by default; unsubscribing stays allowed (it grants nothing, and denying it only makes
# clients' clean shutdowns fail).
DEFAULT_ACL_ACCESS: Mapping[str, bool] = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


class DynsecError(RuntimeError):
    """The dynamic-security plugin refused a command (``error`` is the plugin's text)."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"dynsec {command} failed: {error}")
        self.command = command
        self.error = error


class DynsecTimeout(DynsecError):
    """No answer from the plugin in time (broker gone, or the admin lacks the ACLs)."""


def device_role(device_id: str) -> str:
    """Name of the device's private role."""
    return f"{DEVICE_ROLE}:{device_id}"


def device_role_acls(device_id: str) -> tuple[Acl, ...]:
    """The device's private ACLs: publish under its own ``devices/<id>/`` topics, nothing else."""
    return (Acl("publishClientSend", f"devices/{check_device_id(device_id)}/#"),)


def check_device_id(device_id: str) -> str:
    """``device_id`` if it is a valid device id (it becomes a username and a topic level)."""
    if not _DEVICE_ID.match(device_id):
        raise ValueError(f"invalid device id {device_id!r}: 1-128 of letters, digits and _ . : -")
    return device_id


class DynsecAdmin:
    """An MQTT v5 admin connection to the dynsec plugin; ``start()``/``stop()`` or ``async with``."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        client_id: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._subscribed: asyncio.Future[list[int]] | None = None
        self._client = gmqtt.Client(client_id or f"dynsec-admin-{uuid.uuid4().hex[:12]}")
        self._client.set_auth_credentials(username, password)
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and subscribe to the response topic (raises on refusal or timeout)."""
        try:
            await asyncio.wait_for(self._connect(), self.timeout)
        except TimeoutError as exc:
            await self._close()
            raise DynsecTimeout("connect", f"no CONNACK/SUBACK within {self.timeout} s") from exc
        except gmqtt.MQTTConnectError as exc:
            await self._close()
            raise DynsecError("connect", f"{self.host}:{self.port} refused the admin login: {exc}") from exc
        except BaseException:
            await self._close()
            raise
        self._started = True
        logger.info("dynsec admin connected host=%s port=%s", self.host, self.port)

    async def _connect(self) -> None:
        await self._client.connect(self.host, self.port, keepalive=KEEPALIVE_S, version=MQTT_V5)
        self._subscribed = asyncio.get_running_loop().create_future()
        self._client.subscribe(RESPONSE_TOPIC, qos=1)
        granted = await self._subscribed
        if not granted or granted[0] >= 0x80:
            raise DynsecError("subscribe", f"{RESPONSE_TOPIC} refused (reason codes {granted})")

    async def stop(self) -> None:
        """Disconnect; commands still waiting fail. Idempotent."""
        self._started = False
        await self._close()
        self._fail_pending("admin client stopped")

    async def _close(self) -> None:
        """Disconnect (if connected) and stop gmqtt's automatic reconnects."""
        await _disconnect(self._client)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- MQTT callbacks ----------------------------------------------------------------

    def _on_subscribe(self, client: Any, mid: int, qos: Any, properties: Any) -> None:
        if self._subscribed is not None and not self._subscribed.done():
            self._subscribed.set_result([int(q) for q in qos])

    def _on_message(self, client: Any, topic: str | bytes, payload: bytes, qos: int, properties: Any) -> int:
        try:
            body = json.loads(payload)
            responses = body["responses"]
        except (ValueError, KeyError, TypeError):
            logger.warning("dynsec unreadable response payload=%r", bytes(payload)[:200])
            return 0
        for response in responses:
            future = self._pending.pop(str(response.get("correlationData")), None)
            if future is not None and not future.done():
                future.set_result(response)
        return 0

    def _on_disconnect(self, client: Any, packet: Any, exc: BaseException | None = None) -> None:
        if self._started:
            logger.warning("dynsec admin disconnected reason=%r", exc)
        self._fail_pending(f"connection lost ({exc!r})")

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(DynsecError("command", reason))

    # -- commands ----------------------------------------------------------------------

    async def execute(self, command: str, **fields: Any) -> dict[str, Any]:
        """Run one plugin command; return its ``data`` (empty if none), raise its error."""
        if not self._started:
            raise DynsecError(command, "admin client not started")
        correlation = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = future
        message = {"commands": [{"command": command, "correlationData": correlation, **fields}]}
        self._client.publish(CONTROL_TOPIC, json.dumps(message).encode(), qos=1)
        try:
            response = await asyncio.wait_for(future, self.timeout)
        except TimeoutError as exc:
            raise DynsecTimeout(command, f"no response within {self.timeout} s") from exc
        finally:
            self._pending.pop(correlation, None)
        if response.get("error"):
            raise DynsecError(command, str(response["error"]))
        data: dict[str, Any] = response.get("data") or {}
        return data

    async def _absent_ok(self, error: str, command: str, **fields: Any) -> bool:
        """Run a command; False instead of raising when the plugin answers ``error``."""
        try:
            await self.execute(command, **fields)
        except DynsecError as exc:
            if exc.error != error:
                raise
            return False
        return True

    # -- roles -------------------------------------------------------------------------

    async def ensure_roles(self) -> None:
        """Create/repair the device, collector and simulator roles and deny-by-default access."""
        for role, acls in ROLE_ACLS.items():
            await self._ensure_role(role, acls)
        defaults = [{"acltype": kind, "allow": allow} for kind, allow in DEFAULT_ACL_ACCESS.items()]
        await self.execute("setDefaultACLAccess", acls=defaults)

    async def _ensure_role(self, role: str, wanted: tuple[Acl, ...]) -> None:
        """Make ``role`` hold exactly ``wanted``, sending commands only for what differs."""
        current = await self.get_role_acls(role)
        if current is None:
            await self.execute("createRole", rolename=role, acls=[acl.as_json() for acl in wanted])
            logger.info("dynsec role created role=%s acls=%d", role, len(wanted))
            return
        for acl in current - set(wanted):
            await self.execute("removeRoleACL", rolename=role, acltype=acl.acltype, topic=acl.topic)
            logger.warning(
                "dynsec role acl removed role=%s acltype=%s topic=%s", role, acl.acltype, acl.topic
            )
        for acl in wanted:
            if acl not in current:
                await self.execute("addRoleACL", rolename=role, **acl.as_json())
                logger.info("dynsec role acl added role=%s acltype=%s topic=%s", role, acl.acltype, acl.topic)

    async def get_role_acls(self, role: str) -> set[Acl] | None:
        """The role's ACLs, or None if the role does not exist."""
        try:
            data = await self.execute("getRole", rolename=role)
        except DynsecError as exc:
            if exc.error == ERR_ROLE_NOT_FOUND:
                return None
            raise
        acls = data.get("role", {}).get("acls", [])
        return {Acl(a["acltype"], a["topic"], bool(a.get("allow", False))) for a in acls}

    # -- clients -----------------------------------------------------------------------

    async def get_client(self, username: str) -> dict[str, Any] | None:
        """The plugin's description of a client (roles, ``disabled``...), or None if absent."""
        try:
            data = await self.execute("getClient", username=username)
        except DynsecError as exc:
            if exc.error == ERR_CLIENT_NOT_FOUND:
                return None
            raise
        client: dict[str, Any] = data.get("client", {})
        return client

    async def create_device(self, device_id: str) -> str:
        """Create the device's client and private role (client id pinned); return its password."""
        await self._ensure_role(device_role(device_id), device_role_acls(device_id))
        password = new_password()
        await self.execute(
            "createClient",
            username=device_id,
            password=password,
            clientid=device_id,
            roles=[{"rolename": DEVICE_ROLE}, {"rolename": device_role(device_id)}],
        )
        logger.info("dynsec device created device_id=%s", device_id)
        return password

    async def set_password(self, device_id: str) -> str:
        """Give the client a new random password and return it (the old one stops working)."""
        password = new_password()
        await self.execute("setClientPassword", username=device_id, password=password)
        logger.info("dynsec password rotated username=%s", device_id)
        return password

    async def disable(self, device_id: str) -> None:
        """Refuse the client's connections; the broker drops a connected one at once."""
        await self.execute("disableClient", username=device_id)
        logger.info("dynsec client disabled username=%s", device_id)

    async def enable(self, device_id: str) -> None:
        """Let a disabled client connect again with its current password."""
        await self.execute("enableClient", username=device_id)
        logger.info("dynsec client enabled username=%s", device_id)

    async def delete(self, device_id: str) -> None:
        """Delete the client (dropping a connected one) and its private role; absent is fine."""
        deleted = await self._absent_ok(ERR_CLIENT_NOT_FOUND, "deleteClient", username=device_id)
        await self._absent_ok(ERR_ROLE_NOT_FOUND, "deleteRole", rolename=device_role(device_id))
        logger.info("dynsec client deleted username=%s existed=%s", device_id, deleted)

    async def ensure_service_client(self, username: str, password: str, role: str) -> None:
        """Create or update a service client (collector, simulator) with this password and role.

        Mosquitto drops a connected client whose password or roles change, so an existing
        client is only touched where it differs (the password is checked by logging in).
        """
        if role not in ROLE_ACLS:
            raise ValueError(f"unknown role {role!r}: one of {sorted(ROLE_ACLS)}")
        client = await self.get_client(username)
        if client is None:
            await self.execute(
                "createClient", username=username, password=password, roles=[{"rolename": role}]
            )
            logger.info("dynsec service client created username=%s role=%s", username, role)
            return
        if client.get("disabled"):
            await self.enable(username)
        if not await self.password_works(username, password):
            await self.execute("setClientPassword", username=username, password=password)
            logger.info("dynsec service password set username=%s", username)
        await self._set_only_role(username, client, role)

    async def password_works(self, username: str, password: str) -> bool:
        """Whether the broker accepts this login now (a throwaway connection, own client id)."""
        probe = gmqtt.Client(f"dynsec-check-{uuid.uuid4().hex[:12]}")
        probe.set_auth_credentials(username, password)
        try:
            await asyncio.wait_for(probe.connect(self.host, self.port, version=MQTT_V5), self.timeout)
        except gmqtt.MQTTConnectError:
            return False
        except TimeoutError as exc:
            raise DynsecTimeout("login check", f"no CONNACK within {self.timeout} s") from exc
        finally:
            await _disconnect(probe)
        return True

    async def _set_only_role(self, username: str, client: Mapping[str, Any], role: str) -> None:
        """Attach ``role`` to the client and detach every other role."""
        current = {str(r["rolename"]) for r in client.get("roles", [])}
        for other in sorted(current - {role}):
            await self.execute("removeClientRole", username=username, rolename=other)
        if role not in current:
            await self.execute("addClientRole", username=username, rolename=role)
            logger.info("dynsec client role set username=%s role=%s", username, role)


async def _disconnect(client: Any) -> None:
    """Disconnect a gmqtt client if it got connected, and stop its automatic reconnects."""
    client.stop_reconnect()
    if client._connection is not None and client.is_connected:  # no public "ever connected"
        await client.disconnect()
