"""Bad input from clients: each gets a clear error, and everyone else is served.

Table-driven: every case runs against the same live slave, next to a
bystander client that must keep receiving pushes throughout.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import websocket
from websocket import ABNF

from tests.support import Client, GunicornProcess, allow, push

# Frames whose answer is an error event on an open connection.
ERROR_EVENT_CASES = [
    ("not json", "not valid JSON", "gusher.error"),
    ("[1, 2]", "JSON object", "gusher.error"),
    ('"just a string"', "JSON object", "gusher.error"),
    ("{}", "'event' must be a string", "gusher.error"),
    ('{"event": 5}', "'event' must be a string", "gusher.error"),
    ('{"event": "gusher.nope", "data": {}}', "unknown event", "gusher.error"),
    ('{"event": "gusher.subscribe", "data": "c"}', "must be an object", "gusher.error"),
    (
        '{"event": "gusher.subscribe", "data": {"id": "1"}}',
        "'channel' must be a string",
        "gusher.subscribe_error",
    ),
    (
        '{"event": "gusher.subscribe", "data": {"id": "1", "channel": 5}}',
        "'channel' must be a string",
        "gusher.subscribe_error",
    ),
    (
        '{"event": "gusher.subscribe", "data": {"id": "1", "channel": ""}}',
        "channel is empty",
        "gusher.subscribe_error",
    ),
    (
        '{"event": "gusher.subscribe", "data": {"id": "1", "channel": "a\\u0001b"}}',
        "control characters",
        "gusher.subscribe_error",
    ),
    (
        '{"event": "gusher.subscribe", "data": {"id": "1", "channel": "' + "c" * 300 + '"}}',
        "longer than",
        "gusher.subscribe_error",
    ),
    (
        '{"event": "gusher.subscribe", "data": {"id": {"x": 1}, "channel": "c"}}',
        "'id'",
        "gusher.subscribe_error",
    ),
    (
        '{"event": "gusher.unsubscribe", "data": {"id": "1", "channel": []}}',
        "'channel' must be a string",
        "gusher.unsubscribe_error",
    ),
]


@pytest.fixture
def bystander(slave: GunicornProcess, master: GunicornProcess, app_key: str) -> Iterator[Client]:
    """A well-behaved client whose deliveries are checked after each bad input."""
    client = Client(slave.ws_url, app_key, allow("bystander", "watch"))
    assert client.subscribe("watch")["event"] == "gusher.subscribe_succeeded"
    yield client
    assert push(master.url, app_key, "watch", "still", "alive").status_code == 200
    assert client.recv_json()["data"] == "alive"
    client.close()


@pytest.mark.parametrize("text, reason_part, event", ERROR_EVENT_CASES)
def test_bad_commands_get_error_events(slave, app_key, bystander, clients, text, reason_part, event) -> None:
    """Malformed or mistyped commands get an error event with a reason; the connection stays usable."""
    client = Client(slave.ws_url, app_key, allow("u", "c"))
    clients.append(client)
    client.ws.send(text)
    reply = client.recv_json()
    assert reply["event"] == event
    assert reason_part in reply["data"]["reason"]
    assert client.subscribe("c")["event"] == "gusher.subscribe_succeeded"


def test_binary_frames_get_an_error_event(slave, app_key, bystander, clients) -> None:
    """Binary messages are refused with a reason; the connection stays open."""
    client = Client(slave.ws_url, app_key, allow("u", "c"))
    clients.append(client)
    client.ws.send_binary(b"\x00\x01")
    reply = client.recv_json()
    assert reply["event"] == "gusher.error" and "binary" in reply["data"]["reason"]
    assert client.subscribe("c")["event"] == "gusher.subscribe_succeeded"


def _frame(opcode: int, data: bytes, fin: int = 1, rsv1: int = 0, mask: int = 1) -> ABNF:
    return ABNF(fin=fin, rsv1=rsv1, opcode=opcode, mask_value=mask, data=data)


CLOSE_CASES = [
    ("invalid utf-8 text", [_frame(ABNF.OPCODE_TEXT, b"\xff\xfe")], 1007),
    ("over max message size", [_frame(ABNF.OPCODE_TEXT, b"x" * 70000)], 1009),
    (
        "fragments over max size",
        [_frame(ABNF.OPCODE_TEXT, b"x" * 40000, fin=0), _frame(ABNF.OPCODE_CONT, b"x" * 40000)],
        1009,
    ),
    ("unmasked frame", [_frame(ABNF.OPCODE_TEXT, b"{}", mask=0)], 1002),
    ("reserved bit", [_frame(ABNF.OPCODE_TEXT, b"{}", rsv1=1)], 1002),
    ("unknown opcode", [bytes((0x83, 0x80)) + b"mask"], 1002),
    ("continuation without start", [_frame(ABNF.OPCODE_CONT, b"x")], 1002),
    (
        "new message inside a fragmented one",
        [_frame(ABNF.OPCODE_TEXT, b"{", fin=0), _frame(ABNF.OPCODE_TEXT, b"}")],
        1002,
    ),
    ("fragmented ping", [_frame(ABNF.OPCODE_PING, b"x", fin=0)], 1002),
    ("oversized ping", [_frame(ABNF.OPCODE_PING, b"x" * 126)], 1002),
    ("bad close code", [_frame(ABNF.OPCODE_CLOSE, (999).to_bytes(2, "big"))], 1002),
]


@pytest.mark.parametrize("name, frames, code", CLOSE_CASES, ids=[c[0] for c in CLOSE_CASES])
def test_protocol_violations_close_with_the_rfc_code(
    slave, app_key, bystander, clients, name, frames, code
) -> None:
    """RFC 6455 violations and oversized messages close with the prescribed code and a reason."""
    client = Client(slave.ws_url, app_key, allow("u", "c"))
    clients.append(client)
    for frame in frames:
        if isinstance(frame, bytes):  # websocket-client refuses to build these
            client.ws.sock.sendall(frame)
        else:
            client.ws.send_frame(frame)
    got_code, reason = client.recv_close()
    assert got_code == code
    assert reason


def test_fragmented_message_with_interleaved_ping_works(slave, app_key, bystander, clients) -> None:
    """A command split in fragments, with a Ping between them, is understood (RFC 6455 §5.4)."""
    client = Client(slave.ws_url, app_key, allow("u", "c"))
    clients.append(client)
    text = json.dumps({"event": "gusher.subscribe", "data": {"id": "f", "channel": "c"}}).encode()
    client.ws.send_frame(_frame(ABNF.OPCODE_TEXT, text[:10], fin=0))
    client.ws.send_frame(_frame(ABNF.OPCODE_PING, b"mid"))
    client.ws.send_frame(_frame(ABNF.OPCODE_CONT, text[10:]))
    pong = client.ws.recv_frame()
    assert pong.opcode == ABNF.OPCODE_PONG and pong.data == b"mid"
    assert client.recv_json()["event"] == "gusher.subscribe_succeeded"


def test_ping_flood_is_survived(slave, app_key, bystander, clients) -> None:
    """Thousands of pings in a row are answered and harm nobody."""
    client = Client(slave.ws_url, app_key, allow("u", "c"))
    clients.append(client)
    for _ in range(2000):
        client.ws.ping(b"p")
    pongs = 0
    while pongs < 2000:
        frame = client.ws.recv_frame()
        assert frame.opcode == ABNF.OPCODE_PONG
        pongs += 1


def test_subscription_limit(slave, app_key, bystander, clients) -> None:
    """Subscribing to more than the per-connection limit (100) is refused with a reason."""
    channels = [f"ch{i}" for i in range(101)]
    client = Client(slave.ws_url, app_key, allow("u", *channels))
    clients.append(client)
    for i, channel in enumerate(channels):
        client.send_json({"event": "gusher.subscribe", "data": {"id": i, "channel": channel}})
    replies = [client.recv_json() for _ in channels]
    assert all(r["event"] == "gusher.subscribe_succeeded" for r in replies[:100])
    assert replies[100]["event"] == "gusher.subscribe_error"
    assert "limit" in replies[100]["data"]["reason"]


def test_abrupt_disconnects_harm_nobody(slave, app_key, bystander) -> None:
    """Clients that vanish mid-frame or without a Close leave the worker serving."""
    for _ in range(5):
        client = Client(slave.ws_url, app_key, allow("u", "c"))
        client.subscribe("c")
        raw = client.ws.sock
        raw.send(b"\x81\xfe\x00")  # half a frame header
        raw.close()


def test_huge_query_string_is_refused(slave, app_key) -> None:
    """A request line over gunicorn's limit is refused with an HTTP error, not a crash."""
    with pytest.raises((websocket.WebSocketBadStatusException, ConnectionError, OSError)):
        Client(slave.ws_url, app_key, "x" * 20000)


@pytest.mark.parametrize("role", ["slave", "master"])
def test_gunicorns_own_refusals_are_json(request, app_key, role) -> None:
    """Issue 17 #10: a request line over the 8,190-byte limit gets a JSON 414, not gunicorn's HTML."""
    server = request.getfixturevalue(role)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(f"GET /api/check/{'x' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414") and b"Content-Type: application/json" in head
    assert "URI Too Long" in json.loads(body)["error"]
