"""Pusher protocol 7: the pure protocol, and every refusal and bound on the wire (issue 13).

The pure part (`gusher.wire.pusher`, `gusher.core.pusher`) is checked in
process; the rest against real slaves with websocket-client, frame by frame,
where pusher-js would hide what the server sent (tests/test_pusher_js.py
drives pusher-js itself).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pusher
import pytest
import websocket

from gusher.core import pusher as rules
from gusher.core.publication import MEMBER_CONTROL, Publication
from gusher.core.pusher import MEMBER_ADDED, MEMBER_REMOVED, member_events_after
from gusher.embedded import EmbeddedRedis
from gusher.errors import CommandError
from gusher.keys import members_keys, presence_key, pubsub_channel
from gusher.wire.base import ClientEvent, Disconnect, Ping, Signin, Subscribe, Unsubscribe
from gusher.wire.pusher import PusherProtocol, parse_command
from tests.pusher_support import PusherSocket, pusher_app
from tests.support import Client, GunicornProcess, allow, wait_until

SDK = pusher.Pusher(app_id="4242", key="k", secret="app-secret")
PROTOCOL = PusherProtocol(30)


def decoded(frame: bytes) -> dict[str, Any]:
    """The JSON of one server text frame (a short one: 2-byte header)."""
    payload = frame[2:] if frame[1] < 126 else frame[4:]
    return json.loads(payload)


# -- the pure protocol ---------------------------------------------------------------


def test_commands_are_parsed_as_pusher_js_sends_them() -> None:
    subscribe = (
        b'{"event":"pusher:subscribe","data":{"auth":"k:ab","channel":"presence-x","channel_data":"{}"}}'
    )
    assert parse_command(subscribe) == Subscribe(None, "presence-x", None, "k:ab", "{}")
    assert parse_command(b'{"event":"pusher:subscribe","data":{"auth":"","channel":"news"}}') == Subscribe(
        None, "news", None, "", None
    )
    assert parse_command(b'{"event":"pusher:unsubscribe","data":{"channel":"news"}}') == Unsubscribe(
        None, "news"
    )
    assert parse_command(b'{"event":"pusher:ping","data":{}}') == Ping(None)
    signin = b'{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\\"id\\":\\"1\\"}"}}'
    assert parse_command(signin) == Signin("k:s", '{"id":"1"}')
    event = b'{"event":"client-typing","channel":"private-c","data":{"n":1}}'
    assert parse_command(event) == ClientEvent("private-c", "client-typing", {"n": 1})
    # Some clients double-encode `data`, as the server does.
    assert parse_command(b'{"event":"pusher:subscribe","data":"{\\"channel\\":\\"a\\"}"}').channel == "a"
    assert parse_command(b'{"event":"pusher:subscribe","data":{"channel":"#server-to-user-7"}}').channel


@pytest.mark.parametrize(
    ("message", "event", "needle"),
    [
        (b"nope", "pusher:error", "not valid JSON"),
        (b"[1]", "pusher:error", "'event'"),
        (b'{"event":"pusher:frobnicate"}', "pusher:error", "unknown event"),
        (
            b'{"event":"pusher:subscribe","data":{"channel":"bad channel!"}}',
            "pusher:subscription_error",
            "invalid",
        ),
        (
            b'{"event":"pusher:subscribe","data":{"channel":"' + b"x" * 201 + b'"}}',
            "pusher:subscription_error",
            "1-200",
        ),
        (
            b'{"event":"pusher:subscribe","data":{"channel":"private-a","auth":1}}',
            "pusher:subscription_error",
            "strings",
        ),
        (b'{"event":"pusher:subscribe","data":7}', "pusher:error", "object"),
        (b'{"event":"pusher:signin","data":{"auth":"x"}}', "pusher:error", "user_data"),
        (b'{"event":"client-x","data":{}}', "pusher:error", "channel"),
    ],
)
def test_bad_commands_get_pusher_errors(message: bytes, event: str, needle: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_command(message)
    reply = decoded(refused.value.reply)
    assert reply["event"] == event
    assert needle in json.dumps(reply["data"])


def test_a_pong_needs_no_answer() -> None:
    with pytest.raises(CommandError) as refused:
        parse_command(b'{"event":"pusher:pong","data":{}}')
    assert refused.value.reply == b""


def test_publications_reach_pusher_clients_with_string_data() -> None:
    text = decoded(PROTOCOL.publication(Publication.create("news", "created", "hello")))
    assert text == {"event": "created", "channel": "news", "data": "hello"}
    value = decoded(PROTOCOL.publication(Publication.create("news", "created", {"a": [1]})))
    assert value["data"] == '{"a":[1]}'  # a JSON value that is not a string: JSON-encoded (SPEC)
    sent = decoded(PROTOCOL.publication(Publication.create("presence-c", "client-x", {}, user_id="u1")))
    assert sent["user_id"] == "u1"
    member = Publication.create(
        "presence-c", "pusher_internal:member_added", {"user_id": "u"}, control=MEMBER_CONTROL
    )
    assert decoded(PROTOCOL.publication(member))["event"] == "pusher_internal:member_added"
    # A raw PUBLISH that is not the common message has no Pusher event: not delivered.
    assert PROTOCOL.publication(Publication.parse(b"plain text")) == b""
    assert PROTOCOL.publication(Publication.create("", "x", {}, control="channels")) == b""


def test_gusher_clients_never_see_member_events_or_routing_fields() -> None:
    from gusher.wire.gusher import GUSHER

    member = Publication.create("presence-c", "pusher_internal:member_added", {}, control=MEMBER_CONTROL)
    assert GUSHER.publication(member) == b""
    excluded = Publication.parse(Publication.create("c", "e", "d", exclude="1.2").payload)
    assert excluded is not None
    assert decoded(GUSHER.publication(excluded)) == {"channel": "c", "event": "e", "data": "d"}


def test_the_handshake_and_the_close_codes_are_pusher_js_s() -> None:
    hello = decoded(PROTOCOL.greeting("12.34"))
    assert hello["event"] == "pusher:connection_established"
    assert json.loads(hello["data"]) == {"socket_id": "12.34", "activity_timeout": 30}
    codes = {why: PROTOCOL.close_reason(why)[0] for why in Disconnect}
    assert codes == {
        Disconnect.SHUTDOWN: 4200,  # reconnect at once
        Disconnect.RATE_LIMITED: 4301,  # refused
        Disconnect.TOO_MANY_COMMANDS: 4301,
        Disconnect.SLOW_CONSUMER: 4100,  # back off
        Disconnect.PING_TIMEOUT: 4201,  # reconnect at once
        Disconnect.TERMINATED: 4009,  # refused
    }


def test_signatures_made_by_the_pusher_sdk_are_accepted() -> None:
    private = SDK.authenticate("private-x", "1.2")
    assert rules.signature_matches(private["auth"], "k", "app-secret", rules.channel_text("1.2", "private-x"))
    member = {"user_id": "u", "user_info": {"n": 1}}
    presence = SDK.authenticate("presence-x", "1.2", member)
    text = rules.channel_text("1.2", "presence-x", presence["channel_data"])
    assert rules.signature_matches(presence["auth"], "k", "app-secret", text)
    user = SDK.authenticate_user("1.2", {"id": "u"})
    assert rules.signature_matches(user["auth"], "k", "app-secret", rules.user_text("1.2", user["user_data"]))
    # Another socket, another channel, another key, no secret: refused.
    assert not rules.signature_matches(
        private["auth"], "k", "app-secret", rules.channel_text("1.3", "private-x")
    )
    assert not rules.signature_matches(
        private["auth"], "other", "app-secret", rules.channel_text("1.2", "private-x")
    )
    assert not rules.signature_matches(private["auth"], "k", "", rules.channel_text("1.2", "private-x"))
    assert not rules.signature_matches("garbage", "k", "app-secret", "1.2:private-x")


# -- on the wire ---------------------------------------------------------------------


@pytest.fixture
def sockets() -> Iterator[list[PusherSocket]]:
    opened: list[PusherSocket] = []
    yield opened
    for opened_socket in opened:
        opened_socket.close()


@pytest.fixture
def open_socket(sockets: list[PusherSocket]) -> Any:
    def make(server: GunicornProcess, key: str, **options: Any) -> PusherSocket:
        made = PusherSocket(server, key, **options)
        sockets.append(made)
        return made

    return make


@pytest.fixture(scope="module")
def tight_slave(redis_server: EmbeddedRedis) -> Iterator[GunicornProcess]:
    """One worker that pings after 1 s, waits 1 s for the pong and holds 2 members per channel."""
    process = GunicornProcess(
        "slave", redis_server.addr, workers=1, ping_interval=1, ping_timeout=1, presence_max_members=2
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def bounded_slave(redis_server: EmbeddedRedis) -> Iterator[GunicornProcess]:
    """One worker that holds 256 KB of output per client and pings at the default interval, so a
    client that reads nothing meets the output bound, never the pong timeout, however slow the
    machine."""
    process = GunicornProcess("slave", redis_server.addr, workers=1, max_pending_bytes=262144).start()
    yield process
    process.stop()


@pytest.mark.parametrize(
    ("fields", "query", "code"),
    [
        ({"pusher": "0"}, "protocol=7", 4003),  # the app did not opt in
        ({}, "protocol=3", 4007),  # a protocol pusher-js 8 never speaks
        ({"origins": "https://good.example"}, "protocol=7", 4009),
    ],
)
def test_refusals_are_a_pusher_error_then_the_close_code(
    slave: GunicornProcess, redis_client, fields: dict[str, str], query: str, code: int
) -> None:
    key = pusher_app(redis_client, **fields)
    ws = websocket.create_connection(
        f"{slave.ws_url}/app/{key}?{query}", timeout=5, origin="https://evil.example"
    )
    try:
        error = json.loads(ws.recv())
        assert error["event"] == "pusher:error" and error["data"]["code"] == code, error
        frame = ws.recv_frame()
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == code
    finally:
        ws.close()


def test_a_malformed_upgrade_is_an_http_error(slave: GunicornProcess, redis_client) -> None:
    import requests

    key = pusher_app(redis_client)
    response = requests.get(f"{slave.url}/app/{key}", timeout=5)
    assert response.status_code == 400 and response.json()["error"]  # as /ws/{app_key} answers it


def test_a_full_worker_says_back_off(redis_server: EmbeddedRedis, redis_client) -> None:
    key = pusher_app(redis_client)
    process = GunicornProcess("slave", redis_server.addr, workers=1, max_connections_per_worker=1).start()
    first = None
    try:
        first = PusherSocket(process, key)
        second = websocket.create_connection(f"{process.ws_url}/app/{key}", timeout=5)
        error = json.loads(second.recv())
        assert error["data"]["code"] == 4100, error  # pusher-js retries after a second
        second.close()
    finally:
        if first is not None:
            first.close()
        process.stop()


def test_the_server_pings_and_drops_a_client_that_never_pongs(
    tight_slave: GunicornProcess, redis_client, open_socket
) -> None:
    key = pusher_app(redis_client)
    answering, silent = open_socket(tight_slave, key), open_socket(tight_slave, key)
    assert answering.recv(pings=True)["event"] == "pusher:ping"
    answering.send("pusher:pong")
    assert silent.recv(pings=True)["event"] == "pusher:ping"
    assert silent.expect_close(timeout=10)[0] == 4201  # pusher-js reconnects at once
    answering.send("pusher:ping")
    assert answering.recv()["event"] == "pusher:pong"


def test_a_flood_of_commands_is_closed_with_4301(slave: GunicornProcess, redis_client, open_socket) -> None:
    client = open_socket(slave, pusher_app(redis_client))
    for _ in range(400):
        try:
            client.send("pusher:ping")
        except (BrokenPipeError, ConnectionResetError, websocket.WebSocketConnectionClosedException):
            break
    code, _ = client.expect_close()
    assert code == 4301


def test_an_oversized_message_is_closed_with_1009(slave: GunicornProcess, redis_client, open_socket) -> None:
    client = open_socket(slave, pusher_app(redis_client))
    client.send("client-x", {"pad": "x" * 70_000}, channel="private-a")
    assert client.expect_close()[0] == 1009


def test_presence_user_ids_are_strings_and_channels_have_a_member_limit(
    tight_slave: GunicornProcess, redis_client, open_socket
) -> None:
    key = pusher_app(redis_client)
    a, b, c = (open_socket(tight_slave, key) for _ in range(3))
    joined = a.join("presence-small", 7, {"n": 1})
    presence = json.loads(joined["data"])["presence"]
    assert presence == {"ids": ["7"], "hash": {"7": {"n": 1}}, "count": 1}
    assert b.join("presence-small", "eight")["event"] == "pusher_internal:subscription_succeeded"
    refused = c.join("presence-small", "nine")
    assert refused["event"] == "pusher:subscription_error"
    assert refused["data"]["type"] == "LimitReached"
    # The refused one is no member, and a known user's second connection still fits.
    assert redis_client.hlen(members_keys(pubsub_channel(key, "presence-small"))[0]) == 2
    assert c.join("presence-small", "eight")["event"] == "pusher_internal:subscription_succeeded"


def test_presence_subscribes_need_channel_data(slave: GunicornProcess, redis_client, open_socket) -> None:
    client = open_socket(slave, pusher_app(redis_client))
    auth = client.sdk.authenticate("private-x", client.socket_id)["auth"]  # a private signature
    refused = client.subscribe("presence-x", auth)
    assert refused["event"] == "pusher:subscription_error" and "channel_data" in refused["data"]["error"]


def test_gusher_clients_on_a_presence_channel_get_pushes_but_no_member_events(
    slave: GunicornProcess, redis_client, webhook, open_socket, clients
) -> None:
    key = pusher_app(redis_client)
    redis_client.hset(key, "url", webhook.url)
    gusher_client = Client(slave.ws_url, key, allow("g", "presence-mixed"))
    clients.append(gusher_client)
    assert gusher_client.subscribe("presence-mixed")["event"] == "gusher.subscribe_succeeded"
    open_socket(slave, key).join("presence-mixed", "p1")
    gusher_client.expect_silence(0.5)
    redis_client.publish(
        pubsub_channel(key, "presence-mixed"),
        json.dumps({"channel": "presence-mixed", "event": "e", "data": "d"}),
    )
    assert gusher_client.recv_json() == {"channel": "presence-mixed", "event": "e", "data": "d"}


def test_client_event_rules(slave: GunicornProcess, redis_client, webhook, open_socket, clients) -> None:
    key = pusher_app(redis_client, client_events="1")
    redis_client.hset(key, "url", webhook.url)
    sender, other = open_socket(slave, key), open_socket(slave, key)
    for client in (sender, other):
        auth = client.sdk.authenticate("private-room", client.socket_id)["auth"]
        assert client.subscribe("private-room", auth)["event"].endswith("succeeded")
        assert client.subscribe("public-room")["event"].endswith("succeeded")
    gusher_client = Client(slave.ws_url, key, allow("g", "private-room"))
    clients.append(gusher_client)
    assert gusher_client.subscribe("private-room")["event"] == "gusher.subscribe_succeeded"

    sender.send("client-moved", {"x": 1}, channel="private-room")
    assert other.recv() == {"event": "client-moved", "channel": "private-room", "data": '{"x":1}'}
    assert gusher_client.recv_json() == {"channel": "private-room", "event": "client-moved", "data": {"x": 1}}
    sender.expect_silence(0.3)  # never echoed

    for channel, needle in (("public-room", "private and presence"), ("private-other", "not subscribed")):
        sender.send("client-moved", {}, channel=channel)
        error = sender.recv()
        assert error["event"] == "pusher:error" and error["data"]["code"] == 4301, error
        assert needle in error["data"]["message"]
    for _ in range(12):  # 10 a second, as Pusher
        sender.send("client-burst", {}, channel="private-room")
    errors = [sender.recv() for _ in range(2)]
    assert all("rate limit" in e["data"]["message"] for e in errors), errors
    assert sum(1 for _ in range(10) if other.recv()["event"] == "client-burst") == 10


def test_user_channels_and_sign_in_refusals(slave: GunicornProcess, redis_client, open_socket) -> None:
    key = pusher_app(redis_client)
    client = open_socket(slave, key)
    refused = client.subscribe("#server-to-user-mallory")
    assert refused["event"] == "pusher:subscription_error"  # not signed in as mallory
    signed = client.sdk.authenticate_user(client.socket_id, {"id": "erin"})
    client.send("pusher:signin", {"auth": signed["auth"], "user_data": signed["user_data"]})
    success = client.recv()
    assert success["event"] == "pusher:signin_success"
    assert json.loads(json.loads(success["data"])["user_data"]) == {"id": "erin"}
    assert client.subscribe("#server-to-user-erin")["event"] == "pusher_internal:subscription_succeeded"

    forger = open_socket(slave, key)
    forged = forger.sdk.authenticate_user("1.1", {"id": "erin"})  # signed for another socket
    forger.send("pusher:signin", {"auth": forged["auth"], "user_data": forged["user_data"]})
    assert forger.recv()["data"]["code"] == 4009
    assert forger.expect_close()[0] == 4009


def test_a_shutdown_tells_pusher_clients_to_reconnect_at_once(
    redis_server: EmbeddedRedis, redis_client
) -> None:
    key = pusher_app(redis_client)
    process = GunicornProcess("slave", redis_server.addr, workers=1).start()
    client = PusherSocket(process, key)
    process.stop()
    assert client.expect_close()[0] == 4200
    client.close()


def test_a_crashed_workers_members_are_removed_within_three_intervals(
    redis_server: EmbeddedRedis, slave: GunicornProcess, redis_client, open_socket
) -> None:
    """SIGKILL leaves no ghost (Sockudo #87): a live worker sweeps the dead one's members,
    and the observers get member_removed."""
    key = pusher_app(redis_client)
    doomed = GunicornProcess("slave", redis_server.addr, workers=1).start()  # heartbeat every 1 s
    try:
        observer = open_socket(slave, key)
        observer.join("presence-crash", "watcher")
        victim = PusherSocket(doomed, key)
        victim.join("presence-crash", "ghost")
        assert json.loads(observer.recv()["data"])["user_id"] == "ghost"  # member_added
        killed_at = time.monotonic()
        os.kill(doomed.worker_pids()[0], signal.SIGKILL)
        removed = observer.recv(timeout=15)
        took = time.monotonic() - killed_at
        assert removed["event"] == "pusher_internal:member_removed", removed
        assert json.loads(removed["data"]) == {"user_id": "ghost"}
        members = redis_client.hkeys(members_keys(pubsub_channel(key, "presence-crash"))[0])
        assert members == [b"watcher"]
        print(f"member_removed {took:.1f} s after the SIGKILL (heartbeat interval 1 s)")
    finally:
        doomed.stop()


def test_every_publication_is_encoded_once_per_protocol(
    slave: GunicornProcess, redis_client, webhook, open_socket, clients
) -> None:
    """One PUBLISH reaches gusher-protocol and Pusher-protocol subscribers, each in its encoding."""
    key = pusher_app(redis_client)
    redis_client.hset(key, "url", webhook.url)
    pushers = [open_socket(slave, key) for _ in range(3)]
    for client in pushers:
        client.subscribe("both")
    gushers = [Client(slave.ws_url, key, allow("g", "both")) for _ in range(3)]
    clients.extend(gushers)
    for client in gushers:
        client.subscribe("both")
    payload = json.dumps({"channel": "both", "event": "e", "data": {"n": 1}})
    assert redis_client.publish(pubsub_channel(key, "both"), payload) >= 1
    for client in pushers:
        assert client.recv() == {"event": "e", "channel": "both", "data": '{"n":1}'}
    for client in gushers:
        assert client.recv_json() == {"channel": "both", "event": "e", "data": {"n": 1}}


def test_a_crashed_workers_subscribers_leave_the_subscription_count(
    redis_server: EmbeddedRedis, slave: GunicornProcess, redis_client, open_socket
) -> None:
    key = pusher_app(redis_client, subscription_count="1")
    doomed = GunicornProcess("slave", redis_server.addr, workers=1).start()
    try:
        observer = open_socket(slave, key)
        observer.subscribe("counted")
        counts = [json.loads(observer.recv()["data"])["subscription_count"]]
        victims = [PusherSocket(doomed, key) for _ in range(3)]
        for victim in victims:
            victim.subscribe("counted")
        while counts[-1] != 4:
            counts.append(json.loads(observer.recv()["data"])["subscription_count"])
        os.kill(doomed.worker_pids()[0], signal.SIGKILL)
        assert json.loads(observer.recv(timeout=15)["data"]) == {"subscription_count": 1}
        assert counts[0] == 1 and sorted(counts) == counts  # only ever up while they joined
    finally:
        doomed.stop()


def test_an_apps_connection_quota_holds_across_workers(
    slave: GunicornProcess, redis_client, webhook, open_socket
) -> None:
    """`max_connections` counts the app's connections on every worker (their presence reports,
    one heartbeat old at most): Pusher clients get 4004 (no reconnect), gusher's 429."""
    key = pusher_app(redis_client, max_connections="3")
    redis_client.hset(key, "url", webhook.url)
    held = [open_socket(slave, key) for _ in range(3)]
    reported = lambda: sum(json.loads(r)["connections"] for r in redis_client.hvals(presence_key(key)))  # noqa: E731
    wait_until(lambda: reported() == 3)  # every worker's report (a heartbeat a second) counts them
    time.sleep(1.1)  # a worker reads the others' reports once a second
    refused = websocket.create_connection(f"{slave.ws_url}/app/{key}", timeout=5)
    try:
        assert json.loads(refused.recv())["data"]["code"] == 4004
    finally:
        refused.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as error:
        Client(slave.ws_url, key, allow("u", "c"))
    assert error.value.status_code == 429
    held.pop().close()
    wait_until(lambda: reported() == 2)
    time.sleep(1.1)
    assert open_socket(slave, key).socket_id


def test_a_slow_pusher_client_is_told_to_back_off(bounded_slave: GunicornProcess, redis_client) -> None:
    """Past the output bound a client that does not read is cut off with 4100 (pusher-js retries
    after a second); what it reads before the close is whole frames."""
    import socket

    key = pusher_app(redis_client)
    cut_before = bounded_slave.log().count("of output pending")
    stuck = PusherSocket(bounded_slave, key, sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    try:
        stuck.subscribe("flood")
        payload = json.dumps({"channel": "flood", "event": "big", "data": "x" * 65000})
        # How much the kernel takes before output is left pending varies from run to run (4 to
        # 20 MB on loopback here; a fixed 6.5 MB was not always enough): push until the slave
        # says it cut the client off, at most 3,000 pushes (195 MB).
        for _ in range(60):
            for _ in range(50):
                redis_client.publish(pubsub_channel(key, "flood"), payload)
            if bounded_slave.log().count("of output pending") > cut_before:
                break
        assert stuck.expect_close(timeout=20)[0] == 4100
    finally:
        stuck.close()


def test_pusher_clients_have_the_subscription_limit(
    slave: GunicornProcess, redis_client, open_socket
) -> None:
    client = open_socket(slave, pusher_app(redis_client))
    for index in range(100):  # GUSHER_MAX_SUBSCRIPTIONS_PER_CONNECTION
        assert client.subscribe(f"c{index}")["event"] == "pusher_internal:subscription_succeeded"
    refused = client.subscribe("one-too-many")
    assert refused["event"] == "pusher:subscription_error"
    assert refused["data"]["type"] == "LimitReached" and "100" in refused["data"]["error"]


def test_member_events_buffered_during_a_join_that_its_list_already_tells_are_dropped() -> None:
    """A presence join's member list is read with the join; member events published just before
    it can still be buffered behind it (pub/sub brings them late): a member_added of a listed
    member, or a member_removed of an unlisted one, is dropped; later changes and others stay."""

    def member(event: str, user: str) -> Publication:
        return Publication.create("presence-r", event, {"user_id": user}, control=MEMBER_CONTROL)

    late_alice = member(MEMBER_ADDED, "alice")
    carol_left_before = member(MEMBER_REMOVED, "carol")
    hello = Publication.create("presence-r", "hello", {})
    alice_leaves, alice_back = member(MEMBER_REMOVED, "alice"), member(MEMBER_ADDED, "alice")
    dave = member(MEMBER_ADDED, "dave")
    buffered = [
        late_alice,
        carol_left_before,
        hello,
        alice_leaves,
        alice_back,
        dave,
        member(MEMBER_ADDED, "dave"),
    ]
    assert member_events_after({"alice", "bob"}, buffered) == [hello, alice_leaves, alice_back, dave]
