"""The slave's own 101 answer (`handshake.upgrade_response`) is the one wsproto would write."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.extensions import PerMessageDeflate

from gusher.edge.handshake import upgrade_response


def wsproto_answer(key: str) -> bytes:
    """What simple-websocket's handshake sends: wsproto's accept, compression offered but not asked for."""
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-Websocket-Key: " + key.encode() + b"\r\nSec-Websocket-Version: 13\r\n\r\n"
    )
    list(server.events())
    return server.send(AcceptConnection(extensions=[PerMessageDeflate()]))


def test_the_rfc_example_key_gets_the_rfc_accept() -> None:
    """RFC 6455 §1.3's sample key gives its sample Sec-WebSocket-Accept."""
    answer = upgrade_response("dGhlIHNhbXBsZSBub25jZQ==")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n" in answer
    assert answer.startswith(b"HTTP/1.1 101 ")


@given(st.binary(min_size=16, max_size=16))
def test_the_answer_is_byte_for_byte_wsprotos(nonce: bytes) -> None:
    """For any valid key the answer equals the one simple-websocket's wsproto handshake writes."""
    key = base64.b64encode(nonce).decode()
    assert upgrade_response(key) == wsproto_answer(key)
