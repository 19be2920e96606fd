"""DiskSpool: FIFO order, the byte bound, durability across restarts, point counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.sink.spool import DiskSpool


def _batch(n: int) -> bytes:
    return f"air,station=s{n} pm25={n} {1_700_000_000_000_000_000 + n}\n".encode()


def _drain(spool: DiskSpool) -> list[bytes]:
    bodies = []
    while (entry := spool.oldest()) is not None:
        bodies.append(entry.body)
        spool.remove(entry)
    return bodies


def test_fifo_order(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    bodies = [_batch(n) for n in range(12)]
    for body in bodies:
        assert spool.append(body, 1)
    assert _drain(spool) == bodies
    assert spool.batches == 0
    assert spool.bytes_used == 0
    assert spool.oldest() is None


def test_counts_points_batches_and_bytes(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    spool.append(b"a" * 10, 5000)
    spool.append(b"b" * 7, 3)
    assert (spool.batches, spool.points, spool.bytes_used) == (2, 5003, 17)
    entry = spool.oldest()
    assert entry is not None
    assert entry.points == 5000
    spool.remove(entry)
    assert (spool.batches, spool.points, spool.bytes_used) == (1, 3, 7)


def test_append_refuses_past_max_bytes_and_writes_nothing(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=25)
    assert spool.append(b"x" * 10, 1)
    assert spool.append(b"y" * 15, 1)  # exactly at the bound
    files_before = sorted(tmp_path.iterdir())
    assert not spool.append(b"z", 1)
    assert sorted(tmp_path.iterdir()) == files_before
    assert (spool.batches, spool.points, spool.bytes_used) == (2, 2, 25)


def test_single_batch_larger_than_bound_is_refused(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=8)
    assert not spool.append(b"x" * 9, 1)
    assert list(tmp_path.iterdir()) == []


def test_space_is_freed_by_remove(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10)
    assert spool.append(b"x" * 10, 1)
    assert not spool.append(b"y", 1)
    entry = spool.oldest()
    assert entry is not None
    spool.remove(entry)
    assert spool.append(b"y", 1)


def test_restart_picks_up_batches_in_order(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path, max_bytes=1 << 20)
    bodies = [_batch(n) for n in range(5)]
    for n, body in enumerate(bodies):
        first.append(body, n + 1)
    entry = first.oldest()
    assert entry is not None
    first.remove(entry)

    second = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert second.batches == 4
    assert second.points == 2 + 3 + 4 + 5
    assert second.bytes_used == sum(len(b) for b in bodies[1:])
    second.append(_batch(99), 1)  # continues the sequence after the recovered files
    assert _drain(second) == [*bodies[1:], _batch(99)]


def test_restart_keeps_batches_beyond_a_lowered_bound(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path, max_bytes=100)
    first.append(b"x" * 60, 1)
    second = DiskSpool(tmp_path, max_bytes=50)
    assert second.batches == 1
    assert not second.append(b"y", 1)


def test_stray_tmp_files_are_removed(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path, max_bytes=1 << 20)
    first.append(b"done", 1)
    stray = tmp_path / "00000000000000000001-7.tmp"
    stray.write_bytes(b"half a bat")
    second = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert not stray.exists()
    assert second.batches == 1
    assert _drain(second) == [b"done"]


def test_unrelated_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not a batch")
    (tmp_path / "rejected").mkdir()
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert spool.batches == 0
    assert (tmp_path / "README").exists()


def test_vanished_file_is_skipped(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    spool.append(b"one", 1)
    spool.append(b"two", 2)
    entry = spool.oldest()
    assert entry is not None
    entry.path.unlink()
    survivor = spool.oldest()
    assert survivor is not None
    assert survivor.body == b"two"
    assert (spool.batches, spool.points) == (1, 2)


def test_failed_write_raises_and_indexes_nothing(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    (tmp_path / "00000000000000000000-1.tmp").mkdir()  # the tmp file cannot be opened
    with pytest.raises(OSError):
        spool.append(b"body", 1)
    assert list(tmp_path.glob("*.batch")) == []
    assert (spool.batches, spool.points, spool.bytes_used) == (0, 0, 0)
    assert spool.append(b"next", 1)  # the spool still works afterwards
    assert _drain(spool) == [b"next"]


@pytest.mark.parametrize("max_bytes", [0, -1])
def test_bound_must_be_positive(tmp_path: Path, max_bytes: int) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        DiskSpool(tmp_path, max_bytes=max_bytes)
