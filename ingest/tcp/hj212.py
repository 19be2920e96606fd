"""HJ 212-2017 sessions: frame → registry → checks → Kafka → the reply the standard requires.

Per frame (``Hj212Session.on_frame``):

1. ``parse_frame`` liberally (any of the three CRC variants, deviations recorded); a frame
   that does not parse is dead-lettered with the decoder's code and no reply (§1.8: a bad
   CRC ends the exchange, the station resends).
2. The MN names the station in the registry (unknown: ``hj212_unknown_mn``). A station pinned
   to one CRC variant or in strict mode (its own or ``hj212_strict``) is parsed again under
   those rules.
3. Source address against the station's ``allow_from``; ``PW`` against its password hash.
4. 9xxx frames are the station's answers to our requests (logged, nothing stored). 1013
   (time calibration request) is answered 9013, then 1012 with the center's clock.
5. Data (2011/2051/2061/2031 …): sub-packets reassembled, ``to_readings`` through the device
   type, one ``ReadingBatch`` on ``readings.raw``; the 9014 (Flag A=1) is written only after
   Kafka acknowledged the batch. A sub-packet held for reassembly is acknowledged at once:
   stations wait for each 9014 before the next packet, so holding it would deadlock.
6. A station whose clock is off by more than ``hj212_time_drift_s`` gets a 1012 (at most once
   per 10 minutes).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from ingest.checks import check_readings
from ingest.decoders import hj212 as codec
from ingest.errors import RejectedMessage
from ingest.tcp import metrics
from ingest.tcp.limits import EveryAtMost, address_allowed
from ingest.tcp.server import Connection, Context
from stationflow.contracts import DeviceRecord, utcnow

__all__ = ["Hj212Handler", "Hj212Session", "center_qn"]

logger = logging.getLogger(__name__)

PROTOCOL = "hj212"
CLOCK_SET_EVERY_S = 600.0
UNKNOWN_CODE_REPORT_EVERY_S = 3600.0
MAX_TRACKED = 100_000


def center_qn(now_local: datetime) -> str:
    """A QN for a request the center sends: local time ``YYYYMMDDhhmmsszzz``."""
    return now_local.strftime("%Y%m%d%H%M%S") + f"{now_local.microsecond // 1000:03d}"


class Hj212Handler:
    """The HJ 212 listener: per-station memory shared by every connection."""

    name = PROTOCOL

    def __init__(self, ctx: Context, *, port: int | None = None) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.port = s.hj212_port if port is None else port
        self.idle_timeout_s = s.hj212_idle_timeout_s
        self.tz = ZoneInfo(s.hj212_tz)
        self.limits = s.limits()
        self._crc: dict[str, str] = {}  # device id → CRC variant of its last frame
        self._clock_set = EveryAtMost(CLOCK_SET_EVERY_S, MAX_TRACKED)  # 1012s sent, per device id
        self._unknown_reported = EveryAtMost(UNKNOWN_CODE_REPORT_EVERY_S, MAX_TRACKED)

    def session(self, conn: Connection) -> Hj212Session:
        """A session for a new connection."""
        return Hj212Session(self, conn)

    def note_crc(self, device_id: str, mn: str, variant: str, peer: str) -> None:
        """Record the CRC variant a station's frame matched; log when it changes."""
        before = self._crc.get(device_id)
        if before == variant:
            return
        if len(self._crc) > MAX_TRACKED:
            self._crc.clear()
        self._crc[device_id] = variant
        if before is not None:
            metrics.HJ212_CRC_VARIANT.labels(device_id, before).set(0)
        metrics.HJ212_CRC_VARIANT.labels(device_id, variant).set(1)
        logger.info(
            "hj212 crc variant device_id=%s mn=%s peer=%s variant=%s previous=%s",
            device_id,
            mn,
            peer,
            variant,
            before,
        )

    def clock_set_due(self, device_id: str, now: float) -> bool:
        """True (and remembered) if this station may be sent a 1012 now."""
        return self._clock_set.due(device_id, now)

    def unknown_report_due(self, device_id: str, codes: tuple[str, ...], now: float) -> bool:
        """True (and remembered) if this station's set of unknown codes was not reported this hour."""
        return self._unknown_reported.due((device_id, tuple(sorted(codes))), now)


class Hj212Session:
    """One HJ 212 connection (a station, or a DTU carrying several)."""

    def __init__(self, handler: Hj212Handler, conn: Connection) -> None:
        self.handler = handler
        self.conn = conn
        s = handler.ctx.settings
        self.framer = codec.Framer(max_frame_bytes=s.tcp_max_frame_bytes)
        self.subpackets = codec.SubPackets(timeout_s=s.hj212_subpacket_timeout_s)
        self.source = f"hj212:tcp:{conn.host}:{conn.port}"

    async def on_frame(self, raw: bytes, now: float) -> None:
        """Handle one candidate frame from the framer."""
        try:
            frame = codec.parse_frame(raw)
        except codec.Hj212Error as exc:
            await self._refuse(exc.code, exc.reason, raw, None, None)
            return
        if not frame.mn:
            await self._refuse(
                "hj212_no_mn", "the frame has no MN field, so its station is unknown", raw, None, None
            )
            return
        record = await self.conn.find(self.handler.ctx.view.by_hj212_mn, frame.mn, now)
        if record is None or record.hj212 is None:
            await self._refuse(
                "hj212_unknown_mn",
                f"MN {frame.mn!r} is not registered: register the station with protocol hj212 and this MN",
                raw,
                None,
                frame.mn,
            )
            return
        checked = await self._check(frame, record, raw)
        if checked is None:
            return
        frame = checked
        self.conn.device_id = record.device_id
        await self._dispatch(frame, record, now)

    async def _check(self, frame: codec.Frame, record: DeviceRecord, raw: bytes) -> codec.Frame | None:
        """Strict mode / CRC pin, source address and password; None when refused."""
        link = record.hj212
        if link is None:  # checked by the caller
            return None
        device_id, mn = record.device_id, frame.mn
        strict = self.handler.ctx.settings.hj212_strict or link.strict
        if strict or link.crc is not None:
            try:
                frame = codec.parse_frame(raw, strict=strict, crc=link.crc)
            except codec.Hj212Error as exc:
                await self._refuse(exc.code, exc.reason, raw, device_id, mn)
                return None
        if not address_allowed(self.conn.host, link.allow_from):
            await self._refuse(
                "hj212_address_not_allowed",
                f"source address {self.conn.host} is not in the station's allow-list {link.allow_from}",
                raw,
                device_id,
                mn,
            )
            return None
        passwords = self.handler.ctx.passwords
        if link.password_hash is not None and (
            frame.pw is None or not await passwords.verify_off_loop(frame.pw, link.password_hash)
        ):
            what = "has no PW field" if frame.pw is None else "PW does not match the password registered"
            await self._refuse("hj212_bad_password", f"the frame {what} for MN {mn!r}", raw, device_id, mn)
            return None
        self.handler.note_crc(device_id, mn or "", frame.crc_variant, self.conn.peer)
        for deviation in frame.deviations:
            metrics.HJ212_DEVIATIONS.labels(device_id, deviation).inc()
        return frame

    async def _dispatch(self, frame: codec.Frame, record: DeviceRecord, now: float) -> None:
        cn = frame.cn
        if cn.startswith("9"):  # the station answering a request of ours (9011/9012/9014 …)
            metrics.FRAMES.labels(PROTOCOL, "reply").inc()
            logger.debug("hj212 reply from station device_id=%s cn=%s qn=%s", record.device_id, cn, frame.qn)
            return
        now_local = datetime.now(self.handler.tz)
        if cn == "1013":  # the station asks for the time: acknowledge, then set its clock
            metrics.FRAMES.labels(PROTOCOL, "command").inc()
            self.handler.clock_set_due(record.device_id, now)
            metrics.HJ212_CLOCK_SET.labels(record.device_id).inc()
            logger.info("hj212 time calibration requested device_id=%s mn=%s", record.device_id, frame.mn)
            await self.conn.submit(
                [],
                [
                    ("9013", codec.reply_9013(frame)),
                    ("1012", codec.set_time_1012(frame, now_local, center_qn(now_local))),
                ],
            )
            return
        replies = self._acks(frame) + self._clock_fix(frame, record, now, now_local)
        if cn not in codec.DATA_CNS:  # state / information uploads (2021, 3020 …): nothing to store
            try:
                codec.to_readings(frame, record, tz=self.handler.tz)
            except RejectedMessage as exc:  # a CN this platform does not handle
                await self._refuse(exc.code, exc.reason, frame.raw, record.device_id, frame.mn, replies)
                return
            metrics.FRAMES.labels(PROTOCOL, "not_data").inc()
            logger.debug("hj212 non-data upload device_id=%s cn=%s", record.device_id, cn)
            if replies:
                await self.conn.submit([], replies)
            return
        merged = self.subpackets.add(frame, now)
        if merged is None:  # a sub-packet waiting for its siblings
            metrics.FRAMES.labels(PROTOCOL, "held").inc()
            if replies:
                await self.conn.submit([], replies)
            return
        await self._store(merged, record, replies)

    def _acks(self, frame: codec.Frame) -> list[tuple[str, bytes]]:
        return [("9014", codec.reply_9014(frame))] if frame.need_ack else []

    def _clock_fix(
        self, frame: codec.Frame, record: DeviceRecord, now: float, now_local: datetime
    ) -> list[tuple[str, bytes]]:
        """A 1012 if the station's clock is off by more than allowed (at most every 10 min)."""
        limit = self.handler.ctx.settings.hj212_time_drift_s
        if not limit:
            return []
        try:
            # only a 1011 upload carries SystemTime; otherwise the QN says it (skip a second CP parse)
            params = codec.parse_cp(frame.cp)[0] if "SystemTime" in frame.cp else {}
            drift = codec.station_clock_drift(frame, params, utcnow(), self.handler.tz)
        except RejectedMessage:
            return []
        if drift is None or abs(drift) <= limit or not self.handler.clock_set_due(record.device_id, now):
            return []
        metrics.HJ212_CLOCK_SET.labels(record.device_id).inc()
        logger.info(
            "hj212 station clock set device_id=%s mn=%s peer=%s drift_s=%.0f limit_s=%g",
            record.device_id,
            frame.mn,
            self.conn.peer,
            drift,
            limit,
        )
        return [("1012", codec.set_time_1012(frame, now_local, center_qn(now_local)))]

    async def _store(
        self, frame: codec.Frame, record: DeviceRecord, replies: list[tuple[str, bytes]]
    ) -> None:
        device_id, received_at = record.device_id, utcnow()
        try:
            decoded = codec.to_readings(frame, record, tz=self.handler.tz)
            check_readings(
                decoded.readings, received_at=received_at, limits=self.handler.limits, device_id=device_id
            )
        except RejectedMessage as exc:
            # the frame was valid and authenticated: acknowledge it, resending would not help
            await self._refuse(exc.code, exc.reason, frame.raw, device_id, frame.mn, replies)
            return
        if decoded.unknown_codes:
            metrics.HJ212_UNKNOWN_CODES.labels(device_id).inc()
        if not decoded.readings:
            what = f"unknown codes {list(decoded.unknown_codes)}" if decoded.unknown_codes else "no values"
            await self._refuse(
                "hj212_no_readings",
                f"nothing to store: {what} for device type {record.device_type!r}"
                + (f" (not stored: {list(decoded.not_stored)})" if decoded.not_stored else ""),
                frame.raw,
                device_id,
                frame.mn,
                replies,
            )
            return
        if decoded.unknown_codes and self.handler.unknown_report_due(
            device_id, decoded.unknown_codes, time.monotonic()
        ):
            await self.conn.dead_letter(
                "hj212_unknown_code",
                f"codes {list(decoded.unknown_codes)} are not metrics of device type {record.device_type!r}; "
                f"the frame's other {len(decoded.readings)} readings were stored "
                "(reported once an hour per code set)",
                frame.raw,
                device_id=device_id,
                ident=f"mn={frame.mn}",
            )
        metrics.FRAMES.labels(PROTOCOL, "stored").inc()
        await self.conn.publish(
            device_id, decoded.readings, source=self.source, received_at=received_at, replies=replies
        )

    async def _refuse(
        self,
        code: str,
        reason: str,
        raw: bytes,
        device_id: str | None,
        mn: str | None,
        replies: list[tuple[str, bytes]] | None = None,
    ) -> None:
        metrics.FRAMES.labels(PROTOCOL, "refused").inc()
        await self.conn.dead_letter(
            code, reason, raw, device_id=device_id, ident=f"mn={mn}" if mn else "", replies=replies or ()
        )

    async def tick(self, now: float) -> None:
        """Dead-letter sub-packet groups that did not complete in time."""
        for key, frames in self.subpackets.expire(now):
            first = frames[0]
            record = self.handler.ctx.view.by_hj212_mn(first.mn) if first.mn else None
            await self._refuse(
                "hj212_subpacket_incomplete",
                f"{len(frames)} sub-packet(s) of group {list(key)} arrived, the rest not within "
                f"{self.handler.ctx.settings.hj212_subpacket_timeout_s:g} s; nothing of the group was stored",
                b"".join(f.raw for f in frames),
                record.device_id if record else None,
                first.mn,
            )
