"""One WebSocket, in-process: what the connection answers itself, and how it closes.

Pings, Close frames and protocol violations are handled at the socket, under
every protocol; only complete data messages reach the session.
"""

from __future__ import annotations

import gevent

from gusher.wire import frames
from tests.inprocess import Worker, client_frame
from tests.support import without_socket_id


def test_a_ping_is_answered_with_its_payload(worker: Worker) -> None:
    """RFC 6455 §5.5.2: a Pong echoing the Ping's payload."""
    _, peer = worker.connect()
    peer.send(b"are you there", opcode=frames.OP_PING)
    assert peer.frames() == [(frames.OP_PONG, b"are you there")]


def test_the_clients_close_is_echoed_and_the_socket_released(worker: Worker) -> None:
    """The client's Close gets a Close with its code; on the client's EOF the connection is gone."""
    session, peer = worker.connect()
    peer.send((4000).to_bytes(2, "big") + b"done", opcode=frames.OP_CLOSE)
    ((opcode, payload),) = peer.frames()
    assert opcode == frames.OP_CLOSE and payload[:2] == (4000).to_bytes(2, "big")
    peer.close()
    gevent.sleep(0.02)  # let the loop see the EOF
    assert session.conn not in worker.hub.sessions


def test_a_protocol_violation_closes_with_the_rfc_code(worker: Worker) -> None:
    """An unmasked client frame is a protocol error: close 1002, no message reaches the session."""
    session, peer = worker.connect()
    peer.send_raw(frames.encode_text(b'{"event":"gusher.ping"}'))  # server framing: unmasked
    ((opcode, payload),) = peer.frames()
    assert opcode == frames.OP_CLOSE and payload[:2] == (1002).to_bytes(2, "big")
    assert not session.is_open and worker.metrics.protocol_errors == 1


def test_a_fragmented_message_reaches_the_session_whole(worker: Worker) -> None:
    """Fragments with a Ping between them: the Ping is answered at once, the command once complete."""
    session, peer = worker.connect()
    text = b'{"event":"gusher.ping","data":{"id":"f"}}'
    peer.send_raw(client_frame(text[:10], frames.OP_TEXT, fin=False))
    peer.send_raw(client_frame(b"", frames.OP_PING))
    assert peer.frames() == [(frames.OP_PONG, b"")]
    assert session.conn._reader is not None  # half a message is held
    peer.send_raw(client_frame(text[10:], frames.OP_CONTINUATION))
    assert [without_socket_id(m) for m in peer.messages()] == [{"event": "gusher.pong", "data": {"id": "f"}}]
    assert session.conn._reader is None  # an idle connection holds no reader


def test_a_flood_of_empty_fragments_is_closed_and_counted(worker: Worker) -> None:
    """Issue 17 #1: empty continuation frames past the fragment bound close with 1009, counted."""
    session, peer = worker.connect()
    peer.send_raw(client_frame(b"", frames.OP_TEXT, fin=False))
    flood = client_frame(b"", frames.OP_CONTINUATION, fin=False) * 2000  # 12 KB on the wire
    peer.send_raw(flood)
    ((opcode, payload),) = peer.frames()
    assert opcode == frames.OP_CLOSE and payload[:2] == (1009).to_bytes(2, "big") and b"fragments" in payload
    assert not session.is_open and worker.metrics.protocol_errors == 1
