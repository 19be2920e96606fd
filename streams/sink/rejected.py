"""Points InfluxDB refused, kept on disk with their device and InfluxDB's reason.

One JSON object per line in ``<spool>/rejected/points.jsonl`` (the record is
:class:`stationflow.rejectedpoints.RejectedPoint`, listed by ``stationflow rejected``)::

    {"time": "2026-11-30T15:02:11.512Z", "device": "air-042", "measurement": "air",
     "status": 400, "reason": "partial write: field type conflict: …", "line": "air,device=air-042 …"}

Bounded: when the file would pass half of ``max_bytes`` it becomes ``points.1.jsonl``
(replacing the older one), so at most ``max_bytes`` are kept; how many records a rotation
discards is counted (``stationflow_sink_rejected_discarded_total``) and logged. Only the
event-loop thread of one worker writes a store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from stationflow.rejectedpoints import OLDER_FILE, REJECTED_FILE, RejectedPoint
from streams.lineprotocol import parse_series
from streams.sink import metrics

__all__ = ["DEFAULT_MAX_BYTES", "RejectedStore", "rejected_point"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 << 20


def rejected_point(line: bytes, *, status: int, reason: str, now: datetime | None = None) -> RejectedPoint:
    """A record for ``line``: its measurement and ``device`` (or ``station``) tag read back from it."""
    text = line.decode("utf-8", errors="replace")
    measurement, tags = parse_series(text)
    return RejectedPoint(
        time=now or datetime.now(UTC),
        device=tags.get("device") or tags.get("station"),
        measurement=measurement,
        status=status,
        reason=reason,
        line=text,
    )


class RejectedStore:
    """Append-only, size-bounded JSON-lines file of refused points."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """Keep records under ``directory`` (created on first use), at most ``max_bytes``."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self._dir = directory
        self._max_bytes = max_bytes

    @property
    def path(self) -> Path:
        """The current file."""
        return self._dir / REJECTED_FILE

    def keep(self, points: Iterable[RejectedPoint]) -> int:
        """Append records, fsynced; returns how many. Raises OSError if the disk fails."""
        data = b"".join(p.model_dump_json().encode() + b"\n" for p in points)
        if not data:
            return 0
        self._dir.mkdir(parents=True, exist_ok=True)
        self._rotate_if_full(len(data))
        with self.path.open("ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # after the Kafka commit, the point exists only here
        return data.count(b"\n")

    def _rotate_if_full(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size + incoming <= self._max_bytes // 2:
            return
        older = self._dir / OLDER_FILE
        discarded = _count_lines(older)
        self.path.replace(older)
        if discarded:
            metrics.REJECTED_DISCARDED.inc(discarded)
            logger.warning(
                "rejected points store full, discarded the oldest records dir=%s discarded=%d max_bytes=%d",
                self._dir,
                discarded,
                self._max_bytes,
            )


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return sum(1 for _ in file)
    except FileNotFoundError:
        return 0
