"""Admission of QoS 0 messages: how many may wait for Kafka at once, overall and per device.

QoS 1 deliveries are bounded by the broker (our Receive Maximum). QoS 0 deliveries are not:
gmqtt starts one task per message, and each holds its payload and decoded readings until Kafka
acknowledges the record, so one device publishing QoS 0 faster than Kafka acknowledges grew the
collector's memory without bound. Past either limit a QoS 0 message is shed (QoS 0 promises no
delivery); the collector counts and reports what it sheds, per device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DeviceLabels", "Qos0Gate"]


@dataclass(slots=True)
class Qos0Gate:
    """Counts QoS 0 messages in flight, overall and per key (the MQTT topic names the device)."""

    max_inflight: int
    max_per_device: int
    inflight: int = 0
    _per_device: dict[str, int] = field(default_factory=dict)

    def try_acquire(self, key: str) -> bool:
        """Take a slot for one message of ``key``; False when a limit is reached (shed it)."""
        held = self._per_device.get(key, 0)
        if self.inflight >= self.max_inflight or held >= self.max_per_device:
            return False
        self._per_device[key] = held + 1
        self.inflight += 1
        return True

    def would_admit(self, key: str) -> bool:
        """Whether ``try_acquire(key)`` would succeed now (takes nothing)."""
        return self.inflight < self.max_inflight and self._per_device.get(key, 0) < self.max_per_device

    def release(self, key: str) -> None:
        """Give back the slot of a message of ``key`` (acknowledged by Kafka, or failed)."""
        held = self._per_device[key] - 1
        if held:
            self._per_device[key] = held
        else:
            del self._per_device[key]
        self.inflight -= 1

    def held(self, key: str) -> int:
        """Messages of ``key`` in flight."""
        return self._per_device.get(key, 0)


@dataclass(slots=True)
class DeviceLabels:
    """Prometheus label values for device ids, at most ``max_devices`` distinct; then ``_other``."""

    max_devices: int = 1000
    _seen: set[str] = field(default_factory=set)

    def label(self, device_id: str | None) -> str:
        """``device_id`` itself while few devices have been labelled, else ``_other``."""
        if device_id is None:
            return "_invalid"
        if device_id in self._seen:
            return device_id
        if len(self._seen) >= self.max_devices:
            return "_other"
        self._seen.add(device_id)
        return device_id
