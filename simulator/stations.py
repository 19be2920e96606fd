"""Run the fleet's TCP stations (HJ 212 loggers, SL 651 RTUs) against the center's collectors."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from simulator.fleet import AirStation, DeviceSpec, Hj212Wire, HydroRtu, Sl651Wire, WaterStation
from simulator.hj212 import Hj212Station
from simulator.link import StationCounters, monotonic, sleep_or_stop
from simulator.sl651 import Sl651Rtu

__all__ = ["StationStats", "hj212_stations", "run_stations", "sl651_rtus"]


@dataclass(frozen=True, slots=True)
class StationStats:
    """What the TCP stations did, per protocol (``total`` sums them)."""

    hj212: StationCounters
    sl651: StationCounters
    stations: int
    seconds: float

    @property
    def total(self) -> StationCounters:
        """Both protocols together."""
        out = dataclasses.replace(self.hj212)
        out.add(self.sl651)
        return out


def hj212_stations(fleet: Sequence[DeviceSpec]) -> list[AirStation | WaterStation]:
    """The fleet's HJ 212 data loggers on TCP."""
    return [
        spec
        for spec in fleet
        if isinstance(spec, AirStation | WaterStation)
        and isinstance(spec.link, Hj212Wire)
        and spec.link.transport == "tcp"
    ]


def sl651_rtus(fleet: Sequence[DeviceSpec]) -> list[HydroRtu]:
    """The fleet's SL 651 RTUs."""
    return [spec for spec in fleet if isinstance(spec, HydroRtu) and isinstance(spec.link, Sl651Wire)]


async def run_stations(
    fleet: Sequence[DeviceSpec],
    *,
    hj212: tuple[str, int] | None,
    sl651: tuple[str, int] | None,
    interval_s: float = 60.0,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[StationStats], None] | None = None,
    ack_timeout_s: float = 10.0,
    minute_s: float = 60.0,
    hour_s: float = 3600.0,
    keepalive_s: float = 40.0,
) -> StationStats:
    """Run every TCP station of ``fleet`` until ``duration_s`` passed, ``stop`` is set, or cancelled.

    HJ 212 loggers connect to ``hj212`` (host, port), SL 651 RTUs to ``sl651``; a protocol
    whose address is None does not run. ``interval_s`` is the HJ 212 real-time period and the
    SL 651 timed-report period; minute and hourly data follow the stations' clocks
    (``minute_s`` / ``hour_s`` shorten them in tests). ``on_progress`` gets a snapshot about
    once a second.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    h_count, s_count = StationCounters(), StationCounters()
    inner = asyncio.Event()
    runners: list[Hj212Station | Sl651Rtu] = []
    if hj212 is not None:
        host, port = hj212
        runners += [
            Hj212Station(
                spec,
                host=host,
                port=port,
                interval_s=interval_s,
                minute_s=minute_s,
                hour_s=hour_s,
                ack_timeout_s=ack_timeout_s,
                counters=h_count,
            )
            for spec in hj212_stations(fleet)
        ]
    if sl651 is not None:
        host, port = sl651
        runners += [
            Sl651Rtu(
                spec,
                host=host,
                port=port,
                interval_s=interval_s,
                hour_s=hour_s,
                ack_timeout_s=ack_timeout_s,
                keepalive_s=keepalive_s,
                counters=s_count,
            )
            for spec in sl651_rtus(fleet)
        ]
    started = monotonic()

    def snapshot() -> StationStats:
        return StationStats(
            dataclasses.replace(h_count), dataclasses.replace(s_count), len(runners), monotonic() - started
        )

    tasks = [asyncio.create_task(runner.run(inner)) for runner in runners]
    try:
        while tasks and not all(t.done() for t in tasks):
            if stop is not None and stop.is_set():
                break
            if duration_s is not None and monotonic() - started >= duration_s:
                break
            left = 1.0 if duration_s is None else min(1.0, duration_s - (monotonic() - started))
            if stop is not None:
                await sleep_or_stop(stop, left)
            else:
                await asyncio.sleep(max(left, 0.0))
            if on_progress is not None:
                on_progress(snapshot())
        inner.set()
        await asyncio.gather(*tasks)
    finally:
        inner.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    stats = snapshot()
    if on_progress is not None:
        on_progress(stats)
    return stats
