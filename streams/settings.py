"""Settings of the Faust stream worker (env prefix ``STATIONFLOW_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from stationflow.kafka import FETCH_MAX_WAIT_MS
from stationflow.settings import CommonSettings

__all__ = ["StreamsSettings"]


class StreamsSettings(CommonSettings):
    """Stream worker settings."""

    streams_app_id: str = "stationflow-streams"
    # Workers of one app share partitions; each needs its own local state (Faust data dir,
    # InfluxDB spool), kept under state_dir/streams/<instance>.
    streams_instance: str = "1"
    # Records per processing batch (one InfluxDB write per batch), and the longest the raw
    # consumer's getmany() waits when nothing was fetched (it returns as soon as records
    # exist, so it adds no latency: a burst forms large batches by itself, because everything
    # that arrived while the previous batch was processed comes in one fetch).
    streams_batch_max: int = 2000
    streams_batch_within_s: float = 0.2
    # A killed worker's partitions move after this long (Faust's default is 60+ s).
    streams_session_timeout_s: float = 10.0
    streams_heartbeat_s: float = 2.0
    streams_commit_interval_s: float = 1.0
    # The raw consumer's fetch long-poll (aiokafka fetch_max_wait_ms). Tansu answers a fetch
    # that found nothing new only when it expires, even when records arrive meanwhile
    # (measured with one producer and one consumer: delivery p50 / p99 of 26 / 56 ms with
    # 100 ms, 134 / 256 ms with 500), so it sets the raw -> clean hop of every alert; a
    # backlog is answered at once whatever it is. Shorter means smaller batches under a
    # steady load, and small batches cost CPU: per 300k readings at 10,000 readings/s from
    # 200 devices (stationflow bench --alerts), the worker spent 13 s with 50 ms, 10-11 s with
    # 200-250 ms and 7-9 s with 500 ms in an earlier design; 2026-12-02, alternating alert
    # benches: 100 ms gave p99 406-502 ms (4 runs) against 502-591 (3 runs) with 500, for
    # 3-6 % more worker CPU.
    streams_fetch_max_wait_ms: int = Field(default=100, ge=1, le=5000)
    # How often Python hands the GIL from one thread to another (sys.setswitchinterval). The
    # worker's event loop runs the raw stage and the analytics; Faust's consumer, which fetches
    # the analytics' records, is a thread of its own; with Python's default of 5 ms one waited
    # up to 5 ms for the GIL after every network wake-up while the other ran. Measured
    # (stationflow bench --analytics, 200 devices, 300k readings, alternating): analytics on
    # 29,260 readings/s with 5 ms, 38,783 and 40,410 with 1 ms.
    streams_switch_interval_ms: float = Field(default=1.0, gt=0, le=100)
    streams_metrics_port: int = 9462  # 0 disables the Prometheus endpoint
    # Loopback by default; 0.0.0.0 in a container, so Prometheus can scrape it (compose).
    streams_metrics_bind: str = "127.0.0.1"
    streams_web_port: int = 6066
    streams_web_enabled: bool = False
    # On-disk buffer for InfluxDB outages (bounded; the overflow is counted and logged).
    streams_spool_max_mb: int = 1024
    # Points InfluxDB refused, kept per sink under <spool>/rejected/ (oldest discarded first,
    # counted and logged) and listed by `stationflow rejected`.
    streams_rejected_max_mb: int = Field(default=64, gt=0)
    streams_dedupe_per_device: int = 64
    # Enrich readings from the device registry (units, calibration, range flags, station
    # tags; unknown / retired devices dead-lettered). Set false only to run the worker
    # without a registry (the benchmark's synthetic devices, some tests of the spine).
    streams_registry: bool = True
    # The raw stage (readings.raw → normalise → InfluxDB + readings.clean). A worker with it
    # off and analytics on is an analytics-only process: on a machine with cores to spare the
    # two stages then run in parallel, each in its own process (``--split-analytics``).
    streams_raw_enabled: bool = True
    # Stream analytics (windows, AQI, water class, rain sums, rules → alerts.events).
    analytics_enabled: bool = True
    # Late readings inside this grace period still count in their hour; later ones are
    # counted as late and left out of the windows.
    analytics_grace_s: float = 300.0
    # Reporting interval assumed for devices without one in the registry.
    analytics_default_interval_s: float = 60.0
    # The ``windows`` point of each device: "hour" writes the 8 h and 24 h sliding means (with
    # GB 3095's validity) when an hour of event time closes (that hour's mean, min and max are
    # its ``hourly`` point); "minute" writes every rolling value (1 h mean / min / max, 8 h and
    # 24 h means) once per device and minute of event time: three fields per metric and minute,
    # three times what a station reporting each minute sends, whose 1 h statistics no dashboard
    # of ours reads (Grafana's moving_average over the readings draws them); "off" writes none
    # (the air dashboard's 24 h means stay empty). The rules read the windows in the worker
    # either way.
    analytics_window_points: Literal["hour", "minute", "off"] = "hour"
    # A device is offline after its expected interval plus this long without data.
    analytics_nodata_grace_s: float = 60.0
    analytics_nodata_check_s: float = 5.0
    # Every this long (and first this long after start) each worker sends the alert service
    # the alerts it holds raised (AlertSync), so alerts whose state was lost get resolved.
    analytics_sync_s: float = 60.0
    # The fetch long-poll of Faust's consumer (readings.clean, analytics.hourly), which Faust
    # hard-codes to 1500 ms (streams.app.WorkerApp): on Tansu a clean record reaching an idle
    # analytics consumer waited up to half of it.
    analytics_fetch_max_wait_ms: int = Field(default=FETCH_MAX_WAIT_MS, ge=1, le=5000)
    # Faust's standby replicas of the analytics tables: with several workers, each also keeps a
    # copy of another's table partitions (reading their changelogs), so a worker that dies is
    # replaced without restoring its partitions from the changelog. Off by default (as Kafka
    # Streams' num.standby.replicas): at 10,000 devices with two workers the standby doubled
    # the analytics' CPU (Faust applies a standby's records one at a time). Set 1 where workers
    # run on separate machines and a fast takeover is worth a second copy of the work.
    analytics_standby_replicas: int = Field(default=0, ge=0)
    analytics_batch_max: int = 1000
    # readings.clean records are bundles of up to 256 kB: a batch is also handed over once its
    # records hold this many bytes (its documents, their states and outputs are in memory at once).
    analytics_batch_max_bytes: int = Field(default=8 << 20, ge=1)
    # An analytics batch is handed over once nothing new arrived for 5 ms (an idle worker
    # analyses a lone reading at once), when it holds analytics_batch_max records or
    # analytics_batch_max_bytes, or at the latest this long after its first record (a steady
    # stream never goes quiet).
    analytics_within_s: float = 0.1
    # A worker running both stages hands its analytics the clean documents its raw stage
    # encoded, so they are not decoded a second time (streams.handoff): at most this many
    # readings held (0: off; the documents are always on readings.clean either way).
    analytics_handoff_max_readings: int = Field(default=200_000, ge=0)
    # Each device's state stays decoded after its update, so the next one need not decode its
    # table value again (streams.livestates): at most about this many MB of them (0: off).
    analytics_live_states_mb: int = Field(default=128, ge=0)

    @property
    def local_dir(self) -> Path:
        """This worker's own state directory."""
        return self.state_dir / "streams" / self.streams_instance
