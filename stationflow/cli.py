"""The ``stationflow`` command: run the local pipeline, benchmark it, or run one service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help=(
        "stationflow: live environmental, hydrological and cold-chain readings — MQTT in, "
        "Kafka + Faust in the middle (analytics and warning rules), InfluxDB out, and alerts "
        "to the people on duty.\n\n"
        "Services read their settings from STATIONFLOW_* environment variables "
        "(e.g. STATIONFLOW_KAFKA_BOOTSTRAP, STATIONFLOW_MQTT_HOST, STATIONFLOW_INFLUX_URL); "
        "see README.md for the full list."
    ),
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def up(
    state_dir: Annotated[
        Path, typer.Option(help="Where brokers, database and logs keep their state.")
    ] = Path(".state"),
    mqtt_port: Annotated[int, typer.Option(help="MQTT listener (Mosquitto).")] = 1883,
    kafka_port: Annotated[int, typer.Option(help="Kafka API listener (Tansu).")] = 9092,
    influx_port: Annotated[int, typer.Option(help="InfluxDB HTTP API.")] = 8086,
    ingest_metrics_port: Annotated[int, typer.Option(help="Collector's Prometheus endpoint.")] = 9461,
    streams_metrics_port: Annotated[
        int,
        typer.Option(
            help="The first stream worker's Prometheus endpoint (further workers get free ports, "
            "listed at start)."
        ),
    ] = 9462,
    registry_port: Annotated[int, typer.Option(help="Device registry REST API.")] = 8080,
    alerts_port: Annotated[int, typer.Option(help="Alert service: REST API and duty console.")] = 8090,
    opendata_port: Annotated[
        int, typer.Option(help="Open-data service: public map page and read-only API (no key).")
    ] = 8070,
    hj212_port: Annotated[
        int | None,
        typer.Option(help="HJ 212 stations connect here (default: STATIONFLOW_HJ212_PORT, else 9212)."),
    ] = None,
    sl651_port: Annotated[
        int | None,
        typer.Option(help="SL 651 RTUs connect here (default: STATIONFLOW_SL651_PORT, else 9651)."),
    ] = None,
    tcp_metrics_port: Annotated[
        int | None,
        typer.Option(help="TCP collector's /metrics (default: STATIONFLOW_TCP_METRICS_PORT, else 9464)."),
    ] = None,
    tcp_bind: Annotated[
        str,
        typer.Option(help="Where the TCP collector listens; 0.0.0.0 lets stations on the network connect."),
    ] = "127.0.0.1",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Stream worker processes sharing the partitions (default: one per core, at most one "
            "per partition).",
        ),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between messages of each simulated device.")] = 5.0,
    simulate: Annotated[bool, typer.Option(help="Run the simulated fleet.")] = True,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    backfill: Annotated[
        str | None,
        typer.Option(
            help="History the simulated fleet publishes first, e.g. 48h, 90m, 0 = none "
            "(default: STATIONFLOW_BACKFILL, else 48h; a restart fills only the gap)."
        ),
    ] = None,
) -> None:
    """Run the whole pipeline locally (no Docker) with a simulated fleet; Ctrl-C stops it."""
    from ingest.tcp.settings import TcpSettings
    from simulator.backfill import parse_duration
    from simulator.settings import SimulatorSettings
    from stationflow.stack.sizing import default_workers
    from stationflow.stack.up import run_up

    tcp = TcpSettings()
    try:
        backfill_s = parse_duration(backfill or SimulatorSettings().backfill or "48h")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--backfill") from exc

    raise typer.Exit(
        run_up(
            state_dir=state_dir,
            ports={
                "mqtt": mqtt_port,
                "kafka": kafka_port,
                "influx": influx_port,
                "ingest_metrics": ingest_metrics_port,
                "streams_metrics": streams_metrics_port,
                "registry": registry_port,
                "alerts": alerts_port,
                "opendata": opendata_port,
                "hj212": tcp.hj212_port if hj212_port is None else hj212_port,
                "sl651": tcp.sl651_port if sl651_port is None else sl651_port,
                "tcp_metrics": tcp.tcp_metrics_port if tcp_metrics_port is None else tcp_metrics_port,
            },
            interval_s=interval,
            simulate=simulate,
            duration_s=duration,
            tcp_bind=tcp_bind,
            backfill_s=backfill_s,
            workers=workers or default_workers(),
        )
    )


bench_app = typer.Typer(
    no_args_is_help=False,
    add_completion=False,
)
app.add_typer(bench_app, name="bench")


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    readings: Annotated[int, typer.Option(help="Readings to push through the pipeline.")] = 200_000,
    per_message: Annotated[int, typer.Option(help="Readings per MQTT message.")] = 5,
    publishers: Annotated[int, typer.Option(help="Load generator processes.")] = 2,
    devices: Annotated[int, typer.Option(help="Distinct simulated devices.")] = 200,
    collectors: Annotated[int, typer.Option(help="Collector processes (MQTT shared subscription).")] = 1,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Faust worker processes sharing the partitions (default: as `stationflow up`, one "
            "per core, at most one per partition).",
        ),
    ] = None,
    split_analytics: Annotated[
        bool,
        typer.Option(
            "--split-analytics",
            help="With --analytics or --alerts: run each worker as two processes, the raw stage in one "
            "and the analytics in the other (their own core and GIL each).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    analytics: Annotated[
        bool,
        typer.Option(
            "--analytics",
            help="Run twice, stream analytics off and on, and compare readings/s "
            "(with analytics: until the analytics agent has caught up).",
        ),
    ] = False,
    durable: Annotated[
        bool,
        typer.Option(
            "--durable",
            help="Run the stack as `stationflow up` does: Mosquitto persistence and the Kafka state "
            "archive (changelogs and dead letters mirrored to disk), to measure what durability costs.",
        ),
    ] = False,
    alerts: Annotated[
        bool,
        typer.Option(
            "--alerts",
            help="Measure alert latency (MQTT publish of a reading over a flood threshold → signed "
            "webhook received) under the background load; reports alert_latency_ms p50/p95/p99.",
        ),
    ] = False,
    probes: Annotated[
        int, typer.Option(help="With --alerts: threshold crossings to time, one per second.")
    ] = 30,
    background: Annotated[
        int | None,
        typer.Option(
            help="With --alerts: background load in readings/s while the probes run (default 2000)."
        ),
    ] = None,
    rate: Annotated[int | None, typer.Option(hidden=True, help="Old name of --background.")] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline",
            help="First run a plain paho-mqtt → InfluxDB bridge (5,000 points or 1 s per write, no Kafka) "
            "on its own private Mosquitto + InfluxDB under the same load; report baseline_readings_per_s "
            "and ratio_to_baseline for analytics off (and on, with --analytics).",
        ),
    ] = False,
    runs: Annotated[
        int,
        typer.Option(
            min=1,
            help="Repeat the sequence (baseline, off, on) this many times, alternating; report medians.",
        ),
    ] = 1,
) -> None:
    """Push N readings MQTT → Kafka → Faust → InfluxDB on a private stack and measure it.

    Reports readings/s (first publish → last reading visible in InfluxDB), publish → visible
    latency percentiles from probe readings, peak RSS per process, and lost readings. Without
    --analytics the worker runs with analytics off (the spine alone).

    `stationflow bench hj212` measures the HJ 212 TCP collector instead (see its --help).
    """
    if ctx.invoked_subcommand is not None:
        return  # a sub-bench (hj212) runs with its own options
    from stationflow.stack.sizing import default_workers

    if alerts:
        from stationflow.bench.alertbench import run_alert_bench

        raise typer.Exit(
            run_alert_bench(
                rate=background if background is not None else rate if rate is not None else 2000,
                per_message=per_message,
                devices=devices,
                probes=probes,
                as_json=as_json,
                split_analytics=split_analytics,
                workers=workers or default_workers(),
            )
        )
    from stationflow.bench.runner import run_bench

    raise typer.Exit(
        run_bench(
            readings=readings,
            per_message=per_message,
            publishers=publishers,
            devices=devices,
            as_json=as_json,
            collectors=collectors,
            workers=workers or default_workers(),
            split_analytics=split_analytics,
            analytics=analytics,
            durable=durable,
            baseline=baseline,
            runs=runs,
        )
    )


@bench_app.command("hj212")
def bench_hj212(
    connections: Annotated[
        int, typer.Option(help="HJ 212 stations, each on its own TCP connection, all open at once.")
    ] = 1000,
    minutes: Annotated[int, typer.Option(help="Minute records (CN 2051) each station uploads.")] = 10,
    steady: Annotated[
        int,
        typer.Option(
            help="Of those, how many each station sends paced (one per --steady-interval) after "
            "uploading the others back to back as a backlog."
        ),
    ] = 0,
    steady_interval: Annotated[float, typer.Option(help="Seconds between paced records.")] = 1.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """N concurrent HJ 212 stations → TCP collector → Kafka → Faust → InfluxDB, measured.

    Starts a private stack (Tansu, InfluxDB, the TCP collector, the stream worker), registers
    N stations (MN HJBENCH00001…, password hashed), opens N TCP connections and keeps them all
    open; each station uploads its minute records (6 pollutants, Flag=5) one frame at a time,
    waiting for the 9014 acknowledgement (resending after 10 s, 3 retries) before the next.
    Then it waits until every reading is in InfluxDB.

    Reports connections, frames sent/acknowledged, frames/s, ack latency p50/p99, readings
    stored vs sent, and CPU seconds, CPU µs per frame and peak RSS of the collector and the
    worker. Exits 1, saying why, if a frame was never acknowledged or a reading is missing.
    """
    from stationflow.bench.hj212bench import run_hj212_bench

    raise typer.Exit(
        run_hj212_bench(
            connections=connections,
            minutes=minutes,
            steady=steady,
            steady_interval_s=steady_interval,
            as_json=as_json,
        )
    )


@bench_app.command("analytics")
def bench_analytics(
    devices: Annotated[
        int, typer.Option(min=1, help="Devices measured (each one update per message).")
    ] = 500,
    hours: Annotated[
        int,
        typer.Option(
            min=0,
            help="Hours of minute data each device holds before it is measured "
            "(0: new devices, as in the pipeline bench's short runs).",
        ),
    ] = 48,
    metrics: Annotated[int, typer.Option(min=1, max=64, help="Readings per message (metrics).")] = 6,
    messages: Annotated[
        int,
        typer.Option(
            min=1,
            help="Messages measured per device (60 at the default interval: an hour, so each "
            "device closes one hour, as a station does once every 60 messages; a few minutes "
            "miss that cost).",
        ),
    ] = 60,
    interval: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Seconds between a device's measured messages (60: a station reporting once a "
            "minute; 0.001: the pipeline bench's load, a device's messages 1 ms apart).",
        ),
    ] = 60.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """CPU per device update once a device's windows are full (the analytics code alone, no I/O).

    The pipeline bench runs for seconds, so its devices hold minutes of windows; a station that
    has reported for two days holds the open hour's minute slots and 48 closed hours of every
    metric. This warms a few devices through --hours of minute data, copies their state to
    --devices devices, then times --messages more minutes for each: the table value decoded,
    the readings applied (windows, hours, signals, rules, derived lines), the value encoded.
    Reports CPU µs per update for each step and the mean table value size.
    """
    from stationflow.bench.statebench import run_state_bench

    raise typer.Exit(
        run_state_bench(
            devices=devices,
            hours=hours,
            metrics=metrics,
            messages=messages,
            interval_s=interval,
            as_json=as_json,
        )
    )


@bench_app.command("opendata")
def bench_opendata(
    url: Annotated[
        str | None,
        typer.Option(
            help="A running open-data service to load (default: start a private one on a private stack)."
        ),
    ] = None,
    requests: Annotated[
        int, typer.Option(help="Requests to send (the loop is bounded by this and --seconds).")
    ] = 5000,
    seconds: Annotated[float, typer.Option(help="Stop sending after this long at the latest.")] = 60.0,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 4,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Load the open-data API from a second process and measure it.

    Without --url: starts InfluxDB and Tansu on a private state dir, puts public air, water,
    gauge and rain stations (and hidden ones) on the registry topic, writes their latest AQI,
    class, level and rainfall, and starts the open-data service three times: with the rate limit
    raised (the throughput run), the same with the cache off (the uncached run, a fifth of the
    requests) and with the default limit (to show the 429s and Retry-After).
    A separate process sends the requests, cycling over the endpoints and formats.

    Reports requests/s, latency p50/p99, errors, cache hits, and for the limited run how many
    answers were 429 and their Retry-After. Exits 1 if any request failed or a hidden station
    appeared.
    """
    from stationflow.bench.opendatabench import run_opendata_bench

    raise typer.Exit(
        run_opendata_bench(
            url=url, requests=requests, seconds=seconds, concurrency=concurrency, as_json=as_json
        )
    )


@app.command()
def ingest() -> None:
    """Run the MQTT collector (settings from STATIONFLOW_* variables)."""
    from ingest.__main__ import main

    main()


@app.command()
def tcp() -> None:
    """Run the TCP collector: HJ 212 stations (port 9212) and SL 651 RTUs (port 9651).

    Settings from STATIONFLOW_* variables: STATIONFLOW_HJ212_PORT, STATIONFLOW_SL651_PORT (0 turns a
    listener off), STATIONFLOW_TCP_BIND, STATIONFLOW_TCP_METRICS_PORT, the Kafka settings.
    """
    from ingest.tcp.__main__ import main

    main()


@app.command()
def streams() -> None:
    """Run one Faust stream worker (settings from STATIONFLOW_* variables)."""
    from streams.__main__ import main

    main()


@app.command()
def registry() -> None:
    """Run the device registry REST API (settings from STATIONFLOW_* / STATIONFLOW_REGISTRY_*)."""
    from devices.__main__ import main

    main()


@app.command()
def alerts() -> None:
    """Run the alert service: lifecycle, escalation, notifications, REST API and duty console
    (settings from STATIONFLOW_* / STATIONFLOW_ALERTS_*)."""
    from alerts.__main__ import main

    main()


@app.command("broker-init")
def broker_init() -> None:
    """Provision the MQTT broker for compose: roles and the collector, simulator and alerts accounts.

    Logs in to Mosquitto's dynamic-security plugin (STATIONFLOW_MQTT_HOST/PORT) as
    STATIONFLOW_BROKER_ADMIN_USERNAME / STATIONFLOW_BROKER_ADMIN_PASSWORD and applies
    STATIONFLOW_BROKER_{COLLECTOR,SIMULATOR,ALERTS}_PASSWORD, as `stationflow up` does; idempotent.
    """
    from stationflow.stack.brokerinit import run_broker_init

    raise typer.Exit(run_broker_init())


@app.command()
def opendata() -> None:
    """Run the open-data service: public map page and read-only API, rate-limited and cached
    (settings from STATIONFLOW_* / STATIONFLOW_OPENDATA_*; port 8070)."""
    from opendata.__main__ import main

    main()


@app.command()
def simulate(
    interval: Annotated[float, typer.Option(help="Seconds between messages of each device.")] = 5.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    backfill: Annotated[
        str | None,
        typer.Option(
            help="Publish this much history first, e.g. 48h (default: STATIONFLOW_BACKFILL, else 0)."
        ),
    ] = None,
    register: Annotated[
        bool,
        typer.Option(
            help="Register the fleet first through the registry API "
            "(STATIONFLOW_REGISTRY_URL, STATIONFLOW_REGISTRY_ADMIN_KEY)."
        ),
    ] = False,
) -> None:
    """Publish the simulated fleet to the MQTT broker in STATIONFLOW_MQTT_HOST/PORT.

    With STATIONFLOW_SIMULATOR_HJ212 / STATIONFLOW_SIMULATOR_SL651 (host:port of the TCP
    collector) the HJ 212 loggers and the SL 651 RTU run too.
    """
    from simulator.backfill import parse_duration
    from simulator.settings import SimulatorSettings
    from stationflow.stack.up import run_simulate

    try:
        backfill_s = parse_duration(backfill or SimulatorSettings().backfill or "0")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--backfill") from exc
    raise typer.Exit(
        run_simulate(interval_s=interval, duration_s=duration, backfill_s=backfill_s, register=register)
    )


@app.command()
def deadletters(
    device: Annotated[str | None, typer.Option(help="Only this device's refused messages.")] = None,
    limit: Annotated[int, typer.Option(help="Show the last N.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new ones.")] = False,
) -> None:
    """Show messages the pipeline refused, with the reason (for device integrators).

    Reads the dead-letter topic of the Kafka broker in STATIONFLOW_KAFKA_BOOTSTRAP
    (default 127.0.0.1:9092, which is where `stationflow up` runs it).
    """
    from stationflow.deadletters import show_deadletters

    show_deadletters(device=device, limit=limit, follow=follow)


@app.command()
def rejected(
    device: Annotated[str | None, typer.Option(help="Only this device's refused points.")] = None,
    limit: Annotated[int, typer.Option(help="Show the last N.")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per point instead of a table.")
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="State directory of the workers (default: STATIONFLOW_STATE_DIR or .state)."),
    ] = None,
) -> None:
    """Show points InfluxDB refused, with the device and InfluxDB's reason.

    The worker stores every other point of such a batch and keeps exactly the refused ones
    under <state dir>/streams/<n>/spool/rejected/ (bounded, oldest discarded first).
    """
    from stationflow.rejectedpoints import show_rejected

    show_rejected(state_dir=state_dir, device=device, limit=limit, as_json=as_json)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
