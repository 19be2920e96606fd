"""The simulated TCP stations against the real TCP collector on Tansu.

The fleet's HJ 212 loggers (one with its clock an hour slow) and its SL 651 RTU run through
``simulator.stations.run_stations``; the collector runs in-process (``tcp_utils.running_collector``).
Every upload must be confirmed, the readings must reach ``readings.raw`` with the catalog
metrics, the slow clock must be set by the center, and the one-frame CLIs must print the
confirmation the standards prescribe, byte for byte.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from devices.catalog import BUILTIN_TYPES
from simulator.fleet import AIR_HJ212, RTU_SL651, WATER_HJ212, DeviceSpec, Hj212Wire, Sl651Wire
from simulator.stations import run_stations
from stationflow.contracts import DeviceRecord, Hj212Link, MetricSpec, Sl651Link
from stationflow.passwords import hash_password
from stationflow.stack.components import Component
from tests.integration.tcp_utils import hj212_crc16, modbus_crc16, running_collector

TYPES = {t.name: t for t in BUILTIN_TYPES}
RTU_METRICS = {
    "rain": MetricSpec(metric="rain", unit="mm", min=0, max=300, sl651_code="DRP"),
    "level": MetricSpec(metric="level", unit="m", min=-100, max=6000, sl651_code="Z"),
    "flow": MetricSpec(metric="flow", unit="m3/s", min=0, max=500000, sl651_code="Q"),
    "voltage": MetricSpec(metric="voltage", unit="V", min=0, max=30, sl651_code="VT"),
}


def hj212_record(device_id: str, type_name: str, wire: Hj212Wire) -> DeviceRecord:
    spec = TYPES[type_name]
    return DeviceRecord(
        device_id=device_id,
        device_type=type_name,
        domain=spec.domain,
        metrics={m.metric: m for m in spec.metrics},
        protocol="hj212",
        hj212=Hj212Link(mn=wire.mn, password_hash=hash_password(wire.password)),
        updated_at=datetime.now(UTC),
    )


def rtu_record(wire: Sl651Wire) -> DeviceRecord:
    return DeviceRecord(
        device_id="rtu-001",
        device_type="hydro-rtu",
        domain="hydro",
        metrics=RTU_METRICS,
        protocol="sl651",
        sl651=Sl651Link(address=wire.address, password_hash=hash_password(wire.password), ack="esc"),
        updated_at=datetime.now(UTC),
    )


def records() -> list[DeviceRecord]:
    assert isinstance(AIR_HJ212.link, Hj212Wire) and isinstance(WATER_HJ212.link, Hj212Wire)
    assert isinstance(RTU_SL651.link, Sl651Wire)
    return [
        hj212_record("air-hj-001", "air-station", AIR_HJ212.link),
        hj212_record("water-hj-001", "water-station", WATER_HJ212.link),
        rtu_record(RTU_SL651.link),
    ]


def metrics_of(batches: list[dict[str, Any]]) -> set[str]:
    return {r["metric"] for b in batches for r in b["readings"]}


async def test_the_fleets_tcp_stations_are_confirmed_and_their_readings_published(
    tansu: Component, topic_prefix: str
) -> None:
    assert isinstance(AIR_HJ212.link, Hj212Wire)
    slow_air = dataclasses.replace(
        AIR_HJ212, link=dataclasses.replace(AIR_HJ212.link, clock_offset_s=-3600.0)
    )
    fleet: list[DeviceSpec] = [slow_air, WATER_HJ212, RTU_SL651]
    async with running_collector(tansu.url, topic_prefix, records=records(), hj212_time_drift_s=60) as run:
        stats = await run_stations(
            fleet,
            hj212=("127.0.0.1", run.hj212_port),
            sl651=("127.0.0.1", run.sl651_port),
            interval_s=1.0,
            duration_s=6.0,
            keepalive_s=0.4,
        )
        air = await run.wait_raw("air-hj-001", stats.hj212.acked // 2)
        water = await run.wait_raw("water-hj-001", 1)
        rtu = await run.wait_raw("rtu-001", stats.sl651.acked)
        # the RTU also sends PJ, PT and DRZ1, which hydro-rtu does not store: reported, nothing else
        assert {d["code"] for d in run.dead()} <= {"sl651_unknown_element"}, run.dead()
    assert stats.hj212.lost == stats.sl651.lost == 0
    assert stats.hj212.acked == stats.hj212.uploads >= 8
    assert stats.sl651.acked == stats.sl651.uploads >= 4
    assert stats.sl651.keepalives >= 1
    assert stats.hj212.time_sets == 1  # the slow logger was set once, the other was on time
    assert metrics_of(air) == {m.metric for m in TYPES["air-station"].metrics}
    assert metrics_of(water) == {m.metric for m in TYPES["water-station"].metrics}
    assert metrics_of(rtu) == {"rain", "level", "flow", "voltage"}
    rain = [datetime.fromisoformat(r["ts"]) for b in rtu for r in b["readings"] if r["metric"] == "rain"]
    # each 34H (the last complete hour; a second one if the run crosses the hour) holds twelve
    # 5-minute slots, hh:05 … hh+1:00
    per_hour = Counter((t - timedelta(minutes=5)).replace(minute=0) for t in rain)
    assert per_hour and set(per_hour.values()) == {12}, per_hour
    assert len(set(rain)) == len(rain)
    # after the time set, the slow logger's readings are stamped with the true time
    last = max(datetime.fromisoformat(r["ts"]) for b in air for r in b["readings"])
    assert abs(last - datetime.now(UTC)) < timedelta(seconds=30)


def _cli(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", *args, "--timeout", "10", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


async def test_the_one_frame_clis_print_the_centers_confirmation(tansu: Component, topic_prefix: str) -> None:
    assert isinstance(AIR_HJ212.link, Hj212Wire) and isinstance(RTU_SL651.link, Sl651Wire)
    hj, rtu = AIR_HJ212.link, RTU_SL651.link
    async with running_collector(tansu.url, topic_prefix, records=records()) as run:
        hj_out = await asyncio.to_thread(
            _cli, "simulator.hj212", "--port", str(run.hj212_port), "--mn", hj.mn, "--pw", hj.password
        )
        sl_out = await asyncio.to_thread(
            _cli,
            "simulator.sl651",
            "--port",
            str(run.sl651_port),
            "--address",
            rtu.address,
            "--password",
            rtu.password,
        )
    sent = hj_out[0].removeprefix("> ")
    qn = sent.split("QN=", 1)[1].split(";", 1)[0]
    seg = f"QN={qn};ST=91;CN=9014;PW={hj.password};MN={hj.mn};Flag=4;CP=&&&&".encode()
    expected = b"##%04d%s%04X\r\n" % (len(seg), seg, hj212_crc16(seg))
    assert hj_out[1] == "< " + expected.hex(" ").upper()
    uplink = bytes.fromhex(sl_out[0].removeprefix("> "))
    reply = bytes.fromhex(sl_out[1].removeprefix("< "))
    # addresses swapped, downlink, same FC, body = the report's serial + the center's time, ESC, CRC
    head = (
        b"\x7e\x7e" + bytes.fromhex(rtu.address) + b"\x01" + bytes.fromhex(rtu.password) + b"\x32\x80\x08\x02"
    )
    assert reply[:14] == head
    assert reply[14:16] == uplink[14:16]
    assert reply[-3] == 0x1B
    assert int.from_bytes(reply[-2:], "big") == modbus_crc16(reply[:-2])
    center_time = datetime.strptime(reply[16:22].hex(), "%y%m%d%H%M%S")  # noqa: DTZ007 - Beijing local time
    beijing_now = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=8)
    assert abs(center_time - beijing_now) < timedelta(seconds=30)
