"""Replayable scenarios shared by the analytics unit and integration tests.

The flood hydrograph: a river gauge rising at 0.4 m/h from 11.0 m through its approach
(12.0 m), warning (12.5 m) and guaranteed (14.0 m) levels to 14.2 m, and falling back at
0.4 m/h, with 72 mm of rain in two hours at the start; one sample every 5 minutes for 16 h.
Its expected alert sequence is written out by hand from the rules (packs.py) — not computed
by the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stationflow.contracts import DeviceRecord, MetricSpec, StationInfo

STEP_S = 300
STEPS = 16 * 12 + 1  # 16 h of 5-minute samples
WARNING_LEVEL = 12.5
GUARANTEED_LEVEL = 14.0


def level_at(step: int) -> float:
    """11.0 m rising 0.4 m/h for 8 h to 14.2 m, then falling 0.4 m/h."""
    hours = step * STEP_S / 3600
    return round(11.0 + 0.4 * hours if hours <= 8 else 14.2 - 0.4 * (hours - 8), 4)


def rain_at(step: int) -> float:
    """3 mm per 5 minutes from step 13 (1 h 05 min) to step 36 (3 h 00 min): 72 mm."""
    return 3.0 if 13 <= step <= 36 else 0.0


def hydrograph_start(now: datetime | None = None) -> datetime:
    """Start 17 h ago on a whole 5 minutes, so every sample is in the past."""
    now = now or datetime.now(UTC)
    start = now - timedelta(hours=17)
    return start.replace(minute=start.minute - start.minute % 5, second=0, microsecond=0)


# (rule, state, severity, step at which it happens). Clear levels are 5 cm under each
# threshold and a step down needs 900 s (3 samples) under it (packs.FLOOD_PACK):
# rising, level ≥ 12.0 at step 30 (11.0 + 0.4 x 2.5 h), ≥ 12.5 at 45, ≥ 14.0 at 90; peak 14.2
# at 96; falling, first under 13.95 at step 104 (13.933) → moderate 3 steps later (107);
# under 12.45 at 149 → minor at 152; under 11.95 at 164 → cleared at 167.
EXPECTED_LEVEL = [
    ("flood.level", "raised", "minor", 30),
    ("flood.level", "updated", "moderate", 45),
    ("flood.level", "updated", "major", 90),
    ("flood.level", "updated", "moderate", 107),
    ("flood.level", "updated", "minor", 152),
    ("flood.level", "cleared", "minor", 167),
]
# Rain (increments at steps 13..36): 51 mm at step 29, all within 3 h → orange signal (major)
# and the 24 h total ≥ 50 mm → 暴雨 (rain.grade_24h, minor). The 3 h window (t-36, t] holds
# fewer than 17 increments from step 56 → yellow; a step down needs 1800 s (6 samples) under
# the clear level → moderate at 62. The 6 h window drops under 50 mm at 92 → minor at 98; the
# 12 h window at 164 → cleared at 170. The 24 h total stays ≥ 50 mm to the end.
EXPECTED_RAIN = [
    ("rain.storm_signal", "raised", "major", 29),
    ("rain.storm_signal", "updated", "moderate", 62),
    ("rain.storm_signal", "updated", "minor", 98),
    ("rain.storm_signal", "cleared", "minor", 170),
    ("rain.grade_24h", "raised", "minor", 29),
]


def gauge_record(device_id: str, device_type: str, station_id: str = "gauge-hj-01") -> DeviceRecord:
    """A registry record for one of the hydrograph's devices."""
    metrics = (
        {"level": MetricSpec(metric="level", unit="m", min=-100, max=6000)}
        if device_type == "level-gauge"
        else {"rain": MetricSpec(metric="rain", unit="mm", min=0, max=300)}
    )
    return DeviceRecord(
        device_id=device_id,
        device_type=device_type,
        domain="hydro",
        station=StationInfo(
            station_id=station_id,
            name="Han River gauge 1",
            region="445100",
            basin="Han",
            attributes={"warning_level": WARNING_LEVEL, "guaranteed_level": GUARANTEED_LEVEL},
        ),
        metrics=metrics,
        expected_interval_s=STEP_S,
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
