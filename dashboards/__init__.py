"""Grafana dashboards as code: Python builders → ``grafana/dashboards/*.json``.

One module per dashboard (``air``, ``water``, ``flood``, ``coldchain``, ``health``,
``pipeline``), shared query and panel helpers (``influxql``, ``panels``, ``variables``), and
``render`` which writes or checks the committed JSON (``python -m dashboards [--check]``).
Built with ``grafana-foundation-sdk``; the SDK has no InfluxDB query type, so ``influxql``
adds one (raw InfluxQL targets and annotation queries). Every panel query is InfluxQL, so
the same dashboards run on InfluxDB 1.x, 2.x (DBRP mapping) and 3.x; the pipeline dashboard
is PromQL over the services' metrics.
"""
