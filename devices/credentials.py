"""Device broker credentials: password hashing for the registry and Mosquitto dynsec management.

The registry keeps only :func:`hash_password` output; the clear password is returned once by
:meth:`DynsecAdmin.create_device` / :meth:`DynsecAdmin.set_password` and handed to the device.
The broker side (clients, roles, ACLs) lives in :mod:`devices.dynsec` and is re-exported here.
"""

from __future__ import annotations

from devices.dynsec import (
    COLLECTOR_ROLE,
    DEVICE_ROLE,
    ROLE_ACLS,
    SIMULATOR_ROLE,
    DynsecAdmin,
    DynsecError,
    DynsecTimeout,
    new_password,
)
from stationflow.passwords import hash_password, verify_password

__all__ = [
    "COLLECTOR_ROLE",
    "DEVICE_ROLE",
    "ROLE_ACLS",
    "SIMULATOR_ROLE",
    "DynsecAdmin",
    "DynsecError",
    "DynsecTimeout",
    "hash_password",
    "new_password",
    "verify_password",
]
