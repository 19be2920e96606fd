"""Open data for the public: a read-only, rate-limited, cached API (JSON, CSV, GeoJSON) and map page
over InfluxDB and the registry's public stations. ``create_app`` is in :mod:`opendata.main`."""
