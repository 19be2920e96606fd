"""Device simulator: publishes the readings of the fleet's MQTT devices in real time.

One paho-mqtt client (MQTT v5, network loop in paho's thread) publishes every MQTT device's
message each ``interval_s`` seconds, QoS 1: stationflow JSON on ``devices/<id>/readings``, a
SenML pack on ``devices/<id>/senml`` (``SenmlWire``), one HJ 212 frame on ``devices/<id>/hj212``
(a DTU, ``Hj212Wire(transport="mqtt")``). TCP stations (``simulator.stations``) are skipped.
Readings carry the wall-clock time; the signal models run on a model clock that advances
``speedup`` times faster, so diurnal cycles and storms show up quickly in a demo.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulator.fleet import (
    AirStation,
    Basin,
    ColdChainLogger,
    DeviceSpec,
    Hj212Wire,
    HydroRtu,
    RainGauge,
    RiverGauge,
    SenmlWire,
    Sl651Wire,
    WaterStation,
    default_fleet,
    format_ts,
    readings,
)
from simulator.hj212 import codes_for, make_qn, upload_frame
from simulator.link import BEIJING
from simulator.places import HIDDEN, place_of
from stationflow.settings import CommonSettings

__all__ = [
    "SENML_UNITS",
    "SimStats",
    "SimulatorError",
    "default_fleet",
    "device_body",
    "is_mqtt",
    "message",
    "run_simulator",
    "senml_pack",
    "topic_for",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 10.0
MAX_QUEUED = 10_000  # messages paho holds while the broker is unreachable


class SimulatorError(RuntimeError):
    """The simulator could not connect or lost its broker for good."""


@dataclass(frozen=True, slots=True)
class SimStats:
    """What a simulator run published."""

    messages: int
    readings: int
    acked: int
    rejected: int  # PUBACKs with a failure reason (e.g. not authorised)
    ticks: int
    seconds: float


def topic_for(device_id: str) -> str:
    """MQTT topic of a device's readings."""
    return f"devices/{device_id}/readings"


class _Session:
    """A connected paho client plus the counters its callback thread updates."""

    def __init__(self, settings: CommonSettings, client_id: str) -> None:
        self.answered = threading.Event()  # the first CONNACK arrived, success or not
        self.error: str | None = None
        self.acked = 0
        self.rejected = 0
        self._acks = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if settings.mqtt_username is not None:
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            self.client.username_pw_set(settings.mqtt_username, password)
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Properties | None) -> None:
        self.error = f"broker refused the connection: {rc}" if rc.is_failure else None
        self.answered.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if rc.is_failure:
            logger.warning("mqtt disconnected reason=%s (paho reconnects)", rc)

    def _on_publish(self, _c: mqtt.Client, _u: Any, _mid: int, rc: ReasonCode, _p: Properties) -> None:
        with self._acks:
            self.acked += 1
            self._acks.notify_all()
            if rc.is_failure:
                self.rejected += 1
                if self.rejected == 1:
                    logger.warning("broker refused a message reason=%s", rc)

    def wait_acked(self, count: int, timeout: float) -> bool:
        """Block until ``count`` PUBACKs arrived or ``timeout`` passed."""
        with self._acks:
            return self._acks.wait_for(lambda: self.acked >= count, timeout)

    def publish(self, topic: str, payload: bytes) -> bool:
        """Queue one QoS 1 message; False if paho refused it (queue full)."""
        info = self.client.publish(topic, payload, qos=1)
        return info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)


async def _connect(session: _Session, settings: CommonSettings) -> None:
    """Open the socket (errors surface here), start paho's thread, wait for the CONNACK."""
    where = f"{settings.mqtt_host}:{settings.mqtt_port}"
    try:
        await asyncio.to_thread(session.client.connect, settings.mqtt_host, settings.mqtt_port, 30)
    except OSError as exc:
        raise SimulatorError(f"cannot connect to MQTT broker {where}: {exc}") from exc
    session.client.loop_start()
    if not await asyncio.to_thread(session.answered.wait, CONNECT_TIMEOUT_S):
        raise SimulatorError(f"MQTT broker {where} sent no CONNACK within {CONNECT_TIMEOUT_S:.0f} s")
    if session.error is not None:
        raise SimulatorError(f"MQTT broker {where}: {session.error}")


async def _drain(session: _Session, published: int) -> None:
    """Wait (bounded) until the broker acknowledged everything published."""
    if not await asyncio.to_thread(session.wait_acked, published, DRAIN_TIMEOUT_S):
        logger.warning("stopping with unacknowledged messages count=%d", published - session.acked)


async def _stopped(stop: asyncio.Event, within_s: float) -> bool:
    """Wait up to ``within_s`` for ``stop``; whether it was set."""
    try:
        await asyncio.wait_for(stop.wait(), max(0.0, within_s))
    except TimeoutError:
        return False
    return True


def is_mqtt(spec: DeviceSpec) -> bool:
    """Whether the device talks MQTT (JSON, SenML, or HJ 212 through a DTU)."""
    link = spec.link
    return (
        link is None
        or isinstance(link, SenmlWire)
        or (isinstance(link, Hj212Wire) and link.transport == "mqtt")
    )


# Catalog unit → SenML unit (RFC 8428 / RFC 8798 registries, plus the concentration and turbidity
# units they lack, as ``ingest.decoders.senml`` accepts them); other readings are not sent.
SENML_UNITS: dict[str, str] = {
    "degC": "Cel",
    "%": "%RH",
    "ug/m3": "ug/m3",
    "mg/m3": "mg/m3",  # not in the IANA registries; stationflow's SenML decoder takes it
    "mg/L": "mg/L",
    "NTU": "NTU",
    "m": "m",
    "m3/s": "m3/s",
    "mm": "mm",
    "V": "V",
    "pH": "pH",
}


def senml_pack(
    device_id: str, prefix: str, samples: Sequence[tuple[datetime, Sequence[dict[str, Any]]]]
) -> bytes:
    """An RFC 8428 pack of ``samples`` ``(time, readings)``, the latest time as ``bt``.

    The first record carries ``bn`` = ``<prefix><device_id>:``, ``bt`` (absolute seconds) and
    ``bu`` (the most frequent unit); records carry ``n`` = metric, ``v``, ``u`` when it is not
    ``bu`` and ``t`` relative to ``bt`` (≤ 0) when not 0.
    """
    bt = max(t for t, _ in samples).timestamp()
    units = [SENML_UNITS[r["unit"]] for _, rs in samples for r in rs if r.get("unit") in SENML_UNITS]
    bu = max(set(units), key=units.count) if units else None
    records: list[dict[str, object]] = []
    for t, rs in samples:
        rel = round(t.timestamp() - bt, 3)
        for r in rs:
            unit = SENML_UNITS.get(r.get("unit", ""))
            if unit is None:
                continue
            record: dict[str, object] = {"n": r["metric"], "v": r["value"]}
            if unit != bu:
                record["u"] = unit
            if rel:
                record["t"] = rel
            records.append(record)
    if records:
        base: dict[str, object] = {"bn": f"{prefix}{device_id}:", "bt": round(bt, 3)}
        if bu is not None:
            base["bu"] = bu
        records[0] = {**base, **records[0]}
    return orjson.dumps(records)


def message(
    spec: DeviceSpec, model_t: datetime, wall_t: datetime, rng: random.Random, *, step_s: float = 60.0
) -> tuple[str, bytes, int]:
    """One MQTT message of a device (topic, payload, reading count): readings at ``model_t``.

    A SenML device packs two samples (``step_s / 2`` apart, relative times); a DTU forwards its
    logger's real-time upload (CN 2011, Flag=4: no acknowledgement over MQTT).
    """
    link = spec.link
    if isinstance(link, SenmlWire):
        half = timedelta(seconds=step_s / 2)
        samples = [
            (wall_t - half, readings(spec, model_t - half, rng)),
            (wall_t, readings(spec, model_t, rng)),
        ]
        payload = senml_pack(spec.device_id, link.base_prefix, samples)
        count = sum(1 for _, rs in samples for r in rs if r.get("unit") in SENML_UNITS)
        return f"devices/{spec.device_id}/senml", payload, count
    if isinstance(link, Hj212Wire) and isinstance(spec, AirStation | WaterStation):
        codes = codes_for(spec)
        values = {
            codes[r["metric"]]: float(r["value"])
            for r in readings(spec, model_t, rng)
            if r["metric"] in codes
        }
        local = wall_t.astimezone(BEIJING).replace(tzinfo=None)
        frame = upload_frame(
            mn=link.mn,
            pw=link.password,
            cn="2011",
            data_time=local.replace(microsecond=0),
            values=values,
            qn=make_qn(local),
            flag=4,
            st=link.st,
        )
        return f"devices/{spec.device_id}/hj212", frame, len(values)
    payload, count = render(spec, model_t, wall_t, rng)
    return topic_for(spec.device_id), payload, count


def _model_fleet(fleet: Sequence[DeviceSpec], step_s: float) -> list[DeviceSpec]:
    """The fleet with rain gauges integrating over one model-clock step."""
    return [
        dataclasses.replace(spec, interval_s=step_s) if isinstance(spec, RainGauge | HydroRtu) else spec
        for spec in fleet
    ]


def render(spec: DeviceSpec, model_t: datetime, wall_t: datetime, rng: random.Random) -> tuple[bytes, int]:
    """One device message (payload, reading count): readings at ``model_t``, stamped ``wall_t``."""
    ts = format_ts(wall_t)
    batch = [{**r, "ts": ts} for r in readings(spec, model_t, rng)]
    return orjson.dumps({"readings": batch}), len(batch)


@dataclass
class _Counts:
    messages: int = 0
    readings: int = 0
    ticks: int = 0


def _tick(
    session: _Session,
    devices: Sequence[DeviceSpec],
    origin: datetime,
    speedup: float,
    rng: random.Random,
    counts: _Counts,
    step_s: float,
) -> None:
    """Publish one message per device, stamped now."""
    wall = datetime.now(UTC)
    model = origin + (wall - origin) * speedup
    for spec in devices:
        topic, payload, n = message(spec, model, wall, rng, step_s=step_s)
        if session.publish(topic, payload):
            counts.messages += 1
            counts.readings += n
    counts.ticks += 1


async def run_simulator(
    settings: CommonSettings,
    *,
    fleet: Sequence[DeviceSpec] | None = None,
    interval_s: float = 60.0,
    speedup: float = 1.0,
    duration_s: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    seed: int | None = None,
    stop: asyncio.Event | None = None,
) -> SimStats:
    """Publish the fleet's readings every ``interval_s`` until ``duration_s``, ``stop`` or cancelled.

    ``stop`` ends the run cleanly: no further tick, and the broker acknowledges what was
    published before the session closes (cancelling may drop unacknowledged messages).
    """
    if interval_s <= 0 or speedup <= 0:
        raise ValueError("interval_s and speedup must be positive")
    chosen = fleet if fleet is not None else default_fleet()
    devices = _model_fleet([spec for spec in chosen if is_mqtt(spec)], interval_s * speedup)
    rng = random.Random(seed)
    session = _Session(settings, client_id=f"stationflow-sim-{random.getrandbits(32):08x}")
    # With no duration the loop is a service: it runs until the caller cancels it.
    max_ticks = None if duration_s is None else int(duration_s / interval_s) + 1
    counts = _Counts()
    try:
        await _connect(session, settings)
        started = next_at = time.monotonic()
        origin = datetime.now(UTC)
        while max_ticks is None or counts.ticks < max_ticks:
            _tick(session, devices, origin, speedup, rng, counts, interval_s)
            if on_progress is not None:
                on_progress(counts.messages, counts.readings)
            if max_ticks is not None and counts.ticks >= max_ticks:
                break
            next_at = max(next_at + interval_s, time.monotonic())  # never burst to catch up
            if stop is None:
                await asyncio.sleep(next_at - time.monotonic())
            elif await _stopped(stop, next_at - time.monotonic()):
                break
        await _drain(session, counts.messages)
    finally:
        session.client.disconnect()
        session.client.loop_stop()
    return SimStats(
        counts.messages,
        counts.readings,
        session.acked,
        session.rejected,
        counts.ticks,
        time.monotonic() - started,
    )


# ------------------------------------------------------------------ registration through the API

_TYPES: dict[type, tuple[str, str]] = {
    AirStation: ("air-station", "air"),
    WaterStation: ("water-station", "water"),
    RainGauge: ("rain-gauge", "rain"),
    RiverGauge: ("level-gauge", "gauge"),
    ColdChainLogger: ("coldchain-logger", "coldchain"),
    HydroRtu: ("hydro-rtu", "gauge"),
}
_CLASSES = ("I", "II", "III", "IV", "V")
REGION = "440300"  # the simulated fleet sits in one administrative region
# A river gauge's warning level (警戒水位) sits this far above its base level, the guaranteed
# level (保证水位) a bit higher: the simulated storms reach the first now and then.
WARNING_ABOVE_BASE_M = 2.5
GUARANTEED_ABOVE_BASE_M = 4.0
# A freezer's air may rise to -15 °C briefly (defrost, doors); the logger alarms above -12 °C.
FREEZER_RANGE_C = (-30.0, -12.0)


def station_body(spec: DeviceSpec) -> dict[str, object]:
    """The registry station for one simulated device (one station per device, named and placed)."""
    _, kind = _TYPES[type(spec)]
    place = place_of(spec.device_id)
    body: dict[str, object] = {
        "id": f"st-{spec.device_id}",
        "name": place.name,
        "kind": kind,
        "region": REGION,
        "lat": place.lat,
        "lon": place.lon,
        # the open-data service publishes air, water and hydrological stations (one kept hidden)
        "public": kind != "coldchain" and spec.device_id not in HIDDEN,
    }
    basin = getattr(spec, "basin", None)
    if isinstance(basin, Basin):
        body["basin"] = basin.name
    if isinstance(spec, RiverGauge | HydroRtu):
        body["warning_level"] = spec.base_level_m + WARNING_ABOVE_BASE_M
        body["guaranteed_level"] = spec.base_level_m + GUARANTEED_ABOVE_BASE_M
    if isinstance(spec, WaterStation):
        body["target_class"] = _CLASSES[max(1, min(5, spec.water_class)) - 1]
    if isinstance(spec, ColdChainLogger) and spec.mode == "freezer":
        # frozen goods (GB/T 24616): the analytics' default range is the chilled 0-8 °C
        body["thresholds"] = {"coldchain.low": FREEZER_RANGE_C[0], "coldchain.high": FREEZER_RANGE_C[1]}
    return body


async def register_fleet(
    api_url: str, api_key: str, fleet: Sequence[DeviceSpec], *, interval_s: float
) -> int:
    """Register stations and devices through the registry API (idempotent); return how many are new."""
    created = 0
    headers = {"X-API-Key": api_key}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10.0) as http:
        for spec in fleet:
            device_type, _ = _TYPES[type(spec)]
            station = station_body(spec)
            await _create(http, "/stations", station)
            device = device_body(spec, device_type, str(station["id"]), interval_s=interval_s)
            created += await _create(http, "/devices", device)
    logger.info("fleet registered devices=%d new=%d", len(fleet), created)
    return created


def device_body(
    spec: DeviceSpec, device_type: str, station_id: str, *, interval_s: float
) -> dict[str, object]:
    """``POST /devices`` body: the protocol and its link with the password the device will use.

    JSON devices send no protocol fields (the registry's default). An SL 651 RTU asks for ESC
    confirmations: it keeps the link and sends 2F keep-alives between reports.
    """
    body: dict[str, object] = {
        "id": spec.device_id,
        "type": device_type,
        "station_id": station_id,
        "expected_interval_s": max(1, round(interval_s)),
    }
    link = spec.link
    if isinstance(link, Hj212Wire):
        body["protocol"] = "hj212"
        body["hj212"] = {
            "mn": link.mn,
            "password": link.password,
            "crc": None,
            "strict": False,
            "allow_from": [],
        }
    elif isinstance(link, Sl651Wire):
        body["protocol"] = "sl651"
        body["sl651"] = {
            "address": link.address,
            "password": link.password,
            "ack": "esc",
            "level_base_m": 0.0,
            "allow_from": [],
        }
    elif isinstance(link, SenmlWire):
        body["protocol"] = "senml"
    return body


async def _create(http: httpx.AsyncClient, path: str, body: dict[str, object]) -> int:
    response = await http.post(path, json=body)
    if response.status_code == httpx.codes.CONFLICT:
        return 0  # already registered by an earlier run
    if response.is_error:
        raise SimulatorError(
            f"registry refused {path} {body.get('id')}: {response.status_code} {response.text}"
        )
    return 1
