"""Settings of the open-data service (env prefix ``STATIONFLOW_OPENDATA_``)."""

from __future__ import annotations

from pydantic import Field

from stationflow.settings import CommonSettings

__all__ = ["OpendataSettings"]


class OpendataSettings(CommonSettings):
    """Listener, rate limit, cache and registry of the public read-only API (InfluxDB: common settings)."""

    opendata_host: str = "127.0.0.1"
    opendata_port: int = 8070
    # Token bucket per client IP: refilled at rate_per_minute, holding at most burst requests.
    opendata_rate_per_minute: float = Field(default=120.0, gt=0)
    opendata_burst: int = Field(default=30, ge=1)
    # Answers are kept this long per path + query (0 turns the cache off).
    opendata_cache_ttl_s: float = Field(default=5.0, ge=0)
    opendata_cache_size: int = Field(default=1024, ge=1)
    # Peers (exact IPs) whose X-Forwarded-For names the client; others are the client themselves.
    opendata_trusted_proxies: list[str] = Field(default_factory=list)
    opendata_query_timeout_s: float = Field(default=10.0, gt=0)
    # Follow the registry topic (public stations); off only in tests of the HTTP layer.
    opendata_registry: bool = True
