"""The read side shared by the open-data service and the duty console's station board.

An InfluxQL reader (InfluxDB 1.x, 2.x via DBRP, 3.x), the latest-per-station queries, the
registry's stations, the items the public sees (AQI category, water class, level against warning,
rain sums, with the standards' colours) and the station board. It writes nothing and imports no
service: ``opendata/`` and ``alerts/`` both build on it instead of on each other.
"""
