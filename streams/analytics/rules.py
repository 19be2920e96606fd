"""Warning rules: graded thresholds with durations and hysteresis, turned into ``AlertEvent``s.

A rule watches one *signal* of a subject (a device's ``level``, ``pm25.mean_24h``,
``rain.sum_3h``, a station's ``aqi``…) and has one or more *levels*, lowest severity first,
each with a raise threshold and a (hysteresis) clear threshold:

- the alert is **raised** when the value has been at or beyond a level's raise threshold for
  ``raise_after_s`` (0 = at once) — the *sustained* kind is a rule with a duration;
- it is **updated** when the level it sits at changes (escalation needs the raise threshold of
  the higher level for ``raise_after_s``; de-escalation needs the value back past the current
  level's clear threshold for ``clear_after_s``);
- it is **cleared** only after the value has been back past the lowest level's clear
  threshold for ``clear_after_s``.

Between a level's clear and raise thresholds nothing changes, so a noisy value hovering at a
threshold gives one alert, not dozens. Time is event time (the readings' timestamps): a
replay evaluates to the same events, and the alert id is ``<rule>:<subject>`` whatever
happens. Everything here is pure; the state is a small list stored in the device's or the
station's Faust table entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stationflow.contracts import AlertEvent, AlertState, Severity

__all__ = [
    "Level",
    "ResolvedLevel",
    "Rule",
    "RuleState",
    "Subject",
    "evaluate",
    "resolve_levels",
    "step_quiet",
]


@dataclass(frozen=True, slots=True)
class Level:
    """One grade of a rule: raise at ``raise_at``, fall back below ``clear_at``.

    A threshold is a number or the name of a station attribute (``"warning_level"``), plus
    ``offset`` (e.g. ``warning_level - 0.5`` for "approaching the warning level"). A station
    override named ``<rule id>.<severity>`` (``thresholds`` in the registry) replaces the
    raise threshold, and ``<rule id>.<severity>.clear`` the clear threshold.
    """

    severity: Severity
    raise_at: float | str
    clear_at: float | str | None = None  # None: the raise threshold minus ``hysteresis``
    offset: float = 0.0
    hysteresis: float = 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    """A warning rule of a rule pack (see ``streams.analytics.packs``)."""

    id: str
    kind: str  # threshold | window | rate | sustained | index | nodata
    domain: str
    signal: str
    levels: tuple[Level, ...]
    title: str
    title_zh: str
    above: bool = True  # False: the condition is "at or below" (e.g. dissolved oxygen)
    raise_after_s: float = 0.0
    clear_after_s: float = 0.0
    window: str | None = None
    unit: str = ""


@dataclass(frozen=True, slots=True)
class ResolvedLevel:
    """A level with its thresholds as numbers for one subject."""

    severity: Severity
    raise_at: float
    clear_at: float


@dataclass(frozen=True, slots=True)
class Subject:
    """What a rule is evaluated for, and the labels its alerts carry."""

    kind: str  # "device" | "station"
    id: str
    domain: str
    station_id: str | None = None
    device_id: str | None = None
    region: str | None = None
    basin: str | None = None

    @property
    def key(self) -> str:
        """``device:<id>`` or ``station:<id>``."""
        return f"{self.kind}:{self.id}"


@dataclass(slots=True, init=False)
class RuleState:
    """Where one rule stands for one subject (serialised as a list in table values).

    Its own ``__init__`` (see ``streams.analytics.device.MetricState``): the generated one is
    a Python function even compiled, and a rule that is not quiet loads one at every event time.
    """

    active: int = -1  # index into the resolved levels, -1 = not raised
    pending: int = -1  # level waiting out raise_after_s
    pending_since: float | None = None
    below_since: float | None = None  # value back under the active level's clear threshold
    seq: int = 0
    raised_at: float | None = None
    last_ts: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def __init__(
        self,
        active: int = -1,
        pending: int = -1,
        pending_since: float | None = None,
        below_since: float | None = None,
        seq: int = 0,
        raised_at: float | None = None,
        last_ts: float | None = None,
        extra: dict[str, float] | None = None,
    ) -> None:
        self.active = active
        self.pending = pending
        self.pending_since = pending_since
        self.below_since = below_since
        self.seq = seq
        self.raised_at = raised_at
        self.last_ts = last_ts
        self.extra = {} if extra is None else extra

    def dump(self) -> list[object]:
        """Compact JSON-able form."""
        return [
            self.active,
            self.pending,
            self.pending_since,
            self.below_since,
            self.seq,
            self.raised_at,
            self.last_ts,
        ]

    @classmethod
    def load(cls, raw: list[object] | None) -> RuleState:
        """Inverse of :meth:`dump` (None → fresh state)."""
        if not raw:
            return cls()
        active, pending, pending_since, below_since, seq, raised_at, last_ts = raw[:7]
        return cls(
            active=int(active),  # type: ignore[call-overload]
            pending=int(pending),  # type: ignore[call-overload]
            pending_since=_opt_float(pending_since),
            below_since=_opt_float(below_since),
            seq=int(seq),  # type: ignore[call-overload]
            raised_at=_opt_float(raised_at),
            last_ts=_opt_float(last_ts),
        )


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _resolve(
    value: float | str | None, attributes: Mapping[str, float | str], override: float | None
) -> float | None:
    if override is not None:
        return override
    if value is None:
        return None
    if isinstance(value, str):
        attr = attributes.get(value)
        return float(attr) if isinstance(attr, int | float) else None
    return float(value)


def resolve_levels(
    rule: Rule, attributes: Mapping[str, float | str], overrides: Mapping[str, float]
) -> list[ResolvedLevel]:
    """The rule's levels as numbers for one station; levels whose threshold is unknown drop out."""
    out: list[ResolvedLevel] = []
    for level in rule.levels:
        name = f"{rule.id}.{level.severity.value}"
        raised = _resolve(level.raise_at, attributes, overrides.get(name))
        if raised is None:
            continue
        if name not in overrides:
            raised += level.offset
        sign = -1.0 if rule.above else 1.0
        clear = _resolve(level.clear_at, attributes, overrides.get(f"{name}.clear"))
        if clear is None:
            clear = raised + sign * level.hysteresis
        elif f"{name}.clear" not in overrides and level.clear_at is not None:
            clear += level.offset
        out.append(ResolvedLevel(level.severity, raised, clear))
    return out


def _beyond(rule: Rule, value: float, threshold: float) -> bool:
    return value >= threshold if rule.above else value <= threshold


def _highest(rule: Rule, levels: list[ResolvedLevel], value: float, clear: bool) -> int:
    found = -1
    for i, level in enumerate(levels):
        if _beyond(rule, value, level.clear_at if clear else level.raise_at):
            found = i
    return found


def step_quiet(
    rule: Rule, levels: list[ResolvedLevel], raw: list[object] | None, value: float, ts: float
) -> list[object] | None:
    """What :func:`evaluate` leaves of a rule state that is not raised and stays so, or None.

    The common case, for every rule at every event time: no alert is raised, ``value`` is
    short of every raise threshold, and ``ts`` is newer than the last value evaluated; then
    ``evaluate`` only forgets a pending level and moves ``last_ts``. This gives that state's
    dump (``raw``: a dump, or None for a fresh state) without building a ``RuleState``;
    None means the case is not that one and ``evaluate`` must run.
    """
    if not levels:
        return None
    if raw:
        last_ts = raw[6]
        if int(raw[0]) >= 0 or (last_ts is not None and ts <= float(last_ts)):  # type: ignore[call-overload, arg-type]
            return None
    if _highest(rule, levels, value, clear=False) >= 0:
        return None
    if not raw:
        return [-1, -1, None, None, 0, None, ts]
    return [int(raw[0]), -1, None, _opt_float(raw[3]), int(raw[4]), _opt_float(raw[5]), ts]  # type: ignore[call-overload]


def evaluate(
    rule: Rule,
    levels: list[ResolvedLevel],
    state: RuleState,
    value: float,
    ts: float,
    subject: Subject,
) -> AlertEvent | None:
    """Feed one value at event time ``ts``; update ``state`` in place; return the event, if any.

    Values older than the last one evaluated are ignored (late readings still go into the
    windows, but do not move an alert back in time), which also makes replays harmless.
    """
    if not levels or (state.last_ts is not None and ts <= state.last_ts):
        return None
    state.last_ts = ts
    target = _highest(rule, levels, value, clear=False)
    if state.active < 0:
        if target < 0:
            state.pending, state.pending_since = -1, None
            return None
        if state.pending_since is None:
            state.pending_since = ts
        state.pending = target
        if ts - state.pending_since < rule.raise_after_s:
            return None
        state.active, state.seq, state.raised_at = target, 1, state.pending_since
        state.pending, state.pending_since, state.below_since = -1, None, None
        return _event(rule, levels, state, AlertState.RAISED, value, ts, subject)
    if target > state.active:  # escalation, after the same raise delay
        state.below_since = None
        if state.pending_since is None or state.pending <= state.active:
            state.pending_since = ts
        state.pending = target
        if ts - state.pending_since < rule.raise_after_s:
            return None
        state.active, state.pending, state.pending_since = target, -1, None
        state.seq += 1
        return _event(rule, levels, state, AlertState.UPDATED, value, ts, subject)
    state.pending, state.pending_since = -1, None
    held = min(_highest(rule, levels, value, clear=True), state.active)
    if held == state.active:
        state.below_since = None
        return None
    if state.below_since is None:
        state.below_since = ts
    if ts - state.below_since < rule.clear_after_s:
        return None
    state.below_since = None
    state.seq += 1
    if held < 0:
        event = _event(rule, levels, state, AlertState.CLEARED, value, ts, subject)
        state.active, state.raised_at = -1, None
        return event
    state.active = held
    return _event(rule, levels, state, AlertState.UPDATED, value, ts, subject)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _event(
    rule: Rule,
    levels: list[ResolvedLevel],
    state: RuleState,
    what: AlertState,
    value: float,
    ts: float,
    subject: Subject,
) -> AlertEvent:
    level = levels[state.active]
    op = "≥" if rule.above else "≤"
    unit = f" {rule.unit}" if rule.unit else ""
    if what is AlertState.CLEARED:
        text = f"{rule.title} cleared: {rule.signal} {value:g}{unit} back past {level.clear_at:g}{unit}"
        text_zh = f"{rule.title_zh}解除：{rule.signal} {value:g}{unit}"
    else:
        text = (
            f"{rule.title} ({level.severity.value}): {rule.signal} {value:g}{unit} "
            f"{op} {level.raise_at:g}{unit}"
        )
        grade = _ZH_SEVERITY[level.severity]
        text_zh = f"{rule.title_zh}（{grade}）：{rule.signal} {value:g}{unit} {op} {level.raise_at:g}{unit}"
    where = subject.station_id or subject.device_id or subject.id
    return AlertEvent(
        alert_id=f"{rule.id}:{subject.key}",
        state=what,
        seq=state.seq,
        severity=level.severity,
        rule=rule.id,
        kind=rule.kind,
        domain=rule.domain,
        subject=subject.key,
        station_id=subject.station_id,
        device_id=subject.device_id,
        region=subject.region,
        basin=subject.basin,
        metric=rule.signal,
        value=value,
        threshold=level.raise_at if what is not AlertState.CLEARED else level.clear_at,
        window=rule.window,
        raised_at=_utc(state.raised_at if state.raised_at is not None else ts),
        observed_at=_utc(ts),
        explanation=f"{where}: {text}",
        explanation_zh=f"{where}：{text_zh}",
    )


_ZH_SEVERITY = {
    Severity.INFO: "提示",
    Severity.MINOR: "蓝色/IV级",
    Severity.MODERATE: "黄色/III级",
    Severity.MAJOR: "橙色/II级",
    Severity.CRITICAL: "红色/I级",
}
