"""The simulated station fleet: device-side programs, independent of the registry and the collectors.

* ``fleet``: the physical models (air, water, rain, river, cold chain, hydrological RTU) and
  ``default_fleet`` with one device per protocol (ids, MNs, addresses and passwords documented there);
* ``mqtt``: the MQTT devices (stationflow JSON, SenML packs, HJ 212 frames from a DTU) and
  ``register_fleet`` (the registry API, with each device's protocol link);
* ``hj212`` / ``sl651``: an HJ 212-2017 data logger and an SL 651-2014 RTU on TCP, their frame
  builders (own CRCs, written from the spec, nothing from ``ingest``) and one-frame CLIs
  (``python -m simulator.hj212 --help``, ``python -m simulator.sl651 --help``);
* ``stations``: ``run_stations`` runs the fleet's TCP stations against the center;
* ``link``: what the TCP stations share (counters, station clock, back-off).
"""
