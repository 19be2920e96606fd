"""paho-mqtt driven by the asyncio event loop through its socket callbacks (no thread).

Running paho on the loop lets the collector hand messages to the Kafka producer without
crossing threads, and lets it *pause reading the socket* when it falls behind: the broker
then holds the backlog (bounded by the MQTT v5 Receive Maximum for QoS 1), instead of an
unbounded queue in our process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import paho.mqtt.client as paho

__all__ = ["AsyncioPaho"]

logger = logging.getLogger(__name__)

# paho needs loop_misc() about once a second for keepalive pings and retries.
MISC_INTERVAL_S = 1.0


class AsyncioPaho:
    """Attach a paho client to an asyncio loop; ``pause()``/``resume()`` reading."""

    def __init__(self, client: paho.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self._sock: socket.socket | None = None
        self._paused = False
        self._misc: asyncio.Task[None] | None = None
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    @property
    def paused(self) -> bool:
        """True while reading from the broker is paused for backpressure."""
        return self._paused

    def pause(self) -> None:
        """Stop reading from the socket until ``resume()``."""
        if not self._paused and self._sock is not None:
            self.loop.remove_reader(self._sock)
        self._paused = True

    def resume(self) -> None:
        """Read from the socket again."""
        if self._paused and self._sock is not None:
            self.loop.add_reader(self._sock, self._read)
        self._paused = False

    def _read(self) -> None:
        self.client.loop_read()

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._sock = sock
        if not self._paused:
            self.loop.add_reader(sock, self._read)
        if self._misc is None or self._misc.done():
            self._misc = self.loop.create_task(self._misc_loop(), name="paho-misc")

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
        self._sock = None

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self.loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_writer(sock)

    async def _misc_loop(self) -> None:
        while True:
            if self.client.loop_misc() != paho.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(MISC_INTERVAL_S)

    async def close(self) -> None:
        """Stop the housekeeping task (the caller disconnects the client)."""
        if self._misc is not None:
            self._misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc
            self._misc = None
