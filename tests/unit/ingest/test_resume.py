"""When the collector resumes its MQTT session after broker drops (``ingest.resume``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.resume import DropWatch


def test_the_first_value_is_a_baseline() -> None:
    watch = DropWatch(quiet_s=5, max_wait_s=60)
    assert not watch.observe(1234, now=0.0)
    assert not watch.due(now=100.0)


def test_a_rise_makes_a_resume_due_once_the_drops_stop_for_quiet_s() -> None:
    watch = DropWatch(quiet_s=5, max_wait_s=60)
    watch.observe(0, now=0.0)
    assert watch.observe(10, now=1.0)
    assert not watch.due(now=5.9)
    assert not watch.observe(10, now=4.0)  # unchanged: still quiet since t=1
    assert watch.due(now=6.0)
    watch.resumed()
    assert not watch.due(now=100.0)  # answered
    assert watch.observe(11, now=101.0)
    assert watch.due(now=106.0)


def test_drops_that_go_on_make_a_resume_due_after_max_wait_s() -> None:
    watch = DropWatch(quiet_s=5, max_wait_s=60)
    watch.observe(0, now=0.0)
    for t in range(1, 60):
        watch.observe(t * 100, now=float(t))
        assert not watch.due(now=float(t))
    watch.observe(6000, now=60.0)
    assert watch.due(now=61.0)


def test_a_broker_restart_resets_the_baseline() -> None:
    watch = DropWatch(quiet_s=5, max_wait_s=60)
    watch.observe(500, now=0.0)
    assert not watch.observe(3, now=1.0)  # the broker counts from zero again
    assert not watch.due(now=10.0)
    assert watch.observe(4, now=11.0)


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=50))
def test_due_only_after_some_rise(values: list[int]) -> None:
    watch = DropWatch(quiet_s=5, max_wait_s=60)
    rises = [watch.observe(v, now=float(i)) for i, v in enumerate(values)]
    assert watch.due(now=len(values) + 100.0) == any(rises)
    assert watch.dropped == values[-1]
