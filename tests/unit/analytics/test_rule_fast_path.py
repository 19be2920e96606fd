"""The quiet-rule fast path (``rules.step_quiet``) leaves exactly what ``evaluate`` leaves."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.analytics.packs import DEVICE_PACKS, HEALTH_PACK
from streams.analytics.rules import RuleState, Subject, evaluate, resolve_levels, step_quiet

RULES = [r for pack in DEVICE_PACKS.values() for r in pack] + list(HEALTH_PACK)
SUBJECT = Subject(kind="device", id="d-1", domain="hydro", station_id="st-1", device_id="d-1")
ATTRS = {"warning_level": 10.0, "guaranteed_level": 12.0, "historical_max_level": 14.0, "target_class": 3}

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
times = st.floats(min_value=0.0, max_value=2e9, allow_nan=False)


def states(levels: int) -> st.SearchStrategy[list[object] | None]:
    """Rule states as stored (``RuleState.dump``) for a rule with ``levels`` levels."""
    return st.one_of(
        st.none(),
        st.builds(
            lambda active, pending, ps, bs, seq, ra, last: [active, pending, ps, bs, seq, ra, last],
            st.integers(-1, levels - 1),
            st.integers(-1, levels - 1),
            st.one_of(st.none(), times),
            st.one_of(st.none(), times),
            st.integers(0, 50),
            st.one_of(st.none(), times),
            st.one_of(st.none(), times),
        ),
    )


@settings(max_examples=600, deadline=None)
@given(rule=st.sampled_from(RULES), value=finite, ts=times, data=st.data())
def test_fast_path_equals_evaluate(rule: object, value: float, ts: float, data: st.DataObject) -> None:
    assert hasattr(rule, "levels")
    levels = resolve_levels(rule, ATTRS, {})  # type: ignore[arg-type]
    raw = data.draw(states(max(len(levels), 1)))
    quick = step_quiet(rule, levels, raw, value, ts)  # type: ignore[arg-type]
    full = RuleState.load(raw)
    event = evaluate(rule, levels, full, value, ts, SUBJECT)  # type: ignore[arg-type]
    if quick is None:
        return  # not the quiet case: the worker runs evaluate
    assert event is None
    assert quick == full.dump()


def test_fast_path_is_taken_for_a_quiet_rule_and_not_for_a_crossing() -> None:
    rule = next(r for r in RULES if r.id == "flood.level")
    levels = resolve_levels(rule, ATTRS, {})
    assert step_quiet(rule, levels, None, 5.0, 100.0) == [-1, -1, None, None, 0, None, 100.0]
    assert step_quiet(rule, levels, None, 10.0, 100.0) is None  # at the warning level: evaluate
    raised = RuleState(active=1, seq=1, raised_at=50.0, last_ts=60.0).dump()
    assert step_quiet(rule, levels, raised, 5.0, 100.0) is None  # raised: evaluate (it may clear)
    older = RuleState(last_ts=200.0).dump()
    assert step_quiet(rule, levels, older, 5.0, 100.0) is None  # not newer: evaluate ignores it
