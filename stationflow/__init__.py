"""stationflow: shared wire contracts, settings, the CLI and the embedded local stack."""

__version__ = "0.1.0"
