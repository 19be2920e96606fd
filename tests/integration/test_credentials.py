"""Device credentials on a real Mosquitto 2.0 with dynamic security: passwords, ACLs, retire.

Device and collector clients are paho-mqtt MQTT v5 clients (v5, so that a refused publish is
reported as PUBACK 0x87 instead of being silently dropped); the admin is :class:`DynsecAdmin`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices.credentials import (
    COLLECTOR_ROLE,
    DEVICE_ROLE,
    ROLE_ACLS,
    SIMULATOR_ROLE,
    DynsecAdmin,
    DynsecError,
    DynsecTimeout,
    new_password,
)
from devices.dynsec import Acl, device_role
from stationflow.stack import Component, start_mosquitto
from tests.conftest import NameFactory

# Generous bounds for a loaded CI runner; each wait ends as soon as its condition holds.
MQTT_TIMEOUT = 10.0
POLL = 0.02
# After a refused publish, how long to keep watching that nothing reaches the subscriber.
# The allowed message published right after it is the real fence; this only bounds the wait.
QUIET_S = 0.5
# PUBACK/SUBACK reason codes below 0x80 are successes; an accepted publish nobody is
# subscribed to is acknowledged with 0x10 "No matching subscribers".
SUCCESS_BELOW = 0x80
NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86
REFUSED_CONNECT = {BAD_CREDENTIALS, NOT_AUTHORIZED}
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"  # what the collector subscribes to


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = MQTT_TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL)


class Probe:
    """A paho MQTT v5 client whose events (CONNACK, PUBACK, SUBACK, messages) can be awaited."""

    def __init__(self, broker: Component, username: str, password: str, client_id: str) -> None:
        self.broker = broker
        self.username = username
        self.password = password
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.lock = threading.Lock()
        self.connack: ReasonCode | None = None
        self.disconnected: ReasonCode | None = None
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.connack = rc
        if rc.is_failure:
            client.disconnect()  # no automatic retries with refused credentials

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.disconnected = rc

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        self.pubacks[mid] = rc.value

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        self.subacks[mid] = [rc.value for rc in rcs]

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))

    async def connect(self) -> ReasonCode:
        """Connect and return the CONNACK reason code."""
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        await wait_for(lambda: self.connack is not None, "CONNACK")
        assert self.connack is not None
        return self.connack

    async def publish(self, topic: str, payload: bytes) -> int:
        """Publish QoS 1 and return the PUBACK reason code (0 or 0x10 on success)."""
        mid = self.client.publish(topic, payload, qos=1).mid
        await wait_for(lambda: mid in self.pubacks, f"PUBACK for {topic}")
        return self.pubacks[mid]

    async def subscribe(self, topic_filter: str) -> list[int]:
        """Subscribe QoS 1 and return the SUBACK reason codes."""
        _, sent_mid = self.client.subscribe(topic_filter, qos=1)
        assert sent_mid is not None
        mid = sent_mid
        await wait_for(lambda: mid in self.subacks, f"SUBACK for {topic_filter}")
        return self.subacks[mid]

    def received(self) -> list[tuple[str, bytes]]:
        """Messages received so far."""
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Component]:
    """Mosquitto with dynamic security, shared by this module (tests use distinct names)."""
    with start_mosquitto(tmp_path_factory.mktemp("dynsec"), dynsec=True) as component:
        yield component


@pytest.fixture
async def admin(broker: Component) -> AsyncIterator[DynsecAdmin]:
    """A started admin client; the roles and default ACL access are in place."""
    assert broker.username is not None and broker.password is not None
    async with DynsecAdmin(broker.host, broker.port, broker.username, broker.password) as client:
        await client.ensure_roles()
        yield client


@pytest.fixture
def probes(broker: Component) -> Iterator[Callable[[str, str, str | None], Probe]]:
    """Make probes (username, password, client id = username unless given); all closed after."""
    made: list[Probe] = []

    def make(username: str, password: str, client_id: str | None = None) -> Probe:
        made.append(Probe(broker, username, password, client_id or username))
        return made[-1]

    yield make
    for probe in made:
        probe.close()


ProbeFactory = Callable[[str, str, str | None], Probe]


async def connected(probes: ProbeFactory, username: str, password: str) -> Probe:
    """A probe that connected successfully."""
    probe = probes(username, password, None)
    rc = await probe.connect()
    assert not rc.is_failure, f"{username} refused: {rc}"
    return probe


async def collector(admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory) -> Probe:
    """A collector-role client subscribed to ``$share/g/devices/#`` (every device subtopic)."""
    username, password = unique_name("collector"), new_password()
    await admin.ensure_service_client(username, password, COLLECTOR_ROLE)
    probe = await connected(probes, username, password)
    assert await probe.subscribe("$share/g/devices/#") == [1]
    return probe


async def test_device_publishes_and_collector_receives(
    admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory
) -> None:
    sink = await collector(admin, probes, unique_name)
    device_id = unique_name("air")
    device = await connected(probes, device_id, await admin.create_device(device_id))

    sent = [(f"devices/{device_id}/{sub}", sub.encode()) for sub in ("readings", "senml", "hj212", "other")]
    for topic, payload in sent:
        assert await device.publish(topic, payload) < SUCCESS_BELOW
    await wait_for(lambda: len(sink.received()) == len(sent), "every subtopic at the collector")
    assert sorted(sink.received()) == sorted(sent)


async def test_collector_reads_readings_and_sys_but_cannot_publish(
    admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory
) -> None:
    sink = await collector(admin, probes, unique_name)
    assert await sink.subscribe("devices/+/readings") == [1]
    assert await sink.subscribe(SYS_DROPPED) == [1]
    assert await sink.subscribe("devices/+/status") == [1]  # every device subtopic is heard
    assert await sink.subscribe("stations/+/alerts") == [NOT_AUTHORIZED]
    assert await sink.subscribe("#") == [NOT_AUTHORIZED]
    assert await sink.publish("devices/air-1/readings", b"forged") == NOT_AUTHORIZED
    # sys_interval 1: the drop counter comes within about a second.
    await wait_for(lambda: any(topic == SYS_DROPPED for topic, _ in sink.received()), SYS_DROPPED)


async def test_wrong_password_is_refused(
    admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory
) -> None:
    device_id = unique_name("air")
    await admin.create_device(device_id)
    rc = await probes(device_id, "not-the-password", None).connect()
    assert rc.value in REFUSED_CONNECT, str(rc)


async def test_device_cannot_publish_for_another_device(
    admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory
) -> None:
    sink = await collector(admin, probes, unique_name)
    device_id, other_id = unique_name("air"), unique_name("air")
    device = await connected(probes, device_id, await admin.create_device(device_id))
    await admin.create_device(other_id)

    assert await device.publish(f"devices/{other_id}/readings", b"spoofed") == NOT_AUTHORIZED
    assert await device.publish("alerts/anything", b"spoofed") == NOT_AUTHORIZED
    assert await device.publish(f"devices/{device_id}/readings", b"own") < SUCCESS_BELOW
    await wait_for(lambda: bool(sink.received()), "the device's own reading")
    await asyncio.sleep(QUIET_S)
    assert sink.received() == [(f"devices/{device_id}/readings", b"own")]


async def test_device_cannot_subscribe_or_take_another_client_id(
    admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory
) -> None:
    device_id, other_id = unique_name("air"), unique_name("air")
    password = await admin.create_device(device_id)
    await admin.create_device(other_id)
    device = await connected(probes, device_id, password)
    assert await device.subscribe("devices/+/readings") == [NOT_AUTHORIZED]
    # A device's client id is pinned to its username: it cannot kick another device off.
    rc = await probes(device_id, password, other_id).connect()
    assert rc.value in REFUSED_CONNECT, str(rc)


async def test_simulator_publishes_for_any_device(
    admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory
) -> None:
    sink = await collector(admin, probes, unique_name)
    username, password = unique_name("sim"), new_password()
    await admin.ensure_service_client(username, password, SIMULATOR_ROLE)
    simulator = await connected(probes, username, password)
    assert await simulator.publish("devices/air-1/readings", b"a") < SUCCESS_BELOW
    assert await simulator.publish("devices/dtu-1/hj212", b"b") < SUCCESS_BELOW
    assert await simulator.publish("stations/s1/alerts", b"c") == NOT_AUTHORIZED
    assert await simulator.publish("devices", b"d") == NOT_AUTHORIZED
    await wait_for(lambda: len(sink.received()) == 2, "the simulated messages")
    assert sorted(sink.received()) == [("devices/air-1/readings", b"a"), ("devices/dtu-1/hj212", b"b")]


async def test_password_rotation(admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory) -> None:
    device_id = unique_name("river")
    old = await admin.create_device(device_id)
    device = await connected(probes, device_id, old)

    new = await admin.set_password(device_id)
    assert new != old
    # mosquitto 2.0.11 drops a client whose password changes; its old password no longer works.
    await wait_for(lambda: device.disconnected is not None, "the broker to drop the old session")
    device.close()
    assert (await probes(device_id, old, None).connect()).value in REFUSED_CONNECT
    again = await connected(probes, device_id, new)
    assert await again.publish(f"devices/{device_id}/readings", b"new") < SUCCESS_BELOW


async def test_disable_kicks_the_device_and_enable_restores_it(
    admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory
) -> None:
    device_id = unique_name("fridge")
    password = await admin.create_device(device_id)
    device = await connected(probes, device_id, password)

    await admin.disable(device_id)
    await wait_for(lambda: device.disconnected is not None, "the broker to drop the disabled device")
    device.close()
    assert (await probes(device_id, password, None).connect()).value in REFUSED_CONNECT

    await admin.enable(device_id)
    again = await connected(probes, device_id, password)
    assert await again.publish(f"devices/{device_id}/readings", b"back") < SUCCESS_BELOW


async def test_delete_kicks_the_device_and_is_idempotent(
    admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory
) -> None:
    device_id = unique_name("gauge")
    password = await admin.create_device(device_id)
    device = await connected(probes, device_id, password)

    await admin.delete(device_id)
    await wait_for(lambda: device.disconnected is not None, "the broker to drop the deleted device")
    await admin.delete(device_id)
    assert await admin.get_client(device_id) is None
    assert (await probes(device_id, password, None).connect()).value in REFUSED_CONNECT


async def test_admin_surfaces_plugin_errors(admin: DynsecAdmin, unique_name: NameFactory) -> None:
    device_id = unique_name("air")
    await admin.create_device(device_id)
    with pytest.raises(DynsecError, match="already exists"):
        await admin.create_device(device_id)
    with pytest.raises(DynsecError, match="not found"):
        await admin.disable(unique_name("missing"))
    with pytest.raises(ValueError, match="invalid device id"):
        await admin.create_device("devices/+/x")


async def test_ensure_roles_is_idempotent_and_repairs(admin: DynsecAdmin) -> None:
    await admin.execute("addRoleACL", rolename=DEVICE_ROLE, acltype="subscribePattern", topic="#", allow=True)
    await admin.execute(
        "removeRoleACL", rolename=COLLECTOR_ROLE, acltype="publishClientReceive", topic="$SYS/#"
    )
    await admin.ensure_roles()
    await admin.ensure_roles()
    for role, wanted in ROLE_ACLS.items():
        assert await admin.get_role_acls(role) == set(wanted), role


async def test_device_role_allows_only_its_own_topics(admin: DynsecAdmin, unique_name: NameFactory) -> None:
    device_id = unique_name("air")
    await admin.create_device(device_id)
    assert await admin.get_role_acls(device_role(device_id)) == {
        Acl("publishClientSend", f"devices/{device_id}/#", allow=True)
    }
    client = await admin.get_client(device_id)
    assert client is not None
    assert client["clientid"] == device_id
    assert [r["rolename"] for r in client["roles"]] == [DEVICE_ROLE, device_role(device_id)]
    await admin.delete(device_id)
    assert await admin.get_role_acls(device_role(device_id)) is None


async def test_ensure_service_client_updates_password_and_role(
    admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory
) -> None:
    username = unique_name("svc")
    await admin.ensure_service_client(username, "first-password", SIMULATOR_ROLE)
    await admin.ensure_service_client(username, "second-password", COLLECTOR_ROLE)
    client = await admin.get_client(username)
    assert client is not None
    assert [r["rolename"] for r in client["roles"]] == [COLLECTOR_ROLE]
    assert (await probes(username, "first-password", None).connect()).value in REFUSED_CONNECT
    await connected(probes, username, "second-password")


async def test_ensure_service_client_leaves_a_connected_service_alone(
    admin: DynsecAdmin, probes: ProbeFactory, unique_name: NameFactory
) -> None:
    sink = await collector(admin, probes, unique_name)
    await admin.ensure_service_client(sink.username, sink.password, COLLECTOR_ROLE)
    assert await admin.password_works(sink.username, sink.password)
    assert not await admin.password_works(sink.username, "wrong")
    await asyncio.sleep(QUIET_S)  # a kick would have arrived by now
    assert sink.disconnected is None


async def test_admin_times_out_with_a_clear_error(
    admin: DynsecAdmin, broker: Component, unique_name: NameFactory
) -> None:
    # A client that reads the response topic but may not send commands: the broker drops
    # each command (PUBACK 0x87), so no reply ever comes.
    role, username, password = unique_name("mute"), unique_name("mute"), new_password()
    acls = [
        {"acltype": "subscribePattern", "topic": "$CONTROL/dynamic-security/#", "allow": True},
        {"acltype": "publishClientReceive", "topic": "$CONTROL/dynamic-security/#", "allow": True},
    ]
    await admin.execute("createRole", rolename=role, acls=acls)
    await admin.execute("createClient", username=username, password=password, roles=[{"rolename": role}])
    async with DynsecAdmin(broker.host, broker.port, username, password, timeout=0.5) as mute:
        started = time.monotonic()
        with pytest.raises(DynsecTimeout, match=r"dynsec getRole failed: no response within 0.5 s"):
            await mute.get_role_acls("device")
        assert time.monotonic() - started < MQTT_TIMEOUT


async def test_admin_with_wrong_password_fails_to_start(broker: Component) -> None:
    assert broker.username is not None
    admin = DynsecAdmin(broker.host, broker.port, broker.username, "wrong", timeout=5.0)
    with pytest.raises(DynsecError, match=r"dynsec connect failed: .* refused the admin login"):
        await admin.start()
