"""What a backfill publishes: durations, the window on a first start and on a restart, the record."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulator.backfill import (
    MIN_GAP_S,
    BackfillWindow,
    load_until,
    parse_duration,
    plan_window,
    rtu_report_ends,
    save_until,
)

NOW = datetime(2026, 12, 1, 3, 17, 42, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("48h", 172_800.0),
        ("90m", 5_400.0),
        ("2d", 172_800.0),
        ("3600s", 3_600.0),
        ("0", 0.0),
        (" 1.5H ", 5_400.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "forever", "nanh", "infh"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_first_start_publishes_the_whole_window_with_episodes() -> None:
    window = plan_window(48 * 3600, NOW, None)
    assert window == BackfillWindow(NOW - timedelta(hours=48), NOW)
    assert window.episodes
    pieces = window.hours
    assert pieces[0][0] == window.start and pieces[-1][1] == NOW and len(pieces) == 49
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))


def test_restart_publishes_only_the_gap_without_episodes() -> None:
    until = NOW - timedelta(hours=3)
    window = plan_window(48 * 3600, NOW, until)
    assert window is not None and window.start == until and window.end == NOW and not window.episodes
    assert plan_window(48 * 3600, NOW, NOW - timedelta(days=5)) == BackfillWindow(
        NOW - timedelta(hours=48), NOW, episodes=False
    )
    assert plan_window(48 * 3600, NOW, NOW - timedelta(seconds=MIN_GAP_S - 1)) is None
    assert plan_window(0, NOW, None) is None


def test_until_round_trips_and_survives_garbage(tmp_path: Path) -> None:
    assert load_until(tmp_path) is None
    save_until(tmp_path, NOW)
    assert load_until(tmp_path) == NOW
    (tmp_path / "backfill.json").write_text("{not json")
    assert load_until(tmp_path) is None


def test_rtu_reports_whole_hours_before_the_live_one() -> None:
    window = plan_window(48 * 3600, NOW, None)
    assert window is not None
    ends = rtu_report_ends(window)
    assert ends[0] == datetime(2026, 11, 29, 5, tzinfo=UTC)  # 04:00-05:00, the first whole hour inside
    assert ends[-1] == datetime(2026, 12, 1, 2, tzinfo=UTC)  # 03:00 is the live RTU's first report
    assert len(ends) == 46
