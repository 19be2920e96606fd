"""The open-data load generator: a bounded loop of HTTP requests, run in its own process.

``python -m stationflow.bench.opendataload URL --requests N --seconds S --concurrency C
[--forbid ID …]`` sends at most N requests (and stops after S seconds), cycling over the
endpoints and formats with ``concurrency`` in flight, and prints one JSON report: requests,
elapsed, requests/s, latency percentiles, statuses, cache hits, the Retry-After values of 429
answers and any forbidden (hidden) station id seen in a body.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["PATHS", "LoadResult", "percentile", "run_load"]

PATHS: tuple[str, ...] = (
    "/api/v1/aqi/latest",
    "/api/v1/stations",
    "/api/v1/water/latest",
    "/api/v1/hydro/levels",
    "/api/v1/rainfall",
    "/api/v1/aqi/latest?format=geojson",
    "/api/v1/aqi/latest?format=csv",
    "/api/v1/stations?format=geojson",
    "/api/v1/water/latest?format=csv",
    "/api/v1/hydro/levels?format=geojson",
)


@dataclass
class LoadResult:
    """What the loop saw."""

    requests: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    cache_hits: int = 0
    retry_after: Counter[str] = field(default_factory=Counter)
    forbidden_seen: set[str] = field(default_factory=set)

    def report(self) -> dict[str, Any]:
        """The JSON report."""
        lat = sorted(self.latencies_ms)
        return {
            "requests": self.requests,
            "elapsed_s": round(self.elapsed_s, 3),
            "requests_per_s": round(self.requests / self.elapsed_s, 1) if self.elapsed_s > 0 else None,
            "p50_ms": percentile(lat, 0.50),
            "p99_ms": percentile(lat, 0.99),
            "max_ms": round(lat[-1], 2) if lat else None,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": len(self.errors),
            "error_samples": self.errors[:5],
            "cache_hits": self.cache_hits,
            "retry_after": dict(self.retry_after),
            "forbidden_seen": sorted(self.forbidden_seen),
        }


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(q * len(sorted_values) + 0.5)))
    return round(sorted_values[rank - 1], 2)


async def run_load(
    url: str,
    *,
    requests: int,
    seconds: float,
    concurrency: int,
    paths: tuple[str, ...] = PATHS,
    forbid: tuple[str, ...] = (),
) -> LoadResult:
    """Send at most ``requests`` requests within ``seconds``; every loop is bounded by both."""
    result = LoadResult()
    cycle = itertools.cycle(paths)
    started = time.perf_counter()
    deadline = started + seconds
    issued = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url.rstrip("/"), limits=limits, timeout=10.0, trust_env=False
    ) as http:

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                path = next(cycle)
                t0 = time.perf_counter()
                try:
                    answer = await http.get(path)
                except httpx.HTTPError as exc:
                    result.errors.append(f"{path}: {exc!r}")
                    continue
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
                result.requests += 1
                result.statuses[answer.status_code] += 1
                if answer.headers.get("x-cache") == "hit":
                    result.cache_hits += 1
                if answer.status_code == 429:
                    result.retry_after[answer.headers.get("retry-after", "missing")] += 1
                elif answer.status_code != 200:
                    result.errors.append(f"{path}: HTTP {answer.status_code} {answer.text[:120]}")
                text = answer.text
                result.forbidden_seen.update(f for f in forbid if f in text)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: print the JSON report on stdout."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--forbid", nargs="*", default=[])
    args = parser.parse_args(argv)
    result = asyncio.run(
        run_load(
            args.url,
            requests=args.requests,
            seconds=args.seconds,
            concurrency=args.concurrency,
            forbid=tuple(args.forbid),
        )
    )
    sys.stdout.write(json.dumps(result.report()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
