"""Logging setup: one line per event, ``key=value`` context naming device, station and reason."""

from __future__ import annotations

import logging
import sys

__all__ = ["setup_logging"]

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
