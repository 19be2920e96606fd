"""MQTT channel: publish the alert as JSON (QoS 1, confirmed by the broker) for sirens and
LED boards at the station. The member's target is the topic, e.g. ``stations/ST01/alerts``;
``{station}`` in it is replaced by the alert's station id."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from alerts.channels import ChannelError, Notification

__all__ = ["MqttChannel"]


class MqttChannel:
    """A paho client with its own network thread; reconnects by itself."""

    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "stationflow-alerts",
        timeout_s: float = 5.0,
    ) -> None:
        self.timeout_s = timeout_s
        self._connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.reconnect_delay_set(1, 10)
        self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()
        self._reason = "not connected yet"

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            self._reason = f"broker refused the connection: {reason}"
            self._connected.clear()
        else:
            self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        self._reason = f"disconnected: {reason}"
        self._connected.clear()

    def topic(self, note: Notification) -> str:
        """The topic to publish to."""
        station = str(note.payload.get("station_id") or note.payload.get("device_id") or "unknown")
        return note.target.replace("{station}", station)

    async def send(self, note: Notification) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        if not self._connected.is_set():
            raise ChannelError(f"MQTT broker not connected ({self._reason})")
        payload = orjson.dumps(
            {**note.payload, "notification_id": note.id, "title": note.title, "title_zh": note.title_zh}
        )
        info = self._client.publish(self.topic(note), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ChannelError(f"MQTT publish failed: {mqtt.error_string(info.rc)}")
        try:
            await asyncio.to_thread(info.wait_for_publish, self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise ChannelError(f"MQTT publish not confirmed: {exc}") from exc
        if not info.is_published():
            raise ChannelError(f"MQTT broker did not confirm the publish within {self.timeout_s} s")

    async def aclose(self) -> None:
        """Disconnect and stop the network thread."""
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()
