"""HJ 212 load generator: N stations, each on its own TCP connection, uploading minute data.

Every station behaves as a data logger does after an outage: it connects, then uploads its
backlog of minute records (CN 2051, ``Flag=5``: the center must answer each with a 9014
data acknowledgement echoing the frame's QN), one frame at a time, sending the next once the
previous one is acknowledged and resending a frame whose acknowledgement does not come within
``ack_timeout_s`` (HJ 212-2017 Table 1: 10 s, 3 retries). After the backlog an optional
steady phase paces the remaining records at one per ``steady_interval_s`` per station.

All N connections are opened first (at most ``CONNECT_CONCURRENCY`` connects at a time, so
the server's listen backlog is not overrun) and held open together; uploads start once every
station is connected, so the server holds N concurrent connections for the whole run.

The frames are the simulator's (:func:`simulator.hj212.upload_frame`), the same bytes the
simulated stations of ``stationflow up`` send.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from simulator.hj212 import make_qn, upload_frame
from simulator.link import BEIJING

__all__ = [
    "POLLUTANTS",
    "Hj212Scenario",
    "LoadReport",
    "StationLoad",
    "raise_nofile",
    "run_stations",
]

# Pollutant codes of an ambient-air station (HJ 212-2017 Appendix B) with the catalog metric
# each maps to; every frame carries one ``-Avg`` and one ``-Flag`` per code.
POLLUTANTS: tuple[tuple[str, str, str], ...] = (
    ("a34004", "pm25", "ug/m3"),
    ("a34002", "pm10", "ug/m3"),
    ("a21026", "so2", "ug/m3"),
    ("a21004", "no2", "ug/m3"),
    ("a05024", "o3", "ug/m3"),
    ("a21005", "co", "mg/m3"),
)
ACK_TIMEOUT_S = 10.0  # HJ 212-2017 Table 1, GPRS/LTE bearers
ACK_RETRIES = 3
CONNECT_CONCURRENCY = 100  # asyncio.start_server's default listen backlog is 100
CONNECT_TIMEOUT_S = 30.0
READ_CHUNK = 4096
_QN_FIELD = re.compile(rb"(?:^|;|##\d{4})QN=(\d+)")


@dataclass(frozen=True, slots=True)
class Hj212Scenario:
    """What N stations send: ``minutes`` records each, data times ending before ``end``.

    Station ``i`` (0-based) is device ``hjb-<i+1>`` with MN ``HJBENCH<i+1>``. Its records
    cover the minutes ``end - minutes`` … ``end - 1`` (``DataTime`` and QN in Beijing time, as
    the simulator writes them, protocols.md §1.9); the last ``steady`` of them are sent in the
    steady phase, one per ``steady_interval_s`` (the stations' phases spread evenly over the
    interval), the others back to back.
    """

    connections: int
    minutes: int
    end: datetime  # aware; records are whole minutes before it
    steady: int = 0
    steady_interval_s: float = 1.0
    password: str = "123456"  # noqa: S105 - the bench stations' PW, the usual factory default

    @property
    def frames(self) -> int:
        """Frames the whole fleet sends (each acknowledged once)."""
        return self.connections * self.minutes

    @property
    def readings(self) -> int:
        """Readings in those frames."""
        return self.frames * len(POLLUTANTS)

    def device_id(self, i: int) -> str:
        """Registry device id of station ``i``."""
        return f"hjb-{i + 1:05d}"

    def mn(self, i: int) -> str:
        """HJ 212 MN of station ``i``."""
        return f"HJBENCH{i + 1:05d}"

    def data_time(self, k: int) -> datetime:
        """Start of the ``k``-th minute record (UTC, aware)."""
        first = self.end.replace(second=0, microsecond=0) - timedelta(minutes=self.minutes)
        return first + timedelta(minutes=k)

    def value(self, i: int, k: int, p: int) -> float:
        """A deterministic, plausible value for station ``i``, record ``k``, pollutant ``p``."""
        return round(5.0 + (i * 7 + k * 3 + p * 11) % 90 + p / 10, 3)

    def frame(self, i: int, k: int, qn: str) -> bytes:
        """Record ``k`` of station ``i`` (``-Avg`` and ``-Flag=N`` per pollutant), sent with ``qn``."""
        values = {code: self.value(i, k, p) for p, (code, _, _) in enumerate(POLLUTANTS)}
        return upload_frame(
            mn=self.mn(i),
            pw=self.password,
            cn="2051",
            data_time=self.data_time(k),
            values=values,
            suffix="Avg",
            qn=qn,
            flag=5,
        )

    def qn(self, epoch_ms: int) -> str:
        """A QN as a station writes it: its clock's local time, ``YYYYMMDDhhmmsszzz``."""
        return make_qn(datetime.fromtimestamp(epoch_ms / 1000, BEIJING).replace(tzinfo=None))


@dataclass(slots=True)
class StationLoad:
    """What one station sent and what came back."""

    sent: int = 0  # frames, first sends only
    acked: int = 0
    resent: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # backlog frames
    steady_latencies_ms: list[float] = field(default_factory=list)  # paced frames
    error: str | None = None


@dataclass(slots=True)
class LoadReport:
    """The fleet's totals."""

    connections: int  # connected at the same time
    connect_failures: int
    frames_sent: int
    frames_acked: int
    frames_resent: int
    seconds: float  # first frame sent → last acknowledgement (or give-up)
    latencies_ms: list[float]  # frame sent → its 9014, backlog frames, sorted
    errors: list[str]
    steady_latencies_ms: list[float] = field(default_factory=list)  # the same for paced frames

    @property
    def frames_per_s(self) -> float:
        """Acknowledged frames per second of the upload phase."""
        return self.frames_acked / self.seconds if self.seconds > 0 else 0.0


class _Station:
    """One station's connection: send a frame, wait for its 9014, next."""

    def __init__(self, scenario: Hj212Scenario, i: int, ack_timeout_s: float) -> None:
        self.scenario = scenario
        self.i = i
        self.ack_timeout_s = ack_timeout_s
        self.load = StationLoad()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._buffer = b""
        self._last_qn_ms = 0

    async def connect(self, host: str, port: int, gate: asyncio.Semaphore) -> bool:
        async with gate:
            try:
                self.reader, self.writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError) as exc:
                self.load.error = f"{self.scenario.mn(self.i)}: connect failed: {exc!r}"
                return False
        return True

    async def upload(self, on_frame: Callable[[int, int], None]) -> None:
        try:
            sc = self.scenario
            first_paced = sc.minutes - sc.steady
            for k in range(sc.minutes):
                if k == first_paced:  # stations spread over the interval, as a real fleet is
                    await asyncio.sleep(sc.steady_interval_s * self.i / sc.connections)
                if k >= first_paced:
                    await asyncio.sleep(sc.steady_interval_s)
                await self._send_one(k, on_frame)
        except (OSError, asyncio.IncompleteReadError, ConnectionError, _NoAck) as exc:
            self.load.error = f"{self.scenario.mn(self.i)}: {exc}"

    async def _send_one(self, k: int, on_frame: Callable[[int, int], None]) -> None:
        assert self.writer is not None  # noqa: S101 - connect() succeeded
        # QN is the send time (a clock the collector compares with its own), unique per station
        self._last_qn_ms = max(time.time_ns() // 1_000_000, self._last_qn_ms + 1)
        qn = self.scenario.qn(self._last_qn_ms)
        frame = self.scenario.frame(self.i, k, qn)
        first = time.perf_counter()
        for attempt in range(ACK_RETRIES + 1):
            self.writer.write(frame)
            await self.writer.drain()
            if attempt == 0:
                self.load.sent += 1
                on_frame(1, 0)
            else:
                self.load.resent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ack(qn.encode()), self.ack_timeout_s)
                self.load.acked += 1
                paced = k >= self.scenario.minutes - self.scenario.steady
                latencies = self.load.steady_latencies_ms if paced else self.load.latencies_ms
                latencies.append((time.perf_counter() - first) * 1000)
                on_frame(0, 1)
                return
        raise _NoAck(f"no 9014 for QN={qn} after {ACK_RETRIES + 1} sends")

    async def _ack(self, qn: bytes) -> None:
        """Read until the 9014 answering ``qn`` (older answers, e.g. to resends, are skipped)."""
        assert self.reader is not None  # noqa: S101 - connect() succeeded
        while True:
            while b"\r\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\r\n", 1)
                match = _QN_FIELD.search(line)
                if b";CN=9014;" in line and match and match.group(1) == qn:
                    return
            chunk = await self.reader.read(READ_CHUNK)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self.writer.wait_closed()


class _NoAck(Exception):
    """A frame stayed unacknowledged after every retry."""


async def run_stations(
    host: str,
    port: int,
    scenario: Hj212Scenario,
    *,
    on_frame: Callable[[int, int], None] = lambda _s, _a: None,
    on_connected: Callable[[int], None] = lambda _n: None,
    ack_timeout_s: float = ACK_TIMEOUT_S,
) -> LoadReport:
    """Connect every station, upload every record, wait for every 9014; return the totals.

    ``on_frame(sent, acked)`` is called with increments as frames go out and acks come in;
    ``on_connected(n)`` once all connects are done.
    """
    stations = [_Station(scenario, i, ack_timeout_s) for i in range(scenario.connections)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    try:
        connected = await asyncio.gather(*(s.connect(host, port, gate) for s in stations))
        live = [s for s, ok in zip(stations, connected, strict=True) if ok]
        on_connected(len(live))
        started = time.perf_counter()
        await asyncio.gather(*(s.upload(on_frame) for s in live))
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(s.close() for s in stations))
    loads = [s.load for s in stations]
    return LoadReport(
        connections=len(live),
        connect_failures=len(stations) - len(live),
        frames_sent=sum(x.sent for x in loads),
        frames_acked=sum(x.acked for x in loads),
        frames_resent=sum(x.resent for x in loads),
        seconds=seconds,
        latencies_ms=sorted(v for x in loads for v in x.latencies_ms),
        steady_latencies_ms=sorted(v for x in loads for v in x.steady_latencies_ms),
        errors=[x.error for x in loads if x.error is not None],
    )


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit (soft, up to the hard limit) to ``wanted``; return it.

    Children started afterwards (the TCP collector) inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return int(soft)
