"""Notification channels: webhook, MQTT, e-mail (SMTP), SMS (HTTP gateway).

A channel delivers one :class:`Notification` or raises :class:`ChannelError`; retries and
exactly-once bookkeeping are the outbox dispatcher's job (``alerts.dispatcher``), so a
channel never retries on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Channel", "ChannelError", "Notification"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one recipient, as stored in the outbox.

    ``id`` is stable across retries and restarts: receivers can use it to drop duplicates
    (webhook header ``X-Stationflow-Notification-Id``, MQTT/JSON field ``notification_id``).
    """

    id: str
    channel: str  # "webhook" | "mqtt" | "email" | "sms"
    target: str  # URL, MQTT topic, e-mail address or phone number
    kind: str  # "raised" | "updated" | "escalated" | "renotify" | "resolved"
    title: str  # one line, English
    title_zh: str  # one line, Chinese
    body: str  # plain text, both languages
    payload: dict[str, Any] = field(default_factory=dict)  # the alert as JSON (webhook / MQTT)


class ChannelError(Exception):
    """Delivery failed; ``retriable`` False means it never will succeed (e.g. a 4xx answer)."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class Channel(Protocol):
    """Delivers notifications of one kind."""

    name: str

    async def send(self, notification: Notification) -> None:
        """Deliver or raise ChannelError."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
