"""Logging setup: one line per event, ``key=value`` context naming device, station and reason."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import sys
import threading
import traceback
from types import FrameType

__all__ = ["LogThrottle", "await_chain", "setup_logging", "threads_and_tasks"]

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def setup_logging(level: str = "INFO", *, service: str | None = None) -> None:
    """Configure the root logger for a service process (idempotent)."""
    fmt = FORMAT if service is None else f"%(asctime)s %(levelname)s service={service} %(name)s %(message)s"
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries are chatty at INFO; their warnings still come through.
    for noisy in ("aiokafka", "faust", "mode", "kafka", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class LogThrottle:
    """Let through one log line per key per interval and count what was held back.

    A misbehaving device can send thousands of bad messages a second; every one is counted
    in metrics and kept in the dead-letter topic, but the log gets one line per device per
    interval, carrying how many were suppressed since the last line.
    """

    def __init__(self, interval_s: float = 10.0, max_keys: int = 10_000) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[str, tuple[float, int]] = {}

    def allow(self, key: str, now: float) -> int | None:
        """Return the number suppressed since the last line if a line may be logged now."""
        last, suppressed = self._last.get(key, (float("-inf"), 0))
        if now - last >= self.interval_s:
            if len(self._last) >= self.max_keys:
                self._last.clear()
            self._last[key] = (now, 0)
            return suppressed
        self._last[key] = (last, suppressed + 1)
        return None


def threads_and_tasks() -> str:
    """Every thread's stack, and every asyncio task of each thread's loop with the chain of
    coroutines it is suspended in, down to the future it waits for: what a process is waiting
    for when it is idle and should not be (as mode's SIGUSR1 dump, but as text for a log line,
    without local variables, and with the whole await chain where ``Task.print_stack`` gives a
    suspended task's outermost frame only)."""
    out = io.StringIO()
    threads = {t.ident: t for t in threading.enumerate()}
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for ident, frame in sys._current_frames().items():
        thread = threads.get(ident)
        name = thread.name if thread is not None else str(ident)
        print(f"--- thread {name}", file=out)
        traceback.print_stack(frame, file=out)
        loop = running if thread is threading.current_thread() else getattr(thread, "loop", None)
        if isinstance(loop, asyncio.AbstractEventLoop):
            for task in list(asyncio.all_tasks(loop)):
                print(f"--- task {task.get_name()} of thread {name}", file=out)
                out.writelines(f"{line}\n" for line in await_chain(task.get_coro()))
    return out.getvalue()


def await_chain(awaitable: object, limit: int = 64) -> list[str]:
    """Where a suspended coroutine is, one line per coroutine, generator or async generator it
    awaits in turn, and last what the innermost one waits for (a future, a task)."""
    lines: list[str] = []
    current: object = awaitable
    for _ in range(limit):
        frame = _frame_of(current)
        if frame is None:  # (a future's own iterator names nothing more than "a future")
            what = "a future" if type(current).__name__ == "FutureIter" else repr(current)[:300]
            lines.append(f"  waiting for {what}")
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_qualname}')
        awaits = (getattr(current, a, None) for a in ("cr_await", "gi_yieldfrom", "ag_await"))
        inner = next((n for n in awaits if n is not None), None)
        if type(inner).__name__ in _WRAPPERS:
            # ``async for`` awaits the generator's asend object, ``await`` on an object with an
            # ``__await__`` its coroutine's wrapper: each names what it wraps only to the GC
            inner = next((r for r in gc.get_referents(inner) if _frame_of(r) is not None), inner)
        if inner is None:
            break
        current = inner
    return lines


_WRAPPERS = ("async_generator_asend", "async_generator_athrow", "coroutine_wrapper")


def _frame_of(awaitable: object) -> FrameType | None:
    """The frame of a coroutine, generator or async generator (None: not one, or finished)."""
    for attribute in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, attribute, None)
        if isinstance(frame, FrameType):
            return frame
    return None
