"""History from the first minute: publish the fleet's last hours through the real pipeline.

Every device's past readings (``simulator.fleet`` models with the scenarios of
``simulator.episodes``) go the way a device's own history would go after an outage:

* stationflow JSON devices: one message per device and hour on ``devices/<id>/readings`` with
  a reading per step (past ``ts``), SenML devices one pack per hour (relative times);
* HJ 212 stations (DTU and TCP loggers alike): minute data (CN 2051, ``-Avg``) with past
  ``DataTime``, one frame per minute on ``devices/<id>/hj212`` as a DTU forwards it. The TCP
  collector allows a station 20 frames/s, which would stretch 48 h of minute data over
  2.4 minutes, so the TCP loggers' history takes the MQTT path (same MN, same password);
* SL 651 RTUs: hourly reports (34H: 5-minute rain and stage) with past observation times,
  each confirmed by the TCP collector.

Messages go out hour by hour (all devices' hour *h* before hour *h+1*), QoS 1; the run ends
when the broker acknowledged every message, so live data published afterwards follows each
device's history in event time. Pure message building (:func:`hour_messages`) is apart from
the publishing (:func:`run_backfill`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from simulator.episodes import EpisodePlan, overlay
from simulator.fleet import (
    AirStation,
    ColdChainLogger,
    DeviceSpec,
    Hj212Wire,
    HydroRtu,
    RainGauge,
    ReadingDict,
    RiverGauge,
    SenmlWire,
    WaterStation,
    format_ts,
    readings,
)
from simulator.hj212 import codes_for, make_qn, upload_frame
from simulator.link import BEIJING, StationCounters
from simulator.mqtt import SimulatorError, _connect, _Session, is_mqtt, senml_pack, topic_for
from simulator.sl651 import Sl651Rtu
from simulator.stations import sl651_rtus
from stationflow.settings import CommonSettings

__all__ = [
    "BackfillProgress",
    "BackfillStats",
    "BackfillWindow",
    "Message",
    "hour_messages",
    "load_until",
    "parse_duration",
    "plan_window",
    "run_backfill",
    "save_until",
    "step_for",
]

logger = logging.getLogger(__name__)

Message = tuple[str, bytes, int]  # topic, payload, readings
HOUR_S = 3600
DEFAULT_STEP_S = 60.0  # air and water: >= 45 values an hour make a valid hourly mean
SLOW_STEP_S = 300.0  # rain, river levels
COLD_STEP_S = 120.0
MAX_IN_FLIGHT = 2_000  # messages published but not yet acknowledged by the broker
INFLIGHT_WINDOW = 200  # paho's QoS 1 window (its default of 20 paces loopback at ~2k msgs/s)
ACK_TIMEOUT_S = 60.0
MIN_GAP_S = 120.0  # a restart after less than this publishes no history
UNTIL_FILE = "backfill.json"


@dataclass(frozen=True, slots=True)
class BackfillWindow:
    """History to publish: ``[start, end)``; ``episodes`` places the scenarios (a full backfill)."""

    start: datetime
    end: datetime
    step_s: float = DEFAULT_STEP_S
    episodes: bool = True

    @property
    def hours(self) -> list[tuple[datetime, datetime]]:
        """The window cut at whole UTC hours: ``(from, to)`` pieces, oldest first."""
        out: list[tuple[datetime, datetime]] = []
        lo = self.start
        while lo < self.end:
            hi = min(datetime.fromtimestamp((lo.timestamp() // HOUR_S + 1) * HOUR_S, UTC), self.end)
            out.append((lo, hi))
            lo = hi
        return out


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """Where a running backfill is."""

    hours_done: int
    hours: int
    messages: int
    readings: int
    seconds: float

    @property
    def rate(self) -> float:
        """Readings published per second so far."""
        return self.readings / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class BackfillStats:
    """What a backfill published and what the broker and the TCP collector confirmed."""

    hours: float
    messages: int
    readings: int
    acked: int
    rejected: int
    rtu: StationCounters
    seconds: float


def parse_duration(text: str) -> float:
    """``48h``, ``90m``, ``2d``, ``3600s`` or bare seconds → seconds; ``0`` disables."""
    text = text.strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError as exc:
        raise ValueError(f"not a duration: {text!r} (e.g. 48h, 90m, 2d, 0)") from exc
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a duration must be >= 0, got {text!r}")
    return value


def step_for(spec: DeviceSpec, step_s: float) -> float:
    """The backfill step of a device: ``step_s`` for air and water, coarser for slow signals."""
    if isinstance(spec, RainGauge | RiverGauge | HydroRtu):
        return max(step_s, SLOW_STEP_S)
    if isinstance(spec, ColdChainLogger):
        return max(step_s, COLD_STEP_S)
    return step_s


def _instants(lo: datetime, hi: datetime, step_s: float) -> list[datetime]:
    """Step-aligned instants in ``[lo, hi)``."""
    first = math.ceil(lo.timestamp() / step_s) * step_s
    out: list[datetime] = []
    t = first
    while t < hi.timestamp():
        out.append(datetime.fromtimestamp(t, UTC))
        t += step_s
    return out


def _samples(
    spec: DeviceSpec, lo: datetime, hi: datetime, window: BackfillWindow, plan: EpisodePlan | None
) -> list[tuple[datetime, list[ReadingDict]]]:
    step = step_for(spec, window.step_s)
    model = dataclasses.replace(spec, interval_s=step) if isinstance(spec, RainGauge | HydroRtu) else spec
    rng = random.Random(f"backfill:{spec.device_id}:{lo.timestamp():.0f}")
    out = []
    for t in _instants(lo, hi, step):
        rs = readings(model, t, rng)
        out.append((t, overlay(plan, model, t, rs) if plan is not None else rs))
    return out


def hour_messages(
    spec: DeviceSpec, lo: datetime, hi: datetime, window: BackfillWindow, plan: EpisodePlan | None
) -> list[Message]:
    """The MQTT messages of one device's history in ``[lo, hi)`` (pure: same inputs, same bytes)."""
    samples = _samples(spec, lo, hi, window, plan)
    if not samples:
        return []
    link = spec.link
    if isinstance(link, SenmlWire):
        payload = senml_pack(spec.device_id, link.base_prefix, samples)
        count = len(orjson.loads(payload))
        return [(f"devices/{spec.device_id}/senml", payload, count)]
    if isinstance(link, Hj212Wire) and isinstance(spec, AirStation | WaterStation):
        return [_hj212_minute(spec, link, t, rs) for t, rs in samples]
    batch = [{**r, "ts": format_ts(t)} for t, rs in samples for r in rs]
    return [(topic_for(spec.device_id), orjson.dumps({"readings": batch}), len(batch))]


def _hj212_minute(
    spec: AirStation | WaterStation, link: Hj212Wire, t: datetime, rs: list[ReadingDict]
) -> Message:
    """Minute data (CN 2051) of ``t`` as a DTU forwards it (Flag=4: no answer over MQTT)."""
    codes = codes_for(spec)
    values = {codes[r["metric"]]: float(r["value"]) for r in rs if r["metric"] in codes}
    local = t.astimezone(BEIJING).replace(tzinfo=None)
    frame = upload_frame(
        mn=link.mn,
        pw=link.password,
        cn="2051",
        data_time=local,
        values=values,
        suffix="Avg",
        qn=make_qn(local),
        flag=4,
        st=link.st,
    )
    return (f"devices/{spec.device_id}/hj212", frame, len(values))


def history_devices(fleet: Sequence[DeviceSpec]) -> list[DeviceSpec]:
    """Devices whose history goes over MQTT: the MQTT devices and the HJ 212 TCP loggers."""
    return [
        spec
        for spec in fleet
        if is_mqtt(spec) or (isinstance(spec.link, Hj212Wire) and isinstance(spec, AirStation | WaterStation))
    ]


def _plan(window: BackfillWindow, fleet: Sequence[DeviceSpec]) -> EpisodePlan | None:
    if not window.episodes:
        return None
    air = tuple(spec.device_id for spec in fleet if isinstance(spec, AirStation))
    return EpisodePlan(end=window.end, air_ids=air)


def rtu_report_ends(window: BackfillWindow) -> list[datetime]:
    """Ends of the whole hours inside the window, except the last one (the live RTU reports it)."""
    last = window.end.timestamp() // HOUR_S * HOUR_S
    first = math.ceil((window.start.timestamp() + HOUR_S) / HOUR_S) * HOUR_S
    return [datetime.fromtimestamp(e, UTC) for e in range(int(first), int(last), HOUR_S)]


async def run_backfill(
    settings: CommonSettings,
    fleet: Sequence[DeviceSpec],
    window: BackfillWindow,
    *,
    sl651: tuple[str, int] | None = None,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    stop: asyncio.Event | None = None,
) -> BackfillStats:
    """Publish ``window`` of the fleet's history; return once the broker acknowledged all of it.

    ``sl651`` (host, port) is the TCP collector of the SL 651 RTUs (None: their history is not
    sent). ``stop`` ends the run early (what was published is still waited for).
    """
    stop = stop or asyncio.Event()
    rtu_stop = asyncio.Event()  # the RTUs' own: a collector that never answers must not hang us
    started = time.monotonic()
    rtus = asyncio.gather(
        *[
            Sl651Rtu(spec, host=host, port=port).upload_history(rtu_report_ends(window), rtu_stop)
            for spec in sl651_rtus(fleet)
            for host, port in ([sl651] if sl651 is not None else [])
        ]
    )
    session = _Session(settings, client_id=f"stationflow-backfill-{random.getrandbits(32):08x}")
    session.client.max_inflight_messages_set(INFLIGHT_WINDOW)
    messages = count = 0
    pieces = window.hours
    try:
        await _connect(session, settings)
        devices = history_devices(fleet)
        plan = _plan(window, fleet)
        for done, (lo, hi) in enumerate(pieces, start=1):
            if stop.is_set():
                break
            batch = [m for spec in devices for m in hour_messages(spec, lo, hi, window, plan)]
            for topic, payload, n in batch:
                if not session.publish(topic, payload):
                    raise SimulatorError("the MQTT client's queue is full (broker unreachable?)")
                messages += 1
                count += n
            await asyncio.to_thread(session.wait_acked, messages - MAX_IN_FLIGHT, ACK_TIMEOUT_S)
            if on_progress is not None:
                on_progress(BackfillProgress(done, len(pieces), messages, count, time.monotonic() - started))
        if not await asyncio.to_thread(session.wait_acked, messages, ACK_TIMEOUT_S):
            raise SimulatorError(
                f"the broker acknowledged {session.acked:,} of {messages:,} history messages"
            )
        counters = StationCounters()
        await asyncio.wait([rtus], timeout=ACK_TIMEOUT_S)
        rtu_stop.set()
        for c in await rtus:
            counters.add(c)
    finally:
        if not rtus.done():
            rtu_stop.set()
            await asyncio.gather(rtus, return_exceptions=True)
        session.client.disconnect()
        session.client.loop_stop()
    hours = (window.end - window.start).total_seconds() / HOUR_S
    return BackfillStats(
        hours, messages, count, session.acked, session.rejected, counters, time.monotonic() - started
    )


# ------------------------------------------------------------------ what was published (state dir)


def load_until(state_dir: Path) -> datetime | None:
    """Up to when the fleet's data was published by an earlier run (None: never)."""
    try:
        doc = json.loads((state_dir / UNTIL_FILE).read_text())
        return datetime.fromisoformat(doc["until"]).astimezone(UTC)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_until(state_dir: Path, until: datetime) -> None:
    """Remember that the fleet's data is published up to ``until`` (atomically replaced)."""
    path = state_dir / UNTIL_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"until": until.astimezone(UTC).isoformat()}))
    tmp.replace(path)


def plan_window(duration_s: float, now: datetime, until: datetime | None) -> BackfillWindow | None:
    """What to publish: the last ``duration_s`` on a first start (with the episodes), the gap
    since ``until`` on a restart (no episodes: they were published the first time), or nothing."""
    if duration_s <= 0:
        return None
    start = now - timedelta(seconds=duration_s)
    if until is None:
        return BackfillWindow(start, now)
    if (now - until).total_seconds() < MIN_GAP_S:
        return None
    return BackfillWindow(max(start, until), now, episodes=False)
