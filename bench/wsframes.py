"""The client side of RFC 6455, just enough for a load generator — pure.

No socket here: `handshake_request` builds the upgrade request,
`parse_handshake` checks the answer, `FrameParser.feed` turns bytes from the
server into `(opcode, payload)` pairs, `encode_client_frame` masks what the
client sends (§5.3: every client frame must be masked; a constant mask key is
allowed by the framing and keeps the generator cheap).
"""

from __future__ import annotations

import base64
import os
import struct

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_MASK = b"\x11\x22\x33\x44"
_MASK_INT = int.from_bytes(_MASK * 2, "big")


class HandshakeError(Exception):
    """The server answered the upgrade with something else than 101."""


def handshake_request(host: str, port: int, path: str) -> bytes:
    """A GET that asks for a WebSocket upgrade, without compression."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def parse_handshake(buffer: bytes) -> int:
    """Length of a complete 101 answer at the start of `buffer`, 0 while incomplete.

    Raises:
        HandshakeError: the status line is not 101 (its first line is the message).
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > 65536:
            raise HandshakeError("handshake answer over 64 KB")
        return 0
    status = buffer[: buffer.find(b"\r\n")]
    if b" 101 " not in status + b" ":
        raise HandshakeError(status.decode("latin-1")[:200])
    return end + 4


def _mask(payload: bytes) -> bytes:
    """XOR with the constant mask, eight bytes at a time via one big integer."""
    if not payload:
        return payload
    n = len(payload)
    key = (_MASK * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def encode_client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A final, masked client frame."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    return header + _MASK + _mask(payload)


def encode_server_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """An unmasked final frame, as a server sends it (used by the limit baseline)."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return struct.pack("!BB", first, n) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


class FrameParser:
    """Splits the server's byte stream into frames; fragments are joined."""

    __slots__ = ("_buf", "_fragment_op", "_fragments")

    def __init__(self) -> None:
        self._buf = b""
        self._fragments: list[bytes] = []
        self._fragment_op = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Every complete `(opcode, payload)` in what arrived so far."""
        buf = self._buf + data if self._buf else data
        out: list[tuple[int, bytes]] = []
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, start = b1 & 0x7F, pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = struct.unpack_from("!H", buf, pos + 2)[0], pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = struct.unpack_from("!Q", buf, pos + 2)[0], pos + 10
            if b1 & 0x80:  # a masked server frame is a protocol error; unmask anyway
                start += 4
            end = start + length
            if end > size:
                break
            payload = buf[start:end]
            if b1 & 0x80:
                payload = bytes(c ^ buf[start - 4 + (i % 4)] for i, c in enumerate(payload))
            pos = end
            self._collect(b0, payload, out)
        self._buf = buf[pos:]
        return out

    def _collect(self, b0: int, payload: bytes, out: list[tuple[int, bytes]]) -> None:
        opcode, final = b0 & 0x0F, b0 & 0x80
        # Control frames may sit between fragments (§5.4); whole messages pass straight on.
        if opcode >= 0x8 or (final and opcode and not self._fragments):
            out.append((opcode, payload))
        else:
            if opcode:
                self._fragment_op = opcode
            self._fragments.append(payload)
            if final:
                out.append((self._fragment_op, b"".join(self._fragments)))
                self._fragments = []
