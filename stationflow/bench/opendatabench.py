"""``stationflow bench opendata``: the open-data API under load from a second process.

Without ``--url`` the bench builds a private stack: InfluxDB, Tansu (and Mosquitto, as every
pipeline has one), a fleet of public and hidden air, water, gauge and rain stations put on the
registry topic, their latest AQI / class / level / rainfall written to InfluxDB. It starts the
open-data service three times from the same settings: with the rate limit raised out of reach
(the throughput run, default cache), the same with the cache off (the uncached run: every
request reads InfluxDB; a fifth of the requests) and with the default limit (the limit run,
which must answer 429 with ``Retry-After``). The load runs in a separate process
(:mod:`stationflow.bench.opendataload`), bounded in requests and seconds. Any failed request,
or a hidden station id in any body, fails the run (exit 1).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from stationflow.bench.registrytopic import publish_records
from stationflow.contracts import DeviceRecord, StationInfo
from stationflow.settings import CommonSettings
from stationflow.stack.components import influx_write
from stationflow.stack.pipeline import Pipeline, start_service
from stationflow.stack.ports import free_port
from stationflow.stack.procs import ManagedProcess, StackError

__all__ = ["BenchFleet", "bench_fleet", "bench_station", "publish_records", "run_opendata_bench", "verdict"]

KINDS = (("air", "air", "air-station"), ("water", "water", "water-station"),
         ("gauge", "hydro", "level-gauge"), ("rain", "hydro", "rain-gauge"))  # fmt: skip
HIDDEN_EVERY = 4  # every 4th station of each kind is hidden
UNCACHED_SHARE = 5  # the uncached run sends a fifth of --requests (each one reads InfluxDB)
RUNS = ("throughput", "uncached", "limited")
LIMITED_REQUESTS = 200  # the limit run: more than the default burst, fewer than a minute's refill + burst × 2
HEALTH_TIMEOUT_S = 60.0
LOAD_GRACE_S = 60.0  # the load process may take this much longer than --seconds (start-up, last answers)


@dataclass(frozen=True)
class BenchFleet:
    """Registry records, InfluxDB lines, and which station ids are public / hidden."""

    records: list[DeviceRecord]
    lines: list[str]
    public: list[str]
    hidden: list[str]


KIND_DOMAINS = {kind: (domain, device_type) for kind, domain, device_type in KINDS}


def bench_station(
    sid: str, kind: str, i: int, *, public: bool, now: datetime
) -> tuple[DeviceRecord, list[str]]:
    """One station of ``kind`` (air, water, gauge, rain) with its device record and latest rows (pure)."""
    domain, device_type = KIND_DOMAINS[kind]
    hour = int(now.timestamp()) // 3600 * 3600
    ns, hour_ns = int(now.timestamp()) * 10**9, hour * 10**9
    attrs: dict[str, float | str] = {"kind": kind}
    if kind == "gauge":
        attrs |= {"warning_level": 23.5, "guaranteed_level": 25.0}
    if kind == "water":
        attrs["target_class"] = "III"
    info = StationInfo(
        station_id=sid, name=f"{kind} {i}", lat=30.0 + i / 100, lon=120.0 + i / 100,
        region="330100", basin="qiantang", attributes=attrs, public=public,
    )  # fmt: skip
    device = f"{sid}-d"
    record = DeviceRecord(
        device_id=device,
        device_type=device_type,
        domain=domain,
        station=info,
        expected_interval_s=60,
        updated_at=now,
    )
    tags = f"device={device},station={sid}"
    if kind == "air":
        aqi = 20 + 7 * i
        lines = [
            f"air,{tags} pm25={aqi * 0.6:.1f},pm10={aqi:.1f} {ns}",
            f'aqi,station={sid},report=hourly aqi={aqi}i,primary="pm2_5_1h",standard="HJ 633-2026",'
            f"iaqi_pm2_5_1h={aqi}i,iaqi_pm10_1h={aqi // 2}i {hour_ns}",
            f"hourly,{tags},metric=pm25 value={aqi * 0.6:.1f},n=60i {hour_ns}",
        ]
    elif kind == "water":
        lines = [
            f"water,{tags} nh3_n={0.1 * i:.2f} {ns}",
            f'water_quality,station={sid} class={1 + i % 6}i,label="x",deciding="nh3_n" {hour_ns}',
        ]
    elif kind == "gauge":
        lines = [
            f"hydro,{tags} level={22.0 + i * 0.1:.2f} {ns}",
            f"level_trend,{tags} rise_per_h={0.05 * i:.2f} {ns}",
        ]
    else:
        sums = ",".join(f"sum_{h}h={h * 0.5 * i:.1f}" for h in (1, 3, 6, 12, 24))
        lines = [f"hydro,{tags} rain={0.2 * i:.1f} {ns}", f"rainfall_sum,{tags} {sums} {ns}"]
    return record, lines


def bench_fleet(per_kind: int, now: datetime, prefix: str = "odb-") -> BenchFleet:
    """``per_kind`` stations of each kind (every 4th hidden) with their latest analytics rows (pure)."""
    fleet = BenchFleet([], [], [], [])
    for kind in KIND_DOMAINS:
        for i in range(1, per_kind + 1):
            sid = f"{prefix}{kind}-{i:03d}"
            public = i % HIDDEN_EVERY != 0
            record, lines = bench_station(sid, kind, i, public=public, now=now)
            fleet.records.append(record)
            fleet.lines.extend(lines)
            (fleet.public if public else fleet.hidden).append(sid)
    return fleet


def _wait_public(url: str, want: int) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{url}/health", timeout=2, trust_env=False).json()
            if isinstance(last, dict) and last.get("public_stations") == want:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    raise StackError(f"open-data service at {url} did not list {want} public stations: {last}")


def _load(url: str, *, requests: int, seconds: float, concurrency: int, forbid: list[str]) -> dict[str, Any]:
    """Run the load generator in a second process; its JSON report."""
    cmd = [sys.executable, "-m", "stationflow.bench.opendataload", url, "--requests", str(requests),
           "--seconds", str(seconds), "--concurrency", str(concurrency), "--forbid", *forbid]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + LOAD_GRACE_S, check=False)
    if done.returncode != 0:
        raise StackError(f"load generator failed: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _start_opendata(pipeline: Pipeline, name: str, port: int, extra: dict[str, str]) -> ManagedProcess:
    env = pipeline.env("opendata") | {"STATIONFLOW_OPENDATA_PORT": str(port), **extra}
    proc = start_service("opendata", env=env, log_path=pipeline.state_dir / "logs" / f"{name}.log")
    pipeline.services[name] = proc
    return proc


def measure(*, requests: int, seconds: float, concurrency: int, per_kind: int = 25) -> dict[str, Any]:
    """The private-stack bench: throughput run (limit raised) and limit run (default limit)."""
    with tempfile.TemporaryDirectory(prefix="stationflow-bench-opendata-") as tmp:
        pipeline = Pipeline(Path(tmp) / "state")
        try:
            ep = pipeline.start_infra()
            fleet = bench_fleet(per_kind, datetime.now(UTC))
            asyncio.run(publish_records(CommonSettings(kafka_bootstrap=ep.kafka), fleet.records))
            influx_write(ep.influx_url, ep.influx_db, "\n".join(fleet.lines))
            ports = {"opendata": free_port(), "opendata-2": free_port(), "opendata-3": free_port()}
            unlimited = {
                "STATIONFLOW_OPENDATA_RATE_PER_MINUTE": "1e9",
                "STATIONFLOW_OPENDATA_BURST": "1000000000",
            }
            _start_opendata(pipeline, "opendata", ports["opendata"], unlimited)
            _start_opendata(pipeline, "opendata-2", ports["opendata-2"], {})
            _start_opendata(
                pipeline,
                "opendata-3",
                ports["opendata-3"],
                {**unlimited, "STATIONFLOW_OPENDATA_CACHE_TTL_S": "0"},
            )
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            for url in urls.values():
                _wait_public(url, len(fleet.public))
            runs = {}
            for run, name, n, c in (
                ("throughput", "opendata", requests, concurrency),
                ("uncached", "opendata-3", max(1, requests // UNCACHED_SHARE), concurrency),
                ("limited", "opendata-2", LIMITED_REQUESTS, 4),
            ):
                service = psutil.Process(pipeline.services[name].pid)
                cpu_before = sum(service.cpu_times()[:2])
                report = _load(urls[name], requests=n, seconds=seconds, concurrency=c, forbid=fleet.hidden)
                cpu_s = sum(service.cpu_times()[:2]) - cpu_before
                report["service_cpu_ms_per_request"] = round(1000 * cpu_s / max(1, report["requests"]), 3)
                runs[run] = report
        finally:
            pipeline.stop()
    return {"stations": {"public": len(fleet.public), "hidden": len(fleet.hidden)}, **runs}


def verdict(result: dict[str, Any]) -> list[str]:
    """Why the run failed (empty: it passed)."""
    problems = []
    for run in RUNS:
        r = result.get(run)
        if r is None:
            continue
        if r["errors"]:
            problems.append(f"{run}: {r['errors']} failed requests, e.g. {r['error_samples'][:2]}")
        if r["forbidden_seen"]:
            problems.append(f"{run}: hidden stations appeared: {r['forbidden_seen']}")
    limited = result.get("limited")
    if limited is not None:
        if not limited["statuses"].get("429"):
            problems.append("limit run: no 429 answer")
        if "missing" in limited["retry_after"]:
            problems.append("limit run: a 429 without Retry-After")
    return problems


def run_opendata_bench(
    *, url: str | None, requests: int, seconds: float, concurrency: int, as_json: bool
) -> int:
    """Run, print a table (or JSON), exit 0 / 1."""
    console = Console(width=max(Console().width, 120))
    try:
        if url is None:
            with console.status("starting a private stack and two open-data services…"):
                result = measure(requests=requests, seconds=seconds, concurrency=concurrency)
        else:
            result = {
                "throughput": _load(
                    url, requests=requests, seconds=seconds, concurrency=concurrency, forbid=[]
                )
            }
    except StackError as exc:
        console.print(f"[red]bench failed:[/red] {exc}")
        return 1
    problems = verdict(result)
    if as_json:
        sys.stdout.write(json.dumps({**result, "problems": problems}) + "\n")
    else:
        _print(console, result)
        for p in problems:
            console.print(f"[red]{p}[/red]")
    return 1 if problems else 0


def _print(console: Console, result: dict[str, Any]) -> None:
    table = Table(title="stationflow bench opendata")
    for col in (
        "run",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "cached",
        "statuses",
        "Retry-After",
        "CPU ms/req",
    ):
        table.add_column(col, justify="left" if col == "run" else "right", no_wrap=True)
    for run in RUNS:
        r = result.get(run)
        if r is None:
            continue
        statuses = " ".join(f"{k}:{v}" for k, v in r["statuses"].items())
        retry = " ".join(f"{k}s:{v}" for k, v in r["retry_after"].items())
        table.add_row(
            run, f"{r['requests']:,}", str(r["requests_per_s"]), str(r["p50_ms"]), str(r["p99_ms"]),
            str(r["errors"]), f"{r['cache_hits']:,}", statuses, retry,
            str(r.get("service_cpu_ms_per_request", "")),
        )  # fmt: skip
    console.print(table)
    if "stations" in result:
        s = result["stations"]
        console.print(f"stations: {s['public']} public, {s['hidden']} hidden (never in any answer)")
