"""Free loopback ports and waiting for a listener."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

from stationflow.stack.procs import StackError

__all__ = ["free_port", "free_ports", "port_open", "wait_port"]

LOOPBACK = "127.0.0.1"
# A refused connect on loopback returns at once; the timeout only bounds a SYN that hangs
# (a firewall DROP rule), so keep it short enough for a 50 ms polling loop.
CONNECT_TIMEOUT = 0.2
# Polling interval of wait_port: components here come up in 10 ms to a few seconds.
POLL_INTERVAL = 0.05


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free loopback ports (all bound at once, so never equal)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_open(host: str, port: int) -> bool:
    """Return whether something accepts TCP connections on ``host:port`` right now."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float) -> None:
    """Wait until ``host:port`` accepts connections; raise StackError at the deadline."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() >= deadline:
            raise StackError(f"nothing listens on {host}:{port} after {timeout:.1f} s")
        time.sleep(POLL_INTERVAL)
