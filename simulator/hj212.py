"""A simulated HJ 212-2017 station (data logger): frame builders and the TCP station loop.

An implementation of the station's side written from ``specs/protocols.md`` §1 alone (its own
CRC, builder and reply parser; nothing from ``ingest``), so that tests of the collector against
it compare two independent readings of the standard.

The station connects to the center, uploads real-time data (CN 2011, ``-Rtd``) every
``interval_s``, minute data (CN 2051, ``-Avg/-Min/-Max``) at every minute of its clock and hourly
data (CN 2061) at every hour, each with ``-Flag`` and ``Flag=5`` (acknowledgement requested). It
waits ``ack_timeout_s`` (10 s, the standard's GPRS default) for the center's 9014, sends the
same frame again up to ``retries`` (3) times, then drops the connection and reconnects with
back-off. A CN 1012 (set time) is answered 9011 (QnRtn=1), applied to the station's clock and
confirmed 9012 (ExeRtn=1); CN 1011 (get time) uploads the clock.

CLI (one frame, prints what the center answers, in hex and text)::

    python -m simulator.hj212 --host 127.0.0.1 --port 9212 --mn 440300A0000000000000A001 --pw 123456 --once
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from simulator.fleet import AirStation, Hj212Wire, WaterStation, readings
from simulator.link import BEIJING, Backoff, StationClock, StationCounters, monotonic, sleep_or_stop

__all__ = [
    "AIR_CODES",
    "WATER_CODES",
    "CenterFrame",
    "Hj212Station",
    "ReplyReader",
    "codes_for",
    "crc16",
    "data_frame",
    "encode",
    "format_value",
    "make_qn",
    "reply_frame",
    "station_values",
    "upload_frame",
]

logger = logging.getLogger(__name__)

# Catalog metric → HJ 212-2017 pollutant code (Appendix B; a05024 and w01003 as stations use them).
AIR_CODES: Final[dict[str, str]] = {
    "pm25": "a34004",
    "pm10": "a34002",
    "so2": "a21026",
    "no2": "a21004",
    "o3": "a05024",
    "co": "a21005",
    "temperature": "a01001",
    "humidity": "a01002",
}
WATER_CODES: Final[dict[str, str]] = {
    "ph": "w01001",
    "do": "w01009",
    "codmn": "w01019",
    "nh3n": "w21003",
    "tp": "w21011",
    "temperature": "w01010",
    "turbidity": "w01003",
}
MAX_SEGMENT: Final = 1024
STOP_GRACE_S: Final = 2.0  # on stop, how long a sent upload's 9014 is still awaited
_MAX_BUFFER: Final = 64 * 1024

Hj212Spec = AirStation | WaterStation


# ---------------------------------------------------------------------------- frames


def crc16(data: bytes) -> int:
    """The standard's CRC (HJ 212-2017 Appendix A): the byte meets the register's HIGH byte.

    ``reg = (reg >> 8) ^ byte``, then eight shifts with 0xA001: not CRC-16/MODBUS.
    """
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ byte
        for _ in range(8):
            carry = reg & 1
            reg >>= 1
            if carry:
                reg ^= 0xA001
    return reg


def encode(segment: str) -> bytes:
    """``##`` + 4-digit byte length + segment + CRC (4 upper-case hex digits) + CR LF."""
    data = segment.encode()
    if len(data) > MAX_SEGMENT:
        raise ValueError(f"data segment of {len(data)} bytes exceeds {MAX_SEGMENT}; split the upload")
    return b"##%04d%s%04X\r\n" % (len(data), data, crc16(data))


def make_qn(local: datetime) -> str:
    """QN ``YYYYMMDDhhmmsszzz`` of a station-local time."""
    return f"{local:%Y%m%d%H%M%S}{local.microsecond // 1000:03d}"


def format_value(value: float) -> str:
    """A decimal as stations write it: at most 3 decimals, no trailing zeros (``14``, ``0.427``)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def data_frame(
    *,
    mn: str,
    pw: str,
    cn: str,
    data_time: datetime,
    fields: Mapping[str, Mapping[str, float | str]],
    st: str = "22",
    qn: str | None = None,
    flag: int = 5,
) -> bytes:
    """A data upload: ``fields[code][suffix] = value`` (suffix ``Rtd``, ``Avg``, ``Flag`` …).

    ``data_time`` is station-local (naive, or aware and converted to Beijing time); ``qn`` the
    station's send time (default: ``data_time``).
    """
    local = _local(data_time)
    groups = [
        ",".join(f"{code}-{suffix}={_text(v)}" for suffix, v in by_suffix.items())
        for code, by_suffix in fields.items()
    ]
    cp = ";".join([f"DataTime={local:%Y%m%d%H%M%S}", *groups])
    head = f"QN={qn or make_qn(local)};ST={st};CN={cn};PW={pw};MN={mn};Flag={flag}"
    return encode(f"{head};CP=&&{cp}&&")


def upload_frame(
    *,
    mn: str,
    pw: str,
    cn: str,
    data_time: datetime,
    values: Mapping[str, float],
    suffix: str = "Rtd",
    flags: Mapping[str, str] | None = None,
    qn: str | None = None,
    flag: int = 5,
    st: str = "22",
) -> bytes:
    """One upload with one value per pollutant code (``{"a34004": 35.2}``) and its ``-Flag``.

    ``flags`` maps a code to its data flag (default ``N``); ``data_time`` is station-local.
    """
    fields: dict[str, dict[str, float | str]] = {
        code: {suffix: v, "Flag": (flags or {}).get(code, "N")} for code, v in values.items()
    }
    return data_frame(mn=mn, pw=pw, cn=cn, data_time=data_time, fields=fields, st=st, qn=qn, flag=flag)


def reply_frame(request: CenterFrame, cn: str, cp: str, *, mn: str, pw: str) -> bytes:
    """The station's answer to a center request (9011/9012): its QN, ST=91, Flag=4."""
    return encode(f"QN={request.qn};ST=91;CN={cn};PW={pw};MN={mn};Flag=4;CP=&&{cp}&&")


def _local(t: datetime) -> datetime:
    return t if t.tzinfo is None else t.astimezone(BEIJING).replace(tzinfo=None)


def _text(value: float | str) -> str:
    return value if isinstance(value, str) else format_value(value)


@dataclass(frozen=True, slots=True)
class CenterFrame:
    """A frame from the center, split into header fields and CP items."""

    raw: bytes
    header: dict[str, str]
    cp: dict[str, str]

    @property
    def cn(self) -> str:
        """The command code."""
        return self.header.get("CN", "")

    @property
    def qn(self) -> str:
        """The request number (echoed in answers)."""
        return self.header.get("QN", "")

    @property
    def wants_answer(self) -> bool:
        """Flag bit A: the center expects 9011/9012."""
        flag = self.header.get("Flag", "0")
        return flag.isdigit() and int(flag) & 1 == 1


class ReplyReader:
    """Frames from the center out of a byte stream (CRC of the standard checked; junk skipped)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.bad = 0  # frames with a wrong length, CRC or tail

    def feed(self, data: bytes) -> list[CenterFrame]:
        """The complete frames ``data`` finishes."""
        self._buf += data
        out: list[CenterFrame] = []
        while True:
            start = self._buf.find(b"##")
            if start < 0:
                del self._buf[: max(len(self._buf) - 1, 0)]
                return out
            del self._buf[:start]
            if len(self._buf) < 6:
                return out
            head = bytes(self._buf[2:6])
            if not head.isdigit():
                self._skip()
                continue
            size = int(head)
            if len(self._buf) < size + 12:
                if len(self._buf) > _MAX_BUFFER:
                    self._skip()
                    continue
                return out
            frame = bytes(self._buf[: size + 12])
            parsed = self._parse(frame, size)
            if parsed is None:
                self._skip()
                continue
            del self._buf[: size + 12]
            out.append(parsed)

    def _skip(self) -> None:
        self.bad += 1
        del self._buf[:2]

    @staticmethod
    def _parse(frame: bytes, size: int) -> CenterFrame | None:
        segment, crc, tail = frame[6 : 6 + size], frame[6 + size : 10 + size], frame[10 + size :]
        if tail != b"\r\n" or not all(c in b"0123456789abcdefABCDEF" for c in crc):
            return None
        if int(crc, 16) != crc16(segment):
            return None
        text = segment.decode(errors="replace")
        head, _, cp = text.partition("CP=&&")
        header = dict(item.partition("=")[::2] for item in head.split(";") if "=" in item)
        body = cp[:-2] if cp.endswith("&&") else cp
        items = dict(item.partition("=")[::2] for item in body.replace(",", ";").split(";") if "=" in item)
        return CenterFrame(frame, header, items)


# ---------------------------------------------------------------------------- values


def codes_for(spec: Hj212Spec) -> dict[str, str]:
    """The station's metric → pollutant code table."""
    return AIR_CODES if isinstance(spec, AirStation) else WATER_CODES


def _flag(spec: Hj212Spec, t: datetime) -> str:
    """Data flag: a water station calibrates (``C``) daily 02:00-02:05 local time, else ``N``."""
    local = t.astimezone(BEIJING)
    return "C" if isinstance(spec, WaterStation) and local.hour == 2 and local.minute < 5 else "N"


def _sample(spec: Hj212Spec, t: datetime) -> dict[str, float]:
    """code → value at ``t``; the noise is seeded by the device and the instant (resends repeat it)."""
    rng = random.Random(f"{spec.device_id}:{t.timestamp():.3f}")
    codes = codes_for(spec)
    return {codes[r["metric"]]: float(r["value"]) for r in readings(spec, t, rng) if r["metric"] in codes}


def station_values(
    spec: Hj212Spec, start: datetime, period_s: float, *, samples: int = 6
) -> dict[str, dict[str, float | str]]:
    """``-Avg/-Min/-Max/-Flag`` per code over ``[start, start + period_s)`` (``samples`` instants)."""
    step = period_s / samples
    series = [_sample(spec, start + timedelta(seconds=(i + 0.5) * step)) for i in range(samples)]
    flag = _flag(spec, start)
    out: dict[str, dict[str, float | str]] = {}
    for code in series[0]:
        vals = [s[code] for s in series]
        out[code] = {"Avg": sum(vals) / len(vals), "Min": min(vals), "Max": max(vals), "Flag": flag}
    return out


# ---------------------------------------------------------------------------- the station


class _LinkLost(Exception):
    """The center stopped confirming: drop the connection."""


@dataclass(slots=True)
class _Upload:
    frame: bytes
    qn: str
    values: int
    cn: str


class Hj212Station:
    """One data logger on TCP; ``run`` until ``stop``, reconnecting as a logger does."""

    def __init__(
        self,
        spec: Hj212Spec,
        *,
        host: str,
        port: int,
        interval_s: float = 60.0,
        minute_s: float = 60.0,
        hour_s: float = 3600.0,
        ack_timeout_s: float = 10.0,
        retries: int = 3,
        backoff: Backoff | None = None,
        clock: StationClock | None = None,
        counters: StationCounters | None = None,
    ) -> None:
        if not isinstance(spec.link, Hj212Wire):
            raise ValueError(f"{spec.device_id} has no HJ 212 link")
        if min(interval_s, minute_s, hour_s, ack_timeout_s) <= 0:
            raise ValueError("intervals and the ack timeout must be positive")
        self.spec, self.wire = spec, spec.link
        self.host, self.port = host, port
        self.interval_s, self.minute_s, self.hour_s = interval_s, minute_s, hour_s
        self.ack_timeout_s, self.retries = ack_timeout_s, retries
        self.backoff = backoff or Backoff()
        self.clock = clock or StationClock(self.wire.clock_offset_s)
        self.counters = counters or StationCounters()
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._last_qn_at: datetime | None = None
        now = self.clock.utc().timestamp()
        self._next_rtd = (now // interval_s + 0.5) * interval_s
        if self._next_rtd < now:
            self._next_rtd += interval_s
        self._next_minute = (now // minute_s + 1) * minute_s  # the end of the running minute
        self._next_hour = (now // hour_s + 1) * hour_s

    # -- scheduling (station clock, epoch seconds)

    def _due(self) -> list[_Upload]:
        """The uploads whose time has come on the station's clock, oldest first."""
        now = self.clock.utc().timestamp()
        out: list[_Upload] = []
        self._next_rtd = _resync(self._next_rtd, now, self.interval_s)
        self._next_minute = _resync(self._next_minute, now, self.minute_s)
        self._next_hour = _resync(self._next_hour, now, self.hour_s)
        if now >= self._next_rtd:
            out.append(self._realtime(datetime.fromtimestamp(self._next_rtd, UTC)))
            self._next_rtd += self.interval_s
        if now >= self._next_minute:
            start = datetime.fromtimestamp(self._next_minute - self.minute_s, UTC)
            out.append(self._period("2051", start, self.minute_s))
            self._next_minute += self.minute_s
        if now >= self._next_hour:
            start = datetime.fromtimestamp(self._next_hour - self.hour_s, UTC)
            out.append(self._period("2061", start, self.hour_s))
            self._next_hour += self.hour_s
        return out

    def _wait_s(self) -> float:
        now = self.clock.utc().timestamp()
        return max(0.0, min(self._next_rtd, self._next_minute, self._next_hour) - now)

    def _qn(self) -> str:
        """The station's time as QN, one millisecond past the previous one if it would repeat it."""
        local = self.clock.local()
        local = local.replace(microsecond=local.microsecond // 1000 * 1000)
        last = self._last_qn_at
        if last is not None and timedelta(0) <= last - local < timedelta(seconds=1):  # not after a clock set
            local = last + timedelta(milliseconds=1)
        self._last_qn_at = local
        return make_qn(local)

    def _realtime(self, t: datetime) -> _Upload:
        values = _sample(self.spec, t)
        flag = _flag(self.spec, t)
        qn = self._qn()
        frame = upload_frame(
            mn=self.wire.mn,
            pw=self.wire.password,
            cn="2011",
            data_time=t,
            values=values,
            flags=dict.fromkeys(values, flag),
            qn=qn,
            st=self.wire.st,
        )
        return _Upload(frame, qn, len(values), "2011")

    def _period(self, cn: str, start: datetime, period_s: float) -> _Upload:
        fields = station_values(self.spec, start, period_s, samples=6 if cn == "2051" else 12)
        qn = self._qn()
        frame = data_frame(
            mn=self.wire.mn,
            pw=self.wire.password,
            cn=cn,
            data_time=start,
            fields=fields,
            st=self.wire.st,
            qn=qn,
        )
        return _Upload(frame, qn, len(fields), cn)

    # -- the connection

    async def run(self, stop: asyncio.Event) -> StationCounters:
        """Connect, upload, answer, reconnect with back-off; until ``stop`` is set."""
        while not stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10.0)
            except (OSError, TimeoutError) as exc:
                delay = self.backoff.next()
                logger.warning(
                    "hj212 station cannot connect device_id=%s center=%s:%d error=%s retry_in_s=%.1f",
                    self.spec.device_id,
                    self.host,
                    self.port,
                    exc,
                    delay,
                )
                if await sleep_or_stop(stop, delay):
                    break
                continue
            self.counters.connects += 1
            logger.info("hj212 station connected device_id=%s mn=%s", self.spec.device_id, self.wire.mn)
            try:
                await self._session(reader, writer, stop)
            except (_LinkLost, ConnectionError, OSError) as exc:
                logger.warning(
                    "hj212 station link lost device_id=%s reason=%s",
                    self.spec.device_id,
                    exc or type(exc).__name__,
                )
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            if stop.is_set() or await sleep_or_stop(stop, self.backoff.next()):
                break
        return self.counters

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        listener = asyncio.create_task(self._listen(reader, writer))
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                for upload in self._due():
                    await self._upload(writer, upload, listener, stopper)
                timer = asyncio.create_task(asyncio.sleep(min(self._wait_s(), 1.0)))
                await asyncio.wait({timer, listener, stopper}, return_when=asyncio.FIRST_COMPLETED)
                timer.cancel()
                if listener.done():
                    raise _LinkLost(_ended(listener))
        finally:
            stopper.cancel()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, _LinkLost, ConnectionError, OSError):
                await listener
            for fut in self._pending.values():
                fut.cancel()
            self._pending.clear()

    async def _upload(
        self,
        writer: asyncio.StreamWriter,
        upload: _Upload,
        listener: asyncio.Task[None],
        stopper: asyncio.Task[bool],
    ) -> None:
        """Send until the 9014 comes (``retries`` more times after the first); else the link is lost.

        When stopped meanwhile, the 9014 of what was sent is awaited briefly, without resending.
        """
        self.counters.uploads += 1
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[upload.qn] = ack
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.counters.retries += 1
                    logger.info(
                        "hj212 station resends device_id=%s qn=%s cn=%s attempt=%d",
                        self.spec.device_id,
                        upload.qn,
                        upload.cn,
                        attempt + 1,
                    )
                writer.write(upload.frame)
                await writer.drain()
                self.counters.sent += 1
                waiters: set[asyncio.Future[Any]] = {ack, listener, stopper}
                done, _ = await asyncio.wait(
                    waiters, timeout=self.ack_timeout_s, return_when="FIRST_COMPLETED"
                )
                if stopper in done and ack not in done:
                    grace = min(self.ack_timeout_s, STOP_GRACE_S)
                    done, _ = await asyncio.wait(
                        waiters - {stopper}, timeout=grace, return_when="FIRST_COMPLETED"
                    )
                    if ack not in done:
                        return  # stopped before the center answered: neither confirmed nor given up
                if ack in done:
                    self.counters.acked += 1
                    self.counters.readings += upload.values
                    self.backoff.reset()
                    return
                if listener in done:
                    self.counters.lost += 1
                    raise _LinkLost(_ended(listener))
            self.counters.lost += 1
            raise _LinkLost(f"no 9014 for QN {upload.qn} after {self.retries + 1} sends")
        finally:
            self._pending.pop(upload.qn, None)

    async def _listen(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the center's frames: 9014 confirms an upload, 1012/1011 are answered."""
        frames = ReplyReader()
        while True:
            data = await reader.read(4096)
            if not data:
                return
            for frame in frames.feed(data):
                self.counters.replies += 1
                await self._on_frame(frame, writer)

    async def _on_frame(self, frame: CenterFrame, writer: asyncio.StreamWriter) -> None:
        if frame.cn == "9014":
            fut = self._pending.get(frame.qn)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        if frame.cn.startswith("9"):
            return  # 9013 and the like: notifications need no answer
        answers: list[bytes] = []
        if frame.cn == "1012" and _valid_time(frame.cp.get("SystemTime", "")):
            answers.append(self._reply(frame, "9011", "QnRtn=1"))
            correction = self.clock.set_local(
                datetime.strptime(frame.cp["SystemTime"], "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
            )
            self.counters.time_sets += 1
            logger.info(
                "hj212 station clock set device_id=%s correction_s=%.1f", self.spec.device_id, correction
            )
            answers.append(self._reply(frame, "9012", "ExeRtn=1"))
        elif frame.cn == "1011":
            answers.append(self._reply(frame, "9011", "QnRtn=1"))
            cp = f"SystemTime={self.clock.local():%Y%m%d%H%M%S}"
            head = f"QN={frame.qn};ST={self.wire.st};CN=1011;PW={self.wire.password};MN={self.wire.mn};Flag=4"
            answers.append(encode(f"{head};CP=&&{cp}&&"))
            answers.append(self._reply(frame, "9012", "ExeRtn=1"))
        elif frame.wants_answer or frame.cn == "1012":
            answers.append(self._reply(frame, "9011", "QnRtn=2"))  # rejected: not supported / bad time
        for answer in answers:
            writer.write(answer)
            self.counters.sent += 1
        await writer.drain()

    def _reply(self, frame: CenterFrame, cn: str, cp: str) -> bytes:
        return reply_frame(frame, cn, cp, mn=self.wire.mn, pw=self.wire.password)


def _resync(next_at: float, now: float, period: float) -> float:
    """After a clock jump of more than two periods, restart the schedule from now (no backlog)."""
    if now - next_at > 2 * period or next_at - now > 2 * period:
        return (now // period + 1) * period
    return next_at


def _valid_time(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y%m%d%H%M%S")  # noqa: DTZ007 - station-local, zone-less by the standard
    except ValueError:
        return False
    return True


def _ended(listener: asyncio.Task[None]) -> str:
    if listener.cancelled():
        return "listener cancelled"
    exc = listener.exception()
    return f"center closed the connection ({exc})" if exc else "center closed the connection"


# ---------------------------------------------------------------------------- CLI


async def _once(args: argparse.Namespace) -> int:
    spec = AirStation("cli") if args.st != "21" else WaterStation("cli")
    now = datetime.now(UTC).replace(microsecond=0)
    values = _sample(spec, now)
    frame = upload_frame(
        mn=args.mn, pw=args.pw, cn="2011", data_time=now, values=values, qn=make_qn(_local(now)), st=args.st
    )
    reader, writer = await asyncio.wait_for(asyncio.open_connection(args.host, args.port), args.timeout)
    sys.stdout.write(f"> {frame.decode().rstrip()}\n")
    writer.write(frame)
    await writer.drain()
    frames, deadline = ReplyReader(), monotonic() + args.timeout
    got = 0
    while (left := deadline - monotonic()) > 0:
        try:
            data = await asyncio.wait_for(reader.read(4096), left)
        except TimeoutError:
            break
        if not data:
            break
        for reply in frames.feed(data):
            got += 1
            sys.stdout.write(
                f"< {reply.raw.hex(' ').upper()}\n< {reply.raw.decode(errors='replace').rstrip()}\n"
            )
            if reply.cn == "9014":
                deadline = min(deadline, monotonic() + 0.5)  # a 1012 may follow the 9014
    writer.close()
    if not got:
        sys.stdout.write(f"no reply within {args.timeout:g} s\n")
    return 0 if got else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulator.hj212``: send one real-time upload and print the center's replies."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator.hj212",
        description="Send one real-time upload (CN 2011, Flag=5) and print the center's replies.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9212)
    parser.add_argument("--mn", required=True, help="the station's MN as registered")
    parser.add_argument("--pw", default="123456", help="the station's HJ 212 password")
    parser.add_argument("--st", default="22", help="system code: 22 air (default), 21 surface water")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply")
    parser.add_argument("--once", action="store_true", help="send one CN 2011 upload (the only mode)")
    args = parser.parse_args(argv)
    return asyncio.run(_once(args))


if __name__ == "__main__":
    raise SystemExit(main())
