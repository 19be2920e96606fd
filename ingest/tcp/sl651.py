"""SL 651-2014 sessions: frame → registry → checks → dedup → Kafka → the center's confirmation.

Per frame (``Sl651Session.on_frame``), following §2.11 of the protocol notes:

* a frame that fails its CRC or does not parse: dead letter, no reply (the RTU retries twice);
* the RTU address names the station (unknown: ``sl651_unknown_station``); then the source
  address (``allow_from``) and, only when the registry holds one, the password;
* 2F link keep-alive: nothing stored, no reply;
* M3 packets (SYN): held until the group is complete, then handled as one frame;
* a report: ``parse_report`` → dedup by (address, FC, serial, first observation time) → one
  ``ReadingBatch`` → after Kafka's acknowledgement the confirmation with the station's ack
  policy (EOT or ESC; ``none`` for M1 RTUs; ACK for an ETB frame). A resent report (same key,
  the RTU did not get our confirmation) is confirmed again but not stored twice.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from datetime import datetime
from zoneinfo import ZoneInfo

from ingest.checks import check_readings
from ingest.decoders import sl651 as codec
from ingest.errors import RejectedMessage
from ingest.tcp import metrics
from ingest.tcp.limits import EveryAtMost, address_allowed
from ingest.tcp.server import Connection, Context
from stationflow.contracts import DeviceRecord, utcnow

__all__ = ["Sl651Handler", "Sl651Session"]

logger = logging.getLogger(__name__)

PROTOCOL = "sl651"
KEEPALIVE = 0x2F
ETB = 0x17
DEDUP_PER_STATION = 256
UNKNOWN_REPORT_EVERY_S = 3600.0
MAX_TRACKED = 100_000

DedupKey = tuple[str, int, int, datetime | None]


class Sl651Handler:
    """The SL 651 listener: per-station memory (recent report keys) shared by every connection."""

    name = PROTOCOL

    def __init__(self, ctx: Context, *, port: int | None = None) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.port = s.sl651_port if port is None else port
        self.idle_timeout_s = s.sl651_idle_timeout_s
        self.tz = ZoneInfo(s.sl651_tz)
        self.limits = s.limits()
        self._seen: dict[str, OrderedDict[DedupKey, None]] = {}
        self._unknown_reported = EveryAtMost(UNKNOWN_REPORT_EVERY_S, MAX_TRACKED)

    def session(self, conn: Connection) -> Sl651Session:
        """A session for a new connection."""
        return Sl651Session(self, conn)

    def seen(self, device_id: str, key: DedupKey) -> bool:
        """True if this report of the station was already stored."""
        keys = self._seen.get(device_id)
        return keys is not None and key in keys

    def remember(self, device_id: str, key: DedupKey) -> None:
        """Note a stored report (called once Kafka acknowledged it)."""
        keys = self._seen.get(device_id)
        if keys is None:
            if len(self._seen) > MAX_TRACKED:
                self._seen.clear()
            keys = self._seen[device_id] = OrderedDict()
        keys[key] = None
        keys.move_to_end(key)
        if len(keys) > DEDUP_PER_STATION:
            keys.popitem(last=False)

    def unknown_report_due(self, device_id: str, names: tuple[str, ...], now: float) -> bool:
        """True (and remembered) if this station's set of unknown elements was not reported this hour."""
        return self._unknown_reported.due((device_id, tuple(sorted(names))), now)


class Sl651Session:
    """One SL 651 connection (an RTU)."""

    def __init__(self, handler: Sl651Handler, conn: Connection) -> None:
        self.handler = handler
        self.conn = conn
        s = handler.ctx.settings
        self.framer = codec.Framer(max_frame_bytes=s.tcp_max_frame_bytes)
        self.packets = codec.Packets(timeout_s=s.sl651_packet_timeout_s)
        self.source = f"sl651:tcp:{conn.host}:{conn.port}"

    async def on_frame(self, raw: bytes, now: float) -> None:
        """Handle one candidate frame from the framer."""
        try:
            frame = codec.parse_frame(raw)
        except codec.Sl651Error as exc:
            await self._refuse(exc.code, exc.reason, raw, None, None)
            return
        if not frame.upstream:
            await self._refuse(
                "sl651_downlink",
                "a downlink (center → station) frame was sent to the center",
                raw,
                None,
                frame.address,
            )
            return
        record = await self.conn.find(self.handler.ctx.view.by_sl651_address, frame.address, now)
        if record is None or record.sl651 is None:
            await self._refuse(
                "sl651_unknown_station",
                f"RTU address {frame.address} is not registered: register the station with protocol sl651 "
                "and this address",
                raw,
                None,
                frame.address,
            )
            return
        if not await self._check(frame, record, raw):
            return
        self.conn.device_id = record.device_id
        for deviation in frame.deviations:
            metrics.SL651_DEVIATIONS.labels(record.device_id, deviation).inc()
        if frame.fc == KEEPALIVE:
            metrics.FRAMES.labels(PROTOCOL, "keepalive").inc()
            return
        if frame.packet is not None:
            merged = self.packets.add(frame, now)
            if merged is None:
                metrics.FRAMES.labels(PROTOCOL, "held").inc()
                return
            frame = merged
        await self._report(frame, record)

    async def _check(self, frame: codec.Frame, record: DeviceRecord, raw: bytes) -> bool:
        """Source address and password; False when refused."""
        link = record.sl651
        if link is None:  # checked by the caller
            return False
        if not address_allowed(self.conn.host, link.allow_from):
            await self._refuse(
                "sl651_address_not_allowed",
                f"source address {self.conn.host} is not in the station's allow-list {link.allow_from}",
                raw,
                record.device_id,
                frame.address,
            )
            return False
        if link.password_hash is not None and not await self.handler.ctx.passwords.verify_off_loop(
            frame.password, link.password_hash
        ):
            await self._refuse(
                "sl651_bad_password",
                f"password {frame.password} does not match the one registered for RTU {frame.address}",
                raw,
                record.device_id,
                frame.address,
            )
            return False
        return True

    def _confirmation(self, frame: codec.Frame, record: DeviceRecord) -> list[tuple[str, bytes]]:
        link = record.sl651
        if link is None or link.ack == "none":
            return []
        now_local = datetime.now(self.handler.tz)
        if frame.end == ETB and frame.packet is None:
            return [("ack", codec.ack_etb(frame, now_local))]
        return [(link.ack, codec.confirmation(frame, now_local, end=link.ack))]

    async def _report(self, frame: codec.Frame, record: DeviceRecord) -> None:
        device_id, received_at = record.device_id, utcnow()
        try:
            report = codec.parse_report(frame, tz=self.handler.tz)
        except codec.Sl651Error as exc:
            await self._refuse(exc.code, exc.reason, frame.raw, device_id, frame.address)
            return
        key = codec.dedup_key(frame, report)
        replies = self._confirmation(frame, record)
        if self.handler.seen(device_id, key):
            metrics.SL651_DUPLICATES.labels(device_id).inc()
            metrics.FRAMES.labels(PROTOCOL, "duplicate").inc()
            logger.info(
                "sl651 report resent, confirmed again, not stored device_id=%s address=%s fc=%02X serial=%d",
                device_id,
                frame.address,
                frame.fc,
                report.serial,
            )
            await self.conn.submit([], replies)
            return
        try:
            decoded = codec.to_readings(report, record)
            check_readings(
                decoded.readings, received_at=received_at, limits=self.handler.limits, device_id=device_id
            )
        except RejectedMessage as exc:  # intact frame, unusable content: confirm, a resend would not help
            await self._refuse(exc.code, exc.reason, frame.raw, device_id, frame.address, replies)
            return
        await self._report_unknown(frame, record, decoded.unknown, report.truncated_at)

        def stored() -> None:
            self.handler.remember(device_id, key)

        if not decoded.readings:  # e.g. every value missing: nothing to store, still confirmed
            metrics.FRAMES.labels(PROTOCOL, "empty").inc()
            await self.conn.submit([], replies, stored)
            return
        metrics.FRAMES.labels(PROTOCOL, "stored").inc()
        await self.conn.publish(
            device_id,
            decoded.readings,
            source=self.source,
            received_at=received_at,
            replies=replies,
            on_acked=stored,
        )

    async def _report_unknown(
        self, frame: codec.Frame, record: DeviceRecord, unknown: tuple[str, ...], truncated_at: str | None
    ) -> None:
        """A dead letter naming elements the type does not map (once an hour per station and set)."""
        if not unknown and truncated_at is None:
            return
        metrics.SL651_UNKNOWN_ELEMENTS.labels(record.device_id).inc()
        names = (*unknown, f"stopped at {truncated_at}") if truncated_at else unknown
        if not self.handler.unknown_report_due(record.device_id, names, time.monotonic()):
            return
        stop = f"; decoding stopped at the undecodable block {truncated_at}" if truncated_at else ""
        await self.conn.dead_letter(
            "sl651_unknown_element",
            f"elements {list(unknown)} are not metrics of device type {record.device_type!r}{stop}; "
            "the rest was stored (reported once an hour per element set)",
            frame.raw,
            device_id=record.device_id,
            ident=f"address={frame.address}",
        )

    async def _refuse(
        self,
        code: str,
        reason: str,
        raw: bytes,
        device_id: str | None,
        address: str | None,
        replies: list[tuple[str, bytes]] | None = None,
    ) -> None:
        metrics.FRAMES.labels(PROTOCOL, "refused").inc()
        await self.conn.dead_letter(
            code,
            reason,
            raw,
            device_id=device_id,
            ident=f"address={address}" if address else "",
            replies=replies or (),
        )

    async def tick(self, now: float) -> None:
        """Dead-letter multi-packet (M3) groups that did not complete in time."""
        for frames in self.packets.expire(now):
            first = frames[0]
            record = self.handler.ctx.view.by_sl651_address(first.address)
            await self._refuse(
                "sl651_packets_incomplete",
                f"{len(frames)} of {first.packet[0] if first.packet else '?'} packets arrived, the rest "
                f"not within {self.handler.ctx.settings.sl651_packet_timeout_s:g} s; nothing of the group "
                "was stored",
                b"".join(f.raw for f in frames),
                record.device_id if record else None,
                first.address,
            )
