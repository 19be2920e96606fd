"""The alert bench's pure parts: per-hop latencies and the reasons a run fails."""

from __future__ import annotations

import orjson
import pytest

from stationflow.bench.alertbench import _probes_in, hop_latencies, probe_failures
from stationflow.topics import ALERTS, CLEAN, RAW
from stationflow.wire import join_bundle


def test_each_hop_is_measured_between_neighbours_over_the_probes_that_passed_both() -> None:
    times = {
        "publish": {"alarm-000": 10.0, "alarm-001": 20.0},
        "readings_raw": {"alarm-000": 10.010, "alarm-001": 20.030},
        "readings_clean": {"alarm-000": 10.110},  # alarm-001 never got past the raw stage
        "alert_event": {"alarm-000": 10.310},
        "alert_stored": {"alarm-000": 10.330},
        "webhook": {"alarm-000": 10.340},
    }
    hops = hop_latencies(times)
    assert list(hops) == [
        "publish_to_readings_raw",
        "readings_raw_to_readings_clean",
        "readings_clean_to_alert_event",
        "alert_event_to_alert_stored",
        "alert_stored_to_webhook",
    ]
    assert hops["publish_to_readings_raw"] == {
        "p50": pytest.approx(10.0, abs=0.1),
        "p99": pytest.approx(30.0, abs=0.1),
        "samples": 2,
    }
    assert hops["readings_raw_to_readings_clean"]["samples"] == 1
    assert hops["readings_raw_to_readings_clean"]["p50"] == pytest.approx(100.0, abs=0.1)
    assert hops["readings_clean_to_alert_event"]["p50"] == pytest.approx(200.0, abs=0.1)
    assert hops["alert_stored_to_webhook"]["p99"] == pytest.approx(10.0, abs=0.1)
    total = hop_latencies(times, ("publish", "webhook"))["publish_to_webhook"]
    assert total["p50"] == pytest.approx(340.0, abs=0.1)
    assert hop_latencies({}, ("publish", "webhook"))["publish_to_webhook"] == {
        "p50": None,
        "p99": None,
        "samples": 0,
    }


def test_a_clean_run_has_no_failures() -> None:
    assert probe_failures(["a", "b"], {"a": 1, "b": 1}, 0, background_readings_per_s=9_990, rate=10_000) == []


def test_missing_repeated_unsigned_and_short_load_each_fail_the_run_with_a_reason() -> None:
    failures = probe_failures(
        ["alarm-000", "alarm-001", "alarm-002"],
        {"alarm-000": 2, "alarm-001": 1, "stranger": 1},
        1,
        background_readings_per_s=4_000,
        rate=10_000,
    )
    text = "\n".join(failures)
    assert "1 of 3 probes got no webhook: alarm-002" in text
    assert "alarm-000 x2" in text
    assert "stranger" in text
    assert "1 webhook calls without a valid signature" in text
    assert "4,000 readings/s of the 10,000 asked for" in text
    assert len(failures) == 5


def test_probes_are_found_in_raw_and_clean_bundles_and_raised_events_only() -> None:
    def doc(device: str) -> bytes:
        return orjson.dumps({"device_id": device, "readings": []})

    bundle = join_bundle([doc("bench-0001"), doc("alarm-007"), doc("bench-0002"), doc("alarm-002")])
    for topic in (RAW, CLEAN):  # both carry bundles of documents
        assert _probes_in(topic, bundle) == ["alarm-007", "alarm-002"]
        assert _probes_in(topic, doc("alarm-003")) == ["alarm-003"]
        assert _probes_in(topic, doc("bench-0001")) == []
    raised = orjson.dumps({"device_id": "alarm-001", "state": "raised"})
    cleared = orjson.dumps({"device_id": "alarm-001", "state": "cleared"})
    assert _probes_in(ALERTS, raised) == ["alarm-001"]
    assert _probes_in(ALERTS, cleared) == []
