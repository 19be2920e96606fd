"""The services' collector tuning counts the time spent collecting, by generation."""

from __future__ import annotations

import gc

from stationflow.runtime import GC_GEN0_THRESHOLD, GC_SECONDS, tune_gc


def _seconds(generation: int) -> float:
    return GC_SECONDS.labels(str(generation))._value.get()  # type: ignore[attr-defined,no-any-return]


def test_collections_are_timed_by_generation() -> None:
    threshold = gc.get_threshold()
    try:
        tune_gc()
        tune_gc()  # twice: one callback, not two
        assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
        before = _seconds(2), _seconds(0)
        garbage = [[i] for i in range(10_000)]
        for item in garbage:
            item.append(item)  # cycles: only the collector frees them
        del garbage, item
        gc.collect()
        gc.collect(0)
        assert _seconds(2) > before[0] and _seconds(0) > before[1]
        assert sum(1 for cb in gc.callbacks if getattr(cb, "__name__", "") == "_time_collections") == 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
