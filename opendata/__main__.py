"""``python -m opendata``: run the open-data service."""

from __future__ import annotations

import logging

import uvicorn

from stationflow.logs import setup_logging
from stationflow.settings import masked

from .main import create_app
from .settings import OpendataSettings

logger = logging.getLogger(__name__)


def main() -> None:
    """Read settings from the environment and serve until interrupted."""
    settings = OpendataSettings()
    setup_logging(settings.log_level, service="opendata")
    logger.info("starting open-data service settings=%s", masked(settings))
    uvicorn.run(
        create_app(settings),
        host=settings.opendata_host,
        port=settings.opendata_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
