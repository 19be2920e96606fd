"""Issue 11 Show: the public page of the backfilled ``stationflow up``, in headless Chromium.

Within the two minutes since start the open-data API has the latest AQI of every public air
station; the page then shows every public station on its map (none of the hidden ones), each
air marker in the category colour the API gives (checked in the DOM and in the screenshot's
pixels), switches between Chinese and English, opens a station's 48 h chart with its hourly
points, fits a 375 px phone without horizontal scroll, and logs no console error.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from simulator.places import HIDDEN, PLACES
from tests.integration.backfilled.conftest import BackfilledStack
from tests.integration.public_page_checks import check_public_page, read_api

pytestmark = pytest.mark.integration

# what the simulated fleet keeps from the public: one air station, every cold-chain logger
NEVER_PUBLIC = frozenset({f"st-{d}" for d in HIDDEN} | {f"st-{d}" for d in PLACES if d.startswith("cold")})


def wait_for_every_air_aqi(stack: BackfilledStack) -> None:
    """Within the two minutes: the API has a latest AQI for every public air station."""
    deadline = time.monotonic() + stack.remaining()
    missing: set[str] = {"?"}
    with httpx.Client(base_url=stack.opendata_url, timeout=10) as api:
        while time.monotonic() < deadline:
            try:
                view = read_api(api)
            except httpx.HTTPError:
                time.sleep(1.0)
                continue
            air = {s["station_id"] for s in view.stations if s["kind"] == "air"}
            missing = air - set(view.aqi)
            if air and not missing:
                return
            time.sleep(1.0)
    raise AssertionError(
        f"no latest AQI within two minutes of start for {sorted(missing)}\n{stack.output()[-3000:]}"
    )


def test_the_public_page_shows_every_public_station_in_its_colour(
    backfilled: BackfilledStack, tmp_path: Path
) -> None:
    wait_for_every_air_aqi(backfilled)
    check_public_page(backfilled.opendata_url, tmp_path, hidden=NEVER_PUBLIC, timeout_s=60)
