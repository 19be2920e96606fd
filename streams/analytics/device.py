"""Per-device analytics state and its update from a batch of clean readings (pure).

One ``DeviceState`` per device is the value of the worker's Faust table entry, updated once
per batch. It holds, per metric:

- ``raw``: the readings of the open hours (and, for accumulating metrics such as rain, of the
  last 24 h), placed by event time. Mean-type metrics keep one sample per minute slot (the
  latest by timestamp), accumulating ones one entry per timestamp; either way a replayed
  reading overwrites itself, so replays never inflate a window.
- ``hours``: closed hours ``[mean-or-sum, samples, min, max]`` for the last 48 h (the 8 h and
  24 h means, and the hourly values the station stage turns into AQI / water class).

An hour closes when the device's event-time watermark passes its end plus the grace period.
A reading for a closed hour is *late*: it is stored by the raw stage as always, counted here
(``late``), and left out of the windows. Readings whose quality flag is not ``N`` are left
out of the windows too (counted as ``excluded``); a spike (a jump of more than 6 median
absolute deviations from the last hour's median, on ≥ 10 samples) is treated the same way.
A reading sent again is counted once: one already in its slot changes nothing, and the state
remembers the last readings it counted per metric (``DeviceState.counted``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, Inexact, InvalidOperation, Overflow
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from stationflow.contracts import (
    AlertEvent,
    AlertState,
    DeviceRecord,
    DeviceStatus,
    HourlyValues,
    Quality,
    Severity,
)
from streams.analytics import coldchain, flood, rain
from streams.analytics.packs import NODATA_RULE, rules_for_device
from streams.analytics.rules import (
    ResolvedLevel,
    Rule,
    RuleState,
    Subject,
    evaluate,
    resolve_levels,
    step_quiet,
)
from streams.lineprotocol import escape_string, float_texts
from streams.lineprotocol import escape_tag as _esc

__all__ = [
    "SUM_METRICS",
    "AnalyticsConfig",
    "DeviceOutput",
    "DeviceState",
    "ReadingLike",
    "check_silence",
    "silence_due",
    "subject_for",
    "update_device",
]

HOUR = 3600
SLOT = 60
SUM_METRICS = frozenset({"rain"})  # accumulating metrics: windows are sums, not means
FLAT_EXEMPT = SUM_METRICS | {"door"}
# What the ``windows`` point holds and when it is written (AnalyticsConfig.window_points).
WINDOW_POINTS = ("hour", "minute", "off")
HOURLY_MIN_COVERAGE_S = 45 * 60  # GB 3095 Table 4: ≥ 45 min of data for an hourly value
KEEP_HOURS = 48
COLDCHAIN_MAX_GAP_S = 3600.0
# A logger's shipment ends when its next one starts; an ended shipment's summary is written
# for another hour of event time (its final values), and it is forgotten after a week.
SHIPMENT_SUMMARY_AFTER_S = 3600.0
SHIPMENT_KEEP_S = 7 * 86400.0
MKT_MIN_C, MKT_MAX_C = -100.0, 200.0


class ReadingLike(Protocol):
    """A clean reading as the analytics read it: ``stationflow.contracts.Reading`` or the
    worker's msgspec ``stationflow.wire.WireReading`` (same fields, same checks)."""

    @property
    def metric(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def ts(self) -> datetime: ...
    @property
    def quality(self) -> Quality: ...
    @property
    def shipment(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    """Tunables (``STATIONFLOW_ANALYTICS_*`` in the worker settings)."""

    grace_s: float = 300.0
    default_interval_s: float = 60.0
    nodata_grace_s: float = 60.0
    coldchain_low: float = 0.0  # GB 31605 chilled (coldchain.CHILLED): 0..8 °C
    coldchain_high: float = 8.0
    # The ``windows`` point (WINDOW_POINTS): "hour" (the 8 h / 24 h sliding means when an hour
    # of event time closes), "minute" (every rolling value once per device and minute of event
    # time) or "off".
    window_points: str = "hour"


# The mutable states below write their own ``__init__`` (``init=False``): the one ``dataclass``
# generates is a Python function even when mypyc compiles the module, and a state is built
# at every update (``statecodec.decode_device``: one per metric and one per device). Measured
# compiled: 0.88 µs per construction with the generated one, 0.17 µs with this. The fields'
# defaults stay declared (``fields()``, ``repr``, ``eq`` read them) and must match these.


@dataclass(slots=True, init=False)
class MetricState:
    """Windows of one metric."""

    raw: dict[int, list[float]] = field(default_factory=dict)  # key → [ts, value]
    hours: dict[int, list[float]] = field(default_factory=dict)  # hour → [agg, n, min, max]
    last: list[float] | None = None  # [ts, value] of the newest reading
    flat: int = 0  # consecutive identical values
    # window hours -> [end, min_valid, mean or None]: ``_window_mean`` of ``hours`` as they
    # are, remembered (and kept in the table value) because ``hours`` change only when an hour
    # closes, while the 8 h / 24 h means are asked for twice per batch and ~50 µs each.
    # ``_close_hours`` clears it whenever it changes ``hours``; not part of the state's value.
    means: dict[int, list[Any]] = field(default_factory=dict, compare=False, repr=False)
    # a lower bound of the timestamps in ``raw`` (None: unknown): ``_close_hours`` looks for
    # stale entries only when one can be older than what it keeps; not part of the value
    oldest: float | None = field(default=None, compare=False, repr=False)

    def __init__(
        self,
        raw: dict[int, list[float]] | None = None,
        hours: dict[int, list[float]] | None = None,
        last: list[float] | None = None,
        flat: int = 0,
        means: dict[int, list[Any]] | None = None,
        oldest: float | None = None,
    ) -> None:
        self.raw = {} if raw is None else raw
        self.hours = {} if hours is None else hours
        self.last = last
        self.flat = flat
        self.means = {} if means is None else means
        self.oldest = oldest


@dataclass(slots=True, init=False)
class DeviceState:
    """Everything the worker remembers about one device (a Faust table value)."""

    wm: float = 0.0  # event-time watermark: newest reading timestamp seen
    seen: float = 0.0  # wall-clock time of the newest batch (no-data detection)
    closed: int = 0  # hours before this start are closed
    late: int = 0
    excluded: int = 0
    spikes: int = 0
    out_of_range: int = 0
    emitted: int = 0  # minute of the last derived-values line
    metrics: dict[str, MetricState] = field(default_factory=dict)
    rules: dict[str, list[Any]] = field(default_factory=dict)
    shipments: dict[str, list[float]] = field(default_factory=dict)
    # ``[partition, offset, timestamp ms]`` of the last ``readings.clean`` record applied to this
    # state (None: not known): a record at or before it is a replay after a restart, which the
    # worker skips instead of applying it twice (see ``analyticsworker.already_applied``)
    applied: list[int] | None = None
    # per metric, the times of its readings last counted as late, flagged or spikes, oldest first,
    # packed (little-endian float64s: see ``_counted_again``); most devices have none, and a
    # device's update reads them only when it is about to count a reading
    counted: dict[str, bytes] = field(default_factory=dict)
    # the same, unpacked once needed: metric -> (times in order, the same as a set); not the value
    counted_times: dict[str, tuple[list[float], set[float]]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # the table codec's compressed closed hours of every metric as last read or written, with
    # the ``(closed, metric count)`` they are of: hours change only when ``closed`` moves, so
    # an unchanged signature means the same hours (see ``statecodec``); not part of the value
    packed_hours: tuple[int, int, bytes] | None = field(default=None, compare=False, repr=False)
    # the closed hours of every metric not yet decoded (``statecodec.decode_device(lazy=True)``):
    # until :func:`load_hours` runs it, every metric's ``hours`` is empty. Most batches of a
    # device with a day of hours need none of them (no hour closes; the 8 h / 24 h means are
    # remembered in ``MetricState.means``): decoding them was a third of the value's decode.
    hours_loader: Callable[[], dict[str, dict[int, list[float]]]] | None = field(
        default=None, compare=False, repr=False
    )

    def __init__(
        self,
        wm: float = 0.0,
        seen: float = 0.0,
        closed: int = 0,
        late: int = 0,
        excluded: int = 0,
        spikes: int = 0,
        out_of_range: int = 0,
        emitted: int = 0,
        metrics: dict[str, MetricState] | None = None,
        rules: dict[str, list[Any]] | None = None,
        shipments: dict[str, list[float]] | None = None,
        applied: list[int] | None = None,
        counted: dict[str, bytes] | None = None,
        counted_times: dict[str, tuple[list[float], set[float]]] | None = None,
        packed_hours: tuple[int, int, bytes] | None = None,
        hours_loader: Callable[[], dict[str, dict[int, list[float]]]] | None = None,
    ) -> None:
        self.wm = wm
        self.seen = seen
        self.closed = closed
        self.late = late
        self.excluded = excluded
        self.spikes = spikes
        self.out_of_range = out_of_range
        self.emitted = emitted
        self.metrics = {} if metrics is None else metrics
        self.rules = {} if rules is None else rules
        self.shipments = {} if shipments is None else shipments
        self.applied = applied
        self.counted = {} if counted is None else counted
        self.counted_times = {} if counted_times is None else counted_times
        self.packed_hours = packed_hours
        self.hours_loader = hours_loader

    def dump(self) -> dict[str, Any]:
        """JSON-able form (orjson in the table)."""
        load_hours(self)
        return {
            "wm": self.wm,
            "seen": self.seen,
            "closed": self.closed,
            "late": self.late,
            "excluded": self.excluded,
            "spikes": self.spikes,
            "oor": self.out_of_range,
            "emitted": self.emitted,
            "m": {
                name: {
                    "raw": [[k, *v] for k, v in m.raw.items()],
                    "hours": [[k, *v] for k, v in m.hours.items()],
                    "last": m.last,
                    "flat": m.flat,
                }
                for name, m in self.metrics.items()
            },
            "rules": self.rules,
            "ship": self.shipments,
            "applied": self.applied,
            "counted": {name: _unpack_times(blob) for name, blob in self.counted.items()},
        }

    @classmethod
    def load(cls, doc: Mapping[str, Any] | None) -> DeviceState:
        """Inverse of :meth:`dump`."""
        if not doc:
            return cls()
        return cls(
            wm=doc["wm"],
            seen=doc["seen"],
            closed=doc["closed"],
            late=doc["late"],
            excluded=doc["excluded"],
            spikes=doc.get("spikes", 0),
            out_of_range=doc.get("oor", 0),
            emitted=doc.get("emitted", 0),
            metrics={
                name: MetricState(
                    raw={int(r[0]): [r[1], r[2]] for r in m["raw"]},
                    hours={int(h[0]): list(h[1:]) for h in m["hours"]},
                    last=m["last"],
                    flat=m["flat"],
                )
                for name, m in doc["m"].items()
            },
            rules=doc.get("rules", {}),
            shipments=doc.get("ship", {}),
            applied=doc.get("applied"),
            counted={name: _pack_times(times) for name, times in doc.get("counted", {}).items()},
        )


def load_hours(state: DeviceState) -> None:
    """Decode the closed hours a lazily decoded state left packed (nothing if none are)."""
    loader = state.hours_loader
    if loader is None:
        return
    state.hours_loader = None
    hours = loader()
    for name, m in state.metrics.items():
        m.hours = hours.get(name, {})


@dataclass(slots=True, init=False)
class DeviceOutput:
    """What one update produced."""

    events: list[AlertEvent] = field(default_factory=list)
    hourly: list[HourlyValues] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)
    late: int = 0

    def __init__(
        self,
        events: list[AlertEvent] | None = None,
        hourly: list[HourlyValues] | None = None,
        lines: list[str] | None = None,
        signals: dict[str, float] | None = None,
        late: int = 0,
    ) -> None:
        self.events = [] if events is None else events
        self.hourly = [] if hourly is None else hourly
        self.lines = [] if lines is None else lines
        self.signals = {} if signals is None else signals
        self.late = late


def subject_for(device_id: str, record: DeviceRecord | None, domain: str) -> Subject:
    """The alert subject of a device (station labels from the registry when known)."""
    station = record.station if record else None
    return Subject(
        kind="device",
        id=device_id,
        domain=domain,
        station_id=station.station_id if station else None,
        device_id=device_id,
        region=station.region if station else None,
        basin=station.basin if station else None,
    )


_TAGS_CACHE: dict[Subject, str] = {}
_TAGS_CACHE_MAX = 100_000


def _tags(subject: Subject) -> str:
    """``device=…`` plus station, region and basin when known (dashboards filter by them).

    Remembered per subject when nothing needed escaping (a replacement is counted and logged
    by ``escape_tag`` each time it is written, so those are never cached).
    """
    cached = _TAGS_CACHE.get(subject)
    if cached is not None:
        return cached
    tags = f"device={_esc(subject.id)}"
    plain = tags == f"device={subject.id}"
    for key, value in (("station", subject.station_id), ("region", subject.region), ("basin", subject.basin)):
        if value:
            escaped = _esc(value)
            plain = plain and escaped == value
            tags += f",{key}={escaped}"
    if plain:
        if len(_TAGS_CACHE) >= _TAGS_CACHE_MAX:
            _TAGS_CACHE.clear()
        _TAGS_CACHE[subject] = tags
    return tags


_PLAIN_TAG_VALUES: set[str] = set()


def _tag_value(value: str) -> str:
    """``escape_tag`` for a value seen again and again (a metric name): remembered when it
    needs no escaping (a replacement is counted and logged each time, so never cached)."""
    if value in _PLAIN_TAG_VALUES:
        return value
    escaped = _esc(value)
    if escaped == value and len(_PLAIN_TAG_VALUES) < _TAGS_CACHE_MAX:
        _PLAIN_TAG_VALUES.add(value)
    return escaped


def _fields(values: Mapping[str, float | int | str]) -> str:
    """Line-protocol fields; non-finite floats are left out (InfluxDB would refuse the batch)."""
    parts = []
    for k, v in values.items():
        if type(v) is float:  # most values: as below, without the checks of the other kinds
            if math.isfinite(v):
                parts.append(f"{k}={v!r}")
        elif isinstance(v, str):
            parts.append(f"{k}={escape_string(v)}")
        elif isinstance(v, int) and not isinstance(v, bool):
            parts.append(f"{k}={v}i")
        elif math.isfinite(v):
            parts.append(f"{k}={float(v)!r}")
    return ",".join(parts) or "empty=true"


def _ns(ts: float) -> int:
    return round(ts * 1000) * 1_000_000


@dataclass(frozen=True, slots=True, eq=False)
class _Plan:
    """What ``update_device`` derives from a device's registry record and domain, once.

    Kept per device while its record is the same object (records are frozen and replaced on
    change; the plan holds the record, so its identity cannot be reused meanwhile).
    """

    record: DeviceRecord | None
    domain: str
    subject: Subject
    attrs: Mapping[str, float | str]
    overrides: Mapping[str, float]
    levels: dict[str, list[ResolvedLevel]]
    instant: dict[str, tuple[Rule, ...]]  # metric -> the rules on its readings
    derived: tuple[Rule, ...]  # rules on rolling signals
    needed: frozenset[str]  # the metrics whose rolling signals a derived rule reads
    # ... and those the lines of a new minute read besides the per-minute ``windows`` point:
    # the level trend, the rain sums, the cold chain (the flatline count is always computed)
    for_lines: frozenset[str]


_PLANS: dict[str, _Plan] = {}
_LINE_METRICS = frozenset({"level", "coldchain", *SUM_METRICS})
_PLANS_MAX = 200_000


def _plan(device_id: str, record: DeviceRecord | None, domain: str) -> _Plan:
    plan = _PLANS.get(device_id)
    if plan is not None and plan.record is record and plan.domain == domain:
        return plan
    attrs: Mapping[str, float | str] = record.station.attributes if record and record.station else {}
    overrides: Mapping[str, float] = record.thresholds if record else {}
    levels, instant, derived, needed = _rule_plan(domain, attrs, overrides)
    plan = _Plan(
        record=record,
        domain=domain,
        subject=subject_for(device_id, record, domain),
        attrs=attrs,
        overrides=overrides,
        levels=levels,
        instant=instant,
        derived=derived,
        needed=needed,
        for_lines=needed | _LINE_METRICS,
    )
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[device_id] = plan
    return plan


_RulePlan = tuple[
    dict[str, list[ResolvedLevel]], dict[str, tuple[Rule, ...]], tuple[Rule, ...], frozenset[str]
]
_RulePlanKey = tuple[str, tuple[tuple[str, float | str], ...], tuple[tuple[str, float], ...]]
_RULE_PLANS: dict[_RulePlanKey, _RulePlan] = {}


def _rule_plan(domain: str, attrs: Mapping[str, float | str], overrides: Mapping[str, float]) -> _RulePlan:
    """The rules' part of a plan: the same for every device of a domain whose station
    attributes and threshold overrides are the same (most of a fleet), so built once for them
    (shared and never changed: ``levels``, ``instant``, ``derived``, ``needed``)."""
    key = (domain, tuple(sorted(attrs.items())), tuple(sorted(overrides.items())))
    known = _RULE_PLANS.get(key)
    if known is not None:
        return known
    rules = rules_for_device(domain)
    instant: dict[str, tuple[Rule, ...]] = {}
    for r in rules:
        if "." not in r.signal:
            instant[r.signal] = (*instant.get(r.signal, ()), r)
    derived = tuple(r for r in rules if "." in r.signal)
    plan = (
        {r.id: resolve_levels(r, attrs, overrides) for r in rules},
        instant,
        derived,
        frozenset(r.signal.partition(".")[0] for r in derived),
    )
    if len(_RULE_PLANS) >= _PLANS_MAX:
        _RULE_PLANS.clear()
    _RULE_PLANS[key] = plan
    return plan


def update_device(
    state: DeviceState,
    device_id: str,
    readings: Iterable[ReadingLike],
    *,
    record: DeviceRecord | None,
    domain: str,
    now: float,
    config: AnalyticsConfig,
) -> DeviceOutput:
    """Apply one batch of a device's clean readings to its state (in place).

    ``out.signals`` (the rolling signals at the watermark: every one with ``window_points``
    "minute", else those of the metrics the rules and the lines read) is computed when the
    batch writes the derived lines, i.e. once per device and minute of event time, and is
    empty otherwise.
    """
    out = DeviceOutput()
    plan = _plan(device_id, record, domain)
    subject, station_attrs, levels = plan.subject, plan.attrs, plan.levels
    back = _nodata_cleared(state, subject, now)
    if back is not None:
        out.events.append(back)
    state.seen = max(state.seen, now)

    by_ts = _by_event_time(readings if isinstance(readings, list) else list(readings))
    interval = (
        float(record.expected_interval_s)
        if record and record.expected_interval_s
        else config.default_interval_s
    )
    instant, derived = plan.instant, plan.derived
    normal, over_range = Quality.NORMAL, Quality.OVER_RANGE
    # a new minute's signals: all of them for the per-minute windows point, else those of the
    # metrics the rules and the other lines read (a new device's first update spent a third of
    # its time computing and formatting 1 h statistics no line wrote)
    per_minute = config.window_points == "minute"
    for_lines = None if per_minute else plan.for_lines
    # the batch writes the derived lines if its watermark enters a new minute: then the last
    # event time's signals are computed in full once, for its rules and for the lines
    last_ts = next(reversed(by_ts)) if by_ts else 0.0
    emit_at = last_ts if last_ts >= state.wm and int(last_ts // SLOT) != state.emitted else None
    full: dict[str, float] | None = None
    for ts, group in by_ts.items():
        flagged = 0.0
        late = _is_late(state, ts)  # ``closed`` moves only in _close_hours, below
        for r in group:
            quality = r.quality
            if quality is over_range:
                flagged = 1.0
            _place(state, r, ts, late, out)
            if quality is normal and not late:
                on_metric = instant.get(r.metric)
                if on_metric:
                    for rule in on_metric:
                        _apply(rule, levels[rule.id], state, r.value, ts, subject, out)
        if domain == "coldchain":
            _coldchain(state, group, ts, station_attrs, plan.overrides, config)
        if ts < state.wm:
            continue  # out of order: windows take it, rules only move forward in event time
        state.wm = ts
        out.hourly.extend(_close_hours(state, device_id, subject, domain, interval, out, config))
        # Derived signals at every event time, so a catch-up batch spanning hours walks
        # through the same rule transitions as live data would.
        if ts == emit_at:
            full = _signals(state, domain, station_attrs, ts, for_lines)
            at_ts = dict(full)
        else:
            at_ts = _signals(state, domain, station_attrs, ts, plan.needed)
        at_ts["dq.out_of_range"] = flagged
        for rule in derived:
            value = at_ts.get(rule.signal)
            if value is not None:
                _apply(rule, levels[rule.id], state, value, ts, subject, out)
    if not by_ts:
        return out
    minute = int(state.wm // SLOT)
    if minute != state.emitted:
        state.emitted = minute
        signals = full if full is not None else _signals(state, domain, station_attrs, state.wm, for_lines)
        out.signals = signals
        out.lines.extend(_derived_lines(state, subject, signals, station_attrs, per_minute))
    return out


def _by_event_time(readings: Sequence[ReadingLike]) -> dict[float, list[ReadingLike]]:
    """The readings grouped by event time (POSIX seconds), oldest first, each group in the
    readings' order: ``sorted(readings, key=ts)`` grouped by ``ts.timestamp()``.

    A device's message usually holds readings of one time, already in order: then one
    ``timestamp()`` per time and no sort (the datetimes compare equal or are the same object);
    readings out of order are sorted first.
    """
    by_ts: dict[float, list[ReadingLike]] = {}
    prev: datetime | None = None
    group: list[ReadingLike] = []
    for r in readings:
        at = r.ts
        if at is not prev:
            if prev is not None and at < prev:
                return _by_event_time(sorted(readings, key=lambda r: r.ts))
            if prev is None or at != prev:
                ts = at.timestamp()
                found = by_ts.get(ts)
                if found is None:
                    found = by_ts[ts] = []
                group = found
            prev = at
        group.append(r)
    return by_ts


def _is_late(state: DeviceState, ts: float) -> bool:
    return int(ts // HOUR) * HOUR < state.closed


def _place(state: DeviceState, r: ReadingLike, ts: float, late: bool, out: DeviceOutput) -> None:
    metric = r.metric
    m = state.metrics.get(metric)
    quality = r.quality
    summed = metric in SUM_METRICS
    key = int(ts) if summed else int(ts // SLOT) * SLOT  # its window entry's key
    if m is not None and quality is Quality.NORMAL:
        held = m.raw.get(key)
        if held is not None and ((held[0] == ts and held[1] == r.value) or (ts < held[0] and not summed)):
            # this very reading is in the windows already (sent again), or its minute holds a
            # newer one (it would not be placed): nothing changes, and nothing is counted
            return
    if late:
        if not _counted_again(state, metric, ts):
            state.late += 1
            out.late += 1
        return
    if m is None:
        m = state.metrics[metric] = MetricState()
    if quality is not Quality.NORMAL:
        if not _counted_again(state, metric, ts):
            state.excluded += 1
            if quality is Quality.OVER_RANGE:
                state.out_of_range += 1
        return
    value = r.value
    if not summed and len(m.raw) >= 10 and _is_spike(m, value):
        if not _counted_again(state, metric, ts):
            state.spikes += 1
            state.excluded += 1
        return
    last = m.last
    if last is None or ts >= last[0]:
        if last is not None and ts > last[0] and metric not in FLAT_EXEMPT:
            m.flat = m.flat + 1 if value == last[1] else 0
        m.last = [ts, value]
    if summed and value < 0:  # an accumulation cannot be negative (a counter reset upstream)
        if not _counted_again(state, metric, ts):
            state.excluded += 1
        return
    # (a minute slot held nothing, or an older reading: see above; an accumulation's second is
    # overwritten whatever it held)
    m.raw[key] = [ts, value]
    if m.oldest is not None and ts < m.oldest:
        m.oldest = ts


COUNTED_KEEP = 64  # readings counted as late, flagged or spikes remembered per metric (at least)


def _counted_again(state: DeviceState, metric: str, ts: float) -> bool:
    """Whether the reading of ``metric`` at ``ts`` was counted before (late, flagged, spike);
    remembered now if not.

    A reading sent again must not be counted again: after a worker restart the raw stage sends
    what it had not committed once more, as new ``readings.clean`` records, which the state's
    last applied position cannot recognise (and the raw stage's memory of recent readings,
    which drops a device's duplicates, starts empty). A normal reading already in its slot is
    recognised there (``_place``); these ones never enter the windows, so the state keeps their
    times: the newest ``COUNTED_KEEP`` to twice as many per metric, packed in the table value.
    """
    unpacked = state.counted_times.get(metric)
    if unpacked is None:
        times = _unpack_times(state.counted.get(metric, b""))
        unpacked = state.counted_times[metric] = (times, set(times))
    times, known = unpacked
    if ts in known:
        return True
    times.append(ts)
    known.add(ts)
    if len(times) > 2 * COUNTED_KEEP:
        del times[:-COUNTED_KEEP]
        state.counted_times[metric] = (times, set(times))
    state.counted[metric] = _pack_times(times)
    return False


def _pack_times(times: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(times)}d", *times)


def _unpack_times(blob: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(blob) // 8}d", blob))


def _median(values: list[float]) -> float:
    """``np.median`` of finite values, in Python (a sort of ≤ ~100 values beats numpy's calls)."""
    return _middle(sorted(values))


def _middle(ordered: list[float]) -> float:
    """The median of sorted values: the middle value, or the two middle ones summed and halved
    as numpy's mean of two does."""
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


NEAR = 0.05 / 1.06  # _near_median's band, as a share of max(|value|, 1)


def _near_median(raw: dict[int, list[float]], value: float) -> bool:
    """True when the median of the values in ``raw`` is certainly within 5 % of ``value``
    (``|value - median| <= 0.05 * max(|median|, 1)``), found by counting, without a sort.

    With ``t = NEAR * max(|value|, 1)``: if no more than ``(n - 1) // 2`` of the n values lie
    below ``value - t``, and no more than that many above ``value + t``, the median's middle
    value(s) lie in ``[value - t, value + t]``, and so does the median; then
    ``|value - median| <= t``, and ``t`` is at most ``0.05 * max(|median|, 1)`` with about 1 %
    to spare (``|median| >= |value| - t``), far more than rounding. False means "not known":
    the sort decides. A non-finite value is never certified; a NaN among the values (the wire
    refuses them) counts as lying outside the band on both sides.
    """
    if not math.isfinite(value):
        return False
    t = NEAR * max(abs(value), 1.0)
    low, high = value - t, value + t
    limit = (len(raw) - 1) // 2
    below = above = 0
    for held in raw.values():
        x = held[1]
        if not x >= low:  # a NaN counts on both sides
            below += 1
            if below > limit:
                return False
        if not x <= high:
            above += 1
            if above > limit:
                return False
    return True


def _is_spike(m: MetricState, value: float) -> bool:
    """Whether ``value`` is over 6 scaled MADs and 5 % away from the median of the metric's
    recent values (both must hold).

    The 5 % test needs only the median, so it goes first and most values stop there, most of
    them without a sort (``_near_median`` counts the values on either side of a band); the
    deviations are taken from the sorted values, which makes them two sorted runs (falling to
    the median, then rising), and ``sorted`` merges runs in one pass instead of a full sort.
    """
    if len(m.raw) < 10:
        return False
    if _near_median(m.raw, value):
        return False
    ordered = sorted([v[1] for v in m.raw.values()])
    median = _middle(ordered)
    off = abs(value - median)
    if not off > 0.05 * max(abs(median), 1.0):
        return False
    mad = _middle(sorted([abs(v - median) for v in ordered]))
    scale = max(mad, 1e-6 * max(abs(median), 1.0), 1e-9)
    return off > 6.0 * scale * 1.4826


def _apply(
    rule: Rule,
    levels: list[ResolvedLevel],
    state: DeviceState,
    value: float,
    ts: float,
    subject: Subject,
    out: DeviceOutput,
) -> None:
    raw = state.rules.get(rule.id)
    quiet = step_quiet(rule, levels, raw, value, ts)
    if quiet is not None:  # not raised and staying so: most rules at most event times
        state.rules[rule.id] = quiet
        return
    rs = RuleState.load(raw)
    event = evaluate(rule, levels, rs, value, ts, subject)
    state.rules[rule.id] = rs.dump()
    if event is not None:
        out.events.append(event)


def _close_hours(
    state: DeviceState,
    device_id: str,
    subject: Subject,
    domain: str,
    interval_s: float,
    out: DeviceOutput,
    config: AnalyticsConfig,
) -> list[HourlyValues]:
    """Close every hour whose end + grace the watermark has passed.

    An hourly value is valid with at least 45 minutes of data: samples x max(1 min, the
    device's reporting interval).
    """
    upto = int((state.wm - config.grace_s) // HOUR) * HOUR  # hours before this are closed
    since = state.closed
    if upto > state.closed:  # hours close (and old ones go): they are needed
        load_hours(state)
    if state.closed == 0:
        first = min((min(m.raw) for m in state.metrics.values() if m.raw), default=upto)
        state.closed = min(int(first // HOUR) * HOUR, upto)
    results: list[HourlyValues] = []
    hour = state.closed
    while hour < upto:
        means: dict[str, float] = {}
        counts: dict[str, int] = {}
        sums: dict[str, str] = {}
        for name, m in state.metrics.items():
            aggregated = _aggregate(m, name, hour)
            if aggregated is None:
                continue
            agg, exact_sum = aggregated
            m.hours[hour] = agg
            m.means.clear()
            if agg[1] > 0 and (
                name in SUM_METRICS or agg[1] * max(SLOT, interval_s) >= HOURLY_MIN_COVERAGE_S
            ):
                means[name] = agg[0]
                counts[name] = int(agg[1])
                sums[name] = str(exact_sum)
            stats = {
                "value": agg[0],
                "n": int(agg[1]),
                "min": agg[2],
                "max": agg[3],
                "valid": int(name in means),
            }
            tags = f"{_tags(subject)},metric={_tag_value(name)}"
            out.lines.append(f"hourly,{tags} {_fields(stats)} {_ns(hour)}")
        if means:
            results.append(
                HourlyValues(
                    station_id=subject.station_id or device_id,
                    device_id=device_id,
                    domain=domain,
                    hour=datetime.fromtimestamp(hour, UTC),
                    means=means,
                    counts=counts,
                    sums=sums,
                )
            )
        hour += HOUR
    moved = upto > state.closed or bool(results)
    closed = state.closed = max(state.closed, upto)
    if closed > since and config.window_points == "hour":
        _hour_windows_lines(state, subject, since, out)  # (before the oldest hours go, below)
    oldest = closed - KEEP_HOURS * HOUR
    # accumulations keep 24 h of raw entries (rolling sums); means the last hour (rolling 1 h
    # statistics), whatever hours have closed
    keep_sums, keep_means = closed - 24 * HOUR, min(closed, state.wm - HOUR)
    for name, m in state.metrics.items():
        keep_raw_from = keep_sums if name in SUM_METRICS else keep_means
        if m.oldest is None or m.oldest < keep_raw_from:
            m.oldest = _drop_stale(m.raw, keep_raw_from)
        if moved:  # hours are added and ``oldest`` moves only when hours close
            m.hours = {h: v for h, v in m.hours.items() if h >= oldest}
            m.means.clear()
    return results


def _drop_stale(raw: dict[int, list[float]], keep_from: float) -> float:
    """Remove the entries whose reading is older than ``keep_from``, oldest key first; return
    a lower bound of the timestamps kept (the smallest key less one; infinity when none are).

    A key is its reading's slot start (``floor(ts / SLOT) * SLOT``) or, for an accumulation, its
    whole second (``int(ts)``): keys are distinct, every reading lies in ``[key, key + step)``
    for non-negative times, and a greater key is at least one step greater. So once the
    smallest key's reading is recent enough, every other reading is too, and the stale ones are
    found by ``min`` over the integer keys (in C) instead of a pass over every entry (at an hour
    of minute slots, the pass was ~10 µs per metric and batch). Usually one entry goes: the
    slot that just left the hour. A key below zero (a reading before 1970) takes the full pass.
    """
    while raw:
        key = min(raw)
        if key < 0:
            for k in [k for k, v in raw.items() if v[0] < keep_from]:
                del raw[k]
            return float(min(raw)) - 1.0 if raw else math.inf
        if raw[key][0] >= keep_from:
            return float(key) - 1.0
        del raw[key]
    return math.inf


def _aggregate(m: MetricState, name: str, hour: int) -> tuple[list[float], Fraction] | None:
    """``[mean-or-sum, n, min, max]`` of an hour and the exact sum of its values.

    The sum is exact (each value at its shortest repr, summed exactly: ``_exact_sum``) and the
    mean is that sum / n correctly rounded, so an hourly mean of exactly 80.5 is 80.5 in any
    order.
    """
    values = [v[1] for v in m.raw.values() if hour <= v[0] < hour + HOUR]
    if not values:
        return None
    total = _exact_sum(values)
    agg = float(total) if name in SUM_METRICS else float(total / len(values))
    return [agg, float(len(values)), min(values), max(values)], total


# the rolling means of closed hours: (window hours, valid hourly values it needs), GB 3095 Table 4
_MEAN_8H = (8, 6)
_MEAN_24H = (24, 20)


def _means_known(m: MetricState, end: float) -> bool:
    """Whether the 8 h and 24 h means at ``end`` are remembered (see ``_signals``)."""
    for hours, min_valid in (_MEAN_8H, _MEAN_24H):
        known = m.means.get(hours)
        if known is None or known[0] != end or known[1] != min_valid:
            return False
    return True


def _window_mean(m: MetricState, end: float, hours: int, min_valid: int) -> float | None:
    """Mean of the valid closed hourly means in the ``hours`` before ``end`` (remembered in
    ``m.means`` until ``hours`` change or another ``end`` is asked for)."""
    known = m.means.get(hours)
    if known is not None and known[0] == end and known[1] == min_valid:
        return known[2]  # type: ignore[no-any-return]
    if len(m.hours) < min_valid:
        # too few hours in total, whatever the window (no exact arithmetic needed); remembered
        # too, so that a state whose hours are still packed need not decode them to know it
        m.means[hours] = [end, min_valid, None]
        return None
    start = end - hours * HOUR
    vals = [v[0] for h, v in m.hours.items() if start <= h < end and v[1] > 0]
    mean = _exact_mean_of_floats(vals, max(min_valid, 1))
    m.means[hours] = [end, min_valid, mean]
    return mean


# Decimal sums of float reprs are exact while they fit this many digits (a float's repr has
# at most 17 significant digits and exponents within ±324: 700 digits hold any sum of them);
# Inexact is trapped, so a sum that would round falls back to Fractions instead.
_EXACT = Context(prec=700, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, Overflow, InvalidOperation])


def _exact_mean_of_floats(values: list[float], min_count: int) -> float | None:
    """``streams.analytics.validity.mean_if_valid`` for floats, ~20x faster: the exact sum of
    the values' reprs in Decimal (C) instead of one Fraction per value; the same exact mean,
    rounded once."""
    valid = [v for v in values if math.isfinite(v)]
    if not valid or len(valid) < min_count:
        return None
    return float(_exact_sum(valid) / len(valid))


def _exact_sum(values: list[float]) -> Fraction:
    """``sum(Fraction(repr(v)) for v in values)``, the exact sum of the values' shortest reprs,
    ~15x faster: added in Decimal (C) and made a Fraction once. A sum that would need more
    than 700 digits, or a value that is not finite, takes the Fractions (which then raise as
    before for ``inf`` or ``nan``)."""
    try:
        total = _EXACT.create_decimal(0)
        for v in values:
            if not math.isfinite(v):
                raise InvalidOperation
            total = _EXACT.add(total, Decimal(repr(float(v))))
    except (Inexact, Overflow, InvalidOperation):
        return sum((Fraction(repr(v)) for v in values), Fraction(0))
    return Fraction(total)


_MIN, _MAX = np.minimum.reduce, np.maximum.reduce
_NUMPY_FROM = 8  # from 8 values on, numpy sums pairwise (8 accumulators), not in sequence
_PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE: longer runs are split in two


def _pairwise_sum(a: list[float], lo: int, n: int) -> float:
    """numpy's pairwise sum of ``a[lo:lo + n]`` (``pairwise_sum`` in its ``loops_utils``), in
    the same order: up to 128 values, eight running sums over strides of 8, combined as
    ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, then the remainder in sequence;
    beyond, the two halves (the first a multiple of 8 long) summed apart. ``n`` is at least 8
    (below, numpy adds in sequence: ``_stats``)."""
    if n <= _PAIRWISE_BLOCK:
        r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
        r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
        i = lo + 8
        end = lo + n - n % 8
        while i < end:
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < lo + n:
            res += a[i]
            i += 1
        return res
    half = n // 2
    half -= half % 8
    return _pairwise_sum(a, lo, half) + _pairwise_sum(a, lo + half, n - half)


def _stats(values: list[float]) -> tuple[float, float, float]:
    """``(mean, min, max)`` of finite values, bit for bit as numpy's ``mean``/``min``/``max``.

    Below 8 values numpy adds in sequence from 0.0; from 8 on it adds pairwise
    (``_pairwise_sum``) to its reduction's starting 0.0. Both run here without numpy's ~2 µs
    per call (the windows hold up to 60 minute slots: 5.3 µs per metric with numpy). A zero
    extreme goes to numpy (its SIMD min/max picks the sign of a zero its own way).
    """
    n = len(values)
    if n < _NUMPY_FROM:
        total = 0.0
        for v in values:
            total += v
    else:
        total = 0.0 + _pairwise_sum(values, 0, n)
    low = high = values[0]
    for v in values:  # a compiled loop over unboxed floats: a third of builtin min and max
        if v < low:
            low = v
        elif v > high:
            high = v
    if low != 0.0 and high != 0.0:
        return total / n, low, high
    arr = np.asarray(values, dtype=float)
    return total / n, float(_MIN(arr)), float(_MAX(arr))


_SIGNAL_KEYS: dict[str, tuple[str, str, str, str, str]] = {}


def _signal_keys(metric: str) -> tuple[str, str, str, str, str]:
    """``<metric>.mean_1h``, ``.min_1h``, ``.max_1h``, ``.mean_8h``, ``.mean_24h`` (remembered:
    formatting five keys per metric and event time was a tenth of ``_signals``)."""
    keys = _SIGNAL_KEYS.get(metric)
    if keys is None:
        if len(_SIGNAL_KEYS) >= _TAGS_CACHE_MAX:
            _SIGNAL_KEYS.clear()
        keys = _SIGNAL_KEYS[metric] = (
            f"{metric}.mean_1h",
            f"{metric}.min_1h",
            f"{metric}.max_1h",
            f"{metric}.mean_8h",
            f"{metric}.mean_24h",
        )
    return keys


def _signals(
    state: DeviceState,
    domain: str,
    attrs: Mapping[str, float | str],
    wm: float,
    only: AbstractSet[str] | None,
) -> dict[str, float]:
    """Rolling values at event time ``wm``: 1 h stats, 8 h / 24 h means, sums, rise, margins.

    ``only`` limits the work to the metrics whose signals a rule needs (None: everything).
    Every value is finite (a non-finite one is left out).
    """
    out: dict[str, float] = {}
    flat = 0
    isfinite = math.isfinite
    metrics: Iterable[tuple[str, MetricState]] = state.metrics.items()
    if only is not None and only.isdisjoint(state.metrics):  # no windows needed (most rules)
        flat = max([m.flat for m in state.metrics.values()], default=0)
        metrics = ()
    for name, m in metrics:
        if m.flat > flat:
            flat = m.flat
        if only is not None and name not in only:
            continue
        if name in SUM_METRICS:
            sums = rain.rolling_sums([(int(v[0]), v[1]) for v in m.raw.values() if v[0] <= wm], int(wm))
            for hours, total in sums.items():
                out[f"{name}.sum_{hours}h"] = round(total, 3)
            if name == "rain":
                signal = rain.rainstorm_signal(sums)
                out["rain.storm_signal"] = float(signal.severity if signal else 0)
            continue
        mean_key, min_key, max_key, key_8h, key_24h = _signal_keys(name)
        since = wm - HOUR
        # every entry is at most the watermark's time and at least ``m.oldest``: when that is
        # inside the hour (most updates) the whole window is the hour's, in the same order
        whole = wm >= state.wm and m.oldest is not None and m.oldest > since
        values = (
            [v[1] for v in m.raw.values()] if whole else [v[1] for v in m.raw.values() if since < v[0] <= wm]
        )
        if values:
            mean_1h, low, high = _stats(values)
            out[mean_key] = mean_1h
            out[min_key] = low
            out[max_key] = high
            if name == "level":
                recent = [(v[0], v[1]) for v in m.raw.values() if since < v[0] <= wm]
                rise = flood.level_rise_per_hour(recent, now_s=wm)
                if rise is not None:
                    out["level.rise_per_h"] = rise
        end = float(state.closed)
        if state.hours_loader is not None and not _means_known(m, end):
            load_hours(state)
        if state.hours_loader is not None or len(m.hours) >= _MEAN_8H[1]:
            # (fewer closed hours than either window needs: neither mean; with the hours still
            # packed, both means are remembered for this end)
            mean = _window_mean(m, end, *_MEAN_8H)
            if mean is not None:
                out[key_8h] = mean
            mean = _window_mean(m, end, *_MEAN_24H)
            if mean is not None:
                out[key_24h] = mean
        elif state.packed_hours is not None:
            # neither mean, remembered for a state whose hours go packed (a metric first seen
            # later than the others), so that its next decode need not unpack them to know it
            for hours, min_valid in (_MEAN_8H, _MEAN_24H):
                m.means[hours] = [end, min_valid, None]
    if flat:
        out["dq.flat_intervals"] = float(flat)
    else:
        out.setdefault("dq.flat_intervals", 0.0)
    for value in out.values():
        if not isfinite(value):  # rare (an overflowing mean): rebuilt without the non-finite ones
            out = {k: v for k, v in out.items() if isfinite(v)}
            break
    level = state.metrics.get("level")
    if level is not None and level.last is not None:
        for attr in ("warning_level", "guaranteed_level"):
            limit = attrs.get(attr)
            if isinstance(limit, int | float):
                out[f"level.margin_{attr.removesuffix('_level')}"] = float(limit) - level.last[1]
    if domain == "coldchain" and (only is None or "coldchain" in only) and state.shipments:
        # the excursion the goods are in now: the current shipment's (the one read last), not
        # one that ended with its trip (handed over; its summary keeps the longest excursion)
        current = max(state.shipments.values(), key=lambda ship: ship[_LAST_TS])
        out["coldchain.excursion_s"] = _excursion_now(current)
    return out


# Cold chain: per shipment [last_ts, last_temp, above_s, below_s, excursions, exc_start, longest_s,
#                           mkt_sum, weight_s, low, high]
_LAST_TS, _LAST_T, _ABOVE, _BELOW, _EXC, _EXC_START, _LONGEST, _MKT_SUM, _WEIGHT, _LOW, _HIGH = range(11)


def _limit(
    attrs: Mapping[str, float | str], overrides: Mapping[str, float], name: str, default: float
) -> float:
    value = overrides.get(f"coldchain.{name}", attrs.get(f"temp_{name}"))
    return float(value) if isinstance(value, int | float) else default


def _coldchain(
    state: DeviceState,
    group: list[ReadingLike],
    ts: float,
    attrs: Mapping[str, float | str],
    overrides: Mapping[str, float],
    config: AnalyticsConfig,
) -> None:
    for r in group:
        if r.metric != "temperature" or r.quality is not Quality.NORMAL:
            continue
        key = r.shipment or "_"
        ship = state.shipments.get(key)
        low = _limit(attrs, overrides, "low", config.coldchain_low)
        high = _limit(attrs, overrides, "high", config.coldchain_high)
        if ship is None:
            _end_shipments(state, ts)
            state.shipments[key] = [ts, r.value, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, low, high]
            if not low <= r.value <= high:
                state.shipments[key][_EXC] = 1.0
                state.shipments[key][_EXC_START] = ts
            continue
        if ts <= ship[_LAST_TS]:
            continue  # replayed or late: accumulators only move forward in event time
        dt = min(ts - ship[_LAST_TS], COLDCHAIN_MAX_GAP_S)
        prev = ship[_LAST_T]
        if prev > ship[_HIGH]:
            ship[_ABOVE] += dt
        elif prev < ship[_LOW]:
            ship[_BELOW] += dt
        if MKT_MIN_C <= r.value <= MKT_MAX_C:  # outside, exp() over/underflows: not a temperature
            first = prev if MKT_MIN_C <= prev <= MKT_MAX_C else r.value
            ship[_MKT_SUM], ship[_WEIGHT] = coldchain.mkt_add(
                ship[_MKT_SUM], ship[_WEIGHT], first, r.value, dt
            )
        side = _side(r.value, ship)
        changed = side != _side(prev, ship)
        if changed and ship[_EXC_START] >= 0:  # a run outside ends (back inside, or to the other side)
            ship[_LONGEST] = max(ship[_LONGEST], ts - ship[_EXC_START])
            ship[_EXC_START] = -1.0
        if side and (changed or ship[_EXC_START] < 0):  # a run starts (or resumes after it ended)
            ship[_EXC] += 1
            ship[_EXC_START] = ts
        if ship[_EXC_START] >= 0:
            ship[_LONGEST] = max(ship[_LONGEST], ts - ship[_EXC_START])
        ship[_LAST_TS], ship[_LAST_T] = ts, r.value


def _end_shipments(state: DeviceState, ts: float) -> None:
    """A new shipment starts at ``ts``: the logger's earlier ones have ended. A run outside the
    range ends with its shipment's last reading (its longest is already counted), and a
    shipment that ended more than a week before is forgotten (its summaries are stored)."""
    for key, ship in list(state.shipments.items()):
        if ship[_LAST_TS] >= ts:
            continue  # read at or after this one (out of order): not ended by it
        ship[_EXC_START] = -1.0
        if ship[_LAST_TS] < ts - SHIPMENT_KEEP_S:
            del state.shipments[key]


def _side(temp: float, ship: list[float]) -> int:
    """+1 above the shipment's range, -1 below, 0 inside (a limit value is inside)."""
    return 1 if temp > ship[_HIGH] else -1 if temp < ship[_LOW] else 0


def _excursion_now(ship: list[float]) -> float:
    return ship[_LAST_TS] - ship[_EXC_START] if ship[_EXC_START] >= 0 else 0.0


def mkt_c(ship: list[float]) -> float | None:
    """Mean kinetic temperature (°C) of a shipment so far: ``coldchain.mkt_series`` of its
    readings (each weighted by the interval since the previous one, capped at 1 h), kept as
    running sums that move forward in event time only (a replay cannot inflate them)."""
    if ship[_WEIGHT] <= 0 and not MKT_MIN_C <= ship[_LAST_T] <= MKT_MAX_C:
        return None
    return coldchain.mkt_from_sums(ship[_MKT_SUM], ship[_WEIGHT], ship[_LAST_T])


_TO_WINDOW, _TO_TREND, _TO_SUM, _TO_NONE = "window", "trend", "sum", "none"
_PLACES: dict[str, tuple[str, str, str]] = {}


def _place_of(key: str) -> tuple[str, str, str]:
    """Where a signal goes in the derived lines, remembered per key: ``(_TO_WINDOW, field)``,
    ``(_TO_TREND, stat, window field or "")``, ``(_TO_SUM, stat)`` or ``(_TO_NONE, ...)``."""
    metric, _, stat = key.rpartition(".")  # a metric name may hold dots, a stat never
    place: tuple[str, str, str]
    if metric == "level":
        place = (_TO_TREND, stat, "" if stat.startswith("margin") else f"{metric}_{stat}")
    elif metric in SUM_METRICS:
        place = (_TO_SUM, stat, "") if metric == "rain" and stat.startswith("sum_") else (_TO_NONE, "", "")
    elif metric in ("dq", "coldchain"):
        place = (_TO_NONE, "", "")
    else:
        place = (_TO_WINDOW, f"{metric}_{stat}", "")  # metric names are field-key safe (METRIC_PATTERN)
    if len(_PLACES) >= _TAGS_CACHE_MAX:
        _PLACES.clear()
    _PLACES[key] = place
    return place


def _hour_windows_lines(state: DeviceState, subject: Subject, since: int, out: DeviceOutput) -> None:
    """The ``windows`` points of the hours that closed after ``since``: at each hour's end, each
    metric's 8 h and 24 h sliding means ending there (GB 3095 validity: at least 6 of 8 and 20
    of 24 hourly values; that hour's own mean, min and max are its ``hourly`` point). None for
    an end where no mean is valid (a new device; a day into a station's silence)."""
    if not since:
        return  # the device's first hours: none has closed with data before
    tags = ""
    # (hours close in order as event time moves, several at once only after a silence: the
    # hours after ``since`` hold no data then, and a window ending a day later none at all)
    last = min(state.closed, since + _MEAN_24H[0] * HOUR)
    for end in range(since + HOUR, last + 1, HOUR):
        names: list[str] = []
        values: list[float] = []
        for name, m in state.metrics.items():
            if name in SUM_METRICS or len(m.hours) < _MEAN_8H[1]:
                continue  # (an accumulation has sums, not means; fewer hours than either mean needs)
            for hours, min_valid in (_MEAN_8H, _MEAN_24H):
                mean = _window_mean(m, float(end), hours, min_valid)
                if mean is not None and math.isfinite(mean):
                    names.append(f"{name}_mean_{hours}h")
                    values.append(float(mean))
        if names:
            tags = tags or _tags(subject)
            out.lines.append(_windows_line(tags, names, values, _ns(end)))


def _windows_line(tags: str, keys: list[str], values: list[float], ns: int) -> str:
    """A ``windows`` point: one series per device, fields ``<metric>_<stat>``."""
    joined = ",".join([f"{k}={t}" for k, t in zip(keys, float_texts(values), strict=True)])
    return f"windows,{tags} {joined} {ns}"


def _derived_lines(
    state: DeviceState,
    subject: Subject,
    signals: Mapping[str, float],
    attrs: Mapping[str, float | str],
    with_windows: bool,
) -> list[str]:
    ns = _ns(state.wm)
    tags = _tags(subject)
    lines: list[str] = []
    windows: list[str] = []  # <metric>_<stat> field keys (one point per device) and their values
    sums: dict[str, float] = {}  # rain.sum_*
    trend: dict[str, float | int | str] = {}  # level.*
    window_values: list[float] = []
    places = _PLACES
    for key, value in signals.items():  # one pass, each kind in the signals' order
        place = places.get(key) or _place_of(key)
        if place[0] is _TO_WINDOW:
            if math.isfinite(value):  # signals are floats; a non-finite one is left out
                windows.append(place[1])
                window_values.append(float(value))
        elif place[0] is _TO_TREND:
            trend[place[1]] = value
            if place[2] and math.isfinite(value):  # level.<stat> is a window field too (not margins)
                windows.append(place[2])
                window_values.append(float(value))
        elif place[0] is _TO_SUM:
            sums[place[1]] = value
    if windows and with_windows:
        lines.append(_windows_line(tags, windows, window_values, ns))
    if sums:
        fields: dict[str, float | int | str] = dict(sums)
        fields["storm_signal"] = int(signals.get("rain.storm_signal", 0))
        grade = rain.rain_grade(sums["sum_24h"], 24)
        if grade is not None:
            fields["grade_24h"] = grade.name_en
        lines.append(f"rainfall_sum,{tags} {_fields(fields)} {ns}")
    if trend:
        for attr in ("warning_level", "guaranteed_level"):  # the station's lines, for the flood dashboard
            limit = attrs.get(attr)
            if isinstance(limit, int | float):
                trend[attr] = float(limit)
        lines.append(f"level_trend,{tags} {_fields(trend)} {ns}")
    latest = max((ship[_LAST_TS] for ship in state.shipments.values()), default=0.0)
    for key, ship in state.shipments.items():
        if ship[_LAST_TS] < min(latest, state.wm - SHIPMENT_SUMMARY_AFTER_S):
            continue  # ended over an hour ago: its final summary is stored
        cc: dict[str, float | int | str] = {
            "time_above_s": ship[_ABOVE],
            "time_below_s": ship[_BELOW],
            "excursions": int(ship[_EXC]),
            "longest_s": ship[_LONGEST],
            "excursion_s": _excursion_now(ship),
        }
        mkt = mkt_c(ship)
        if mkt is not None:
            cc["mkt_c"] = round(mkt, 3)
        lines.append(f"coldchain_summary,{tags},shipment={_esc(key)} {_fields(cc)} {ns}")
    dq: dict[str, float | int | str] = {
        "late": state.late,
        "excluded": state.excluded,
        "spikes": state.spikes,
        "out_of_range": state.out_of_range,
        "flat_intervals": signals.get("dq.flat_intervals", 0.0),
    }
    lines.append(f"data_quality,{tags} {_fields(dq)} {ns}")
    return lines


def _nodata_event(
    state: RuleState, what: AlertState, subject: Subject, silence: float, limit: float, ts: float
) -> AlertEvent:
    where = subject.station_id or subject.id
    if what is AlertState.CLEARED:
        text, text_zh = f"data again after {silence:.0f} s", f"恢复上报（中断 {silence:.0f} 秒）"
    else:
        text = f"no data for {silence:.0f} s (expected every {limit:.0f} s incl. grace)"
        text_zh = f"{silence:.0f} 秒无数据（应在 {limit:.0f} 秒内上报）"
    return AlertEvent(
        alert_id=f"{NODATA_RULE.id}:{subject.key}",
        state=what,
        seq=state.seq,
        severity=Severity.MINOR,
        rule=NODATA_RULE.id,
        kind=NODATA_RULE.kind,
        domain=NODATA_RULE.domain,
        subject=subject.key,
        station_id=subject.station_id,
        device_id=subject.device_id,
        region=subject.region,
        basin=subject.basin,
        metric=NODATA_RULE.signal,
        value=round(silence, 3),
        threshold=limit,
        raised_at=datetime.fromtimestamp(state.raised_at or ts, UTC),
        observed_at=datetime.fromtimestamp(ts, UTC),
        explanation=f"{where} ({subject.id}): {text}",
        explanation_zh=f"{where}（{subject.id}）：{text_zh}",
    )


def nodata_limit(record: DeviceRecord | None, config: AnalyticsConfig) -> float:
    """Silence after which a device is offline: its expected interval plus the grace period."""
    interval = (
        record.expected_interval_s if record and record.expected_interval_s else config.default_interval_s
    )
    return float(interval) + config.nodata_grace_s


def silence_due(
    seen: float,
    rules: Mapping[str, list[Any]],
    *,
    record: DeviceRecord | None,
    now: float,
    config: AnalyticsConfig,
) -> bool:
    """Whether :func:`check_silence` raises the no-data alert now, from the two fields it
    reads (the timer asks this of every device; see ``statecodec.peek_device``)."""
    if seen <= 0 or (record is not None and record.status is DeviceStatus.RETIRED):
        return False
    if now - seen <= nodata_limit(record, config):
        return False
    return RuleState.load(rules.get(NODATA_RULE.id)).active < 0


def check_silence(
    state: DeviceState,
    device_id: str,
    *,
    record: DeviceRecord | None,
    domain: str,
    now: float,
    config: AnalyticsConfig,
) -> AlertEvent | None:
    """Raise the device's no-data alert once it has been silent longer than its limit.

    Wall-clock time (arrival), not event time: a device that stops sending has no event
    time. Retired devices are not watched.
    """
    if not silence_due(state.seen, state.rules, record=record, now=now, config=config):
        return None
    limit = nodata_limit(record, config)
    silence = now - state.seen
    rs = RuleState.load(state.rules.get(NODATA_RULE.id))
    rs.active, rs.seq, rs.raised_at = 0, 1, state.seen + limit
    state.rules[NODATA_RULE.id] = rs.dump()
    return _nodata_event(rs, AlertState.RAISED, subject_for(device_id, record, domain), silence, limit, now)


def _nodata_cleared(state: DeviceState, subject: Subject, now: float) -> AlertEvent | None:
    raw = state.rules.get(NODATA_RULE.id)
    if not raw or int(raw[0]) < 0:  # not raised (RuleState.load(raw).active < 0), at every update
        return None
    rs = RuleState.load(raw)
    rs.seq += 1
    event = _nodata_event(rs, AlertState.CLEARED, subject, now - state.seen, 0.0, now)
    state.rules[NODATA_RULE.id] = RuleState().dump()
    return event
