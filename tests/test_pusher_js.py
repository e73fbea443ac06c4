"""Real pusher-js 8 clients (Node) against real slaves: what a Pusher app sees of gusher (issue 13).

Signatures come from an app backend that signs with the PyPI `pusher` SDK
(`tests.pusher_support.AuthBackend`); messages are published the way a
backend may publish to gusher (raw Redis PUBLISH of the common message) or
through the master's APIs, and gusher-protocol clients share the channels.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pusher
import pytest
import redis as redis_lib
import requests

from gusher.core import signing
from gusher.embedded import EmbeddedRedis
from gusher.keys import members_keys, pubsub_channel, user_channel
from tests.pusher_support import ENCRYPTION_KEY, AuthBackend, PusherJS, pusher_app, signed_push
from tests.support import Client, GunicornProcess, Webhook, allow, wait_until


@pytest.fixture
def js() -> Iterator[PusherJS]:
    driver = PusherJS()
    yield driver
    driver.close()


@pytest.fixture(scope="module")
def backend() -> Iterator[AuthBackend]:
    server = AuthBackend()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def second_slave(redis_server: EmbeddedRedis) -> Iterator[GunicornProcess]:
    """Another slave on the same Redis: presence must be exact across slaves."""
    process = GunicornProcess("slave", redis_server.addr, workers=1).start()
    yield process
    process.stop()


def publish(redis_client: redis_lib.Redis, key: str, channel: str, event: str, data: object) -> None:
    """What any backend may do (SPEC): PUBLISH the common message on `{app_key}@{channel}`."""
    payload = json.dumps({"channel": channel, "event": event, "data": data})
    assert redis_client.publish(pubsub_channel(key, channel), payload) >= 1


def test_connects_with_a_pusher_socket_id(js: PusherJS, slave: GunicornProcess, redis_client) -> None:
    key = pusher_app(redis_client)
    socket_id = js.connect("a", key, slave.port)
    assert re.fullmatch(r"\d+\.\d+", socket_id), socket_id


def test_public_channel_messages_reach_pusher_js_and_gusher_clients_alike(
    js: PusherJS, slave: GunicornProcess, redis_client, webhook: Webhook, clients
) -> None:
    key = pusher_app(redis_client)
    redis_client.hset(key, "url", webhook.url)
    js.connect("a", key, slave.port)
    js.send(op="subscribe", id="a", channel="news")
    js.expect(id="a", type="subscribed", channel="news")
    gusher_client = Client(slave.ws_url, key, allow("u", "news"))
    clients.append(gusher_client)
    assert gusher_client.subscribe("news")["event"] == "gusher.subscribe_succeeded"

    publish(redis_client, key, "news", "created", "hello")
    publish(redis_client, key, "news", "updated", {"id": 7, "tags": ["a"]})

    assert js.expect(id="a", type="event", event="created")["data"] == "hello"
    assert js.expect(id="a", type="event", event="updated")["data"] == {"id": 7, "tags": ["a"]}
    assert gusher_client.recv_json() == {"channel": "news", "event": "created", "data": "hello"}
    assert gusher_client.recv_json()["data"] == {"id": 7, "tags": ["a"]}


def test_a_push_through_every_api_reaches_both_protocols_once(
    js: PusherJS, slave: GunicornProcess, master: GunicornProcess, redis_client, webhook: Webhook, clients
) -> None:
    """Seed route, ext JSON route, Pusher's HTTP API (the PyPI SDK) and a raw PUBLISH: each
    message reaches a pusher-js client and a gusher client of the channel, once, in order."""
    key = pusher_app(redis_client)
    redis_client.hset(key, "url", webhook.url)
    js.connect("a", key, slave.port)
    js.send(op="subscribe", id="a", channel="mixed")
    js.expect(id="a", type="subscribed")
    gusher_client = Client(slave.ws_url, key, allow("u", "mixed"))
    clients.append(gusher_client)
    assert gusher_client.subscribe("mixed")["event"] == "gusher.subscribe_succeeded"

    signed_push(master.url, key, "mixed", "seed", "one")
    body = json.dumps({"channel": "mixed", "event": "ext", "data": {"n": 2}}).encode()
    url = f"{master.url}/api/apps/{key}/events"
    headers = signing.signed_headers("app-secret", "POST", url, body, time.time(), "application/json")
    response = requests.post(
        url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=5
    )
    assert response.status_code == 200, response.text
    sdk = pusher.Pusher(
        app_id="4242", key=key, secret="app-secret", host="127.0.0.1", port=master.port, ssl=False
    )
    sdk.trigger("mixed", "pusher-api", {"n": 3})
    publish(redis_client, key, "mixed", "raw", "four")

    assert [
        js.expect(id="a", type="event", event=e)["data"] for e in ("seed", "ext", "pusher-api", "raw")
    ] == [
        "one",
        {"n": 2},
        {"n": 3},
        "four",
    ]
    js.expect_none(id="a", type="event")  # each once
    seen = [gusher_client.recv_json() for _ in range(4)]
    assert [(m["event"], m["data"]) for m in seen] == [
        ("seed", "one"),
        ("ext", {"n": 2}),
        ("pusher-api", '{"n": 3}'),  # the SDK sends a string: gusher clients get that string
        ("raw", "four"),
    ]
    gusher_client.expect_silence(0.3)


def test_private_channels_need_the_apps_signature(
    js: PusherJS, slave: GunicornProcess, redis_client, backend: AuthBackend
) -> None:
    key = pusher_app(redis_client)
    js.connect("a", key, slave.port, auth=backend.auth_url(key))
    js.send(op="subscribe", id="a", channel="private-orders")
    js.expect(id="a", type="subscribed", channel="private-orders")
    publish(redis_client, key, "private-orders", "paid", "42")
    assert js.expect(id="a", type="event", channel="private-orders")["data"] == 42  # pusher-js parses it

    # The backend refuses: pusher-js reports the endpoint's status and never asks the server.
    js.connect("b", key, slave.port, auth=backend.auth_url(key, deny="1"))
    js.send(op="subscribe", id="b", channel="private-orders")
    assert js.expect(id="b", type="subscription_error")["error"]["status"] == 403


def test_encrypted_channels_are_relayed_end_to_end(
    js: PusherJS, slave: GunicornProcess, master: GunicornProcess, redis_client, backend: AuthBackend
) -> None:
    """The SDK encrypts with the app's master key, pusher-js decrypts with the shared secret its
    backend gave it: gusher relays `{nonce, ciphertext}` and never sees the key."""
    key = pusher_app(redis_client)
    js.connect("a", key, slave.port, auth=backend.auth_url(key))
    js.send(op="subscribe", id="a", channel="private-encrypted-vault")
    js.expect(id="a", type="subscribed")
    sent = pusher.Pusher(
        app_id="4242", key=key, secret="app-secret", host="127.0.0.1", port=master.port, ssl=False,
        encryption_master_key_base64=ENCRYPTION_KEY,
    )  # fmt: skip
    sent.trigger("private-encrypted-vault", "secret", {"pin": 1234})
    assert js.expect(id="a", type="event", event="secret")["data"] == {"pin": 1234}


def test_a_signature_of_another_secret_is_refused_by_the_server(
    js: PusherJS, slave: GunicornProcess, redis_client
) -> None:
    key = pusher_app(redis_client, secret="the-real-secret")
    forger = AuthBackend(secret="a-guessed-secret")
    try:
        js.connect("a", key, slave.port, auth=forger.auth_url(key))
        for channel in ("private-orders", "private-encrypted-x", "presence-room"):
            js.send(op="subscribe", id="a", channel=channel)
            error = js.expect(id="a", type="subscription_error", channel=channel)["error"]
            assert error["type"] == "AuthError" and error["status"] == 401, error
        assert redis_client.publish(pubsub_channel(key, "private-orders"), "{}") == 0  # nobody took it
        js.expect_none(id="a", type="event")
    finally:
        forger.shutdown()


def test_presence_members_are_exact_across_slaves(
    js: PusherJS, slave: GunicornProcess, second_slave: GunicornProcess, redis_client, backend: AuthBackend
) -> None:
    """member_added only for a user's first connection, member_removed only after its last,
    whichever slave each connection is on (soketi #616, Reverb #273, Sockudo PR #75)."""
    key = pusher_app(redis_client)
    channel = "presence-room"
    js.connect("alice1", key, slave.port, auth=backend.auth_url(key, user="alice"))
    js.send(op="subscribe", id="alice1", channel=channel)
    joined = js.expect(id="alice1", type="subscribed")
    alice = {"id": "alice", "info": {"name": "Alice"}}
    assert joined["members"] == {"count": 1, "me": alice, "ids": ["alice"]}

    js.connect("bob", key, second_slave.port, auth=backend.auth_url(key, user="bob"))
    js.send(op="subscribe", id="bob", channel=channel)
    assert js.expect(id="bob", type="subscribed")["members"]["ids"] == ["alice", "bob"]
    added = js.expect(id="alice1", type="member_added")
    assert added["member"] == {"id": "bob", "info": {"name": "Bob"}} and added["count"] == 2
    js.expect_none(id="bob", type="member_added")  # its own join is in its list, not an event

    # Alice's second connection, on the other slave: no event, she is there already.
    js.connect("alice2", key, second_slave.port, auth=backend.auth_url(key, user="alice"))
    js.send(op="subscribe", id="alice2", channel=channel)
    assert js.expect(id="alice2", type="subscribed")["members"]["count"] == 2
    js.expect_none(id="bob", type="member_added")

    js.send(op="disconnect", id="alice1")
    js.expect_none(id="bob", type="member_removed")  # alice2 is still there
    js.send(op="unsubscribe", id="alice2", channel=channel)
    removed = js.expect(id="bob", type="member_removed")
    assert removed["member"]["id"] == "alice" and removed["count"] == 1
    members = redis_client.hvals(members_keys(pubsub_channel(key, channel))[0])
    assert [json.loads(info)["name"] for info in members] == ["Bob"]


def test_client_events_go_to_the_others_with_the_senders_user_id(
    js: PusherJS, slave: GunicornProcess, second_slave: GunicornProcess, redis_client, backend: AuthBackend
) -> None:
    key = pusher_app(redis_client, client_events="1")
    channel = "presence-chat"
    for name, server in (("alice", slave), ("bob", second_slave)):
        js.connect(name, key, server.port, auth=backend.auth_url(key, user=name))
        js.send(op="subscribe", id=name, channel=channel, events=["client-typing"])
        js.expect(id=name, type="subscribed")
    js.send(op="trigger", id="bob", channel=channel, event="client-typing", data={"chars": 3})
    seen = js.expect(id="alice", type="bound", event="client-typing")
    assert seen["data"] == {"chars": 3} and seen["metadata"] == {"user_id": "bob"}
    js.expect_none(id="bob", type="event", event="client-typing")  # never echoed


def test_client_events_are_refused_unless_the_app_enables_them(
    js: PusherJS, slave: GunicornProcess, redis_client, backend: AuthBackend
) -> None:
    key = pusher_app(redis_client)  # no client_events field
    js.connect("a", key, slave.port, auth=backend.auth_url(key))
    js.connect("b", key, slave.port, auth=backend.auth_url(key))
    for name in "ab":
        js.send(op="subscribe", id=name, channel="private-chat")
        js.expect(id=name, type="subscribed")
    js.send(op="trigger", id="a", channel="private-chat", event="client-x", data={})
    error = js.expect(id="a", type="connection_error")["error"]
    assert error["code"] == 4301 and "not enabled" in error["message"]
    js.expect_none(id="b", type="event")


def test_cache_channels_replay_the_last_event_or_say_cache_miss(
    js: PusherJS, slave: GunicornProcess, master: GunicornProcess, redis_client
) -> None:
    key = pusher_app(redis_client)
    js.connect("a", key, slave.port)
    js.send(op="subscribe", id="a", channel="cache-prices")
    js.expect(id="a", type="subscribed")
    js.expect(id="a", type="cache_miss", channel="cache-prices")

    signed_push(master.url, key, "cache-prices", "price", "101")  # the master keeps the last one
    assert js.expect(id="a", type="event", event="price")["data"] == 101

    js.connect("b", key, slave.port)
    js.send(op="subscribe", id="b", channel="cache-prices")
    js.expect(id="b", type="subscribed")
    assert js.expect(id="b", type="event", event="price")["data"] == 101
    js.expect_none(id="b", type="cache_miss")


def test_signed_in_users_receive_what_is_sent_to_them(
    js: PusherJS, slave: GunicornProcess, redis_client, backend: AuthBackend
) -> None:
    key = pusher_app(redis_client)
    js.connect("a", key, slave.port, userAuth=backend.user_auth_url(key, user="carol"))
    js.send(op="signin", id="a")
    js.expect(id="a", type="signed_in")
    wait_until(lambda: redis_client.pubsub_numsub(user_channel(key, "carol"))[0][1] >= 1)
    time.sleep(0.3)  # pusher-js subscribes #server-to-user-carol right after signin_success
    payload = json.dumps({"channel": "#server-to-user-carol", "event": "invoice", "data": '{"n":1}'})
    redis_client.publish(user_channel(key, "carol"), payload)
    assert js.expect(id="a", type="user_event", event="invoice")["data"] == {"n": 1}


def test_subscription_counts_follow_every_slave(
    js: PusherJS, slave: GunicornProcess, second_slave: GunicornProcess, redis_client
) -> None:
    """`pusher_internal:subscription_count` (an app with `subscription_count`): pusher-js keeps it
    as `channel.subscriptionCount`; the count sums every slave's subscribers."""
    key = pusher_app(redis_client, subscription_count="1")
    js.connect("a", key, slave.port)
    js.send(op="subscribe", id="a", channel="stats")
    js.expect(id="a", type="subscribed")
    assert js.expect(id="a", type="subscription_count")["count"] == 1
    js.connect("b", key, second_slave.port)
    js.send(op="subscribe", id="b", channel="stats")
    js.expect(id="b", type="subscribed")
    assert js.expect(id="a", type="subscription_count", count=2)["kept"] == 2
    assert js.expect(id="b", type="subscription_count")["count"] == 2
    js.send(op="unsubscribe", id="b", channel="stats")
    js.expect(id="a", type="subscription_count", count=1)


def test_an_unknown_app_is_refused_for_good(js: PusherJS, slave: GunicornProcess) -> None:
    """4001: pusher-js must not reconnect (its `refused` close action)."""
    js.send(op="connect", id="a", key="no-such-app", port=slave.port)
    error = js.expect(id="a", type="connection_error")
    assert error["error"]["code"] == 4001, error
    js.expect(id="a", type="state", state="disconnected")
    js.expect_none(seconds=2.5, id="a", type="state", state="connecting")


def test_terminated_users_are_closed_on_every_slave_and_stay_away(
    js: PusherJS,
    slave: GunicornProcess,
    second_slave: GunicornProcess,
    master: GunicornProcess,
    redis_client,
    backend: AuthBackend,
) -> None:
    """`terminate_user_connections` through the PyPI SDK (its un-prefixed path) closes the user's
    connections on both slaves with 4009: pusher-js does not reconnect; others stay."""
    key = pusher_app(redis_client)
    for name, server, user in (("a", slave, "dave"), ("b", second_slave, "dave"), ("c", slave, "erin")):
        js.connect(name, key, server.port, userAuth=backend.user_auth_url(key, user=user))
        js.send(op="signin", id=name)
        js.expect(id=name, type="signed_in")
    wait_until(lambda: redis_client.pubsub_numsub(user_channel(key, "dave"))[0][1] >= 2)
    sdk = pusher.Pusher(
        app_id="4242", key=key, secret="app-secret", host="127.0.0.1", port=master.port, ssl=False
    )
    sdk.terminate_user_connections("dave")
    for name in "ab":
        js.expect(id=name, type="state", state="disconnected")
    js.expect_none(seconds=2.5, type="state", state="connecting")
    js.expect_none(seconds=0.1, id="c", type="state", state="disconnected")
