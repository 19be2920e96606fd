"""The simulated station fleet: device-side programs, independent of the registry and the collectors.

``fleet`` holds the physical models (air, water, river, storm, cold chain), ``mqtt`` runs the
JSON / SenML / HJ 212-over-MQTT devices, ``hj212`` and ``sl651`` run TCP stations that speak the
national protocols to the center.
"""
