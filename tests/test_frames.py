"""RFC 6455 framing (pure): server encoding, client decoding, every violation's close code."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gusher.errors import ProtocolError
from gusher.wire import frames


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    """A frame as a browser sends it (masked)."""
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size, header_len", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_encode_text_uses_the_shortest_length_form(size: int, header_len: int) -> None:
    """Server frames are final, unmasked, with 7/16/64-bit lengths as RFC 6455 §5.2 says."""
    frame = frames.encode_text(b"a" * size)
    assert frame[0] == 0x81
    assert len(frame) == header_len + size
    assert not frame[1] & 0x80


def test_encode_close_truncates_long_reasons() -> None:
    """Close frames stay within the 125-byte control-frame limit."""
    frame = frames.encode_close(1001, "x" * 500)
    assert frame[0] == 0x88 and frame[1] == 125
    assert frame[2:4] == (1001).to_bytes(2, "big")


@given(st.binary(max_size=70000), st.integers(min_value=1, max_value=9000))
@settings(max_examples=60, deadline=None)
def test_binary_roundtrip_in_any_chunking(payload: bytes, chunk: int) -> None:
    """A masked client message fed in arbitrary pieces decodes to the same bytes."""
    wire = client_frame(frames.OP_BINARY, payload)
    reader = frames.FrameReader(max_message_size=1 << 20)
    events = []
    for start in range(0, len(wire), chunk):
        events += reader.feed(wire[start : start + chunk])
        # A connection drops its reader whenever nothing is held midway.
        assert reader.is_midway == (start + chunk < len(wire))
    assert events == [frames.BinaryMessage(payload)]


def test_a_reader_is_midway_between_fragments() -> None:
    """Whole frames leave nothing held; a fragmented message is held until its last frame."""
    reader = frames.FrameReader(1024)
    assert reader.feed(client_frame(frames.OP_PING, b"p")) == [frames.Ping(b"p")]
    assert not reader.is_midway
    assert reader.feed(client_frame(frames.OP_TEXT, b"ab", fin=False)) == []
    assert reader.is_midway
    assert reader.feed(client_frame(frames.OP_CONTINUATION, b"c")) == [frames.TextMessage(b"abc")]
    assert not reader.is_midway


@given(st.text(max_size=500), st.integers(min_value=1, max_value=5))
@settings(max_examples=60, deadline=None)
def test_fragmented_text_reassembles(text: str, pieces: int) -> None:
    """A text message split into continuation frames is reassembled."""
    data = text.encode()
    size = max(1, len(data) // pieces)
    parts = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    wire = b"".join(
        client_frame(frames.OP_TEXT if i == 0 else frames.OP_CONTINUATION, part, fin=i == len(parts) - 1)
        for i, part in enumerate(parts)
    )
    assert frames.FrameReader(1 << 20).feed(wire) == [frames.TextMessage(data)]


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_escape_as_other_errors(junk: bytes) -> None:
    """Any byte stream yields events or a ProtocolError with a valid close code — nothing else."""
    reader = frames.FrameReader(1024)
    try:
        reader.feed(junk)
    except ProtocolError as exc:
        assert exc.close_code in (1002, 1007, 1009)


# Named cases: the frames carry random masks, so their bytes cannot name them (and ids made from
# them would differ between pytest-xdist's workers, which must collect the same tests).
@pytest.mark.parametrize(
    "wire, code",
    [
        pytest.param(client_frame(frames.OP_TEXT, b"\xff"), 1007, id="text-not-utf8"),
        pytest.param(client_frame(frames.OP_TEXT, b"x" * 2000), 1009, id="over-the-size-limit"),
        pytest.param(client_frame(frames.OP_TEXT, b"{}", masked=False), 1002, id="unmasked"),
        pytest.param(client_frame(frames.OP_TEXT, b"{}", rsv=0x40), 1002, id="rsv-bit-set"),
        pytest.param(client_frame(0x3, b""), 1002, id="reserved-data-opcode"),
        pytest.param(client_frame(0xB, b""), 1002, id="reserved-control-opcode"),
        pytest.param(client_frame(frames.OP_CONTINUATION, b"x"), 1002, id="continuation-first"),
        pytest.param(client_frame(frames.OP_PING, b"x", fin=False), 1002, id="fragmented-ping"),
        pytest.param(client_frame(frames.OP_PING, b"x" * 126), 1002, id="ping-over-125-bytes"),
        pytest.param(client_frame(frames.OP_CLOSE, b"\x03"), 1002, id="close-of-one-byte"),
        pytest.param(client_frame(frames.OP_CLOSE, (1005).to_bytes(2, "big")), 1002, id="close-code-1005"),
        pytest.param(
            client_frame(frames.OP_CLOSE, (1000).to_bytes(2, "big") + b"\xff"),
            1007,
            id="close-reason-not-utf8",
        ),
        pytest.param(
            client_frame(frames.OP_TEXT, b"a", fin=False) + client_frame(frames.OP_TEXT, b"b"),
            1002,
            id="new-message-inside-a-fragmented-one",
        ),
    ],
)
def test_violations_raise_the_rfc_close_code(wire: bytes, code: int) -> None:
    """Each protocol violation maps to the close code RFC 6455 §7.4.1 prescribes."""
    with pytest.raises(ProtocolError) as raised:
        frames.FrameReader(1024).feed(wire)
    assert raised.value.close_code == code


def test_oversized_frame_is_refused_from_its_header() -> None:
    """A frame announcing more than the limit is refused before its payload is buffered."""
    header = struct.pack("!BBQ", 0x81, 0xFF, 10**12)
    with pytest.raises(ProtocolError) as raised:
        frames.FrameReader(65536).feed(header)
    assert raised.value.close_code == 1009


def test_control_frames_interleave_with_fragments() -> None:
    """A Ping between fragments is delivered at once; the message completes after it."""
    wire = (
        client_frame(frames.OP_TEXT, b"he", fin=False)
        + client_frame(frames.OP_PING, b"p")
        + client_frame(frames.OP_CONTINUATION, b"llo")
    )
    assert frames.FrameReader(1024).feed(wire) == [frames.Ping(b"p"), frames.TextMessage(b"hello")]


def test_close_frame_ends_the_stream() -> None:
    """Bytes after a Close frame are ignored; codes and reasons are decoded."""
    wire = client_frame(frames.OP_CLOSE, (1000).to_bytes(2, "big") + b"bye") + client_frame(
        frames.OP_TEXT, b"x"
    )
    assert frames.FrameReader(1024).feed(wire) == [frames.Close(1000, "bye")]
    assert frames.FrameReader(1024).feed(client_frame(frames.OP_CLOSE, b"")) == [frames.Close(1005, "")]


def test_empty_fragments_are_bounded_in_number() -> None:
    """Issue 17 #1: millions of empty continuation frames cannot grow a worker; past the bound, 1009."""
    limit = 4096 // frames.FRAGMENT_BYTES
    reader = frames.FrameReader(4096)
    reader.feed(client_frame(frames.OP_TEXT, b"", fin=False))
    reader.feed(client_frame(frames.OP_CONTINUATION, b"", fin=False) * (limit - 1))
    with pytest.raises(ProtocolError) as raised:
        reader.feed(client_frame(frames.OP_CONTINUATION, b"", fin=False))
    assert raised.value.close_code == 1009 and "fragments" in raised.value.reason


def test_a_message_in_the_most_fragments_allowed_arrives() -> None:
    """As many fragments as the bound allows still make one message."""
    limit = 4096 // frames.FRAGMENT_BYTES
    wire = client_frame(frames.OP_TEXT, b"a", fin=False)
    wire += client_frame(frames.OP_CONTINUATION, b"b", fin=False) * (limit - 2)
    wire += client_frame(frames.OP_CONTINUATION, b"c")
    assert frames.FrameReader(4096).feed(wire) == [frames.TextMessage(b"a" + b"b" * (limit - 2) + b"c")]
