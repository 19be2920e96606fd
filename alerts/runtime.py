"""What the alert service's lifespan creates, shared by the API routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from alerts.board import StationBoard
from alerts.live import Broadcaster
from alerts.settings import AlertsSettings

__all__ = ["Runtime"]


@dataclass(slots=True)
class Runtime:
    """Database sessions, live-update fan-out, settings, the registry's maintenance lookup and the
    station board (None when the service does not follow the registry)."""

    settings: AlertsSettings
    sessions: sessionmaker[Session]
    live: Broadcaster
    maintenance: Callable[[str | None], bool]
    board: StationBoard | None = None
