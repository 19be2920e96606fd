"""Alert unit fixtures: a real database (a private SQLite file, then a fresh PostgreSQL one)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from alerts.db import make_engine, make_sessions
from alerts.models import ContactGroup, Policy
from stationflow.contracts import AlertEvent, AlertState, Severity
from tests.unit.registry.conftest import BACKENDS, database_url

T0 = datetime(2026, 7, 20, 6, 0, tzinfo=UTC)
CONSOLE = "http://duty.example"


@pytest.fixture(params=BACKENDS)
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on an empty alert database with its tables."""
    url = database_url(request.param, request, tmp_path).replace("registry.db", "alerts.db")
    engine = make_engine(url)
    yield make_sessions(engine)
    engine.dispose()


def event(
    state: AlertState = AlertState.RAISED,
    *,
    seq: int = 1,
    severity: Severity = Severity.MODERATE,
    alert_id: str = "flood.level:device:lvl-1",
    value: float = 12.0,
    at: timedelta = timedelta(0),
    device: str = "lvl-1",
    station: str = "gauge-1",
    region: str = "445100",
    rule: str = "flood.level",
) -> AlertEvent:
    """An alert event of one occurrence raised at T0."""
    return AlertEvent(
        alert_id=alert_id,
        state=state,
        seq=seq,
        severity=severity,
        rule=rule,
        kind="threshold",
        domain="flood",
        subject=f"device:{device}",
        station_id=station,
        device_id=device,
        region=region,
        basin="Han",
        metric="level",
        value=value,
        threshold=12.0,
        raised_at=T0,
        observed_at=T0 + at,
        explanation=f"level {value} m at or above the warning level 12 m",
        explanation_zh=f"水位 {value} 米，达到警戒水位 12 米",
    )


def add_routing(
    session: Session, *, groups: int = 3, ack_timeout_s: float = 600, renotify_s: float | None = None
) -> None:
    """Groups duty-1..N (one webhook each) and a flood policy escalating along them."""
    names = [f"duty-{i}" for i in range(1, groups + 1)]
    for name in names:
        session.add(
            ContactGroup(name=name, members=[{"channel": "webhook", "target": f"http://hooks/{name}"}])
        )
    session.add(
        Policy(
            name="flood",
            priority=10,
            domain="flood",
            min_severity="minor",
            groups=names,
            ack_timeout_s=ack_timeout_s,
            renotify_s=renotify_s,
            notify_resolved=True,
        )
    )
    session.commit()
