"""``python -m devices``: run the registry API with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from stationflow.logs import setup_logging
from stationflow.settings import masked

from .main import create_app
from .settings import RegistrySettings

logger = logging.getLogger(__name__)


def main() -> None:
    """Read settings from the environment and serve until interrupted."""
    settings = RegistrySettings()
    setup_logging(settings.log_level, service="registry")
    logger.info("starting registry settings=%s", masked(settings))
    uvicorn.run(
        create_app(settings), host=settings.registry_host, port=settings.registry_port, log_config=None
    )


if __name__ == "__main__":
    main()
