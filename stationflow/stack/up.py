"""``stationflow up``: the whole pipeline on this machine, with a simulated fleet and live status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.table import Table

from stationflow.logs import setup_logging
from stationflow.settings import CommonSettings
from stationflow.stack.monitor import count_points, scrape_counter
from stationflow.stack.pipeline import Pipeline, kind_and_instance, kind_of
from stationflow.stack.procs import StackError

if TYPE_CHECKING:
    from simulator.backfill import BackfillProgress
    from simulator.mqtt import SimStats
    from simulator.settings import SimulatorSettings
    from simulator.stations import StationStats
    from stationflow.stack.backfill import BackfillRun

__all__ = ["restart_exited", "run_simulate", "run_up", "worker_metrics"]

logger = logging.getLogger(__name__)

REFRESH_S = 2.0  # status refresh; each refresh runs one InfluxDB count query
SIM_STOP_S = 15.0  # the simulator's own wait for outstanding acknowledgements is 10 s
TCP_DEADLETTERS = "stationflow_tcp_deadletters_total"  # every refusal of the TCP collector
SERVICES = ("devices", "ingest", "tcp", "streams", "alerts", "opendata")


@dataclass
class _Status:
    published_msgs: int = 0
    published_readings: int = 0
    stored: int = 0
    rejected: float = 0.0
    open_alerts: int | None = None
    restarts: int = 0
    started: float = 0.0
    stations: StationStats | None = None


def run_up(
    *,
    state_dir: Path,
    ports: Mapping[str, int],
    interval_s: float,
    simulate: bool,
    duration_s: float | None,
    tcp_bind: str = "127.0.0.1",
    backfill_s: float = 0.0,
    workers: int = 1,
) -> int:
    """Start everything, show live status until Ctrl-C / SIGTERM (or ``duration_s``), stop everything.

    ``tcp_bind``: the address the TCP collector listens on (``0.0.0.0`` for stations on the
    network; every other listener stays on loopback). ``backfill_s``: the simulated fleet first
    publishes that much history through the pipeline (on a restart only the gap since the last
    run), then goes live. ``workers``: stream worker processes sharing the partitions.
    """
    setup_logging("WARNING")
    # a state dir from a run that kept no backfill record: its devices are past any history
    earlier_run = (state_dir / "kafka-archive").exists()
    signal.signal(signal.SIGTERM, _terminate)  # a supervisor's stop: same clean shutdown as Ctrl-C
    console = Console()
    pipeline = Pipeline(
        state_dir.resolve(),
        ports=ports,
        auth=True,
        extra_env={
            "STATIONFLOW_STREAMS_REGISTRY": "true",
            # one collector: a plain subscription, which Mosquitto 2.0.11 keeps across its
            # restart (a shared one it drops, answering devices "no matching subscribers"
            # until the collector has subscribed again)
            "STATIONFLOW_INGEST_SHARE_GROUP": "",
            "STATIONFLOW_TCP_BIND": tcp_bind,
        },
        durable=True,
    )
    backfill: BackfillRun | None = None
    try:
        with console.status("starting…") as status:
            pipeline.start_infra(on_step=lambda s: status.update(f"starting {s}…"))
            # the services start side by side: none needs another to be ready to start
            status.update("starting the registry, the collectors and the stream workers…")
            registry = pipeline.launch("devices")
            collectors = [pipeline.launch("ingest"), pipeline.launch("tcp")]
            stream_workers = [pipeline.launch("streams", instance=n) for n in range(1, workers + 1)]
            # the alert service and the open-data API too: ready when `up` says it is running
            late = [pipeline.launch("alerts"), pipeline.launch("opendata")]
            registry.wait()
            if simulate:
                status.update("registering the simulated fleet through the registry API…")
                asyncio.run(_register(pipeline, interval_s))
            status.update("waiting for the MQTT and TCP collectors (HJ 212, SL 651)…")
            for collector in collectors:
                collector.wait()
            if simulate:  # the history waits in Kafka while the worker starts
                backfill = _start_backfill(console, pipeline, backfill_s, earlier_run=earlier_run)
            status.update("waiting for the Faust stream workers (they join their consumer group)…")
            for worker in stream_workers:
                worker.wait()
            status.update("waiting for the alert service and the open-data API…")
            for service in late:
                service.wait()
        _banner(console, pipeline)
        asyncio.run(
            _live(
                console,
                pipeline,
                interval_s=interval_s,
                simulate=simulate,
                duration_s=duration_s,
                backfill=backfill,
            )
        )
    except KeyboardInterrupt:
        console.print("\nstopping…")
    except StackError as exc:
        console.print(f"[red]could not start the stack:[/red] {exc}")
        return 1
    finally:
        if backfill is not None:
            backfill.stop()
        _stop(console, pipeline)
        console.print("all processes stopped; state kept in " + str(state_dir))
    return 0


def _simulator_settings(p: Pipeline) -> CommonSettings:
    """The broker as the simulated fleet sees it (with the simulator's account)."""
    ep = p.endpoints
    assert ep is not None  # noqa: S101 - start_infra() ran
    user, password = p.accounts.simulator if p.accounts else (None, None)
    return CommonSettings(
        mqtt_host=ep.mqtt_host,
        mqtt_port=ep.mqtt_port,
        mqtt_username=user,
        mqtt_password=SecretStr(password) if password else None,
    )


def _start_backfill(
    console: Console, p: Pipeline, backfill_s: float, *, earlier_run: bool
) -> BackfillRun | None:
    """Start publishing the fleet's history (None: nothing to publish)."""
    from simulator.fleet import default_fleet
    from stationflow.stack.backfill import BackfillRun

    settings = _simulator_settings(p)
    sl651 = ("127.0.0.1", p.sl651_port)
    return BackfillRun.start(
        console, p.state_dir, backfill_s, settings, default_fleet(), sl651, earlier_run=earlier_run
    )


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _stop(console: Console, pipeline: Pipeline) -> None:
    """Drain, stop the services, archive the Kafka state, stop the brokers; ignore further signals."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: console.print("still stopping (draining the topics)…"))
    drained: list[str] = []

    def progress(lag: Mapping[str, int]) -> None:
        line = " ".join(f"{group}={n:,}" for group, n in lag.items())
        if line != (drained[-1] if drained else None):
            console.print(f"draining: records not yet consumed {line}")
            drained.append(line)

    pipeline.stop(on_drain=progress)
    if pipeline.durable:
        c = pipeline.archive.counts()
        console.print(
            f"kafka state archived in {pipeline.archive.path}: {c['changelog']:,} table entries, "
            f"{c['log']:,} dead letters ({c['log_cut']:,} cut by the bound), "
            f"{c['tail']:,} unconsumed records"
        )


async def _register(p: Pipeline, interval_s: float) -> None:
    from simulator.fleet import default_fleet
    from simulator.mqtt import register_fleet

    await register_fleet(p.registry_url, p.registry_admin_key, default_fleet(), interval_s=interval_s)


def _banner(console: Console, p: Pipeline) -> None:
    ep = p.endpoints
    assert ep is not None  # noqa: S101 - start_infra() ran
    q = "SELECT * FROM air ORDER BY time DESC LIMIT 5"
    bind = p.extra_env.get("STATIONFLOW_TCP_BIND", "127.0.0.1")
    console.print(
        "\n[bold green]stationflow is running[/bold green]\n"
        f"  MQTT       {ep.mqtt_host}:{ep.mqtt_port}   publish to devices/<device_id>/readings\n"
        "             DTU: devices/<device_id>/hj212; SenML: devices/<device_id>/senml\n"
        f"  stations   HJ 212 tcp {bind}:{p.hj212_port}, SL 651 tcp {bind}:{p.sl651_port}   "
        "(register the MN / RTU address in the registry first)\n"
        f"  Kafka      {ep.kafka}   topics readings.raw / readings.clean / readings.deadletter\n"
        f"  InfluxDB   {ep.influx_url}   database {ep.influx_db}\n"
        f"  registry   {p.registry_url}/docs   admin API key in {p.state_dir / 'registry-admin-key'}\n"
        f"  alerts     {p.alerts_url}/console (duty console), {p.alerts_url}/docs   "
        f"admin API key in {p.state_dir / 'alerts-admin-key'}\n"
        f"  open data  {p.opendata_url}/ (public map page), {p.opendata_url}/docs   "
        "no key, read-only, rate-limited\n"
        f"  metrics    http://127.0.0.1:{p.metrics_ports['ingest']}/metrics (MQTT collector), "
        f"http://127.0.0.1:{p.tcp_metrics_port}/metrics (TCP collector), "
        f"{worker_metrics(p)}\n"
        f"  logs       {p.state_dir / 'logs'}/ and each component's dir under {p.state_dir}\n\n"
        "  see the data:\n"
        f"    curl -sG '{ep.influx_url}/query' --data-urlencode 'db={ep.influx_db}' "
        f'--data-urlencode "q={q}"\n'
        "  refused: stationflow deadletters (messages), stationflow rejected (points InfluxDB refused)\n"
        "  Ctrl-C stops every process (it drains Kafka and keeps its state for the next start).\n"
    )


def worker_metrics(p: Pipeline) -> str:
    """The stream workers' /metrics URLs, as the banner lists them."""
    urls = [
        f"http://127.0.0.1:{port}/metrics"
        for name, port in p.metrics_ports.items()
        if kind_of(name) == "streams"
    ]
    return ", ".join(urls) + (" (worker)" if len(urls) == 1 else f" ({len(urls)} workers)")


def _table(p: Pipeline, st: _Status) -> Table:
    table = Table(title=f"stationflow — up {time.monotonic() - st.started:,.0f} s", expand=False)
    table.add_column("process")
    table.add_column("pid", justify="right")
    table.add_column("state")
    for comp in p.components:
        table.add_row(comp.name, str(comp.proc.pid), "running" if comp.proc.running else "[red]exited")
    for kind, proc in p.services.items():
        table.add_row(kind, str(proc.pid), "running" if proc.running else "[red]exited")
    table.add_section()
    table.add_row("published", f"{st.published_msgs:,} msgs", f"{st.published_readings:,} readings")
    if st.stations is not None:
        for name, c in (("HJ 212 tcp", st.stations.hj212), ("SL 651 tcp", st.stations.sl651)):
            table.add_row(name, f"{c.uploads:,} frames", f"{c.acked:,} acked, {c.retries:,} resent")
    table.add_row("stored (1 h)", "", f"{st.stored:,} values")
    table.add_row("dead letters", "", f"{st.rejected:,.0f}")
    table.add_row("open alerts", "", "starting…" if st.open_alerts is None else f"{st.open_alerts:,}")
    if p.mirror is not None:
        archived = f"{p.mirror.records:,} records" if p.mirror.error is None else "[red]stopped (see the log)"
        table.add_row("state archive", "", archived)
    if st.restarts:
        table.add_row("restarts", "", f"[yellow]{st.restarts}")
    return table


async def _live(
    console: Console,
    p: Pipeline,
    *,
    interval_s: float,
    simulate: bool,
    duration_s: float | None,
    backfill: BackfillRun | None = None,
) -> None:
    from simulator.fleet import default_fleet
    from simulator.mqtt import run_simulator
    from simulator.stations import run_stations
    from stationflow.stack.backfill import published_until

    ep = p.endpoints
    assert ep is not None  # noqa: S101 - start_infra() ran
    st = _Status(started=time.monotonic())

    def progress(msgs: int, readings: int) -> None:
        st.published_msgs, st.published_readings = msgs, readings

    def station_progress(stats: StationStats) -> None:
        st.stations = stats

    sim: asyncio.Task[SimStats] | None = None
    stations: asyncio.Task[StationStats] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop the loop cleanly: the simulator finishes first
        loop.add_signal_handler(sig, stop.set)
    if simulate:
        fleet = default_fleet()
        settings = _simulator_settings(p)
        if backfill is not None:
            await backfill.wait(stop)
        sim = asyncio.create_task(
            run_simulator(
                settings,
                fleet=fleet,
                interval_s=interval_s,
                duration_s=duration_s,
                on_progress=progress,
                stop=stop,
            )
        )
        # the HJ 212 loggers and the SL 651 RTU connect to the TCP collector like field stations
        stations = asyncio.create_task(
            run_stations(
                fleet,
                hj212=("127.0.0.1", p.hj212_port),
                sl651=("127.0.0.1", p.sl651_port),
                interval_s=interval_s,
                duration_s=duration_s,
                stop=stop,
                on_progress=station_progress,
            )
        )
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        with Live(_table(p, st), console=console, refresh_per_second=1) as live:
            while (deadline is None or time.monotonic() < deadline) and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REFRESH_S)
                if stop.is_set():
                    break
                await asyncio.to_thread(_refresh, p, st)
                live.update(_table(p, st))
                if simulate:
                    published_until(p.state_dir)
                for task, what in ((sim, "simulator"), (stations, "simulated TCP stations")):
                    if task is not None and task.done() and task.exception() is not None:
                        raise StackError(f"{what} failed: {task.exception()!r}")
    finally:
        console.print("\nstopping…")
        stop.set()
        if sim is not None:
            await _finish_simulator(console, sim)
        if stations is not None:
            await _finish_stations(console, stations)
        if simulate:
            published_until(p.state_dir)


async def _finish_simulator(console: Console, sim: asyncio.Task[SimStats]) -> None:
    """Let the simulator get its last messages acknowledged, and say what it published."""
    try:
        stats = await asyncio.wait_for(asyncio.shield(sim), SIM_STOP_S)
    except Exception as exc:  # noqa: BLE001 - timeout or a failed simulator: the shutdown goes on
        sim.cancel()
        logger.warning("simulator did not stop cleanly reason=%r", exc)
        return
    console.print(
        f"simulator stopped: published={stats.messages:,} messages readings={stats.readings:,} "
        f"acknowledged={stats.acked:,} refused={stats.rejected:,}"
    )


async def _finish_stations(console: Console, stations: asyncio.Task[StationStats]) -> None:
    """Let the TCP stations finish their uploads in flight, and say what they sent."""
    try:
        stats = await asyncio.wait_for(asyncio.shield(stations), SIM_STOP_S)
    except Exception as exc:  # noqa: BLE001 - timeout or a failed station: the shutdown goes on
        stations.cancel()
        logger.warning("simulated TCP stations did not stop cleanly reason=%r", exc)
        return
    for name, c in (("HJ 212", stats.hj212), ("SL 651", stats.sl651)):
        console.print(
            f"simulated {name} stations stopped: uploads={c.uploads:,} acknowledged={c.acked:,} "
            f"resent={c.retries:,} given up={c.lost:,} readings={c.readings:,}"
        )


def _refresh(p: Pipeline, st: _Status) -> None:
    ep = p.endpoints
    assert ep is not None  # noqa: S101 - start_infra() ran
    with contextlib.suppress(StackError, httpx.HTTPError, OSError):
        st.stored = count_points(ep.influx_url, ep.influx_db)
    with contextlib.suppress(httpx.HTTPError, OSError):
        st.rejected = scrape_counter(
            f"http://127.0.0.1:{p.metrics_ports['ingest']}/metrics", "stationflow_ingest_rejected_total"
        ) + scrape_counter(f"http://127.0.0.1:{p.tcp_metrics_port}/metrics", TCP_DEADLETTERS)
    with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
        summary = httpx.get(
            f"{p.alerts_url}/summary", headers={"X-API-Key": p.alerts_admin_key}, timeout=2
        ).json()
        st.open_alerts = sum(summary["counts"].get("open", {}).values())
    st.restarts += restart_exited(p)


def restart_exited(p: Pipeline) -> int:
    """Start again every service of ours that exited (``streams-2`` as worker 2); how many."""
    restarted = 0
    for name, proc in list(p.services.items()):
        kind, instance = kind_and_instance(name)
        if kind in SERVICES and not proc.running:
            logger.warning("service exited, restarting service=%s code=%s", name, proc.returncode)
            p.start(kind, instance=instance, wait=False)
            restarted += 1
    return restarted


def run_simulate(
    *, interval_s: float, duration_s: float | None, backfill_s: float = 0.0, register: bool = False
) -> int:
    """Publish the simulated fleet to the broker named in the settings.

    ``register``: register the fleet through the registry API first (``STATIONFLOW_REGISTRY_URL``,
    ``STATIONFLOW_REGISTRY_ADMIN_KEY``). ``backfill_s``: publish that much history first (with
    its episodes), then go live.
    """
    from simulator.settings import SimulatorSettings

    settings = SimulatorSettings()
    setup_logging(settings.log_level, service="simulator")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_simulate(settings, interval_s, duration_s, backfill_s, register))
    return 0


async def _simulate(
    settings: SimulatorSettings,
    interval_s: float,
    duration_s: float | None,
    backfill_s: float,
    register: bool,
) -> None:
    from simulator.backfill import load_until, plan_window, run_backfill, save_until
    from simulator.fleet import Hj212Wire, Sl651Wire, default_fleet
    from simulator.mqtt import is_mqtt, register_fleet, run_simulator
    from simulator.settings import parse_address
    from simulator.stations import run_stations

    hj212, sl651 = parse_address(settings.simulator_hj212), parse_address(settings.simulator_sl651)
    tcp = (Hj212Wire,) * (hj212 is not None) + (Sl651Wire,) * (sl651 is not None)
    fleet = [spec for spec in default_fleet() if is_mqtt(spec) or isinstance(spec.link, tcp)]
    if register:
        if settings.registry_admin_key is None:
            raise SystemExit("--register needs STATIONFLOW_REGISTRY_ADMIN_KEY (and STATIONFLOW_REGISTRY_URL)")
        key = settings.registry_admin_key.get_secret_value()
        await register_fleet(settings.registry_url, key, fleet, interval_s=interval_s)
    # Like `up`, remember up to when the fleet was published (in STATIONFLOW_STATE_DIR, a volume
    # under compose), so a restart fills only the gap instead of publishing 48 h again.
    state_dir = settings.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    window = plan_window(backfill_s, datetime.now(UTC), load_until(state_dir))
    if window is not None:

        def progress(pr: BackfillProgress) -> None:
            logger.info(
                "backfill hours_done=%d hours=%d readings=%d rate=%.0f",
                pr.hours_done,
                pr.hours,
                pr.readings,
                pr.rate,
            )

        stats = await run_backfill(settings, fleet, window, sl651=sl651, on_progress=progress)
        save_until(state_dir, window.end)
        logger.info(
            "backfill done hours=%.0f readings=%d messages=%d acked=%d seconds=%.1f",
            stats.hours,
            stats.readings,
            stats.messages,
            stats.acked,
            stats.seconds,
        )
    live: list[Coroutine[Any, Any, object]] = [
        run_simulator(settings, fleet=fleet, interval_s=interval_s, duration_s=duration_s)
    ]
    if tcp:
        live.append(
            run_stations(fleet, hj212=hj212, sl651=sl651, interval_s=interval_s, duration_s=duration_s)
        )
    if backfill_s > 0:
        live.append(_remember_published(state_dir, duration_s))
    await asyncio.gather(*live)


async def _remember_published(state_dir: Path, duration_s: float | None, every_s: float = 10.0) -> None:
    """While the live fleet publishes, keep ``backfill.json`` at "published until now"."""
    from simulator.backfill import save_until

    loop = asyncio.get_running_loop()
    end = None if duration_s is None else loop.time() + duration_s
    while end is None or loop.time() < end:
        save_until(state_dir, datetime.now(UTC))
        await asyncio.sleep(every_s if end is None else min(every_s, max(0.0, end - loop.time())))
