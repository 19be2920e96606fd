"""The public page in headless Chromium against a real open-data service (``python -m opendata``)
on real Tansu and InfluxDB, with a few stations of our own: public air stations in three AQI
categories, a water section worse than its target, a gauge above its warning level, a rain
gauge in a rainstorm, a hidden air station and a cold-chain logger (neither may appear).

The same checks as the backfilled-stack test (``public_page_checks``), without the whole stack.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from stationflow import topics
from stationflow.contracts import DeviceRecord, StationInfo
from stationflow.settings import CommonSettings
from stationflow.stack.components import Component, influx_write
from stationflow.stack.ports import free_ports
from tests.integration.pipeline_utils import wait_for
from tests.integration.public_page_checks import browser, check_public_page

pytestmark = pytest.mark.integration

# station id, name, kind, lat, lon, domain, public, attributes
STATIONS: list[tuple[str, str, str, float, float, str, bool, dict[str, float | str]]] = [
    ("st-air-a", "福田 Futian", "air", 22.541, 114.054, "air", True, {}),
    ("st-air-b", "南山 Nanshan", "air", 22.533, 113.930, "air", True, {}),
    ("st-air-c", "宝安 Bao'an", "air", 22.555, 113.883, "air", True, {}),
    ("st-air-hidden", "龙岗 Longgang (internal)", "air", 22.720, 114.247, "air", False, {}),
    ("st-water-a", "深圳河 罗湖断面 Shenzhen River, Luohu", "water", 22.532, 114.113, "water", True,
     {"target_class": "III"}),
    ("st-gauge-a", "深圳河 渔农村 Shenzhen River, Yunong", "gauge", 22.524, 114.086, "hydro", True,
     {"warning_level": 4.5, "guaranteed_level": 6.0}),
    ("st-rain-a", "梧桐山 雨量站 Wutong Mountain rain gauge", "rain", 22.582, 114.201, "hydro", True, {}),
    ("st-cold-a", "冷库 1 Cold store 1", "coldchain", 22.564, 114.023, "coldchain", True, {}),
]  # fmt: skip
# latest hourly AQI per air station: green, orange, purple (and the hidden one red)
LATEST_AQI = {"st-air-a": 42, "st-air-b": 130, "st-air-c": 230, "st-air-hidden": 170}
HOURS = 48


def records(now: datetime) -> list[DeviceRecord]:
    """One device per station, as the registry publishes them."""
    out = []
    for sid, name, kind, lat, lon, domain, public, attrs in STATIONS:
        station = StationInfo(
            station_id=sid, name=name, lat=lat, lon=lon, region="440300", basin="shenzhen-river",
            attributes={"kind": kind, **attrs}, public=public,
        )  # fmt: skip
        device = sid.removeprefix("st-")
        out.append(DeviceRecord(
            device_id=device, device_type=f"{kind}-station", domain=domain, station=station,
            expected_interval_s=60, updated_at=now,
        ))  # fmt: skip
    return out


def history_lines(now: datetime) -> list[str]:
    """48 hours of derived measurements, as the analytics write them (InfluxDB 1.x line protocol, s)."""
    hour0 = now.replace(minute=0, second=0, microsecond=0)
    lines: list[str] = []
    for h in range(HOURS):
        t = hour0 - timedelta(hours=HOURS - 1 - h)
        ts = int(t.timestamp())
        for sid, latest in LATEST_AQI.items():
            aqi = latest if h == HOURS - 1 else 20 + (h * 7 + len(sid) * 11) % 160
            lines.append(f'aqi,station={sid},report=hourly aqi={aqi}i,iaqi_pm2_5={aqi}i,iaqi_no2=20i,'
                         f'primary="pm2_5_1h",standard="HJ 633-2026" {ts}')  # fmt: skip
        lines.append(f"hourly,station=st-gauge-a,metric=level value={3.0 + 0.035 * h:.3f} {ts}")
        lines.append(f"hourly,station=st-rain-a,metric=rain value={(h % 6) * 1.5:.1f} {ts}")
        water_class = 3 if h < 30 else 4
        lines.append(f'water_quality,station=st-water-a class={water_class}i,deciding="nh3_n" {ts}')
    ts = int(now.timestamp())
    lines += [
        f"hydro,station=st-gauge-a,device=gauge-a level=4.7,flow=120.0 {ts}",
        f"level_trend,station=st-gauge-a rise_per_h=0.12 {ts}",
        f"rainfall_sum,station=st-rain-a sum_1h=7.5,sum_3h=18.0,sum_6h=30.5,sum_12h=48.0,sum_24h=62.5 {ts}",
        f"coldchain,station=st-cold-a,device=cold-a temperature=4.5 {ts}",
    ]
    return lines


async def publish(settings: CommonSettings, recs: list[DeviceRecord]) -> None:
    """Put the records on the registry topic, keyed by device id."""
    await topics.ensure_topics(settings, (topics.REGISTRY,))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for r in recs:
            await producer.send_and_wait(
                settings.topic(topics.REGISTRY), r.model_dump_json().encode(), key=r.key()
            )
    finally:
        await producer.stop()


@pytest.fixture
def opendata_url(
    tansu: Component, influxd: Component, influx_db: str, topic_prefix: str, tmp_path: Path
) -> Iterator[str]:
    """``python -m opendata`` on a free port, following our registry records and reading our database."""
    now = datetime.now(UTC)
    settings = CommonSettings(kafka_bootstrap=tansu.url, topic_prefix=topic_prefix)
    asyncio.run(publish(settings, records(now)))
    influx_write(influxd.url, influx_db, "\n".join(history_lines(now)), precision="s")
    (port,) = free_ports(1)
    env = {
        "STATIONFLOW_KAFKA_BOOTSTRAP": tansu.url,
        "STATIONFLOW_TOPIC_PREFIX": topic_prefix,
        "STATIONFLOW_INFLUX_URL": influxd.url,
        "STATIONFLOW_INFLUX_DB": influx_db,
        "STATIONFLOW_OPENDATA_PORT": str(port),
        "STATIONFLOW_STATE_DIR": str(tmp_path / "state"),
        "PATH": "/usr/bin:/bin",
    }
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "opendata.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opendata"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    public = sum(1 for s in STATIONS if s[6] and s[2] != "coldchain")

    def ready() -> bool:
        try:
            health = httpx.get(f"{url}/health", timeout=2).json()
        except httpx.HTTPError:
            return proc.poll() is not None
        return bool(health.get("registry_ready")) and health.get("public_stations") == public

    try:
        assert wait_for(ready, timeout=60, interval=0.5) and proc.poll() is None, log.read_text()[-3000:]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_the_public_page_shows_our_stations_in_their_colours(opendata_url: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=opendata_url, timeout=10) as api:
        aqi = {a["station_id"]: a for a in api.get("/api/v1/aqi/latest").json()["data"]}
    # the data behind the page is what we wrote: three categories, the hidden one left out
    assert {k: v["aqi"] for k, v in aqi.items()} == {
        k: v for k, v in LATEST_AQI.items() if k != "st-air-hidden"
    }
    assert {v["color"] for v in aqi.values()} == {"#00E400", "#FF7E00", "#99004C"}
    check_public_page(opendata_url, tmp_path, hidden=frozenset({"st-air-hidden", "st-cold-a"}))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def static_url() -> Iterator[str]:
    """``opendata/static`` over HTTP (modules cannot be imported from file://)."""
    root = Path(__file__).resolve().parents[2] / "opendata" / "static"
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


LOGIC = """async () => {
  const geo = await import('/js/geo.js');
  const present = await import('/js/present.js');
  const i18n = await import('/js/i18n.js');
  const station = await import('/js/station.js');
  const totals = [0, 0.05, 0.1, 9.9, 10, 24.9, 25, 49.9, 50, 99.9, 100, 249.9, 250, 600];
  // three markers in a row, 30 px apart: no label may cover another label or a marker
  const labels = [0, 1, 2].map((i) => ({ x: 100 + i * 30, y: 150, w: 80, shortW: 30, h: 16, r: 9 }));
  const placed = geo.placeLabels(labels, 400, 300);
  const boxes = placed.map((p, i) => {
    const w = p.short ? labels[i].shortW : labels[i].w;
    const x = p.anchor === 'start' ? p.x : p.anchor === 'end' ? p.x - w : p.x - w / 2;
    return { x, y: p.y - 8, w, h: 16 };
  });
  const dots = labels.map((l) => ({ x: l.x - l.r, y: l.y - l.r, w: 2 * l.r, h: 2 * l.r }));
  const hit = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  const overlaps = boxes.some((a, i) => [...boxes.filter((_, j) => j !== i), ...dots].some((b) => hit(a, b)));
  const proj = geo.fitProjection([{ lon: 113.8, lat: 22.5 }, { lon: 114.3, lat: 22.8 }], 600, 400, 30);
  const corners = [proj.project(113.8, 22.5), proj.project(114.3, 22.8)];
  return {
    ranks: totals.map(present.rainRank),
    lang: [
      i18n.initialLang('?lang=en', 'zh', 'zh-CN'), i18n.initialLang('?lang=xx', 'zh', 'en-US'),
      i18n.initialLang('', null, 'zh-TW'), i18n.initialLang('', null, 'de-DE'),
    ],
    names: [
      present.shortName('福田 Futian', 'zh'), present.shortName('福田 Futian', 'en'),
      present.shortName('深圳河 罗湖断面 Shenzhen River, Luohu', 'en'), present.shortName('Plain', 'zh'),
    ],
    nice: [geo.niceAtMost(7.3), geo.niceAtMost(0.42), geo.niceAtLeast(0.07), geo.niceAtLeast(3)],
    scale: geo.scaleBar(10, 140),
    overlaps, corners, placed,
    inside: corners.every(([x, y]) => x >= 30 - 1e-9 && x <= 570 + 1e-9 && y >= 30 - 1e-9 && y <= 370 + 1e-9),
    times: [station.ms(1764547200), station.ms(1764547200000), station.ms('2025-12-01T00:00:00Z')],
    sums: station.hourlySums([[0, 1], [1800e3, 2.5], [3600e3, 4]]),
    pollutants: ['pm2_5', 'pm10_24h', 'o3_8h', 'humidity'].map(station.pollutantName),
  };
}"""


def test_the_page_logic(static_url: str) -> None:
    """The page's pure functions: rain grades, language choice, names, scale, labels, projection."""
    with browser() as b:
        page = b.new_page()
        page.goto(f"{static_url}/js/")
        got = page.evaluate(LOGIC)
    # GB/T 28592-2012 24 h grades: < 0.1 none, 0.1-9.9 light ... >= 250 extreme
    assert got["ranks"] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert got["lang"] == ["en", "zh", "zh", "en"]  # ?lang= wins, then the stored choice, then the browser
    assert got["names"] == ["福田", "Futian", "Shenzhen River, Luohu", "Plain"]
    assert got["nice"] == [5, 0.2, 0.1, 5]
    assert got["scale"] == {"km": 10, "px": 100, "text": "10 km"}  # 10 px/km, about 140 px wanted
    assert not got["overlaps"], f"a label covers another label or a marker: {got['placed']}"
    assert got["inside"], got["corners"]
    assert got["times"] == [1764547200000, 1764547200000, 1764547200000]
    assert got["sums"] == [[1800000, 3.5], [5400000, 4]]
    assert got["pollutants"] == ["PM2.5", "PM10 24h", "O₃ 8h", "humidity"]
