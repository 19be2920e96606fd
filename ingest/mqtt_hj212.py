"""HJ 212 over MQTT in the collector process: the registry view and password checks.

A DTU gateway publishes each frame of its data logger to ``devices/<device_id>/hj212``. To
decode it the collector needs the device's registry record (its MN, CRC variant, strict mode,
password hash and the HJ 212 codes of its type), so the collector follows the compacted
``registry`` topic into a ``RegistryView``. Only ``hj212`` messages touch it: the JSON and SenML
paths never wait for the registry.

Before a frame is routed (``ingest.router.route``, pure), ``prepare`` makes sure the lookups it
does are answered in memory: the registry is loaded, a device not found is looked up once more
after catching up with the topic (a device registered a moment ago), and the frame's password
is checked on a worker thread (scrypt takes ~50 ms; on the event loop it would stall every
device's messages). The outcome is remembered, so later frames are checked without scrypt.

Waiting in ``prepare`` must not reorder a device's frames: gmqtt hands each message to its own
task, and a frame that arrives once the record is in memory would otherwise pass the earlier
frames still waiting for it (a backfill's first minutes of history, then analysed as late).
``in_order`` gives each device's frames their turn in arrival order, from ``prepare`` until the
frame is in its bundle; other devices do not wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

from ingest.errors import RejectedMessage
from ingest.router import Hj212Context
from ingest.settings import IngestSettings
from stationflow.contracts import DeviceRecord
from stationflow.passwords import PasswordCache
from stationflow.registryview import CATCH_UP_S, RegistryFollower, RegistryView

__all__ = ["Hj212Registry"]

logger = logging.getLogger(__name__)

FOLLOWER_RETRY_S = 5.0
UNKNOWN_REPORT_S = 3600.0
_PW = re.compile(rb"PW=([^;&]*)")


class Hj212Registry:
    """The collector's registry view, kept current, and the ``Hj212Context`` routing reads."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.view = RegistryView()
        self.passwords = PasswordCache()
        self.context = Hj212Context(
            lookup=self._lookup,
            passwords=self.passwords,
            tz=ZoneInfo(settings.hj212_tz),
            strict=settings.hj212_strict,
        )
        self._reported: dict[tuple[str, tuple[str, ...]], float] = {}
        self._turns: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # topic → its lock, holders

    @contextlib.asynccontextmanager
    async def in_order(self, topic: str) -> AsyncIterator[None]:
        """Hold ``topic``'s turn: its messages pass one at a time, in the order they asked
        (``asyncio.Lock`` wakes its waiters first in, first out; a free lock does not suspend).
        The lock is dropped once nobody holds or waits for it, so idle devices cost nothing."""
        turn = self._turns.get(topic)
        if turn is None:
            turn = self._turns[topic] = (asyncio.Lock(), [0])
        lock, holders = turn
        holders[0] += 1
        try:
            async with lock:
                yield
        finally:
            holders[0] -= 1
            if not holders[0]:
                del self._turns[topic]

    def _lookup(self, device_id: str) -> DeviceRecord | None:
        if not self.view.ready.is_set():
            raise RejectedMessage(
                "registry_unavailable",
                f"the device registry was not loaded within {self.settings.ingest_registry_wait_s:g} s; "
                "HJ 212 frames cannot be read without it (is Kafka's registry topic reachable?)",
                device_id=device_id,
            )
        return self.view.get(device_id)

    async def follow(self) -> None:
        """Follow the registry topic until cancelled; a failed follower is restarted."""
        while True:
            try:
                await RegistryFollower(self.settings, self.view).run()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("registry follower failed retry_in=%.0fs", FOLLOWER_RETRY_S)
            await asyncio.sleep(FOLLOWER_RETRY_S)

    async def prepare(self, device_id: str, payload: bytes) -> None:
        """Make the lookups of routing one ``hj212`` message answerable in memory (see the module doc)."""
        view = self.view
        if not view.ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(view.ready.wait(), self.settings.ingest_registry_wait_s)
            if not view.ready.is_set():
                return
        record = view.get(device_id)
        if record is None:
            await view.catch_up(CATCH_UP_S)
            record = view.get(device_id)
        link = record.hj212 if record is not None else None
        if link is None or link.password_hash is None:
            return
        match = _PW.search(payload)
        if match is not None:
            with contextlib.suppress(UnicodeDecodeError):
                await self.passwords.warm(match[1].decode("utf-8"), link.password_hash)

    def unknown_codes_due(self, device_id: str, codes: tuple[str, ...], now: float) -> bool:
        """True at most once an hour per device and set of unknown codes (report them then)."""
        key = (device_id, codes)
        last = self._reported.get(key)
        if last is not None and now - last < UNKNOWN_REPORT_S:
            return False
        if len(self._reported) > 10_000:
            self._reported.clear()
        self._reported[key] = now
        return True

    def close(self) -> None:
        """Release the password thread."""
        self.passwords.close()
