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
