"""run_stations: every TCP station of the fleet runs against its center, counted per protocol."""

from __future__ import annotations

import asyncio

from simulator.fleet import default_fleet
from simulator.sl651 import ESC
from simulator.stations import StationStats, run_stations
from tests.unit.simulator import test_hj212 as hj
from tests.unit.simulator import test_sl651 as sl


async def test_runs_both_protocols_for_the_duration_and_reports_progress() -> None:
    hj_center = hj.FakeCenter(hj.always_ack)
    rtu_center = sl.FakeCenter(sl.confirming(ESC))
    await hj_center.start()
    await rtu_center.start()
    seen: list[StationStats] = []
    stats = await asyncio.wait_for(
        run_stations(
            default_fleet(),
            hj212=("127.0.0.1", hj_center.port),
            sl651=("127.0.0.1", rtu_center.port),
            interval_s=0.3,
            duration_s=1.5,
            on_progress=seen.append,
            keepalive_s=0.2,
        ),
        10,
    )
    await hj_center.stop()
    await rtu_center.stop()
    assert stats.stations == 3
    assert len(hj_center.connections) == 2  # air-hj-001 and water-hj-001, one connection each
    mns = {conn[0][0]["MN"] for conn in hj_center.connections}
    assert mns == {"440300A0000000000000A001", "440300B0000000000000B001"}
    assert {conn[0][0]["ST"] for conn in hj_center.connections} == {"21", "22"}
    assert stats.hj212.acked == stats.hj212.uploads == len(hj_center.uploads()) >= 6
    assert stats.sl651.acked == stats.sl651.uploads == len(rtu_center.reports()) >= 3
    assert stats.sl651.keepalives >= 1
    assert stats.total.acked == stats.hj212.acked + stats.sl651.acked
    assert len(seen) >= 2 and seen[-1] == stats
    assert 1.4 <= stats.seconds < 3.0


async def test_stop_ends_the_run_and_a_missing_address_skips_the_protocol() -> None:
    hj_center = hj.FakeCenter(hj.always_ack)
    await hj_center.start()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_stations(
            default_fleet(), hj212=("127.0.0.1", hj_center.port), sl651=None, interval_s=0.2, stop=stop
        )
    )
    await asyncio.sleep(0.7)
    stop.set()
    stats = await asyncio.wait_for(task, 5)
    await hj_center.stop()
    assert stats.stations == 2 and stats.sl651.uploads == 0
    assert stats.hj212.acked >= 2
