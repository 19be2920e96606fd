"""The Kafka state archive file: changelog compaction, tombstones, the dead-letter bound."""

from __future__ import annotations

from pathlib import Path

from stationflow.stack.archive import ArchiveStore, Record

CHANGELOGS = frozenset({"app-devices-changelog"})


def _write(store: ArchiveStore, records: list[Record], *, max_records: int = 100, min_ts_ms: int = 0) -> int:
    return store.write(records, changelogs=CHANGELOGS, max_records=max_records, min_ts_ms=min_ts_ms)


def test_changelogs_keep_the_last_value_per_key_and_partition_and_tombstones_remove(tmp_path: Path) -> None:
    store = ArchiveStore(tmp_path)
    t = "app-devices-changelog"
    _write(store, [Record(t, 0, b"a", b"1", 1), Record(t, 1, b"a", b"other", 2), Record(t, 0, b"b", b"2", 3)])
    _write(store, [Record(t, 0, b"a", b"3", 4, (("h", b"v"),)), Record(t, 0, b"b", None, 5)])
    got = {(r.partition, r.key): (r.value, r.headers) for r in store.records()}
    assert got == {(0, b"a"): (b"3", (("h", b"v"),)), (1, b"a"): (b"other", ())}


def test_logs_keep_order_and_are_bounded_by_count_and_age_with_the_cut_counted(tmp_path: Path) -> None:
    store = ArchiveStore(tmp_path)
    dead = [Record("dead", i % 2, f"d{i}".encode(), f"v{i}".encode(), 1000 + i) for i in range(6)]
    assert _write(store, dead[:4], max_records=5) == 0
    assert _write(store, dead[4:], max_records=5) == 1  # 6 records, bound 5: the oldest goes
    assert [r.value for r in store.records()] == [b"v1", b"v2", b"v3", b"v4", b"v5"]
    assert _write(store, [], max_records=5, min_ts_ms=1003) == 2  # older than the age bound
    assert [r.timestamp_ms for r in store.records()] == [1003, 1004, 1005]
    assert store.counts() == {"changelog": 0, "log": 3, "tail": 0, "log_cut": 3}


def test_tails_are_restored_once(tmp_path: Path) -> None:
    store = ArchiveStore(tmp_path)
    store.write_tail([Record("raw", 3, b"k", b"v", 7), Record("raw", 3, None, b"w", 8)])
    assert [(r.partition, r.key, r.value) for r in ArchiveStore(tmp_path).records()] == [
        (3, b"k", b"v"),
        (3, None, b"w"),
    ]
    store.clear_tail()
    assert store.records() == []
