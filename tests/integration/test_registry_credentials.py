"""Registry-issued MQTT credentials on a real Mosquitto (dynamic security) with a real Kafka (Tansu).

A device registered through the API logs in with the returned credentials, publishes QoS 1 only
to its own topic; rotation, retirement and deletion take effect in the broker at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devices.main import create_app
from devices.settings import RegistrySettings
from stationflow.stack import Component, start_mosquitto
from tests.integration.test_credentials import NOT_AUTHORIZED, REFUSED_CONNECT, SUCCESS_BELOW, Probe, wait_for

ADMIN = {"X-API-Key": "integration-admin"}


@pytest.fixture(scope="module")
def dynsec_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Component]:
    """Mosquitto with dynamic security for this module."""
    with start_mosquitto(tmp_path_factory.mktemp("registry-dynsec"), dynsec=True) as component:
        yield component


def _settings(broker: Component, tansu: Component, topic_prefix: str, tmp_path: Path) -> RegistrySettings:
    return RegistrySettings(
        kafka_bootstrap=tansu.url,
        topic_prefix=topic_prefix,
        state_dir=tmp_path,
        registry_admin_key=ADMIN["X-API-Key"],  # type: ignore[arg-type]
        registry_group_id=f"{topic_prefix}registry",
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        registry_dynsec_username=broker.username,
        registry_dynsec_password=broker.password,  # type: ignore[arg-type]
    )


class Devices:
    """Paho probes made from credentials; all closed at the end."""

    def __init__(self, broker: Component) -> None:
        self.broker = broker
        self.made: list[Probe] = []

    def probe(self, username: str, password: str) -> Probe:
        """A probe (client id = username, as the broker pins it)."""
        self.made.append(Probe(self.broker, username, password, username))
        return self.made[-1]

    def connect(self, username: str, password: str) -> Probe:
        """A probe that logged in."""
        probe = self.probe(username, password)
        rc = asyncio.run(probe.connect())
        assert not rc.is_failure, f"{username} refused: {rc}"
        return probe

    def refused(self, username: str, password: str) -> bool:
        """Whether the broker refuses this login."""
        return asyncio.run(self.probe(username, password).connect()).value in REFUSED_CONNECT

    def close(self) -> None:
        """Close every probe."""
        for probe in self.made:
            probe.close()


@pytest.fixture
def mqtt_devices(dynsec_broker: Component) -> Iterator[Devices]:
    """Probes against the module's broker."""
    devices = Devices(dynsec_broker)
    yield devices
    devices.close()


def _dropped(probe: Probe) -> None:
    asyncio.run(wait_for(lambda: probe.disconnected is not None, "the broker to drop the device"))
    probe.close()


def _integrator(client: TestClient) -> dict[str, str]:
    answer = client.post("/api-keys", json={"name": "installer", "role": "integrator"})
    assert answer.status_code == 201, answer.text
    return {"X-API-Key": answer.json()["token"]}


def test_registered_device_lifecycle_on_the_broker(
    dynsec_broker: Component, tansu: Component, topic_prefix: str, tmp_path: Path, mqtt_devices: Devices
) -> None:
    settings = _settings(dynsec_broker, tansu, topic_prefix, tmp_path)
    with TestClient(create_app(settings), headers=ADMIN) as client:
        client.headers.update(_integrator(client))  # the rest of the test runs as an integrator
        assert client.post("/stations", json={"id": "st-r", "name": "R", "kind": "rain"}).status_code == 201
        created = client.post("/devices", json={"id": "rg-a", "type": "rain-gauge", "station_id": "st-r"})
        assert created.status_code == 201, created.text
        mqtt = created.json()["mqtt"]
        assert mqtt["username"] == "rg-a" and mqtt["topic"] == "devices/rg-a/readings"
        assert (mqtt["host"], mqtt["port"]) == (dynsec_broker.host, dynsec_broker.port)
        other = client.post("/devices", json={"id": "rg-b", "type": "rain-gauge"})
        assert other.status_code == 201, other.text

        device = mqtt_devices.connect("rg-a", mqtt["password"])
        assert asyncio.run(device.publish(mqtt["topic"], b'{"r":1}')) < SUCCESS_BELOW
        assert asyncio.run(device.publish("devices/rg-b/readings", b"spoof")) == NOT_AUTHORIZED
        assert mqtt_devices.refused("rg-a", "not-the-password")

        rotated = client.post("/devices/rg-a/credentials")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["password"]
        assert new != mqtt["password"]
        _dropped(device)
        assert mqtt_devices.refused("rg-a", mqtt["password"])
        device = mqtt_devices.connect("rg-a", new)
        assert asyncio.run(device.publish(mqtt["topic"], b'{"r":2}')) < SUCCESS_BELOW

        assert client.patch("/devices/rg-a", json={"status": "retired"}).is_success
        _dropped(device)
        assert mqtt_devices.refused("rg-a", new)
        assert client.patch("/devices/rg-a", json={"status": "active"}).is_success
        device = mqtt_devices.connect("rg-a", new)

        assert client.delete("/devices/rg-a").is_success
        _dropped(device)
        assert mqtt_devices.refused("rg-a", new)


def test_import_issues_working_credentials(
    dynsec_broker: Component, tansu: Component, topic_prefix: str, tmp_path: Path, mqtt_devices: Devices
) -> None:
    settings = _settings(dynsec_broker, tansu, topic_prefix, tmp_path)
    text = "id,type\nimp-a,rain-gauge\nimp-b,rain-gauge\n"
    with TestClient(create_app(settings), headers=ADMIN) as client:
        report = client.post("/import/devices", content=text, headers={"Content-Type": "text/csv"}).json()
        assert report["created"] == 2, report
        again = client.post("/import/devices", content=text, headers={"Content-Type": "text/csv"}).json()
        assert again["credentials"] == [] and again["unchanged"] == 2
    for item in report["credentials"]:
        device = mqtt_devices.connect(item["device_id"], item["password"])
        topic = f"devices/{item['device_id']}/readings"
        assert asyncio.run(device.publish(topic, b"{}")) < SUCCESS_BELOW


def test_unreachable_broker_leaves_no_device(tansu: Component, topic_prefix: str, tmp_path: Path) -> None:
    """A broker that goes away mid-life: registration answers 502 and the device is not kept."""
    with start_mosquitto(tmp_path / "gone", dynsec=True) as broker:
        settings = _settings(broker, tansu, topic_prefix, tmp_path)
        with TestClient(create_app(settings), headers=ADMIN) as client:
            broker.stop()
            answer = client.post("/devices", json={"id": "rg-z", "type": "rain-gauge"})
            assert answer.status_code == 502, answer.text
            assert "not registered" in answer.json()["detail"]
            assert client.get("/devices/rg-z").status_code == 404
