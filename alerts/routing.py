"""Routing, silences and notification texts (pure functions over plain values)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stationflow.contracts import Severity

__all__ = [
    "AlertView",
    "PolicyView",
    "SilenceView",
    "active_silence",
    "match_policy",
    "render",
    "severity_at_least",
]

_SEVERITY_ZH = {"info": "提示", "minor": "蓝色", "moderate": "黄色", "major": "橙色", "critical": "红色"}
_KIND_EN = {
    "raised": "ALERT",
    "updated": "UPDATE",
    "escalated": "ESCALATED",
    "renotify": "STILL OPEN",
    "resolved": "RESOLVED",
}
_KIND_ZH = {
    "raised": "告警",
    "updated": "更新",
    "escalated": "升级",
    "renotify": "仍未处理",
    "resolved": "已解除",
}


@dataclass(frozen=True, slots=True)
class AlertView:
    """What routing and texts need of an alert."""

    id: int
    alert_id: str
    severity: str
    rule: str
    domain: str
    station_id: str | None
    device_id: str | None
    region: str | None
    basin: str | None
    metric: str | None
    value: float | None
    threshold: float | None
    explanation: str
    explanation_zh: str
    status: str
    raised_at: datetime
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class PolicyView:
    """A notification policy (see ``alerts.models.Policy``)."""

    id: int
    name: str
    priority: int
    domain: str | None
    min_severity: str | None
    region: str | None
    basin: str | None
    station_id: str | None
    rule: str | None
    groups: Sequence[str]


@dataclass(frozen=True, slots=True)
class SilenceView:
    """A silence (see ``alerts.models.Silence``)."""

    id: int
    station_id: str | None
    device_id: str | None
    rule: str | None
    region: str | None
    starts_at: datetime
    ends_at: datetime


def severity_at_least(severity: str, minimum: str | None) -> bool:
    """``severity`` ≥ ``minimum`` in the order info < minor < moderate < major < critical."""
    if minimum is None:
        return True
    return Severity(severity).rank >= Severity(minimum).rank


def _rule_matches(pattern: str, rule: str) -> bool:
    """``flood.*`` matches every flood rule; otherwise exact."""
    if pattern.endswith("*"):
        return rule.startswith(pattern[:-1])
    return rule == pattern


def match_policy(alert: AlertView, policies: Iterable[PolicyView]) -> PolicyView | None:
    """The first policy (by priority, then id) whose every set field matches the alert."""
    for p in sorted(policies, key=lambda p: (p.priority, p.id)):
        if p.domain is not None and p.domain != alert.domain:
            continue
        if not severity_at_least(alert.severity, p.min_severity):
            continue
        if p.region is not None and p.region != alert.region:
            continue
        if p.basin is not None and p.basin != alert.basin:
            continue
        if p.station_id is not None and p.station_id != alert.station_id:
            continue
        if p.rule is not None and not _rule_matches(p.rule, alert.rule):
            continue
        return p
    return None


def active_silence(alert: AlertView, silences: Iterable[SilenceView], now: datetime) -> SilenceView | None:
    """A silence in force at ``now`` whose every set matcher matches the alert."""
    for s in silences:
        if not s.starts_at <= now < s.ends_at:
            continue
        if s.station_id is not None and s.station_id != alert.station_id:
            continue
        if s.device_id is not None and s.device_id != alert.device_id:
            continue
        if s.rule is not None and not _rule_matches(s.rule, alert.rule):
            continue
        if s.region is not None and s.region != alert.region:
            continue
        return s
    return None


def render(
    alert: AlertView, kind: str, *, console_url: str, level: int = 0
) -> tuple[str, str, str, dict[str, Any]]:
    """Title (en), title (zh), plain-text body and JSON payload of a notification."""
    where = alert.station_id or alert.device_id or alert.alert_id
    tag = _KIND_EN.get(kind, kind.upper())
    title = f"[{tag}] {alert.severity.upper()} {alert.rule} at {where}"
    level_zh = _SEVERITY_ZH.get(alert.severity, alert.severity)
    title_zh = f"【{_KIND_ZH.get(kind, kind)}】{level_zh} {alert.rule} {where}"
    value = "" if alert.value is None else f"value {alert.value:g}"
    if alert.threshold is not None:
        value += f" (threshold {alert.threshold:g})"
    lines = [title, title_zh, alert.explanation, alert.explanation_zh]
    if value:
        lines.append(value)
    if level:
        lines.append(f"escalation level {level} — not acknowledged in time / 超时未确认，已升级")
    lines.append(f"{console_url.rstrip('/')}/console#alert-{alert.id}")
    payload: dict[str, Any] = {
        "kind": kind,
        "id": alert.id,
        "alert_id": alert.alert_id,
        "status": alert.status,
        "severity": alert.severity,
        "rule": alert.rule,
        "domain": alert.domain,
        "station_id": alert.station_id,
        "device_id": alert.device_id,
        "region": alert.region,
        "basin": alert.basin,
        "metric": alert.metric,
        "value": alert.value,
        "threshold": alert.threshold,
        "explanation": alert.explanation,
        "explanation_zh": alert.explanation_zh,
        "raised_at": alert.raised_at.isoformat(),
        "observed_at": alert.observed_at.isoformat(),
        "escalation_level": level,
    }
    return title, title_zh, "\n".join(lines), payload
