"""The master's ext API end to end: JSON data, multi-channel and batch pushes, user pushes, presence."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis as redis_lib
import requests

from gusher.keys import user_channel
from tests.support import Client, GunicornProcess, Webhook, allow, new_app_key, wait_until


@pytest.fixture(scope="module")
def second_slave(redis_server) -> Iterator[GunicornProcess]:
    process = GunicornProcess("slave", redis_server.addr, workers=1).start()
    yield process
    process.stop()


def post(master: GunicornProcess, path: str, body: object) -> requests.Response:
    return requests.post(master.url + path, json=body, timeout=5)


def subscribed(slave: GunicornProcess, app_key: str, user: str, *channels: str, clients: list) -> Client:
    client = Client(slave.ws_url, app_key, allow(user, *channels))
    clients.append(client)
    for channel in channels:
        assert client.subscribe(channel)["event"] == "gusher.subscribe_succeeded"
    return client


# -- JSON data ---------------------------------------------------------------------


@pytest.mark.parametrize("data", [{"n": [1, 2.5, None]}, [1, "two"], 3, True, "text", '{"looks": "json"}'])
def test_json_body_data_is_delivered_as_that_json_value(slave, master, app_key, clients, data) -> None:
    """`{"data": <any JSON>}` reaches clients as that value, not as a string."""
    client = subscribed(slave, app_key, "u", "c", clients=clients)
    response = post(master, f"/api/push/{app_key}/c/e", {"data": data})
    assert response.status_code == 200 and response.json() == {"channel": "c", "event": "e", "data": data}
    assert client.recv_json() == {"channel": "c", "event": "e", "data": data}


def test_integers_of_any_size_pass_through_exactly(slave, master, app_key, clients) -> None:
    """Issue 17 #11: a 30-digit integer reaches the push's answer and every subscriber as it was sent."""
    client = subscribed(slave, app_key, "u", "c", clients=clients)
    big = "123456789012345678901234567890"
    body = f'{{"data": {{"n": {big}, "neg": -{big}}}}}'.encode()
    response = requests.post(
        f"{master.url}/api/push/{app_key}/c/e",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    expected = f'{{"channel":"c","event":"e","data":{{"n":{big},"neg":-{big}}}}}'
    assert response.status_code == 200 and response.text == expected
    client.ws.settimeout(5)
    assert client.ws.recv() == expected
    batch = post(
        master,
        f"/api/apps/{app_key}/batch_events",
        {"batch": [{"channel": "c", "event": "b", "data": 2**70}]},
    )
    assert batch.status_code == 200
    assert client.ws.recv() == f'{{"channel":"c","event":"b","data":{2**70}}}'


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{nope", "valid JSON"),
        (b"[1]", "JSON object"),
        (b"{}", "data is empty"),
        (b'{"data": null}', "data is empty"),
        (b'{"data": ""}', "data is empty"),
    ],
)
def test_bad_json_bodies_are_400(master, app_key, body, reason) -> None:
    """A JSON push body that is not `{"data": <non-empty>}` gets 400 with a reason."""
    response = requests.post(
        f"{master.url}/api/push/{app_key}/c/e",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400 and reason in response.json()["error"]


def test_a_push_to_one_socket_reaches_that_connection_only(
    slave, master, app_key, redis_client, webhook, clients
) -> None:
    """Issue 15 (later gusher.cluster's push to a socket): the socket_id of a connection's replies
    addresses it alone; another connection of the same user, or another app naming it, gets nothing."""
    target = subscribed(slave, app_key, "u", "c", clients=clients)
    socket_id = target.subscribe("c", "again")["socket_id"]  # every reply names the connection
    sibling = subscribed(slave, app_key, "u", "c", clients=clients)
    response = post(
        master, f"/api/apps/{app_key}/sockets/{socket_id}/events", {"event": "note", "data": {"n": 1}}
    )
    assert response.status_code == 200 and response.json()["socket_id"] == socket_id
    assert target.recv_json() == {"channel": "gusher.socket", "event": "note", "data": {"n": 1}}
    sibling.expect_silence(0.3)
    other = new_app_key("other")
    redis_client.hset(other, "url", webhook.url)
    assert (
        post(master, f"/api/apps/{other}/sockets/{socket_id}/events", {"event": "e", "data": 1}).status_code
        == 200
    )
    target.expect_silence(0.3)
    refused = post(master, f"/api/apps/{app_key}/sockets/not-a-socket/events", {"event": "e", "data": 1})
    assert refused.status_code == 400 and "socket_id" in refused.json()["error"]


def test_multi_subscribe_end_to_end(slave, master, app_key, clients) -> None:
    """`gusher.multi_subscribe` subscribes every listed channel in one command."""
    client = Client(slave.ws_url, app_key, allow("u", "a", "b"))
    clients.append(client)
    client.send_json({"event": "gusher.multi_subscribe", "data": {"id": "m", "multi_channel": ["a", "b"]}})
    reply = client.recv_json()
    assert reply["event"] == "gusher.multi_subscribe_succeeded" and reply["data"]["multi_channel"] == [
        "a",
        "b",
    ]
    post(master, f"/api/apps/{app_key}/events", {"channels": ["a", "b"], "event": "e", "data": 1})
    assert {client.recv_json()["channel"], client.recv_json()["channel"]} == {"a", "b"}


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", None])
def test_a_json_body_sent_as_a_form_gets_a_hint(master, app_key, content_type) -> None:
    """Issue 15: `curl -d '{"data": "x"}'` (a form type) says to send Content-Type: application/json,
    not only "data is empty"."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.post(
        f"{master.url}/api/push/{app_key}/c/e", data=b'{"data": "x"}', headers=headers, timeout=5
    )
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["error"]


# -- many channels, batches -----------------------------------------------------------


def test_one_event_to_many_channels(slave, master, app_key, clients) -> None:
    """`/events` publishes the same event to every listed channel once."""
    a = subscribed(slave, app_key, "u", "a", clients=clients)
    b = subscribed(slave, app_key, "u", "b", clients=clients)
    response = post(
        master, f"/api/apps/{app_key}/events", {"channels": ["a", "b", "a"], "event": "e", "data": {"x": 1}}
    )
    assert response.status_code == 200 and response.json()["channels"] == ["a", "b"]
    assert a.recv_json() == {"channel": "a", "event": "e", "data": {"x": 1}}
    assert b.recv_json() == {"channel": "b", "event": "e", "data": {"x": 1}}
    a.expect_silence(0.3)


def test_batch_publishes_in_order(slave, master, app_key, clients) -> None:
    """`/batch_events` publishes different events; each channel's arrive in the order given."""
    client = subscribed(slave, app_key, "u", "x", "y", clients=clients)
    batch = [
        {"channel": "x", "event": "one", "data": 1},
        {"channel": "y", "event": "two", "data": "2"},
        {"channel": "x", "event": "three", "data": [3]},
    ]
    response = post(master, f"/api/apps/{app_key}/batch_events", {"batch": batch})
    assert response.status_code == 200 and response.json() == {"published": 3}
    received = [client.recv_json() for _ in range(3)]
    for channel in ("x", "y"):
        assert [m for m in received if m["channel"] == channel] == [
            m for m in batch if m["channel"] == channel
        ]


@pytest.mark.parametrize(
    "path, body, reason",
    [
        ("events", {"channels": [], "event": "e", "data": 1}, "non-empty"),
        ("events", {"channels": ["ok", ""], "event": "e", "data": 1}, "channel is empty"),
        ("events", {"channels": ["ok"], "event": "e"}, "data is empty"),
        (
            "events",
            {"channels": ["c"] * 0 + [f"c{i}" for i in range(101)], "event": "e", "data": 1},
            "more than 100",
        ),
        ("events", {"channels": ["ok", 5], "event": "e", "data": 1}, "must be a string"),
        (
            "batch_events",
            {
                "batch": [
                    {"channel": "ok", "event": "e", "data": 1},
                    {"channel": "ok", "event": "", "data": 1},
                ]
            },
            "batch[1]",
        ),
        ("batch_events", {"batch": [{"channel": "ok", "event": "e", "data": 1}, "x"]}, "batch[1]"),
        ("batch_events", {"batch": [{"channel": "ok", "event": "e", "data": 1}] * 101}, "more than 100"),
        ("batch_events", {"batch": {}}, "non-empty list"),
    ],
)
def test_invalid_pushes_publish_nothing(slave, master, app_key, clients, path, body, reason) -> None:
    """All or nothing: one bad item refuses the whole call with 400, and no client receives anything."""
    client = subscribed(slave, app_key, "u", "ok", clients=clients)
    response = post(master, f"/api/apps/{app_key}/{path}", body)
    assert response.status_code == 400 and reason in response.json()["error"]
    client.expect_silence(0.3)


def test_ext_pushes_to_unknown_apps_are_400(master) -> None:
    """An unknown app is refused as in the seed routes."""
    response = post(master, "/api/apps/no-such-app/events", {"channels": ["c"], "event": "e", "data": 1})
    assert response.status_code == 400 and "unknown" in response.json()["error"]


# -- users ----------------------------------------------------------------------------


def numsub(redis_client: redis_lib.Redis, channel: str) -> int:
    return int(redis_client.pubsub_numsub(channel)[0][1])


def test_push_to_a_user_reaches_all_their_connections_on_every_slave(
    slave, second_slave, master, app_key, redis_client, webhook: Webhook, clients
) -> None:
    """A user push reaches each connection of that user in that app, on both slaves, and nobody else."""
    mine = [subscribed(s, app_key, "alice", "c", clients=clients) for s in (slave, slave, second_slave)]
    other_user = subscribed(slave, app_key, "bob", "c", clients=clients)
    other_app = new_app_key()
    redis_client.hset(other_app, "url", webhook.url)
    same_name_elsewhere = subscribed(second_slave, other_app, "alice", "c", clients=clients)
    wait_until(lambda: numsub(redis_client, user_channel(app_key, "alice")) >= 2, 5)
    response = post(master, f"/api/apps/{app_key}/users/alice/events", {"event": "dm", "data": {"hi": 1}})
    assert response.status_code == 200
    assert response.json() == {"user_id": "alice", "channel": "gusher.user", "event": "dm", "data": {"hi": 1}}
    for client in mine:
        assert client.recv_json() == {"channel": "gusher.user", "event": "dm", "data": {"hi": 1}}
    other_user.expect_silence(0.3)
    same_name_elsewhere.expect_silence(0.1)
    named = post(
        master, f"/api/apps/{app_key}/users/alice/events", {"event": "dm", "data": 2, "channel": "inbox"}
    )
    assert named.status_code == 200 and mine[0].recv_json()["channel"] == "inbox"


def test_user_channels_do_not_count_against_the_subscription_limit(slave, app_key, clients) -> None:
    """A client with a user id can still subscribe to its full quota of channels."""
    channels = [f"q{i}" for i in range(100)]
    client = Client(slave.ws_url, app_key, allow("limited", *channels))
    clients.append(client)
    for i, channel in enumerate(channels):
        client.send_json({"event": "gusher.subscribe", "data": {"id": i, "channel": channel}})
    replies = [client.recv_json() for _ in channels]
    assert all(r["event"] == "gusher.subscribe_succeeded" for r in replies)


def test_user_channel_cannot_be_subscribed_by_name(slave, master, app_key, redis_client, clients) -> None:
    """Even a client allowed `*` cannot reach another user's pushes by naming gusher's key."""
    spy = Client(slave.ws_url, app_key, allow("spy", "*"))
    clients.append(spy)
    assert spy.subscribe(user_channel(app_key, "victim"))["event"] == "gusher.subscribe_succeeded"
    victim = Client(slave.ws_url, app_key, allow("victim", "c"))
    clients.append(victim)
    wait_until(lambda: numsub(redis_client, user_channel(app_key, "victim")) >= 1, 5)
    assert (
        post(master, f"/api/apps/{app_key}/users/victim/events", {"event": "e", "data": 1}).status_code == 200
    )
    assert victim.recv_json()["event"] == "e"
    spy.expect_silence(0.3)


def test_a_user_push_never_reaches_another_apps_users(
    slave, master, redis_client, webhook: Webhook, clients
) -> None:
    """Cross-app: app `X` pushing to its user `b:alice` must not reach user `alice` of app `X:b`."""
    owner = new_app_key()
    neighbour = f"{owner}:b"  # ':' is allowed in app keys
    for key in (owner, neighbour):
        redis_client.hset(key, "url", webhook.url)
    victim = subscribed(slave, neighbour, "alice", "c", clients=clients)
    wait_until(lambda: numsub(redis_client, user_channel(neighbour, "alice")) >= 1, 5)
    response = post(master, f"/api/apps/{owner}/users/b:alice/events", {"event": "spoof", "data": 1})
    assert response.status_code == 200
    victim.expect_silence(0.5)
    assert post(master, f"/api/apps/{neighbour}/users/alice/events", {"event": "real", "data": 1}).ok
    assert victim.recv_json()["event"] == "real"


@pytest.mark.parametrize("user", ["a\x01b", "x" * 201])
def test_bad_user_ids_are_400(master, app_key, user) -> None:
    """User ids with control characters or over 200 characters are refused."""
    response = post(
        master, f"/api/apps/{app_key}/users/{requests.utils.quote(user)}/events", {"event": "e", "data": 1}
    )
    assert response.status_code == 400


# -- runtime channel changes and pattern pushes (issue 15, later gusher's) ----------------


def test_adding_a_channel_reaches_the_users_connections_on_every_slave(
    slave, second_slave, master, app_key, redis_client, clients
) -> None:
    """POST .../users/{user}/channels: each of alice's connections is told and may subscribe; bob not."""
    mine = [subscribed(s, app_key, "alice", "c", clients=clients) for s in (slave, second_slave)]
    bob = subscribed(slave, app_key, "bob", "c", clients=clients)
    assert mine[0].subscribe("vip")["event"] == "gusher.subscribe_error"
    wait_until(lambda: numsub(redis_client, user_channel(app_key, "alice")) >= 2, 5)
    response = post(master, f"/api/apps/{app_key}/users/alice/channels", {"channels": ["vip", "vip.*"]})
    assert response.status_code == 200
    assert response.json() == {"user_id": "alice", "channels": ["vip", "vip.*"], "mode": "add"}
    for client in mine:
        assert client.recv_json() == {
            "channel": "gusher.user",
            "event": "gusher.channels_changed",
            "data": {"channels": ["c", "vip", "vip.*"], "unsubscribed": []},
        }
        assert client.subscribe("vip.room")["event"] == "gusher.subscribe_succeeded"
    bob.expect_silence(0.2)
    assert bob.subscribe("vip")["event"] == "gusher.subscribe_error"


def test_replacing_channels_unsubscribes_what_is_no_longer_allowed(
    slave, master, app_key, redis_client, clients
) -> None:
    """PUT .../users/{user}/channels: the list becomes the user's; their other subscriptions end."""
    client = subscribed(slave, app_key, "carol", "a", "b", clients=clients)
    wait_until(lambda: numsub(redis_client, user_channel(app_key, "carol")) >= 1, 5)
    response = requests.put(
        f"{master.url}/api/apps/{app_key}/users/carol/channels", json={"channels": ["b", "z"]}, timeout=5
    )
    assert response.status_code == 200 and response.json()["mode"] == "replace"
    assert client.recv_json()["data"] == {"channels": ["b", "z"], "unsubscribed": ["a"]}
    post(master, f"/api/apps/{app_key}/events", {"channels": ["a", "b"], "event": "e", "data": 1})
    assert client.recv_json()["channel"] == "b"
    client.expect_silence(0.3)
    revoked = requests.put(
        f"{master.url}/api/apps/{app_key}/users/carol/channels", json={"channels": []}, timeout=5
    )
    assert revoked.status_code == 200
    assert client.recv_json()["data"] == {"channels": [], "unsubscribed": ["b"]}


@pytest.mark.parametrize(
    "method, body, reason",
    [
        ("post", {"channels": []}, "non-empty list"),
        ("post", {}, "non-empty list"),
        ("put", {"channels": "a"}, "must be a list"),
        ("post", {"channels": ["ok", ""]}, "channel is empty"),
        ("post", {"channels": ["ok", 3]}, "must be a string"),
        ("put", {"channels": ["x" * 201]}, "longer than 200"),
    ],
)
def test_bad_channel_changes_are_400_and_change_nothing(
    slave, master, app_key, redis_client, clients, method, body, reason
) -> None:
    client = subscribed(slave, app_key, "dave", "c", clients=clients)
    wait_until(lambda: numsub(redis_client, user_channel(app_key, "dave")) >= 1, 5)
    response = requests.request(
        method, f"{master.url}/api/apps/{app_key}/users/dave/channels", json=body, timeout=5
    )
    assert response.status_code == 400 and reason in response.json()["error"]
    client.expect_silence(0.3)


def test_a_pattern_push_reaches_the_live_channels_that_match(slave, master, app_key, clients) -> None:
    """POST .../pattern_events: every channel with a subscriber now that matches, and no other;
    glob characters Redis knows (`?`, `[`) are literal, as in allowed lists."""
    rooms = {name: subscribed(slave, app_key, "u", name, clients=clients) for name in ("room.1", "room.2")}
    lobby = subscribed(slave, app_key, "u", "lobby", clients=clients)
    literal = subscribed(slave, app_key, "u", "q?[x]", clients=clients)
    response = post(
        master, f"/api/apps/{app_key}/pattern_events", {"channel_pattern": "room.*", "event": "e", "data": 7}
    )
    assert response.status_code == 200
    assert response.json() == {
        "channel_pattern": "room.*",
        "channels": ["room.1", "room.2"],
        "event": "e",
        "data": 7,
    }
    for name, client in rooms.items():
        assert client.recv_json() == {"channel": name, "event": "e", "data": 7}
    lobby.expect_silence(0.2)
    assert post(
        master, f"/api/apps/{app_key}/pattern_events", {"channel_pattern": "q?[*", "event": "e", "data": 1}
    ).json()["channels"] == ["q?[x]"]
    assert literal.recv_json()["channel"] == "q?[x]"
    nothing = post(
        master, f"/api/apps/{app_key}/pattern_events", {"channel_pattern": "q.*", "event": "e", "data": 1}
    )
    assert nothing.status_code == 200 and nothing.json()["channels"] == []


def test_a_pattern_push_never_reaches_another_app(slave, master, redis_client, webhook, clients) -> None:
    """App `X` pushing `*` reaches none of app `X:b`'s channels, nor its users'."""
    owner = new_app_key()
    neighbour = f"{owner}:b"
    for key in (owner, neighbour):
        redis_client.hset(key, "url", webhook.url)
    victim = subscribed(slave, neighbour, "alice", "c", clients=clients)
    response = post(
        master, f"/api/apps/{owner}/pattern_events", {"channel_pattern": "*", "event": "e", "data": 1}
    )
    assert response.status_code == 200 and response.json()["channels"] == []
    victim.expect_silence(0.3)


def test_a_pattern_matching_more_than_one_push_may_reach_is_refused(slave, master, app_key, clients) -> None:
    """All or nothing, like a multi-channel push: 400 naming the count and the bound."""
    halves = [Client(slave.ws_url, app_key, allow("u", "*")) for _ in range(2)]
    clients.extend(halves)
    for index in range(101):  # 101 channels over two clients (100 subscriptions each at most)
        halves[index % 2].send_json(
            {"event": "gusher.subscribe", "data": {"id": index, "channel": f"many.{index}"}}
        )
    for client, count in zip(halves, (51, 50), strict=True):
        assert all(client.recv_json()["event"] == "gusher.subscribe_succeeded" for _ in range(count))
    response = post(
        master, f"/api/apps/{app_key}/pattern_events", {"channel_pattern": "many.*", "event": "e", "data": 1}
    )
    assert response.status_code == 400
    assert "101 live channels match" in response.json()["error"] and "100" in response.json()["error"]
    halves[0].expect_silence(0.3)


# -- presence -------------------------------------------------------------------------


def presence(master: GunicornProcess, app_key: str, path: str = "") -> dict:
    response = requests.get(f"{master.url}/api/apps/{app_key}{path}", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def test_presence_lists_channels_and_users(slave, second_slave, master, app_key, clients) -> None:
    """Channels with subscriber counts and users online, merged over every slave and worker."""
    subscribed(slave, app_key, "p1", "lobby", "news.a", clients=clients)
    subscribed(second_slave, app_key, "p2", "lobby", clients=clients)
    subscribed(second_slave, app_key, "p2", "lobby", clients=clients)
    anonymous = Client(slave.ws_url, app_key, allow("", "lobby"))
    clients.append(anonymous)
    anonymous.subscribe("lobby")
    expected = {
        "lobby": {"subscription_count": 4, "user_count": 2},
        "news.a": {"subscription_count": 1, "user_count": 1},
    }
    wait_until(lambda: presence(master, app_key, "/channels")["channels"] == expected, 5)
    assert presence(master, app_key, "/channels?prefix=news.")["channels"] == {"news.a": expected["news.a"]}
    assert presence(master, app_key, "/users")["users"] == [
        {"id": "p1", "connections": 1},
        {"id": "p2", "connections": 2},
    ]
    assert presence(master, app_key, "/channels/lobby/users")["users"] == [{"id": "p1"}, {"id": "p2"}]
    assert presence(master, app_key, "/channels/lobby") == {
        "channel": "lobby",
        "occupied": True,
        "subscription_count": 4,
        "user_count": 2,
    }
    assert presence(master, app_key, "/channels/empty")["occupied"] is False


def test_presence_follows_disconnects(slave, master, app_key, clients) -> None:
    """A user who closes their connection leaves the lists within a heartbeat or two."""
    client = subscribed(slave, app_key, "leaver", "room", clients=clients)
    wait_until(
        lambda: presence(master, app_key, "/users")["users"] == [{"id": "leaver", "connections": 1}], 5
    )
    client.close()
    wait_until(lambda: presence(master, app_key, "/users")["users"] == [], 5)
    assert presence(master, app_key, "/channels")["channels"] == {}


def test_a_crashed_slaves_users_vanish_within_three_intervals(
    redis_server, master, app_key, redis_client
) -> None:
    """SIGKILL a slave: its users disappear from presence within three heartbeat intervals (1 s here)."""
    doomed = GunicornProcess("slave", redis_server.addr, workers=1).start()
    try:
        client = Client(doomed.ws_url, app_key, allow("ghost", "haunt"))
        client.subscribe("haunt")
        wait_until(
            lambda: presence(master, app_key, "/users")["users"] == [{"id": "ghost", "connections": 1}], 5
        )
        for pid in doomed.worker_pids():
            os.kill(pid, signal.SIGKILL)
        doomed.stop(signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: presence(master, app_key, "/users")["users"] == [], 6)
        assert time.monotonic() - killed <= 3 * 1.0 + 1.0
        assert presence(master, app_key, "/channels")["channels"] == {}
        client.close()
    finally:
        doomed.stop()
