"""What the alert service's lifespan creates, shared by the API routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from alerts.live import Broadcaster
from alerts.settings import AlertsSettings

__all__ = ["Runtime"]


@dataclass(slots=True)
class Runtime:
    """Database sessions, live-update fan-out, settings, and the registry's maintenance lookup."""

    settings: AlertsSettings
    sessions: sessionmaker[Session]
    live: Broadcaster
    maintenance: Callable[[str | None], bool]
