"""A minimal MQTT v5 publisher over a blocking socket, for the benchmark's load generator only.

It speaks just what a QoS 1 publisher needs: CONNECT (+ credentials), PUBLISH, PUBACK
(with v5 reason codes), PINGREQ/PINGRESP and DISCONNECT. Losing the broker (refused or reset
connection, end of stream, no CONNACK, DISCONNECT "server shutting down") raises
:class:`ConnectionLost`, which a publisher survives by reconnecting and resending what was
never acknowledged (:func:`mark_dup`); a refusal (bad credentials, not authorized) raises
plain :class:`LoadError`. The product itself uses gmqtt
(collector) and paho-mqtt (simulator); this exists because the load generator must cost
the machine as little CPU as possible (about 5 us per message against paho's 55 us).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time

CONNECT_TIMEOUT_S = 10.0
_KEEPALIVE_S = 60

# MQTT control packet first bytes (MQTT 5.0, section 2.1.2).
_CONNECT = 0x10
_CONNACK = 0x20
_PUBACK = 0x40
_PINGREQ = b"\xc0\x00"
_PINGRESP = 0xD0
_DISCONNECT = 0xE0
_DISCONNECT_NORMAL = b"\xe0\x00"
_REASONS = {
    0x80: "unspecified error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8B: "server shutting down",
    0x90: "topic name invalid",
    0x93: "receive maximum exceeded",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
}


# DISCONNECT / CONNACK reasons after which a device reconnects: the broker is going away or
# busy, nothing is wrong with the device (MQTT 5.0, 3.14.2.1: 0x88 server unavailable, 0x89
# server busy, 0x8B server shutting down).
_TRANSIENT = frozenset({0x88, 0x89, 0x8B})
_DUP = 0x08  # DUP flag in a PUBLISH's first byte (MQTT 5.0, 3.3.1.1)
_NO_SUBSCRIBERS = 0x10  # PUBACK reason: accepted, but nothing subscribed to the topic


class LoadError(RuntimeError):
    """The load could not be published (broker unreachable, refused, or too slow)."""


class ConnectionLost(LoadError):
    """The connection to the broker failed or broke; a device reconnects and resends."""


def _varint(n: int) -> bytes:
    out = bytearray()
    for _ in range(4):
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)
    raise ValueError("MQTT packet longer than 256 MB")


def _str16(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def encode_connect(client_id: str, username: str | None, password: str | None) -> bytes:
    """CONNECT, clean start, MQTT 5, no properties."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _str16(b"MQTT") + bytes([5, flags]) + struct.pack("!H", _KEEPALIVE_S) + b"\x00"
    body += _str16(client_id.encode())
    body += _str16(username.encode()) if username is not None else b""
    body += _str16(password.encode()) if password is not None else b""
    return _packet(_CONNECT, body)


def encode_publish(topic: str, payload: bytes, packet_id: int, qos: int = 1) -> bytes:
    """PUBLISH with no properties; ``packet_id`` is ignored for QoS 0."""
    pid = struct.pack("!H", packet_id) if qos else b""
    return _packet(0x30 | qos << 1, _str16(topic.encode()) + pid + b"\x00" + payload)


def mark_dup(packet: bytes) -> bytes:
    """The same PUBLISH (same packet id) with the DUP flag set, for a resend."""
    return bytes([packet[0] | _DUP]) + packet[1:]


def _split(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete packets (first byte, body) at the start of ``buf``, and the incomplete rest."""
    packets: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 2 <= len(buf):  # every pass consumes at least 2 bytes
        header = _decode_varint(buf, pos + 1)
        if header is None or header[1] + header[0] > len(buf):
            break  # incomplete packet
        length, body = header
        packets.append((buf[pos], buf[body : body + length]))
        pos = body + length
    return packets, buf[pos:]


def _decode_varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(value, position after it) of the variable byte integer at ``pos``; None if cut off."""
    value = 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        value |= (buf[pos + i] & 0x7F) << (7 * i)
        if not buf[pos + i] & 0x80:
            return value, pos + i + 1
    raise LoadError("malformed MQTT packet from the broker (remaining length)")


def _reason(code: int) -> str:
    return f"0x{code:02x} {_REASONS.get(code, 'error')}"


def count_acks(buf: bytes) -> tuple[int, bytes]:
    """(PUBACKs, unparsed rest) in bytes from the broker; a refused message raises."""
    acks, _, rest = parse_acks(buf)
    return acks, rest


def parse_acks(buf: bytes) -> tuple[int, int, bytes]:
    """(PUBACKs, of which "no matching subscribers", unparsed rest); a refused message raises.

    A PUBACK with reason 0x10 means the broker accepted the message and dropped it because
    nothing was subscribed (MQTT 5.0, 3.4.2.1): a success for the device, lost for the system.
    """
    n = len(buf) // 4
    if n and buf[0 : 4 * n : 4] == b"\x40" * n and buf[1 : 4 * n : 4] == b"\x02" * n:
        return n, 0, buf[4 * n :]  # fast path: all "success, no properties" PUBACKs
    acks = unrouted = 0
    packets, rest = _split(buf)
    for first, body in packets:
        unrouted += first == _PUBACK and len(body) > 2 and body[2] == _NO_SUBSCRIBERS
        if first == _PUBACK and len(body) > 2 and body[2] >= 0x80:
            raise LoadError(f"broker refused a message: {_reason(body[2])}")
        if first == _DISCONNECT:
            code = body[0] if body else 0
            error = ConnectionLost if code in _TRANSIENT else LoadError
            raise error(f"broker disconnected us: {_reason(code)}")
        acks += first == _PUBACK
    return acks, unrouted, rest


# Fixed-size MQTT 5 properties (id: bytes); the others carry 2-byte length prefixes.
_FIXED_PROPS = {2: 4, 0x11: 4, 0x13: 2, 0x18: 4, 0x21: 2, 0x22: 2, 0x23: 2, 0x27: 4}
_FIXED_PROPS |= dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), 1)


def _receive_maximum(props: bytes) -> int:
    """Receive Maximum (property 0x21) from CONNACK properties; 65535 when absent."""
    pos = 0
    while pos < len(props):  # every pass consumes at least one byte
        pid = props[pos]
        pos += 1
        if pid == 0x21:
            return int(struct.unpack_from("!H", props, pos)[0]) or 65535
        if pid in _FIXED_PROPS:
            pos += _FIXED_PROPS[pid]
        elif pid == 0x26:  # user property: two strings
            pos += 2 + struct.unpack_from("!H", props, pos)[0]
            pos += 2 + struct.unpack_from("!H", props, pos)[0]
        else:  # strings and binary data: 2-byte length prefix
            pos += 2 + struct.unpack_from("!H", props, pos)[0]
    return 65535


class Connection:
    """A blocking MQTT v5 publisher socket that counts PUBACKs."""

    def __init__(self, host: str, port: int, client_id: str, auth: tuple[str | None, str | None]):
        try:
            self.sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to MQTT broker {host}:{port}: {exc}") from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)
        self.buf = b""
        self.unrouted = 0  # PUBACKs with reason 0x10 "no matching subscribers"
        try:
            self.send(encode_connect(client_id, *auth))
            self.receive_maximum = self._connack()
        except BaseException:
            self.sock.close()
            raise

    def _connack(self) -> int:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while self._wait(deadline - time.monotonic()):
            packets, self.buf = _split(self.buf + self._recv())
            for first, body in packets:
                if first != _CONNACK or len(body) < 3:
                    raise LoadError(f"expected CONNACK, got packet type 0x{first:02x}")
                if body[1] != 0:
                    error = ConnectionLost if body[1] in _TRANSIENT else LoadError
                    raise error(f"broker refused the connection: {_reason(body[1])}")
                props = _decode_varint(body, 2)
                if props is None:
                    raise LoadError("malformed CONNACK from the broker")
                return _receive_maximum(body[props[1] : props[1] + props[0]])
        raise ConnectionLost(f"no CONNACK within {CONNECT_TIMEOUT_S:.0f} s")

    def _wait(self, timeout: float) -> bool:
        """True when bytes (or EOF) can be read within ``timeout`` seconds."""
        readable, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
        return bool(readable)

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(65536)
        except OSError as exc:
            raise ConnectionLost(f"lost the broker: {exc}") from exc
        if not data:
            raise ConnectionLost("broker closed the connection")
        return data

    def send(self, data: bytes) -> None:
        """Write everything (blocks while the socket buffer is full)."""
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ConnectionLost(f"lost the broker: {exc}") from exc

    def read_acks(self, timeout: float) -> int:
        """PUBACKs that arrived, waiting up to ``timeout`` for the first bytes."""
        if not self._wait(timeout):
            return 0
        acks, unrouted, self.buf = parse_acks(self.buf + self._recv())
        self.unrouted += unrouted
        return acks

    def sync(self, timeout: float) -> None:
        """PINGREQ and wait for PINGRESP: the broker has handled everything sent before."""
        self.send(_PINGREQ)
        deadline = time.monotonic() + timeout
        while self._wait(deadline - time.monotonic()):
            packets, self.buf = _split(self.buf + self._recv())
            if any(first == _PINGRESP for first, _ in packets):
                return
        raise LoadError(f"no PINGRESP within {timeout:.0f} s")

    def close(self) -> None:
        """DISCONNECT (normal) and close the socket."""
        with contextlib.suppress(OSError):
            self.sock.sendall(_DISCONNECT_NORMAL)
        self.sock.close()

    def abort(self) -> None:
        """Close the socket without DISCONNECT (the connection is already broken)."""
        with contextlib.suppress(OSError):
            self.sock.close()
