"""``python -m alerts``: run the alert service (API, duty console, consumer, dispatcher)."""

from __future__ import annotations

import logging

import uvicorn

from stationflow.logs import setup_logging
from stationflow.settings import masked

from .main import create_app
from .settings import AlertsSettings

logger = logging.getLogger(__name__)


def main() -> None:
    """Read settings from the environment and serve until interrupted."""
    settings = AlertsSettings()
    setup_logging(settings.log_level, service="alerts")
    logger.info("starting alert service settings=%s", masked(settings))
    uvicorn.run(create_app(settings), host=settings.alerts_host, port=settings.alerts_port, log_config=None)


if __name__ == "__main__":
    main()
