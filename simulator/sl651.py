"""A simulated SL 651-2014 RTU (HEX/BCD): frame builders and the TCP station loop.

Written from ``specs/protocols.md`` §2 alone (own CRC, BCD encoder, builder and confirmation
parser; nothing from ``ingest``). Uplink frame layout (§2.3), big-endian::

    7E 7E | center (1) | RTU address (5) | password (2) | FC (1) | 0 + body length (12 bits) | STX
          | body | ETX | CRC-16/MODBUS over 7E…ETX, HIGH byte first

    body = serial (2, HEX) · send time (6, BCD YYMMDDhhmmss) · F1 F1 address (5) class (1)
           · { F0 F0 observation time (5, BCD YYMMDDhhmm) · { guide · definition · data } }

The RTU (link mode M2) sends a 32H timed report every ``interval_s`` (PJ, PT, Z, Q, VT at
the minute) and a 34H hourly report at every hour of its clock (F4 DRP: twelve 5-minute rain
amounts in 0.1 mm, F5 DRZ1: twelve 5-minute levels in cm, then Z, PJ, PT, VT at the hour; one
for the last complete hour right after start). It waits ``ack_timeout_s`` for the center's
confirmation (same FC, same serial, downlink), sends the same frame again twice, then gives
the link up. A confirmation ending in EOT closes the link; ESC holds it, and the RTU sends 2F
keep-alives every ``keepalive_s`` until the next report.

CLI (one 32H report, prints what the center answers in hex)::

    python -m simulator.sl651 --host 127.0.0.1 --port 9651 --address 0012345678 --password A000 --once
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from simulator.fleet import HydroRtu, Sl651Wire, hydro_level, hydro_voltage, rain_tenths
from simulator.link import BEIJING, Backoff, StationClock, StationCounters, monotonic, sleep_or_stop

__all__ = [
    "EOT",
    "ESC",
    "ETX",
    "Confirmation",
    "ConfirmationReader",
    "Group",
    "Sl651Rtu",
    "bcd_element",
    "crc16",
    "drp_element",
    "drz_element",
    "hourly_groups",
    "keepalive_frame",
    "report_frame",
    "timed_groups",
]

logger = logging.getLogger(__name__)

SOH: Final = 0x01
STX: Final = 0x02
ETX: Final = 0x03
EOT: Final = 0x04
ACK: Final = 0x06
NAK: Final = 0x15
ETB: Final = 0x17
ESC: Final = 0x1B
FC_KEEPALIVE: Final = 0x2F
FC_TIMED: Final = 0x32
FC_HOURLY: Final = 0x34
_MAX_BUFFER: Final = 16 * 1024
STOP_GRACE_S: Final = 2.0  # on stop, how long a sent report's confirmation is still awaited

# guide, data bytes, decimals (Appendix C, usual definitions)
PJ: Final = (0x20, 3, 1)  # rain since 08:00, mm, N(5,1)
PT: Final = (0x26, 3, 1)  # accumulated rain, mm, N(6,1)
Z: Final = (0x39, 4, 3)  # stage, m, N(7,3)
Q: Final = (0x27, 5, 3)  # discharge, m3/s, N(9,3)
VT: Final = (0x38, 2, 2)  # supply voltage, V, N(4,2)

Element = bytes  # guide + definition + data, ready to be concatenated
Group = tuple[datetime, Sequence[Element]]  # observation time (station-local) and its elements


# ---------------------------------------------------------------------------- encoding


def crc16(data: bytes) -> int:
    """CRC-16 with Modbus parameters (reflected 0xA001, init 0xFFFF); SL 651 sends it high byte first."""
    reg = 0xFFFF
    for byte in data:
        reg ^= byte
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
    return reg


def _bcd(digits: str) -> bytes:
    return bytes.fromhex(digits)  # "0138" -> 01 38: decimal digits read as hex nibbles are BCD


def _time6(t: datetime) -> bytes:
    return _bcd(f"{_local(t):%y%m%d%H%M%S}")


def _time5(t: datetime) -> bytes:
    return _bcd(f"{_local(t):%y%m%d%H%M}")


def _local(t: datetime) -> datetime:
    return t if t.tzinfo is None else t.astimezone(BEIJING).replace(tzinfo=None)


def bcd_element(guide: int, value: float | None, size: int, decimals: int) -> Element:
    """guide · definition ``size << 3 | decimals`` · BCD of ``value × 10^decimals`` in ``size`` bytes.

    A negative value takes an ``FF`` first byte (counted in ``size``); ``None`` is all ``FF``.
    """
    definition = bytes([guide, size << 3 | decimals])
    if value is None:
        return definition + b"\xff" * size
    scaled = round(abs(value) * 10**decimals)
    width = 2 * (size - 1) if value < 0 else 2 * size
    digits = f"{scaled:0{width}d}"
    if len(digits) > width:
        raise ValueError(f"{value} does not fit {size} bytes with {decimals} decimals")
    return definition + (b"\xff" if value < 0 else b"") + _bcd(digits)


def drp_element(tenths: Sequence[int | None]) -> Element:
    """F4 60: twelve 5-minute rain amounts, one HEX byte each in 0.1 mm, FF = invalid."""
    if len(tenths) != 12:
        raise ValueError("DRP carries 12 five-minute values")
    return b"\xf4\x60" + bytes(0xFF if v is None else min(max(v, 0), 0xFE) for v in tenths)


def drz_element(levels_cm: Sequence[int | None], n: int = 1) -> Element:
    """F5..FC C0: twelve 5-minute relative levels of gauge ``n`` (1-8), HEX 2 bytes in cm, FFFF = invalid."""
    if len(levels_cm) != 12 or not 1 <= n <= 8:
        raise ValueError("DRZ carries 12 five-minute values of gauge 1..8")
    data = b"".join((0xFFFF if v is None else min(max(v, 0), 0xFFFE)).to_bytes(2, "big") for v in levels_cm)
    return bytes([0xF4 + n, 0xC0]) + data


def _address(address: str) -> bytes:
    raw = bytes.fromhex(address)
    if len(raw) != 5:
        raise ValueError(f"an RTU address is 10 hex digits, not {address!r}")
    return raw


def _frame(center: int, address: str, password: str, fc: int, body: bytes, end: int = ETX) -> bytes:
    if len(body) > 0xFFF:
        raise ValueError("an SL 651 body is at most 4095 bytes")
    head = b"\x7e\x7e" + bytes([center]) + _address(address) + bytes.fromhex(password) + bytes([fc])
    data = head + len(body).to_bytes(2, "big") + bytes([STX]) + body + bytes([end])
    return data + crc16(data).to_bytes(2, "big")


def report_frame(
    *,
    center: int,
    address: str,
    password: str,
    fc: int,
    serial: int,
    sent: datetime,
    station_class: str,
    groups: Sequence[Group],
    end: int = ETX,
) -> bytes:
    """An uplink data report (30H-35H): header, serial, send time, F1F1 station, F0F0 groups.

    Times are station-local (naive, or aware and converted to Beijing time).
    """
    if not 0 <= serial <= 0xFFFF:
        raise ValueError("serial is 0..65535")
    body = serial.to_bytes(2, "big") + _time6(sent) + b"\xf1\xf1" + _address(address) + station_class.encode()
    for observed, elements in groups:
        body += b"\xf0\xf0" + _time5(observed) + b"".join(elements)
    return _frame(center, address, password, fc, body, end)


def keepalive_frame(*, center: int, address: str, password: str, serial: int, sent: datetime) -> bytes:
    """2F link keep-alive: body = serial + send time only."""
    return _frame(center, address, password, FC_KEEPALIVE, serial.to_bytes(2, "big") + _time6(sent))


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A downlink frame from the center (the M2 confirmation of a report)."""

    raw: bytes
    address: str
    center: int
    fc: int
    serial: int
    end: int


class ConfirmationReader:
    """Downlink frames out of a byte stream, split by their length word; CRC checked."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.bad = 0

    def feed(self, data: bytes) -> list[Confirmation]:
        """The complete downlink frames ``data`` finishes (others are skipped and counted)."""
        self._buf += data
        out: list[Confirmation] = []
        while True:
            start = self._buf.find(b"\x7e\x7e")
            if start < 0:
                del self._buf[: max(len(self._buf) - 1, 0)]
                return out
            del self._buf[:start]
            if len(self._buf) < 14:
                return out
            word = int.from_bytes(self._buf[11:13], "big")
            if word >> 12 != 8:  # not a downlink header: resynchronise
                self._skip()
                continue
            total = 14 + (word & 0x0FFF) + 3
            if len(self._buf) < total:
                if len(self._buf) > _MAX_BUFFER:
                    self._skip()
                    continue
                return out
            frame = bytes(self._buf[:total])
            if int.from_bytes(frame[-2:], "big") != crc16(frame[:-2]):
                self._skip()
                continue
            del self._buf[:total]
            body = frame[14:-3]
            serial = int.from_bytes(body[:2], "big") if len(body) >= 2 else -1
            out.append(Confirmation(frame, frame[2:7].hex().upper(), frame[7], frame[10], serial, frame[-3]))

    def _skip(self) -> None:
        self.bad += 1
        del self._buf[:1]


# ---------------------------------------------------------------------------- the station's values


def _slots(end: datetime) -> list[datetime]:
    """The ends of the twelve 5-minute slots of the hour that ends at ``end``."""
    return [end - timedelta(minutes=5 * (11 - i)) for i in range(12)]


def _hydro_day_start(spec: HydroRtu, t: datetime) -> datetime:
    """The start of the hydrological day (08:00 local) that ``t`` belongs to."""
    local = t.astimezone(BEIJING)
    start = local.replace(hour=8, minute=0, second=0, microsecond=0)
    if local < start:
        start -= timedelta(days=1)
    return start.astimezone(UTC)


def _pj_pt(spec: HydroRtu, t: datetime) -> tuple[float, float]:
    pt = rain_tenths(spec, t)
    return (pt - rain_tenths(spec, _hydro_day_start(spec, t))) / 10.0, pt / 10.0


def _el(what: tuple[int, int, int], value: float) -> Element:
    guide, size, decimals = what
    return bcd_element(guide, value, size, decimals)


def timed_groups(spec: HydroRtu, t: datetime) -> list[Group]:
    """32H content at ``t`` (minute): PJ, PT, Z, Q, VT."""
    level, flow = hydro_level(spec, t)
    pj, pt = _pj_pt(spec, t)
    elements = [
        _el(PJ, pj),
        _el(PT, pt),
        _el(Z, level),
        _el(Q, flow),
        _el(VT, round(hydro_voltage(spec, t), 2)),
    ]
    return [(t, elements)]


def hourly_groups(spec: HydroRtu, end: datetime) -> list[Group]:
    """34H content for the hour ending at ``end``: F4 DRP and F5 DRZ1 tagged hh:05, then Z, PJ, PT, VT."""
    slots = _slots(end)
    counter = [rain_tenths(spec, s) for s in [slots[0] - timedelta(minutes=5), *slots]]
    drp = [counter[i + 1] - counter[i] for i in range(12)]
    carry = 0
    for i, v in enumerate(drp):  # 25.4 mm per slot at most; the rest goes to the next slot
        v += carry
        drp[i], carry = min(v, 254), max(v - 254, 0)
    drz = [round(hydro_level(spec, s)[0] * 100) for s in slots]
    level, flow = hydro_level(spec, end)
    pj, pt = _pj_pt(spec, end)
    return [
        (slots[0], [drp_element(drp)]),
        (slots[0], [drz_element(drz)]),
        (
            end,
            [
                _el(Z, level),
                _el(Q, flow),
                _el(PJ, pj),
                _el(PT, pt),
                _el(VT, round(hydro_voltage(spec, end), 2)),
            ],
        ),
    ]


# ---------------------------------------------------------------------------- the station


@dataclass(slots=True)
class _Report:
    fc: int
    serial: int
    frame: bytes
    values: int


class Sl651Rtu:
    """One RTU on TCP in link mode M2; ``run`` until ``stop``."""

    def __init__(
        self,
        spec: HydroRtu,
        *,
        host: str,
        port: int,
        interval_s: float = 300.0,
        hour_s: float = 3600.0,
        ack_timeout_s: float = 10.0,
        retries: int = 2,
        keepalive_s: float = 40.0,
        backoff: Backoff | None = None,
        clock: StationClock | None = None,
        counters: StationCounters | None = None,
        first_hourly: bool = True,
    ) -> None:
        if not isinstance(spec.link, Sl651Wire):
            raise ValueError(f"{spec.device_id} has no SL 651 link")
        if min(interval_s, hour_s, ack_timeout_s, keepalive_s) <= 0:
            raise ValueError("intervals, the ack timeout and the keep-alive period must be positive")
        self.spec, self.wire = spec, spec.link
        self.host, self.port = host, port
        self.interval_s, self.hour_s = interval_s, hour_s
        self.ack_timeout_s, self.retries, self.keepalive_s = ack_timeout_s, retries, keepalive_s
        self.backoff = backoff or Backoff()
        self.clock = clock or StationClock(self.wire.clock_offset_s)
        self.counters = counters or StationCounters()
        self._serial = 0
        now = self.clock.utc().timestamp()
        self._next_timed = (now // interval_s + 1) * interval_s
        self._next_hour = (now // hour_s + (0 if first_hourly else 1)) * hour_s
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._waiting: dict[tuple[int, int], asyncio.Future[int]] = {}
        self._last_sent = monotonic()

    def _next_serial(self) -> int:
        self._serial = self._serial % 0xFFFF + 1
        return self._serial

    def _report(self, fc: int, groups: list[Group]) -> _Report:
        serial = self._next_serial()
        frame = report_frame(
            center=self.wire.center,
            address=self.wire.address,
            password=self.wire.password,
            fc=fc,
            serial=serial,
            sent=self.clock.local(),
            station_class=self.wire.station_class,
            groups=groups,
        )
        values = sum(12 if e[0] in (0xF4, 0xF5) else 1 for _, elements in groups for e in elements)
        return _Report(fc, serial, frame, values)

    def _due(self) -> list[_Report]:
        now = self.clock.utc().timestamp()
        out: list[_Report] = []
        if now - self._next_timed > 2 * self.interval_s or self._next_timed - now > 2 * self.interval_s:
            self._next_timed = (now // self.interval_s + 1) * self.interval_s
        if now - self._next_hour > 2 * self.hour_s or self._next_hour - now > 2 * self.hour_s:
            self._next_hour = (now // self.hour_s + 1) * self.hour_s
        if now >= self._next_hour:
            end = datetime.fromtimestamp(self._next_hour, UTC)
            out.append(self._report(FC_HOURLY, hourly_groups(self.spec, end)))
            self._next_hour += self.hour_s
        if now >= self._next_timed:
            t = datetime.fromtimestamp(self._next_timed, UTC).replace(second=0, microsecond=0)
            out.append(self._report(FC_TIMED, timed_groups(self.spec, t)))
            self._next_timed += self.interval_s
        return out

    async def run(self, stop: asyncio.Event) -> StationCounters:
        """Report, wait for confirmations, hold the link on ESC; until ``stop`` is set."""
        try:
            while not stop.is_set():
                for report in self._due():
                    if not await self._deliver(report, stop):
                        break
                now = self.clock.utc().timestamp()
                wait = max(0.0, min(self._next_timed, self._next_hour) - now)
                if self._conn is not None:
                    idle = monotonic() - self._last_sent
                    if idle >= self.keepalive_s:
                        await self._keepalive()
                        idle = 0.0
                    wait = min(wait, self.keepalive_s - idle)
                if await sleep_or_stop(stop, min(wait, 1.0)):
                    break
        finally:
            await self._close()
        return self.counters

    async def upload_history(self, ends: Sequence[datetime], stop: asyncio.Event) -> StationCounters:
        """Send the hourly reports (34H) of the hours ending at ``ends``, each confirmed, then close.

        What an RTU does after an outage or at commissioning: its stored observations, with their
        past observation times, one report per hour, oldest first.
        """
        try:
            for end in ends:
                if stop.is_set():
                    break
                if not await self._deliver(self._report(FC_HOURLY, hourly_groups(self.spec, end)), stop):
                    break
        finally:
            await self._close()
        return self.counters

    async def _connect(self, stop: asyncio.Event) -> bool:
        if self._listener is not None and self._listener.done():
            await self._close()  # the center closed the link
        while self._conn is None:
            try:
                self._conn = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10.0)
            except (OSError, TimeoutError) as exc:
                delay = self.backoff.next()
                logger.warning(
                    "sl651 rtu cannot connect device_id=%s center=%s:%d error=%s retry_in_s=%.1f",
                    self.spec.device_id,
                    self.host,
                    self.port,
                    exc,
                    delay,
                )
                if await sleep_or_stop(stop, delay):
                    return False
                continue
            self.counters.connects += 1
            self._listener = asyncio.create_task(self._listen(self._conn[0]))
            logger.info("sl651 rtu connected device_id=%s address=%s", self.spec.device_id, self.wire.address)
        return True

    async def _close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await self._listener
            self._listener = None
        if self._conn is not None:
            writer = self._conn[1]
            self._conn = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _write(self, frame: bytes) -> None:
        assert self._conn is not None  # noqa: S101 - callers connect first
        self._conn[1].write(frame)
        await self._conn[1].drain()
        self.counters.sent += 1
        self._last_sent = monotonic()

    async def _keepalive(self) -> None:
        frame = keepalive_frame(
            center=self.wire.center,
            address=self.wire.address,
            password=self.wire.password,
            serial=max(self._serial, 1),
            sent=self.clock.local(),
        )
        try:
            await self._write(frame)
            self.counters.keepalives += 1
        except (ConnectionError, OSError) as exc:
            logger.warning("sl651 rtu keep-alive failed device_id=%s error=%s", self.spec.device_id, exc)
            await self._close()

    async def _deliver(self, report: _Report, stop: asyncio.Event) -> bool:
        """Send until confirmed (``retries`` resends); False if stopped before it was confirmed."""
        self.counters.uploads += 1
        key = (report.fc, report.serial)
        for attempt in range(self.retries + 1):
            if not await self._connect(stop):
                self.counters.lost += 1
                return False
            if attempt:
                self.counters.retries += 1
                logger.info(
                    "sl651 rtu resends device_id=%s fc=%02X serial=%d attempt=%d",
                    self.spec.device_id,
                    report.fc,
                    report.serial,
                    attempt + 1,
                )
            confirmed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._waiting[key] = confirmed
            stopper = asyncio.create_task(stop.wait())
            try:
                await self._write(report.frame)
                waiters: set[asyncio.Future[Any]] = {confirmed, stopper}
                done, _ = await asyncio.wait(
                    waiters, timeout=self.ack_timeout_s, return_when="FIRST_COMPLETED"
                )
                if stopper in done and confirmed not in done:
                    grace = min(self.ack_timeout_s, STOP_GRACE_S)
                    done, _ = await asyncio.wait(waiters - {stopper}, timeout=grace)
                    if confirmed not in done or confirmed.cancelled():
                        return False  # stopped before the center answered
            except (ConnectionError, OSError):
                await self._close()  # the link broke: reconnect and send again
                continue
            finally:
                stopper.cancel()
                self._waiting.pop(key, None)
            if confirmed not in done:
                continue  # no confirmation in time: send again
            if confirmed.cancelled():
                await self._close()  # the center closed the link: reconnect and send again
                continue
            end = confirmed.result()
            self.counters.acked += 1
            self.counters.readings += report.values
            self.backoff.reset()
            if end == EOT:
                await self._close()
            return True
        self.counters.lost += 1
        logger.warning(
            "sl651 rtu gives the link up device_id=%s fc=%02X serial=%d sends=%d",
            self.spec.device_id,
            report.fc,
            report.serial,
            self.retries + 1,
        )
        await self._close()
        return True

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        frames = ConfirmationReader()
        try:
            while data := await reader.read(4096):
                for frame in frames.feed(data):
                    self.counters.replies += 1
                    waiting = self._waiting.get((frame.fc, frame.serial))
                    if frame.address != self.wire.address or waiting is None or waiting.done():
                        continue
                    if frame.end in (EOT, ESC, ACK):
                        waiting.set_result(frame.end)
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.cancel()


# ---------------------------------------------------------------------------- CLI


async def _once(args: argparse.Namespace) -> int:
    spec = HydroRtu("cli", link=Sl651Wire(address=args.address, password=args.password, center=args.center))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    frame = report_frame(
        center=args.center,
        address=args.address,
        password=args.password,
        fc=FC_TIMED,
        serial=args.serial,
        sent=datetime.now(UTC),
        station_class="H",
        groups=timed_groups(spec, now),
    )
    reader, writer = await asyncio.wait_for(asyncio.open_connection(args.host, args.port), args.timeout)
    sys.stdout.write(f"> {frame.hex(' ').upper()}\n")
    writer.write(frame)
    await writer.drain()
    frames = ConfirmationReader()
    got = 0
    deadline = monotonic() + args.timeout
    while not got and (left := deadline - monotonic()) > 0:
        try:
            data = await asyncio.wait_for(reader.read(4096), left)
        except TimeoutError:
            break
        if not data:
            break
        for reply in frames.feed(data):
            got += 1
            sys.stdout.write(f"< {reply.raw.hex(' ').upper()}\n")
    writer.close()
    if not got:
        sys.stdout.write(f"no confirmation within {args.timeout:g} s\n")
    return 0 if got else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulator.sl651``: send one 32H timed report and print the center's confirmation."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator.sl651",
        description="Send one 32H timed report as an RTU and print the center's confirmation in hex.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9651)
    parser.add_argument("--address", required=True, help="the RTU address as registered, 10 hex digits")
    parser.add_argument("--password", default="A000", help="the RTU password, 4 hex digits")
    parser.add_argument("--center", type=int, default=1, help="center address 1-255")
    parser.add_argument("--serial", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the confirmation")
    parser.add_argument("--once", action="store_true", help="send one 32H report (the only mode)")
    args = parser.parse_args(argv)
    return asyncio.run(_once(args))


if __name__ == "__main__":
    raise SystemExit(main())
