"""A bounded on-disk FIFO of line-protocol batches, kept while InfluxDB is unreachable.

Layout of the spool directory (owned by exactly one worker process)::

    00000000000000000042-5000.batch   one batch: <sequence, 20 digits>-<points>.batch, raw body
    00000000000000000043-4999.tmp     a write in progress; removed on start (never renamed)
    rejected/                          points InfluxDB refused (points.jsonl, streams.sink.rejected)

File names sort in FIFO order. A batch is written to ``.tmp``, fsynced, renamed and the
directory fsynced, so after a crash every ``.batch`` file is complete and nothing half-written
is ever sent.

The I/O is synchronous on purpose: a batch is a few hundred kB on local disk, so one write
plus fsync takes milliseconds, and it only happens during an outage, when holding the event
loop for that long is the back-pressure we want (the worker must not fetch faster than it can
persist). It also keeps the spool free of locks: only the event-loop thread touches it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

__all__ = ["DiskSpool", "SpoolEntry"]

logger = logging.getLogger(__name__)

_BATCH_SUFFIX = ".batch"
_TMP_SUFFIX = ".tmp"
_NAME = re.compile(r"^(?P<seq>\d{20})-(?P<points>\d+)\.batch$")
REJECTED_DIR = "rejected"


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled batch, with its body read from disk."""

    seq: int
    path: Path
    points: int
    body: bytes


class _Slot(NamedTuple):
    """Index entry for a batch file (the body stays on disk)."""

    seq: int
    path: Path
    points: int
    size: int


class DiskSpool:
    """Bounded FIFO of batches, one file per batch; picks up files left by a previous process."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        """Open (creating if needed) ``directory`` and index the batches already in it.

        :param directory: spool directory, owned by this process alone.
        :param max_bytes: bound on the total size of spooled bodies; appends past it are refused.
            Files found on start are all kept even if they exceed a (lowered) bound.
        """
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        directory.mkdir(parents=True, exist_ok=True)
        self._dir = directory
        self._max_bytes = max_bytes
        self._slots: deque[_Slot] = deque()
        self._bytes = 0
        self._points = 0
        self._recover()
        self._next_seq = self._slots[-1].seq + 1 if self._slots else 0

    @property
    def directory(self) -> Path:
        """The spool directory."""
        return self._dir

    @property
    def max_bytes(self) -> int:
        """The bound on spooled body bytes."""
        return self._max_bytes

    @property
    def bytes_used(self) -> int:
        """Total size of the spooled bodies."""
        return self._bytes

    @property
    def batches(self) -> int:
        """Number of spooled batches."""
        return len(self._slots)

    @property
    def points(self) -> int:
        """Number of points in the spooled batches."""
        return self._points

    def append(self, body: bytes, points: int) -> bool:
        """Persist one batch durably; False (nothing written) if it would exceed ``max_bytes``.

        Raises OSError if the file cannot be written (disk full, permissions).
        """
        if points < 0:
            raise ValueError(f"points must be >= 0, got {points}")
        if self._bytes + len(body) > self._max_bytes:
            return False
        seq = self._next_seq
        self._next_seq += 1  # never reuse a number, even if this write fails half-way
        path = self._dir / f"{seq:020d}-{points}{_BATCH_SUFFIX}"
        _write_atomically(path, body)
        self._add(_Slot(seq, path, points, len(body)))
        return True

    def oldest(self) -> SpoolEntry | None:
        """The oldest batch with its body, or None when the spool is empty."""
        while self._slots:
            slot = self._slots[0]
            try:
                body = slot.path.read_bytes()
            except FileNotFoundError:
                logger.warning("spool batch vanished, skipping path=%s", slot.path)
                self._forget(slot.seq)
                continue
            return SpoolEntry(slot.seq, slot.path, slot.points, body)
        return None

    def remove(self, entry: SpoolEntry) -> None:
        """Delete a batch that has been delivered."""
        entry.path.unlink(missing_ok=True)
        self._forget(entry.seq)

    def _recover(self) -> None:
        """Index ``.batch`` files from a previous process and delete stray ``.tmp`` files."""
        for path in sorted(self._dir.iterdir()):
            if path.suffix == _TMP_SUFFIX and path.is_file():
                logger.info("spool removing unfinished batch path=%s", path)
                path.unlink(missing_ok=True)
                continue
            match = _NAME.match(path.name)
            if match is None or not path.is_file():
                continue
            slot = _Slot(int(match["seq"]), path, int(match["points"]), path.stat().st_size)
            self._add(slot)
        if self._slots:
            logger.info(
                "spool found batches from a previous run dir=%s batches=%d points=%d bytes=%d",
                self._dir,
                self.batches,
                self._points,
                self._bytes,
            )

    def _add(self, slot: _Slot) -> None:
        """Append a slot to the index and the totals."""
        self._slots.append(slot)
        self._bytes += slot.size
        self._points += slot.points

    def _forget(self, seq: int) -> None:
        """Drop a slot from the index and the totals (usually the head, so O(1))."""
        for index, slot in enumerate(self._slots):
            if slot.seq == seq:
                del self._slots[index]
                self._bytes -= slot.size
                self._points -= slot.points
                return


def _write_atomically(path: Path, body: bytes) -> None:
    """Write ``body`` to ``path`` via tmp file + fsync + rename + directory fsync."""
    tmp = path.with_suffix(_TMP_SUFFIX)
    try:
        with tmp.open("wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):  # best effort; the original error is what matters
            tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
