"""RFC 6455 frames: encode server frames, decode client frames — pure.

No socket is touched here: bytes go into `FrameReader.feed`, messages come out;
`encode_*` return the bytes to write. The fan-out builds one text frame per
message and writes the same bytes to every subscriber, so framing costs once
per worker, not once per connection (FACTS: wsproto spends ~5.6 µs per send).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

from gusher.errors import ProtocolError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# Close codes (RFC 6455 §7.4.1) used by gusher.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013

_MAX_CONTROL_PAYLOAD = 125
# A message may come in at most max_message_size / FRAGMENT_BYTES fragments
# (1,024 at the default 64 KiB): each one held costs a list slot and a bytes
# object whatever its size. Bounding only the payload let millions of empty
# continuation frames (6 bytes each on the wire) grow a worker by 117 MB
# (issue 17).
FRAGMENT_BYTES = 64
# Close codes a peer may send (RFC 6455 §7.4.1/§7.4.2).
_RESERVED_CLOSE_CODES = frozenset({1004, 1005, 1006, 1015})


def _header(opcode: int, length: int) -> bytes:
    """The header of an unmasked, final server frame carrying `length` bytes."""
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def encode_text(payload: bytes) -> bytes:
    """A final text frame; `payload` must already be valid UTF-8."""
    return _header(OP_TEXT, len(payload)) + payload


def encode_ping(payload: bytes = b"") -> bytes:
    """A Ping frame (payload at most 125 bytes)."""
    return _header(OP_PING, len(payload)) + payload


def encode_pong(payload: bytes) -> bytes:
    """A Pong frame echoing a Ping's payload."""
    return _header(OP_PONG, len(payload)) + payload


def encode_close(code: int, reason: str = "") -> bytes:
    """A Close frame; the reason is truncated to fit the 125-byte limit."""
    body = struct.pack("!H", code) + reason.encode("utf-8")[: _MAX_CONTROL_PAYLOAD - 2]
    return _header(OP_CLOSE, len(body)) + body


@dataclass(frozen=True, slots=True)
class TextMessage:
    """A complete text message; `data` is the UTF-8 bytes, already validated."""

    data: bytes


@dataclass(frozen=True, slots=True)
class BinaryMessage:
    """A complete binary message."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A Ping the server must answer with a Pong carrying `payload`."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A Pong (an answer to our keep-alive Ping, or unsolicited)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The client's Close frame; `code` is 1005 when it carried none."""

    code: int
    reason: str


Event = Union[TextMessage, BinaryMessage, Ping, Pong, Close]  # noqa: UP007 - a runtime alias on 3.10


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR `payload` with the 4-byte `mask` (whole-int XOR: fast in CPython)."""
    if not payload:
        return payload
    length = len(payload)
    repeated = (mask * (length // 4 + 1))[:length]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(length, "little")


def _parse_close(body: bytes) -> Close:
    """Validate a Close frame's body (RFC 6455 §5.5.1, §7.4)."""
    if not body:
        return Close(1005, "")
    if len(body) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte body")
    (code,) = struct.unpack("!H", body[:2])
    if code < 1000 or code in _RESERVED_CLOSE_CODES or 1016 <= code < 3000 or code >= 5000:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = body[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "close reason is not UTF-8") from None
    return Close(code, reason)


class FrameReader:
    """Turns the bytes a client sends into complete messages and control frames.

    Holds only what a partial frame or a fragmented message needs, so an idle
    connection's reader is three empty slots. Every violation raises
    `ProtocolError` with the close code RFC 6455 prescribes.
    """

    __slots__ = ("_buffer", "_fragment_opcode", "_fragments", "_fragments_size", "max_message_size")

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._buffer = b""
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0
        self._fragment_opcode = 0

    @property
    def is_midway(self) -> bool:
        """Whether part of a frame or of a fragmented message is held."""
        return bool(self._buffer) or self._fragments is not None

    def feed(self, data: bytes) -> list[Event]:
        """Consume `data`; return the events it completes, in order.

        Raises:
            ProtocolError: the stream broke the protocol or a size limit.
        """
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        offset = 0
        end = len(buffer)
        while True:
            parsed = self._parse_frame(buffer, offset, end)
            if parsed is None:
                break
            offset, event = parsed
            if event is not None:
                events.append(event)
                if isinstance(event, Close):
                    offset = end  # nothing after a Close frame counts
                    break
        self._buffer = buffer[offset:] if offset < end else b""
        return events

    def _parse_frame(self, buf: bytes, offset: int, end: int) -> tuple[int, Event | None] | None:
        """Parse one frame at `offset`; None when it is not complete yet."""
        if end - offset < 2:
            return None
        first, second = buf[offset], buf[offset + 1]
        fin, opcode = first & 0x80, first & 0x0F
        if first & 0x70:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension negotiated)")
        if not second & 0x80:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        length = second & 0x7F
        pos = offset + 2
        if length == 126:
            if end - pos < 2:
                return None
            (length,) = struct.unpack_from("!H", buf, pos)
            pos += 2
        elif length == 127:
            if end - pos < 8:
                return None
            (length,) = struct.unpack_from("!Q", buf, pos)
            pos += 8
        self._check_frame(opcode, fin, length)
        if end - pos < 4 + length:
            return None
        mask = buf[pos : pos + 4]
        payload = _unmask(buf[pos + 4 : pos + 4 + length], mask)
        return pos + 4 + length, self._complete(opcode, fin, payload)

    def _check_frame(self, opcode: int, fin: int, length: int) -> None:
        """Reject a frame from its header alone, before buffering its payload."""
        if opcode >= OP_CLOSE:
            if opcode > OP_PONG:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if not fin or length > _MAX_CONTROL_PAYLOAD:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "control frames must be final and short")
            return
        if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY):
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if opcode == OP_CONTINUATION and self._fragments is None:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message")
        if opcode != OP_CONTINUATION and self._fragments is not None:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message before the last one ended")
        if self._fragments_size + length > self.max_message_size:
            raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, f"message over {self.max_message_size} bytes")
        if self._fragments is not None and len(self._fragments) >= self.max_message_size // FRAGMENT_BYTES:
            limit = self.max_message_size // FRAGMENT_BYTES
            raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, f"message in more than {limit} fragments")

    def _complete(self, opcode: int, fin: int, payload: bytes) -> Event | None:
        """Turn one frame into an event, assembling fragmented messages."""
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if opcode == OP_CLOSE:
            return _parse_close(payload)
        if not fin:
            if self._fragments is None:
                self._fragments, self._fragment_opcode = [], opcode
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            return None
        if self._fragments is not None:
            self._fragments.append(payload)
            payload, opcode = b"".join(self._fragments), self._fragment_opcode
            self._fragments, self._fragments_size = None, 0
        if opcode == OP_BINARY:
            return BinaryMessage(payload)
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(CLOSE_INVALID_PAYLOAD, "text message is not valid UTF-8") from None
        return TextMessage(payload)
