"""The alert service's REST API in-process (no Kafka consumer), on SQLite and PostgreSQL:
keys and roles, validation errors that name the field, filtering and order, lifecycle
conflicts, silences, routing objects, the outbox view, metrics; and schemathesis."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alerts.lifecycle import apply_event
from alerts.main import create_app
from alerts.settings import AlertsSettings
from stationflow.contracts import AlertState, Severity
from tests.unit.alerts.conftest import CONSOLE, T0, event
from tests.unit.registry.conftest import BACKENDS, database_url

ADMIN = "alerts-admin-token"


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    url = database_url(request.param, request, tmp_path).replace("registry.db", "alerts.db")
    s = AlertsSettings(
        state_dir=tmp_path,
        alerts_database_url=url,
        alerts_admin_key=ADMIN,  # type: ignore[arg-type]
        alerts_registry=False,
    )
    with TestClient(create_app(s, channels={}, kafka=False), headers={"X-API-Key": ADMIN}) as c:
        yield c


def _seed(client: TestClient) -> None:
    """Three alerts straight into the service's database, as the consumer would apply them."""
    sessions = client.app.state.runtime.sessions  # type: ignore[attr-defined]
    with sessions() as s:
        for alert_id, severity, raised in (
            ("a:moderate-old", Severity.MODERATE, T0),
            ("a:critical-new", Severity.CRITICAL, T0 + timedelta(minutes=5)),
            ("a:critical-old", Severity.CRITICAL, T0 + timedelta(minutes=1)),
        ):
            e = event(alert_id=alert_id, severity=severity, device=alert_id.split(":")[1])
            e = e.model_copy(update={"raised_at": raised, "observed_at": raised})
            apply_event(s, e, now=T0, console_url=CONSOLE)
        s.commit()


def _key(client: TestClient, role: str) -> dict[str, str]:
    r = client.post("/api-keys", json={"name": f"{role} key", "role": role})
    assert r.status_code == 201
    return {"X-API-Key": r.json()["token"]}


def test_only_health_metrics_and_the_console_page_are_open(client: TestClient) -> None:
    anon = {"X-API-Key": ""}
    assert client.get("/health", headers=anon).status_code == 200
    assert "stationflow_alerts_open" in client.get("/metrics", headers=anon).text
    page = client.get("/console", headers=anon)
    assert page.status_code == 200 and "值班台" in page.text and "EventSource" in page.text
    for path in ("/alerts", "/silences", "/policies", "/contact-groups", "/notifications", "/api-keys"):
        r = client.get(path, headers=anon)
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"], path
    assert client.get("/alerts", headers={"X-API-Key": "wrong"}).json()["detail"] == "unknown API key"


def test_roles(client: TestClient) -> None:
    _seed(client)
    reader, operator = _key(client, "read-only"), _key(client, "operator")
    alert = client.get("/alerts", headers=reader).json()[0]
    r = client.post(f"/alerts/{alert['id']}/acknowledge", json={}, headers=reader)
    assert r.status_code == 403 and "needs 'operator'" in r.json()["detail"]
    assert client.post(f"/alerts/{alert['id']}/acknowledge", json={}, headers=operator).status_code == 200
    group = {"name": "g", "members": [{"channel": "sms", "target": "+8613800000000"}]}
    assert client.put("/contact-groups/g", json=group, headers=operator).status_code == 403
    assert client.get("/api-keys", headers=operator).status_code == 403
    assert client.put("/contact-groups/g", json=group).status_code == 200


def test_list_is_most_severe_then_oldest_first_and_filters(client: TestClient) -> None:
    _seed(client)
    ids = [a["alert_id"] for a in client.get("/alerts").json()]
    assert ids == ["a:critical-old", "a:critical-new", "a:moderate-old"]
    assert [a["alert_id"] for a in client.get("/alerts", params={"severity": "moderate"}).json()] == [
        "a:moderate-old"
    ]
    assert len(client.get("/alerts", params={"status": "active"}).json()) == 3
    assert client.get("/alerts", params={"status": "resolved"}).json() == []
    assert len(client.get("/alerts", params={"rule": "flood.*", "region": "445100"}).json()) == 3
    assert client.get("/alerts", params={"station_id": "elsewhere"}).json() == []
    first = client.get("/alerts").json()[0]
    assert first["raised_at"].endswith("Z") or first["raised_at"].endswith("+00:00")
    assert client.get("/summary").json()["counts"] == {"open": {"critical": 2, "moderate": 1}}


def test_lifecycle_conflicts_and_history(client: TestClient) -> None:
    _seed(client)
    alert = client.get("/alerts").json()[0]
    base = f"/alerts/{alert['id']}"
    assert client.post(f"{base}/comments", json={"text": "  "}).status_code == 422
    assert client.post(f"{base}/comments", json={"text": "crew on site"}).status_code == 201
    assert (
        client.post(f"{base}/acknowledge", json={"comment": "on it"}).json()["acknowledged_by"]
        == "bootstrap admin"
    )
    r = client.post(f"{base}/acknowledge", json={})
    assert r.status_code == 409 and "acknowledged" in r.json()["detail"]
    assert client.post(f"{base}/resolve", json={"comment": "level falling"}).json()["status"] == "resolved"
    assert client.post(f"{base}/resolve", json={}).status_code == 409
    history = [h["what"] for h in client.get(f"{base}/history").json()]
    assert history[0] == "event" and history[-3:] == ["comment", "acknowledged", "resolved"]
    assert client.get("/alerts/999999").status_code == 404
    assert client.post("/alerts/999999/acknowledge", json={}).status_code == 404
    assert client.post(f"{base}/acknowledge", json={"unexpected": 1}).status_code == 422


def test_silence_validation_names_the_problem(client: TestClient) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cases = [
        ({"ends_at": later, "reason": "x"}, "at least one of station_id"),
        ({"station_id": "s", "ends_at": later}, "reason"),
        ({"station_id": "s", "ends_at": "2026-01-01T00:00:00", "reason": "x"}, "UTC offset"),
        ({"station_id": "s", "starts_at": later, "ends_at": later, "reason": "x"}, "after starts_at"),
        ({"station_id": "s", "ends_at": "2020-01-01T00:00:00Z", "reason": "x"}, "after starts_at"),
    ]
    for body, needle in cases:
        r = client.post("/silences", json=body)
        assert r.status_code == 422, body
        assert needle in str(r.json()["detail"]), (body, r.json())
    r = client.post("/silences", json={"region": "445100", "ends_at": later, "reason": "drill"})
    assert r.status_code == 201 and r.json()["created_by"] == "bootstrap admin"
    silence = r.json()["id"]
    assert [s["id"] for s in client.get("/silences", params={"active": True}).json()] == [silence]
    assert client.delete(f"/silences/{silence}").status_code == 200
    assert client.get("/silences", params={"active": True}).json() == []


def test_routing_objects_are_checked(client: TestClient) -> None:
    bad_members = [
        ({"channel": "webhook", "target": "ftp://x"}, "http:// or https://"),
        ({"channel": "mqtt", "target": "stations/#"}, "without wildcards"),
        ({"channel": "email", "target": "nobody"}, "e-mail address"),
        ({"channel": "sms", "target": "call me"}, "phone number"),
        ({"channel": "pager", "target": "1"}, "webhook"),
    ]
    for member, needle in bad_members:
        r = client.put("/contact-groups/g", json={"name": "g", "members": [member]})
        assert r.status_code == 422 and needle in str(r.json()["detail"]), member
    r = client.put("/contact-groups/h", json={"name": "g", "members": [{"channel": "sms", "target": "+861"}]})
    assert r.status_code == 422
    r = client.post("/policies", json={"name": "p", "groups": ["missing"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "groups"]
    assert "missing" in r.json()["detail"][0]["msg"]
    group = {"name": "duty", "members": [{"channel": "webhook", "target": "http://127.0.0.1:1/x"}]}
    assert client.put("/contact-groups/duty", json=group).status_code == 200
    policy = {"name": "p", "groups": ["duty"], "min_severity": "major", "ack_timeout_s": 120}
    created = client.post("/policies", json=policy)
    assert created.status_code == 201 and created.json()["min_severity"] == "major"
    assert client.post("/policies", json=policy).status_code == 409
    assert client.post("/policies", json={**policy, "name": "q", "min_severity": "huge"}).status_code == 422
    assert client.delete("/contact-groups/duty").status_code == 409  # in use
    assert client.delete(f"/policies/{created.json()['id']}").status_code == 204
    assert client.delete("/contact-groups/duty").status_code == 204


def test_notifications_are_listed_with_their_delivery_state(client: TestClient) -> None:
    group = {"name": "duty", "members": [{"channel": "webhook", "target": "http://127.0.0.1:9/x"}]}
    client.put("/contact-groups/duty", json=group)
    client.post("/policies", json={"name": "all", "groups": ["duty"]})
    sessions = client.app.state.runtime.sessions  # type: ignore[attr-defined]
    with sessions() as s:
        apply_event(s, event(), now=T0, console_url=CONSOLE)
        apply_event(s, event(AlertState.CLEARED, seq=2), now=T0, console_url=CONSOLE)
        s.commit()
    notes = client.get("/notifications").json()
    assert sorted(n["kind"] for n in notes) == ["raised", "resolved"]
    # no channels in this app: the dispatcher fails them with the reason, visible here
    assert all(n["status"] in ("pending", "failed") for n in notes)


def test_api_keys_are_shown_once_and_can_be_revoked(client: TestClient) -> None:
    created = client.post("/api-keys", json={"name": "wall screen", "role": "read-only"}).json()
    assert created["token"].startswith("sfa_")
    listed = client.get("/api-keys").json()
    assert all(k["token"] is None for k in listed) and {k["name"] for k in listed} >= {"wall screen"}
    me = next(k for k in listed if k["name"] == "bootstrap admin")
    assert client.delete(f"/api-keys/{me['id']}").status_code == 409
    assert client.delete(f"/api-keys/{created['id']}").status_code == 204
    assert client.get("/alerts", headers={"X-API-Key": created["token"]}).status_code == 401


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
_STATE = Path(tempfile.mkdtemp(prefix="alerts-schemathesis-"))
_APP = create_app(
    AlertsSettings(state_dir=_STATE, alerts_admin_key=ADMIN, alerts_registry=False),  # type: ignore[arg-type]
    channels={},
    kafka=False,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP).exclude(path="/stream")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"X-API-Key": ADMIN}, checks=CHECKS)
