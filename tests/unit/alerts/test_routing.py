"""Routing and texts (pure)."""

from __future__ import annotations

from datetime import timedelta

from alerts.routing import AlertView, PolicyView, SilenceView, active_silence, match_policy, render
from tests.unit.alerts.conftest import T0


def _alert(**kw: object) -> AlertView:
    base: dict[str, object] = {
        "id": 7,
        "alert_id": "flood.level:device:lvl-1",
        "severity": "major",
        "rule": "flood.level",
        "domain": "flood",
        "station_id": "gauge-1",
        "device_id": "lvl-1",
        "region": "445100",
        "basin": "Han",
        "metric": "level",
        "value": 13.2,
        "threshold": 13.0,
        "explanation": "level 13.2 m at or above the guaranteed level",
        "explanation_zh": "水位 13.2 米，达到保证水位",
        "status": "open",
        "raised_at": T0,
        "observed_at": T0,
    }
    return AlertView(**{**base, **kw})  # type: ignore[arg-type]


def _policy(pid: int, priority: int = 100, **kw: object) -> PolicyView:
    base: dict[str, object] = {
        "id": pid,
        "name": f"p{pid}",
        "priority": priority,
        "domain": None,
        "min_severity": None,
        "region": None,
        "basin": None,
        "station_id": None,
        "rule": None,
        "groups": [f"g{pid}"],
    }
    return PolicyView(**{**base, **kw})  # type: ignore[arg-type]


def test_first_matching_policy_by_priority_wins() -> None:
    policies = [
        _policy(1, 100),
        _policy(2, 10, domain="air"),
        _policy(3, 20, basin="Han", min_severity="major"),
        _policy(4, 5, rule="rain.*"),
    ]
    assert match_policy(_alert(), policies) == policies[2]
    assert match_policy(_alert(severity="moderate"), policies) == policies[0]
    assert match_policy(_alert(rule="rain.storm_signal"), policies) == policies[3]
    assert match_policy(_alert(), [_policy(1, domain="air")]) is None


def test_silence_matchers_and_window() -> None:
    s = SilenceView(1, "gauge-1", None, "flood.*", None, T0, T0 + timedelta(hours=1))
    assert active_silence(_alert(), [s], T0) == s
    assert active_silence(_alert(), [s], T0 + timedelta(hours=1)) is None  # end is exclusive
    assert active_silence(_alert(rule="air.aqi"), [s], T0) is None
    assert active_silence(_alert(station_id="gauge-2"), [s], T0) is None


def test_texts_in_both_languages_and_payload() -> None:
    title, title_zh, body, payload = render(_alert(), "escalated", console_url="http://c/", level=1)
    assert title == "[ESCALATED] MAJOR flood.level at gauge-1"
    assert title_zh == "【升级】橙色 flood.level gauge-1"
    assert "value 13.2 (threshold 13)" in body and "escalation level 1" in body
    assert body.endswith("http://c/console#alert-7")
    assert payload["value"] == 13.2 and payload["escalation_level"] == 1 and payload["kind"] == "escalated"
