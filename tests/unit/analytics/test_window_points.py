"""The ``windows`` point by ``STATIONFLOW_ANALYTICS_WINDOW_POINTS``: "hour" (the default) writes
each metric's 8 h and 24 h sliding means when an hour of event time closes, "minute" every
rolling value once per device and minute, "off" none; nothing else the analytics write or keep
depends on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.contracts import Reading
from streams.analytics.device import WINDOW_POINTS, AnalyticsConfig, DeviceState, update_device
from streams.lineprotocol import parse_series

T0 = datetime(2026, 7, 1, tzinfo=UTC)
HOUR = 3600


def _run(
    readings: list[Reading], mode: str, batch: int, domain: str = "air"
) -> tuple[list[str], DeviceState]:
    state, lines = DeviceState(), []
    for i in range(0, len(readings), batch):
        out = update_device(
            state,
            "air-1",
            readings[i : i + batch],
            record=None,
            domain=domain,
            now=1e9,
            config=AnalyticsConfig(window_points=mode),
        )
        lines += out.lines
    return lines, state


def _fields(line: str) -> dict[str, str]:
    return dict(f.split("=") for f in line.split(" ")[1].split(","))


def _ts(line: str) -> int:
    return int(line.rsplit(" ", 1)[1]) // 10**9


def _reference_means(lines: list[str], closed: int) -> dict[int, dict[str, float]]:
    """The 8 h and 24 h means at every hour end up to ``closed``, from the ``hourly`` points alone: the exact
    mean (rounded once) of the hourly values as decimals (as written), valid with ≥ 6 of 8 /
    ≥ 20 of 24 hours with data."""
    hourly: dict[str, dict[int, Fraction]] = {}
    for line in lines:
        if parse_series(line)[0] == "hourly":
            metric = parse_series(line)[1]["metric"]
            f = _fields(line)
            if int(f["n"].rstrip("i")) > 0:
                hourly.setdefault(metric, {})[_ts(line)] = Fraction(f["value"])
    out: dict[int, dict[str, float]] = {}
    for end in range(int(T0.timestamp()), closed + 1, HOUR):
        for metric, hours in hourly.items():
            for span, valid in ((8, 6), (24, 20)):
                vals = [v for h, v in hours.items() if end - span * HOUR <= h < end]
                if len(vals) >= valid:
                    mean = float(sum(vals, Fraction(0)) / len(vals))
                    out.setdefault(end, {})[f"{metric}_mean_{span}h"] = mean
    return out


def _day(values: list[float], every_min: int = 10, metrics: tuple[str, ...] = ("pm25",)) -> list[Reading]:
    return [
        Reading(metric=metric, value=v + k, ts=T0 + timedelta(minutes=every_min * i))
        for i, v in enumerate(values)
        for k, metric in enumerate(metrics)
    ]


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.floats(min_value=0, max_value=500, allow_nan=False), min_size=6 * 36, max_size=6 * 36),
    gaps=st.sets(st.integers(min_value=0, max_value=35), max_size=8),
    batch=st.sampled_from([1, 7, 60, 1000]),
)
def test_hour_points_hold_the_sliding_means_of_the_hourly_values_at_each_hour_end(
    values: list[float], gaps: set[int], batch: int
) -> None:
    # 36 hours of a reading every 10 minutes, some hours missing (a station down)
    readings = [r for i, r in enumerate(_day(values)) if i // 6 not in gaps]
    lines, state = _run(readings, "hour", batch)
    windows = [ln for ln in lines if parse_series(ln)[0] == "windows"]
    # once per closed hour with a valid mean (a gap's hours too), at the hour's end, the means
    want = _reference_means(lines, state.closed)
    got = {_ts(ln): {k: float(v) for k, v in _fields(ln).items()} for ln in windows}
    assert len(windows) == len(got)  # one point per hour
    assert got == want


def test_a_new_device_writes_no_windows_point_before_hours_close_and_minute_writes_one_each_minute() -> None:
    readings = _day([float(i % 50) for i in range(30)], every_min=1)  # half an hour, a reading a minute
    hour_lines, _ = _run(readings, "hour", 5)
    minute_lines, _ = _run(readings, "minute", 5)
    assert [ln for ln in hour_lines if ln.startswith("windows,")] == []
    minute_windows = [ln for ln in minute_lines if ln.startswith("windows,")]
    assert len(minute_windows) == len(range(0, 30, 5))  # one per batch: each enters a new minute
    assert {"pm25_mean_1h", "pm25_min_1h", "pm25_max_1h"} <= _fields(minute_windows[-1]).keys()


# a station's domain and metrics: rules on sliding means (air), none (a generic device), the
# level trend and rain sums lines with the flood rules (hydro) and without any rule (generic)
DEVICES = [
    ("air", ("pm25", "pm10")),
    ("generic", ("m0", "m1")),
    ("hydro", ("level", "rain")),
    ("generic", ("level", "rain")),
]


@settings(max_examples=15, deadline=None)
@given(
    values=st.lists(st.floats(min_value=0, max_value=500, allow_nan=False), min_size=200, max_size=200),
    batch=st.sampled_from([3, 50]),
    device=st.sampled_from(DEVICES),
)
def test_the_mode_changes_the_windows_point_only(
    values: list[float], batch: int, device: tuple[str, tuple[str, ...]]
) -> None:
    domain, metrics = device
    readings = _day(values, every_min=12, metrics=metrics)  # 40 hours
    runs = {mode: _run(readings, mode, batch, domain) for mode in WINDOW_POINTS}
    others = {
        mode: [ln for ln in lines if not ln.startswith("windows,")] for mode, (lines, _) in runs.items()
    }
    dumps = {mode: state.dump() for mode, (_, state) in runs.items()}
    assert others["hour"] == others["minute"] == others["off"]
    assert dumps["hour"] == dumps["minute"] == dumps["off"]
    assert not [ln for ln in runs["off"][0] if ln.startswith("windows,")]
    if "rain" not in metrics:  # (rain has sums, not means)
        assert [ln for ln in runs["hour"][0] if ln.startswith("windows,")]  # 40 h: the means are valid


def test_after_a_silence_of_two_days_the_points_of_its_first_hours_are_written_once() -> None:
    # 30 hours of data, 50 hours of silence, 10 hours of data: the silence's first hours still
    # end valid windows (≥ 6 of 8, ≥ 20 of 24 hourly values), its later ones none
    values = [float(i % 37) for i in range(6 * 90)]
    readings = [r for i, r in enumerate(_day(values)) if not 30 <= i // 6 < 80]
    lines, state = _run(readings, "hour", 1000)
    got = {
        _ts(ln): {k: float(v) for k, v in _fields(ln).items()} for ln in lines if ln.startswith("windows,")
    }
    assert got == _reference_means(lines, state.closed)
    silence = int(T0.timestamp()) + 30 * HOUR
    assert {end - silence for end in got if end > silence} == {HOUR * h for h in (1, 2, 3, 4)} | {
        HOUR * h for h in range(81 - 30, 90 - 30)
    } - {HOUR * h for h in range(81 - 30, 86 - 30)}
