"""The load generator's WebSocket framing, checked against gusher's own frame codec."""

from __future__ import annotations

import pytest

from bench import wsframes
from gusher.wire import frames as gusher_frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_server_frames_round_trip_in_any_split(size: int) -> None:
    """Frames of every length class come out whole, however the bytes are split."""
    payload = bytes(i % 251 for i in range(size))
    data = wsframes.encode_server_frame(payload) + wsframes.encode_server_frame(b"next")
    parser = wsframes.FrameParser()
    out = []
    for start in range(0, len(data), 7919):
        out += parser.feed(data[start : start + 7919])
    assert out == [(wsframes.OP_TEXT, payload), (wsframes.OP_TEXT, b"next")]


def test_gusher_frames_parse() -> None:
    """What gusher's encoder writes, the generator reads (text and ping)."""
    data = gusher_frames.encode_text(b'{"a":1}') + gusher_frames.encode_ping(b"p")
    assert wsframes.FrameParser().feed(data) == [(wsframes.OP_TEXT, b'{"a":1}'), (wsframes.OP_PING, b"p")]


@pytest.mark.parametrize("size", [0, 5, 126, 70_000])
def test_client_frames_are_masked_and_valid_for_gusher(size: int) -> None:
    """gusher's server-side reader accepts the generator's masked frames."""
    payload = b"x" * size
    reader = gusher_frames.FrameReader(1 << 20)
    events = reader.feed(wsframes.encode_client_frame(payload))
    assert len(events) == 1 and events[0].data == payload


def test_fragments_are_joined() -> None:
    """A fragmented message is delivered once, joined."""
    first = bytes((0x01, 3)) + b"abc"  # text, not final
    last = bytes((0x80, 2)) + b"de"  # continuation, final
    assert wsframes.FrameParser().feed(first + last) == [(wsframes.OP_TEXT, b"abcde")]


def test_handshake_answer() -> None:
    """A 101 is accepted once complete; anything else is a failure naming the status."""
    answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    assert wsframes.parse_handshake(answer[:20]) == 0
    assert wsframes.parse_handshake(answer + b"\x81\x00") == len(answer)
    with pytest.raises(wsframes.HandshakeError, match="401"):
        wsframes.parse_handshake(b"HTTP/1.1 401 UNAUTHORIZED\r\n\r\n")
