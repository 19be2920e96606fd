"""The protocol-independent part of the TCP collector: listeners, connections, limits, replies.

Each connection runs two tasks. The *reader* reads bytes under the idle and frame-completion
deadlines, feeds the protocol's framer, applies the per-station frame rate and hands complete
frames to the protocol session, which decodes them and hands records to Kafka. The *replier*
takes what the session queued, in order, waits for Kafka's acknowledgement of each item and
only then writes the replies the item carries (HJ 212 9014, SL 651 confirmation). The queue
is bounded, so a station that sends faster than Kafka acknowledges is slowed down by TCP
back-pressure on its own connection; nothing a connection does blocks another.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ingest.errors import RejectedMessage
from ingest.tcp import metrics
from ingest.tcp.kafkaout import Delivery, KafkaOut
from ingest.tcp.limits import Buckets, ConnectionSlots, TokenBucket
from ingest.tcp.settings import TcpSettings
from stationflow import topics
from stationflow.contracts import DeadLetter, DeviceRecord, Reading, encode_batch, utcnow
from stationflow.logs import LogThrottle
from stationflow.passwords import PasswordCache
from stationflow.registryview import CATCH_UP_S, RegistryView

__all__ = ["Connection", "Context", "Framer", "ProtocolHandler", "Session", "TcpCollector"]

logger = logging.getLogger(__name__)

READ_CHUNK = 65_536
# A reply the station does not read within this long closes the connection.
WRITE_TIMEOUT_S = 30.0
# An unknown MN / address waits (CATCH_UP_S) for the registry view to catch up, at most once per
# key and connection every CATCH_UP_EVERY_S.
CATCH_UP_EVERY_S = 10.0
# A peer whose partial frames time out this many times in a row is disconnected (slow loris).
MAX_FRAME_TIMEOUTS = 3
# On shutdown, wait this long for queued items to be acknowledged and their replies written.
DRAIN_TIMEOUT_S = 10.0


class Framer(Protocol):
    """A protocol's byte-stream splitter (``ingest.decoders.hj212.Framer`` / ``sl651.Framer``)."""

    def feed(self, data: bytes) -> Sequence[bytes | RejectedMessage]:
        """Complete candidate frames, and errors carrying skipped bytes in ``.payload``."""
        ...

    def pending(self) -> int:
        """Bytes of a partial frame held back."""
        ...

    def flush(self) -> bytes:
        """Give up the partial frame and return its bytes."""
        ...


class Session(Protocol):
    """One connection's protocol state."""

    @property
    def framer(self) -> Framer:
        """This connection's framer."""
        ...

    async def on_frame(self, raw: bytes, now: float) -> None:
        """Handle one complete candidate frame (never raises for bad input)."""
        ...

    async def tick(self, now: float) -> None:
        """Periodic work (expire incomplete multi-packet groups)."""
        ...


class ProtocolHandler(Protocol):
    """What the collector needs to serve one protocol."""

    name: str
    port: int
    idle_timeout_s: float

    def session(self, conn: Connection) -> Session:
        """A new session for an accepted connection."""
        ...


@dataclass
class Context:
    """What every connection shares: settings, Kafka, the registry view, limits, log throttles."""

    settings: TcpSettings
    out: KafkaOut
    view: RegistryView
    passwords: PasswordCache = field(default_factory=PasswordCache)
    buckets: Buckets = field(init=False)
    log_throttle: LogThrottle = field(default_factory=LogThrottle)
    raw_topic: str = field(init=False)
    dead_topic: str = field(init=False)

    def __post_init__(self) -> None:
        self.buckets = Buckets(self.settings.tcp_frames_per_s, self.settings.tcp_frames_burst)
        self.raw_topic = self.settings.topic(topics.RAW)
        self.dead_topic = self.settings.topic(topics.DEADLETTER)


@dataclass(slots=True)
class _Item:
    """Records a frame produced, and what to do once Kafka acknowledged all of them."""

    deliveries: list[Delivery]
    replies: list[tuple[str, bytes]]
    on_acked: Callable[[], None] | None
    started: float


class Connection:
    """One station connection: its peer, its reply queue, and helpers to publish and refuse."""

    def __init__(
        self, ctx: Context, protocol: str, writer: asyncio.StreamWriter, host: str, port: int
    ) -> None:
        self.ctx = ctx
        self.protocol = protocol
        self.writer = writer
        self.host = host
        self.port = port
        self.peer = f"{host}:{port}"
        self.source = f"tcp:{host}:{port}"
        self.device_id: str | None = None  # the last station identified on this connection
        self.queue: asyncio.Queue[_Item | None] = asyncio.Queue(ctx.settings.tcp_max_pending_per_connection)
        self.broken = False  # writing failed: replies are pointless
        self._caught_up_for: dict[str, float] = {}
        # Dead letters a flood causes (frames over the rate, bytes that are no frame) are kept at
        # most at the frame rate: past it they are counted, not sent, and the next one kept says
        # how many. A peer spraying junk must not be able to fill Kafka (or the state archive).
        self._flood_letters = TokenBucket(ctx.settings.tcp_frames_per_s, ctx.settings.tcp_frames_burst)
        self._flood_suppressed = 0

    async def find(
        self, lookup: Callable[[str], DeviceRecord | None], key: str, now: float
    ) -> DeviceRecord | None:
        """The registered device for a protocol key (MN, RTU address).

        An unknown key first waits (up to ``CATCH_UP_S``) for the registry view to read what
        is on the registry topic now, so a station registered a moment ago is not refused; a
        key still unknown is not waited for again on this connection for ``CATCH_UP_EVERY_S``.
        """
        record = lookup(key)
        if record is not None:
            return record
        last = self._caught_up_for.get(key)
        if last is not None and now - last < CATCH_UP_EVERY_S:
            return None
        if len(self._caught_up_for) > 1000:
            self._caught_up_for.clear()
        self._caught_up_for[key] = now
        await self.ctx.view.catch_up(CATCH_UP_S)
        return lookup(key)

    def rate_key(self) -> str:
        """Token-bucket key: the station once known, the connection until then."""
        return f"device:{self.device_id}" if self.device_id else f"conn:{self.peer}"

    async def submit(
        self,
        deliveries: list[Delivery],
        replies: Sequence[tuple[str, bytes]] = (),
        on_acked: Callable[[], None] | None = None,
    ) -> None:
        """Queue replies to be written once ``deliveries`` are acknowledged (in arrival order)."""
        await self.queue.put(_Item(deliveries, list(replies), on_acked, time.monotonic()))

    async def publish(
        self,
        device_id: str,
        readings: list[Reading],
        *,
        source: str,
        received_at: datetime,
        replies: Sequence[tuple[str, bytes]] = (),
        on_acked: Callable[[], None] | None = None,
    ) -> None:
        """One ``ReadingBatch`` on ``readings.raw``; ``replies`` follow its acknowledgement."""
        value = encode_batch(device_id=device_id, received_at=received_at, source=source, readings=readings)
        delivery = await self.ctx.out.send(self.ctx.raw_topic, device_id.encode(), value)
        metrics.READINGS.labels(self.protocol).inc(len(readings))
        await self.submit([delivery], replies, on_acked)

    async def dead_letter(
        self,
        code: str,
        reason: str,
        payload: bytes,
        *,
        device_id: str | None = None,
        ident: str = "",
        replies: Sequence[tuple[str, bytes]] = (),
        log: bool = True,
        flood: bool = False,
    ) -> None:
        """Send a dead letter (and log it, throttled per station or peer); ``replies`` follow its ack.

        ``flood``: a refusal a peer can cause at any rate (a frame over the rate limit, bytes the
        framer could not use): kept at most at the frame rate per connection, counted beyond.
        """
        if flood:
            if not self._flood_letters.take(time.monotonic()):
                self._flood_suppressed += 1
                metrics.DEADLETTERS_SUPPRESSED.labels(self.protocol, code).inc()
                if replies:
                    await self.submit([], replies)
                return
            if self._flood_suppressed:
                reason += (
                    f" ({self._flood_suppressed} more such refusal(s) on this connection since the previous "
                    "one were counted, not kept: stationflow_tcp_deadletters_suppressed_total)"
                )
                self._flood_suppressed = 0
        letter = DeadLetter.build(
            payload=payload,
            source=self.source,
            code=code,
            reason=reason,
            received_at=utcnow(),
            device_id=device_id,
            max_payload_bytes=self.ctx.settings.tcp_max_deadletter_bytes,
        )
        metrics.DEADLETTERS.labels(self.protocol, code).inc()
        if log:
            suppressed = self.ctx.log_throttle.allow(f"{device_id or self.host}:{code}", time.monotonic())
            if suppressed is not None:
                logger.warning(
                    "frame refused protocol=%s device_id=%s %speer=%s code=%s reason=%s "
                    "suppressed_since_last=%d",
                    self.protocol,
                    device_id,
                    f"{ident} " if ident else "",
                    self.peer,
                    code,
                    reason,
                    suppressed,
                )
        delivery = await self.ctx.out.send(
            self.ctx.dead_topic, letter.key(), letter.model_dump_json().encode()
        )
        await self.submit([delivery], replies)

    async def reply_loop(self) -> None:
        """Write each item's replies once Kafka acknowledged its records; stop at the ``None`` sentinel."""
        while (item := await self.queue.get()) is not None:
            try:
                for delivery in item.deliveries:
                    await delivery
            except Exception:  # noqa: BLE001 - any delivery failure: KafkaOut stops the collector
                return  # KafkaOut stops the collector; the station gets no confirmation and resends
            if item.deliveries:
                metrics.ACK_SECONDS.labels(self.protocol).observe(time.monotonic() - item.started)
            if item.on_acked is not None:
                item.on_acked()
            if item.replies and not self.broken:
                await self._write(item.replies)

    async def _write(self, replies: list[tuple[str, bytes]]) -> None:
        try:
            for kind, data in replies:
                self.writer.write(data)
                metrics.REPLIES.labels(self.protocol, kind).inc()
            await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT_S)
        except (OSError, TimeoutError, RuntimeError) as exc:
            self.broken = True
            logger.info(
                "reply not delivered protocol=%s device_id=%s peer=%s reason=%r",
                self.protocol,
                self.device_id,
                self.peer,
                exc,
            )
            self.writer.transport.abort()


class TcpCollector:
    """Both listeners and every connection; ``run`` serves until stopped or Kafka fails."""

    def __init__(self, ctx: Context, handlers: Sequence[ProtocolHandler]) -> None:
        self.ctx = ctx
        self.handlers = list(handlers)
        s = ctx.settings
        self.slots = ConnectionSlots(s.tcp_max_connections, s.tcp_max_connections_per_ip)
        self.servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusal_log = LogThrottle()

    async def start(self) -> list[tuple[str, str, int]]:
        """Bind every enabled listener; return (protocol, host, port) as bound."""
        bound: list[tuple[str, str, int]] = []
        for handler in self.handlers:  # port 0 here = any free port (the entry point skips disabled ones)
            server = await asyncio.start_server(
                functools.partial(self._serve, handler),
                host=self.ctx.settings.tcp_bind,
                port=handler.port,
                limit=READ_CHUNK,
                backlog=self.ctx.settings.tcp_backlog,
            )
            self.servers.append(server)
            sock = server.sockets[0].getsockname()
            bound.append((handler.name, str(sock[0]), int(sock[1])))
            logger.info("listening protocol=%s host=%s port=%s", handler.name, sock[0], sock[1])
        return bound

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set or Kafka fails; then close connections and drain."""
        waiters = {asyncio.create_task(stop.wait()), asyncio.create_task(self.ctx.out.failed.wait())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()
            await self.close()
        if self.ctx.out.fatal is not None:
            raise self.ctx.out.fatal

    async def close(self) -> None:
        """Stop accepting, end every connection (queued replies first), drain Kafka."""
        for server in self.servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=DRAIN_TIMEOUT_S + 5)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        await self.ctx.out.drain(DRAIN_TIMEOUT_S)
        self.ctx.passwords.close()

    async def _serve(
        self, handler: ProtocolHandler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        host, port = str(peer[0]), int(peer[1])
        refused = self.slots.acquire(host)
        if refused is not None:
            metrics.CONNECTIONS_REFUSED.labels(handler.name, refused).inc()
            suppressed = self._refusal_log.allow(refused, time.monotonic())
            if suppressed is not None:
                logger.warning(
                    "connection refused protocol=%s peer=%s:%s reason=%s open=%d limit=%d per_ip_limit=%d "
                    "suppressed_since_last=%d",
                    handler.name,
                    host,
                    port,
                    refused,
                    self.slots.total,
                    self.slots.max_total,
                    self.slots.max_per_ip,
                    suppressed,
                )
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:  # dead peers behind a NAT are noticed even while the idle timeout runs
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        metrics.CONNECTIONS_TOTAL.labels(handler.name).inc()
        metrics.CONNECTIONS_OPEN.labels(handler.name).inc()
        conn = Connection(self.ctx, handler.name, writer, host, port)
        replier = asyncio.create_task(conn.reply_loop())
        reason = "error"
        try:
            reason = await self._read_loop(handler, conn, reader)
        except asyncio.CancelledError:
            reason = "shutdown"
        except Exception:
            logger.exception(
                "connection failed protocol=%s device_id=%s peer=%s", handler.name, conn.device_id, conn.peer
            )
        finally:
            await self._finish(handler, conn, replier, reason)
            self._tasks.discard(task)
            self.slots.release(host)

    async def _finish(
        self, handler: ProtocolHandler, conn: Connection, replier: asyncio.Task[None], reason: str
    ) -> None:
        """Let queued replies go out (bounded), then close the socket."""
        try:
            conn.queue.put_nowait(None)
        except asyncio.QueueFull:
            replier.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(replier, DRAIN_TIMEOUT_S)
        conn.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.writer.wait_closed(), 2)
        metrics.CONNECTIONS_OPEN.labels(handler.name).dec()
        metrics.CONNECTIONS_CLOSED.labels(handler.name, reason).inc()
        logger.info(
            "connection closed protocol=%s device_id=%s peer=%s reason=%s",
            handler.name,
            conn.device_id,
            conn.peer,
            reason,
        )

    async def _read_loop(
        self, handler: ProtocolHandler, conn: Connection, reader: asyncio.StreamReader
    ) -> str:
        """Read until the peer closes or a deadline passes; return why the connection ends.

        Two deadlines: no byte at all for the protocol's idle timeout closes the connection; a
        partial frame not completed within ``tcp_frame_timeout_s`` of its first byte is given up
        (dead letter ``<protocol>_truncated``) and the connection carries on, unless that happens
        ``MAX_FRAME_TIMEOUTS`` times in a row without a complete frame (a slow-loris peer).
        """
        s = self.ctx.settings
        session = handler.session(conn)
        framer = session.framer
        loop = asyncio.get_running_loop()
        last_byte = loop.time()
        partial_since: float | None = None
        frame_timeouts = 0
        while not conn.broken:
            now = loop.time()
            idle_deadline = last_byte + handler.idle_timeout_s
            if now >= idle_deadline:
                await self._idle(handler, conn, framer, now - last_byte)
                return "idle"
            deadline = idle_deadline
            if partial_since is not None:
                frame_deadline = partial_since + s.tcp_frame_timeout_s
                if now >= frame_deadline:
                    frame_timeouts += 1
                    closing = frame_timeouts >= MAX_FRAME_TIMEOUTS
                    why = f"no complete frame within {s.tcp_frame_timeout_s:g} s of its first byte"
                    await self._truncated(
                        handler, conn, framer, why + ("; connection closed" if closing else "")
                    )
                    partial_since = None
                    if closing:
                        return "frame_timeout"
                    continue
                deadline = min(deadline, frame_deadline)
            try:
                data = await asyncio.wait_for(reader.read(READ_CHUNK), deadline - now)
            except TimeoutError:
                await session.tick(loop.time())
                continue
            except (ConnectionError, OSError):
                return "peer"
            if not data:
                await self._end_of_stream(handler, conn, session, loop.time())
                return "peer"
            metrics.BYTES.labels(handler.name).inc(len(data))
            last_byte = loop.time()
            for item in framer.feed(data):
                if isinstance(item, bytes):
                    frame_timeouts = 0
                    await self._frame(handler, conn, session, item, last_byte)
                else:
                    await conn.dead_letter(
                        item.code, item.reason, bytes(getattr(item, "payload", b"") or b""), flood=True
                    )
            if framer.pending():
                partial_since = partial_since if partial_since is not None else last_byte
            else:
                partial_since = None
            await session.tick(last_byte)
            await asyncio.sleep(0)  # a peer sending a flood of bytes lets the others run
        return "write_failed"

    async def _frame(
        self, handler: ProtocolHandler, conn: Connection, session: Session, raw: bytes, now: float
    ) -> None:
        if not self.ctx.buckets.take(conn.rate_key(), now):
            metrics.FRAMES.labels(handler.name, "rate_limited").inc()
            s = self.ctx.settings
            await conn.dead_letter(
                f"{handler.name}_rate_limited",
                f"more than {s.tcp_frames_per_s:g} frames/s (burst {s.tcp_frames_burst}) from this station; "
                "the frame was not processed and gets no reply: send less often",
                raw,
                device_id=conn.device_id,
                flood=True,
            )
            return
        try:
            await session.on_frame(raw, now)
        except Exception as exc:  # a decoder bug must not end the connection: log it, dead-letter it
            if self.ctx.out.fatal is not None:
                raise  # Kafka failed: the collector is stopping
            logger.exception(
                "frame handling failed protocol=%s device_id=%s peer=%s",
                handler.name,
                conn.device_id,
                conn.peer,
            )
            await conn.dead_letter(
                "internal_error",
                f"internal error while decoding the frame ({type(exc).__name__}); operators alerted",
                raw,
                device_id=conn.device_id,
                log=False,
            )

    async def _end_of_stream(
        self, handler: ProtocolHandler, conn: Connection, session: Session, now: float
    ) -> None:
        """The peer closed: a last frame without its tail still counts, a partial one is dead-lettered."""
        framer = session.framer
        if not framer.pending():
            return
        finish: Callable[[], Sequence[bytes | RejectedMessage]] | None = getattr(framer, "finish", None)
        if finish is None:
            await self._truncated(handler, conn, framer, "the connection was closed in the middle of a frame")
            return
        for item in finish():
            if isinstance(item, bytes):
                await self._frame(handler, conn, session, item, now)
            else:
                reason = f"{item.reason}: the connection was closed in the middle of a frame"
                await conn.dead_letter(item.code, reason, bytes(getattr(item, "payload", b"") or b""))

    async def _idle(
        self, handler: ProtocolHandler, conn: Connection, framer: Framer, silent_s: float
    ) -> None:
        if framer.pending():
            await self._truncated(
                handler,
                conn,
                framer,
                f"no byte for {silent_s:.0f} s in the middle of a frame; connection closed",
            )
        logger.info(
            "connection idle, closed protocol=%s device_id=%s peer=%s silent_s=%.0f",
            handler.name,
            conn.device_id,
            conn.peer,
            silent_s,
        )

    async def _truncated(self, handler: ProtocolHandler, conn: Connection, framer: Framer, why: str) -> None:
        partial = framer.flush()
        await conn.dead_letter(
            f"{handler.name}_truncated",
            f"incomplete frame of {len(partial)} bytes: {why}",
            partial,
            device_id=conn.device_id,
        )
