"""The backfill of ``stationflow up``: the fleet's history, published while the stack starts.

It starts as soon as the collectors listen (Kafka keeps the history until the stream worker
has joined its group) in a thread with its own event loop, prints its progress, and the live
simulator waits for it (:meth:`BackfillRun.wait`), so each device's event times stay in order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from simulator.backfill import (
    BackfillProgress,
    BackfillStats,
    BackfillWindow,
    load_until,
    plan_window,
    run_backfill,
    save_until,
)
from simulator.fleet import DeviceSpec
from stationflow.settings import CommonSettings

__all__ = ["REPORT_S", "BackfillRun", "published_until"]

logger = logging.getLogger(__name__)

REPORT_S = 5.0  # a progress line at most this often


class BackfillRun:
    """One backfill on its own thread; ``None`` from :meth:`start` when there is nothing to fill."""

    def __init__(
        self,
        console: Console,
        state_dir: Path,
        window: BackfillWindow,
        settings: CommonSettings,
        fleet: Sequence[DeviceSpec],
        sl651: tuple[str, int] | None,
    ) -> None:
        self.console, self.state_dir, self.window = console, state_dir, window
        self._args = (settings, fleet, sl651)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._shown = 0.0
        self.future: concurrent.futures.Future[BackfillStats] = concurrent.futures.Future()

    @classmethod
    def start(
        cls,
        console: Console,
        state_dir: Path,
        backfill_s: float,
        settings: CommonSettings,
        fleet: Sequence[DeviceSpec],
        sl651: tuple[str, int] | None,
        *,
        earlier_run: bool = False,
    ) -> BackfillRun | None:
        """Plan the window (the gap since the last run on a restart) and start publishing it.

        ``earlier_run``: the state dir holds data of a run that kept no backfill record (an
        older ``up``): its devices are past any history, so none is published.
        """
        until = load_until(state_dir)
        if until is None and earlier_run and backfill_s > 0:
            console.print("backfill: skipped (this state dir has data of an earlier run)")
            return None
        window = plan_window(backfill_s, datetime.now(UTC), until)
        if window is None:
            return None
        run = cls(console, state_dir, window, settings, fleet, sl651)
        hours = (window.end - window.start).total_seconds() / 3600
        what = "with its episodes" if window.episodes else "the gap since the last run"
        console.print(f"backfill: publishing the last {hours:,.1f} h of the simulated fleet ({what})…")
        threading.Thread(target=run._thread, name="backfill", daemon=True).start()
        run._ready.wait(10.0)
        return run

    def _thread(self) -> None:
        try:
            stats = asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for it
            self.future.set_exception(exc)
        else:
            self.future.set_result(stats)

    async def _main(self) -> BackfillStats:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        settings, fleet, sl651 = self._args
        stats = await run_backfill(
            settings, fleet, self.window, sl651=sl651, on_progress=self._progress, stop=self._stop
        )
        if not self._stop.is_set():
            save_until(self.state_dir, self.window.end)
        return stats

    def _progress(self, pr: BackfillProgress) -> None:
        if pr.hours_done == pr.hours or time.monotonic() - self._shown >= REPORT_S:
            self._shown = time.monotonic()
            self.console.print(
                f"backfill: {pr.hours_done}/{pr.hours} h, {pr.readings:,} readings published "
                f"({pr.rate:,.0f} readings/s)"
            )

    def stop(self) -> None:
        """Ask the backfill to end early (what it published is still acknowledged)."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop has already ended
                self._loop.call_soon_threadsafe(self._stop.set)

    async def wait(self, stop: asyncio.Event) -> BackfillStats | None:
        """Wait until it is done (None if ``stop`` came first); print the closing line."""
        done: asyncio.Future[BackfillStats] = asyncio.wrap_future(self.future)
        stopper: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
        waiting: list[asyncio.Future[object]] = [done, stopper]  # type: ignore[list-item]
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not done.done():
            self.stop()
            return None
        stats = done.result()
        self.console.print(
            f"[bold]backfill done: {_hours(stats.hours)} h, {stats.readings:,} readings "
            f"in {stats.seconds:,.1f} s[/bold] ({stats.messages:,} MQTT messages, "
            f"{stats.acked:,} acknowledged, {stats.rejected:,} refused; SL 651 hourly reports "
            f"{stats.rtu.acked:,}/{stats.rtu.uploads:,} confirmed); going live"
        )
        logger.info(
            "backfill done hours=%.1f readings=%d messages=%d seconds=%.1f",
            stats.hours,
            stats.readings,
            stats.messages,
            stats.seconds,
        )
        return stats


def _hours(hours: float) -> str:
    return f"{hours:,.0f}" if hours >= 10 else f"{hours:,.1f}"


def published_until(state_dir: Path) -> None:
    """Remember that the live fleet published up to now (a restart backfills only the gap)."""
    with contextlib.suppress(OSError):
        save_until(state_dir, datetime.now(UTC))
