"""The Pusher HTTP API on the master (gusher/api/pusher.py, gusher/core/pusher_api.py).

Driven by Pusher's own server SDKs, unchanged: `pusher` from PyPI in this
process, and the npm `pusher` package from Node (tests/pusher/http_api.mjs).
What an SDK would refuse to send is sent with `requests`, signed by this
file's own `signed` (Pusher's scheme, written from its documentation, not
from gusher's code). Messages are received by gusher-protocol clients on a
real slave.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pusher
import pytest
import redis as redis_lib
import requests
from prometheus_client.parser import text_string_to_metric_families

from gusher.core.pusher_api import parse_trigger, string_to_sign, verify_request
from gusher.errors import PayloadTooLarge, SignatureError
from gusher.keys import members_keys, pubsub_channel, user_channel
from tests.support import ROOT, Client, GunicornProcess, Webhook, allow, new_app_key, wait_until

NODE = shutil.which("node")
NODE_PACKAGE = ROOT / "tests" / "pusher"


@dataclass
class PusherApp:
    key: str
    secret: str
    app_id: str

    def sdk(self, master: GunicornProcess, **options: Any) -> pusher.Pusher:
        """Pusher's Python SDK pointed at the master, as a user would point it."""
        settings = {"app_id": self.app_id, "key": self.key, "secret": self.secret, **options}
        return pusher.Pusher(host="127.0.0.1", port=master.port, ssl=False, **settings)


@pytest.fixture
def app(redis_client: redis_lib.Redis, webhook: Webhook) -> Iterator[PusherApp]:
    """An app with a secret and a Pusher app_id (numeric: the Python SDK accepts no other)."""
    made = PusherApp(new_app_key("pusher"), uuid.uuid4().hex, str(random.randrange(10**6, 10**7)))
    redis_client.hset(made.key, mapping={"url": webhook.url, "secret": made.secret, "app_id": made.app_id})
    yield made
    redis_client.delete(made.key)


def signed(
    master: GunicornProcess,
    method: str,
    path: str,
    app: PusherApp,
    body: Any = None,
    params: dict[str, str] | None = None,
    timestamp: int | None = None,
    after: dict[str, str] | None = None,
) -> requests.Response:
    """A request signed as Pusher's REST API reference says; `after` overrides query fields once signed."""
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    query = {
        "auth_key": app.key,
        "auth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "auth_version": "1.0",
        **(params or {}),
    }
    if raw:
        query["body_md5"] = hashlib.md5(raw).hexdigest()
    signed_path = urllib.parse.unquote(path)  # what the SDKs sign: the path as they wrote it
    text = "\n".join([method, signed_path, "&".join(f"{k}={v}" for k, v in sorted(query.items()))])
    query["auth_signature"] = hmac.new(app.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    query.update(after or {})
    headers = {"Content-Type": "application/json"}
    return requests.request(method, master.url + path, params=query, data=raw, headers=headers, timeout=10)


def subscribed(slave: GunicornProcess, app_key: str, user: str, *channels: str, clients: list) -> Client:
    """A gusher-protocol client of `user` subscribed to `channels`."""
    client = Client(slave.ws_url, app_key, allow(user, *channels))
    clients.append(client)
    for channel in channels:
        assert client.subscribe(channel)["event"] == "gusher.subscribe_succeeded"
    return client


def numsub(redis_client: redis_lib.Redis, key: str) -> int:
    return int(redis_client.pubsub_numsub(key)[0][1])


def message(channel: str, event: str, data: str) -> dict[str, str]:
    return {"channel": channel, "event": event, "data": data}


def by_channel(messages: Iterable[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """Messages grouped by channel, in the order received: order is kept per channel, not across them."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for received in messages:
        grouped.setdefault(received["channel"], []).append(received)
    return grouped


# --- the pure part: signatures and bodies ----------------------------------------------------


def test_the_string_to_sign_is_pusher_s() -> None:
    """METHOD, the decoded path and the sorted pairs but auth_signature, keys lower-cased, unescaped."""
    params = {"auth_key": "k", "Info": "user_count,subscription_count", "auth_signature": "x", "a": "b c"}
    assert string_to_sign("get", "/apps/1/channels", params) == (
        "GET\n/apps/1/channels\na=b c&auth_key=k&info=user_count,subscription_count"
    )


def test_a_request_the_python_sdk_signs_is_verified() -> None:
    """pusher-http-python's own Request (body_md5 even on GET) passes; one changed byte does not."""
    client = pusher.Pusher(app_id="1", key="key", secret="secret")._pusher_client
    for request in (
        pusher.http.Request(client, "GET", "/apps/1/channels", {"info": "subscription_count"}),
        pusher.http.Request(client, "POST", "/apps/1/events", {"name": "e", "channels": ["c"], "data": "d"}),
    ):
        params = dict(request.query_params)
        verify_request("secret", request.method, request.path, params, request.body, time.time())
        with pytest.raises(SignatureError, match="auth_signature"):
            verify_request("secret", request.method, request.path + "x", params, request.body, time.time())
        with pytest.raises(SignatureError, match="auth_timestamp"):
            verify_request("secret", request.method, request.path, params, request.body, time.time() + 601)


def test_data_is_bounded_in_utf_8_bytes() -> None:
    """`data` over the bound (counted in UTF-8 bytes, not characters) is a 413; the body is checked first."""
    body = json.dumps({"name": "e", "channel": "c", "data": "é" * 6}).encode()
    assert len(parse_trigger("app", body, 100, 12)[0].routed[1].data) == 6
    with pytest.raises(PayloadTooLarge):
        parse_trigger("app", body, 100, 11)


def test_a_user_channel_travels_on_the_user_s_key_and_keeps_its_name() -> None:
    """`#server-to-user-{id}` is published on gusher's key of that user, named as Pusher names it."""
    body = json.dumps({"name": "e", "channels": ["#server-to-user-u1", "c"], "data": "d", "socket_id": "1.2"})
    events = parse_trigger("app", body.encode(), 100, 1000)
    assert [(e.routed[0], e.routed[1].channel, e.routed[1].exclude) for e in events] == [
        (user_channel("app", "u1"), "#server-to-user-u1", "1.2"),
        (pubsub_channel("app", "c"), "c", "1.2"),
    ]


# --- the Python SDK ---------------------------------------------------------------------------


def test_trigger_reaches_subscribers_with_data_as_the_sdk_encoded_it(master, slave, app, clients) -> None:
    """`trigger` answers {}; subscribers get `data` as the string the SDK sent (objects JSON-encoded)."""
    client = subscribed(slave, app.key, "u", "news", clients=clients)
    sdk = app.sdk(master)
    assert sdk.trigger("news", "created", {"id": 1, "title": "é"}) == {}
    assert client.recv_json() == message("news", "created", '{"id": 1, "title": "é"}')
    assert sdk.trigger("news", "plain", "just text") == {}
    assert client.recv_json() == message("news", "plain", "just text")


def test_trigger_to_many_channels_reaches_each_once(master, slave, app, clients) -> None:
    """One trigger to several channels (one named twice) is one message on each channel."""
    a = subscribed(slave, app.key, "a", "c1", "c2", clients=clients)
    b = subscribed(slave, app.key, "b", "c3", clients=clients)
    assert app.sdk(master).trigger(["c1", "c2", "c3", "c1"], "multi", "x") == {}
    assert sorted(a.recv_json()["channel"] for _ in range(2)) == ["c1", "c2"]
    assert b.recv_json() == message("c3", "multi", "x")
    a.expect_silence(0.3)


def test_socket_id_excludes_that_connection_only(master, slave, app, clients) -> None:
    """`socket_id` (the id in a gusher client's replies) is the one connection that does not receive it."""
    sender = subscribed(slave, app.key, "s", "room", clients=clients)
    other = subscribed(slave, app.key, "o", "room", clients=clients)
    # A second subscribe is refused (subscribed already), but every reply names its connection.
    socket_id = sender.subscribe("room", "again")["socket_id"]
    sdk = app.sdk(master)
    assert sdk.trigger("room", "said", "hi", socket_id=socket_id) == {}
    assert other.recv_json() == message("room", "said", "hi")
    sender.expect_silence(0.5)
    assert sdk.trigger("room", "next", "all") == {}
    assert sender.recv_json() == message("room", "next", "all")  # it was listening all along
    assert other.recv_json() == message("room", "next", "all")


def test_trigger_batch_publishes_every_event(master, slave, app, clients) -> None:
    """`trigger_batch` answers {} and each event reaches its channel, in order on each channel."""
    client = subscribed(slave, app.key, "u", "b1", "b2", clients=clients)
    batch = [
        {"channel": "b1", "name": "first", "data": {"n": 1}},
        {"channel": "b2", "name": "second", "data": "two"},
        {"channel": "b1", "name": "third", "data": "3"},
    ]
    assert app.sdk(master).trigger_batch(batch) == {}
    received = by_channel(client.recv_json() for _ in range(3))
    assert received == {
        "b1": [message("b1", "first", '{"n": 1}'), message("b1", "third", "3")],
        "b2": [message("b2", "second", "two")],
    }


def test_a_batch_with_one_bad_event_publishes_nothing(master, slave, app, clients) -> None:
    """All or nothing: the 400 names the bad item, and the good items before it were not published."""
    client = subscribed(slave, app.key, "u", "ok", clients=clients)
    batch = [
        {"channel": "ok", "name": "e", "data": "d"},
        {"channel": "bad channel", "name": "e", "data": "d"},
    ]
    response = signed(master, "POST", f"/apps/{app.app_id}/batch_events", app, {"batch": batch})
    assert response.status_code == 400 and "batch[1]" in response.json()["error"]
    client.expect_silence(0.5)


def test_info_on_a_trigger_and_a_batch_answers_the_counts(master, slave, app, clients) -> None:
    """`info` makes a trigger answer `{"channels": {...}}` and a batch `{"batch": [...]}`; user_count
    is left out for channels that are not presence channels."""
    subscribed(slave, app.key, "a", "counted", clients=clients)
    subscribed(slave, app.key, "b", "counted", clients=clients)
    sdk = app.sdk(master)
    wait_until(lambda: sdk.channel_info("counted", ["subscription_count"]).get("subscription_count") == 2)
    body = {
        "name": "e",
        "data": "d",
        "channels": ["counted", "empty"],
        "info": "subscription_count,user_count",
    }
    response = signed(master, "POST", f"/apps/{app.app_id}/events", app, body)
    assert response.status_code == 200
    assert response.json() == {
        "channels": {"counted": {"subscription_count": 2}, "empty": {"subscription_count": 0}}
    }
    batch = [
        {"channel": "counted", "name": "e", "data": "d", "info": "subscription_count"},
        {"channel": "counted", "name": "e", "data": "d"},
    ]
    response = signed(master, "POST", f"/apps/{app.app_id}/batch_events", app, {"batch": batch})
    assert response.json() == {"batch": [{"subscription_count": 2}, {}]}


def test_channels_info_lists_the_occupied_channels_by_prefix(master, slave, app, clients) -> None:
    """`channels_info` lists occupied channels only, filtered by prefix, with the counts asked for."""
    subscribed(slave, app.key, "a", "room-1", "room-2", "lobby", clients=clients)
    subscribed(slave, app.key, "b", "room-1", clients=clients)
    sdk = app.sdk(master)
    assert sdk.channels_info() == {"channels": {"lobby": {}, "room-1": {}, "room-2": {}}}
    assert sdk.channels_info(prefix_filter="room-") == {"channels": {"room-1": {}, "room-2": {}}}
    wanted = {"channels": {"room-1": {"subscription_count": 2}, "room-2": {"subscription_count": 1}}}
    wait_until(lambda: sdk.channels_info("room-", ["subscription_count"]) == wanted)
    assert app.sdk(master).channels_info(prefix_filter="nothing-") == {"channels": {}}


def test_user_count_needs_a_presence_prefix_as_at_pusher(master, slave, app, redis_client, clients) -> None:
    """`user_count` is a PusherBadRequest without `filter_by_prefix=presence-`; with it, members count."""
    subscribed(slave, app.key, "a", "presence-lobby", "public", clients=clients)
    members = members_keys(pubsub_channel(app.key, "presence-lobby"))[0]
    redis_client.hset(members, mapping={"u1": json.dumps({"name": "one"}), "u2": "{}"})
    try:
        sdk = app.sdk(master)
        with pytest.raises(pusher.errors.PusherBadRequest, match="user_count"):
            sdk.channels_info(attributes=["user_count"])
        assert sdk.channels_info("presence-", ["user_count"]) == {
            "channels": {"presence-lobby": {"user_count": 2}}
        }
    finally:
        redis_client.delete(members)


def test_channel_info_says_whether_a_channel_is_occupied(master, slave, app, redis_client, clients) -> None:
    """`channel_info`: occupied or not, subscription_count, and user_count for a presence channel only."""
    sdk = app.sdk(master)
    assert sdk.channel_info("quiet") == {"occupied": False}
    assert sdk.channel_info("quiet", ["subscription_count"]) == {"occupied": False, "subscription_count": 0}
    subscribed(slave, app.key, "a", "busy", "presence-room", clients=clients)
    assert sdk.channel_info("busy") == {"occupied": True}
    wait_until(
        lambda: (
            sdk.channel_info("busy", ["subscription_count"]) == {"occupied": True, "subscription_count": 1}
        )
    )
    with pytest.raises(pusher.errors.PusherBadRequest, match="presence"):
        sdk.channel_info("busy", ["user_count"])
    members = members_keys(pubsub_channel(app.key, "presence-room"))[0]
    redis_client.hset(members, "u1", "{}")
    try:
        assert sdk.channel_info("presence-room", ["user_count"]) == {"occupied": True, "user_count": 1}
    finally:
        redis_client.delete(members)


def test_channel_info_of_a_name_with_every_pusher_character(master, slave, app, clients) -> None:
    """A channel name using all of Pusher's charset (`-_=@,.;`) travels in the path and is signed as sent."""
    name = "a-b_c=d@e,f.g;h"
    client = Client(slave.ws_url, app.key, allow("a", "*"))  # the webhook's list is comma-separated
    clients.append(client)
    assert client.subscribe(name)["event"] == "gusher.subscribe_succeeded"
    assert app.sdk(master).channel_info(name) == {"occupied": True}


def test_users_info_lists_a_presence_channel_s_members(master, app, redis_client) -> None:
    """`users_info` gives the member ids; an empty channel none; a public channel is a PusherBadRequest."""
    sdk = app.sdk(master)
    members = members_keys(pubsub_channel(app.key, "presence-team"))[0]
    redis_client.hset(members, mapping={"bob": "{}", "alice": json.dumps({"n": 1})})
    try:
        assert sdk.users_info("presence-team") == {"users": [{"id": "alice"}, {"id": "bob"}]}
    finally:
        redis_client.delete(members)
    assert sdk.users_info("presence-empty") == {"users": []}
    with pytest.raises(pusher.errors.PusherBadRequest, match="presence"):
        sdk.users_info("public")


def test_send_to_user_reaches_every_connection_of_that_user(
    master, slave, app, redis_client, clients
) -> None:
    """`send_to_user` (a `#server-to-user-{id}` trigger) reaches the user's connections, nobody else's."""
    mine = [subscribed(slave, app.key, "u7", "x", clients=clients) for _ in range(2)]
    other = subscribed(slave, app.key, "u8", "x", clients=clients)
    wait_until(lambda: numsub(redis_client, user_channel(app.key, "u7")) >= 1)
    assert app.sdk(master).send_to_user("u7", "hello", {"n": 1}) == {}
    for client in mine:
        assert client.recv_json() == message("#server-to-user-u7", "hello", '{"n": 1}')
    other.expect_silence(0.3)


def test_terminate_user_connections_publishes_the_terminate_control(master, app, redis_client) -> None:
    """Both paths (the SDK's un-prefixed one and `/apps/{id}/…`) answer {} and publish on the user's key."""
    listener = redis_client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(user_channel(app.key, "u9"))
    try:
        assert app.sdk(master).terminate_user_connections("u9") == {}
        response = signed(master, "POST", f"/apps/{app.app_id}/users/u9/terminate_connections", app, {})
        assert response.status_code == 200 and response.json() == {}
        payloads = []
        deadline = time.monotonic() + 5
        while len(payloads) < 2 and time.monotonic() < deadline:
            received = listener.get_message(timeout=0.5)
            if received:
                payloads.append(json.loads(received["data"]))
    finally:
        listener.close()
    assert (
        payloads
        == [{"channel": "", "event": "pusher:terminate", "data": {}, "gusher_control": "terminate"}] * 2
    )


def test_terminate_user_connections_closes_that_user_s_connections(
    master, slave, app, redis_client, clients
) -> None:
    """Every connection of the user is closed (gusher's protocol: 1008); another user's stays open."""
    mine = [subscribed(slave, app.key, "gone", "c", clients=clients) for _ in range(2)]
    other = subscribed(slave, app.key, "stays", "c", clients=clients)
    wait_until(lambda: numsub(redis_client, user_channel(app.key, "gone")) >= 1)
    sdk = app.sdk(master)
    assert sdk.terminate_user_connections("gone") == {}
    for client in mine:
        assert client.recv_close()[0] == 1008
    assert sdk.trigger("c", "after", "x") == {}
    assert other.recv_json() == message("c", "after", "x")


def test_an_app_without_an_app_id_field_takes_any_app_id(
    master, slave, redis_client, webhook, clients
) -> None:
    """The app is found by its key; `{app_id}` is only checked when the app's hash names one."""
    app = PusherApp(new_app_key("pusher"), "s3cret", "42")
    redis_client.hset(app.key, mapping={"url": webhook.url, "secret": app.secret})
    client = subscribed(slave, app.key, "u", "c", clients=clients)
    assert app.sdk(master).trigger("c", "e", "d") == {}
    assert client.recv_json() == message("c", "e", "d")


def test_the_sdk_reports_a_wrong_secret_or_app_id_as_bad_auth(master, app) -> None:
    """PusherBadAuth (401) with the reason, for a wrong secret and for another app's app_id."""
    with pytest.raises(pusher.errors.PusherBadAuth, match="auth_signature"):
        PusherApp(app.key, app.secret + "x", app.app_id).sdk(master).trigger("c", "e", "d")
    with pytest.raises(pusher.errors.PusherBadAuth, match="app_id"):
        PusherApp(app.key, app.secret, "1").sdk(master).trigger("c", "e", "d")


def test_the_master_counts_pusher_triggers_as_pushes(master, app) -> None:
    """`gusher_pushes_total` counts the SDK's triggers (accepted) and refused ones, as every push route."""

    def pushes(result: str) -> float:
        page = requests.get(f"{master.url}/metrics", timeout=5).text
        for family in text_string_to_metric_families(page):
            for sample in family.samples:
                if sample.name == "gusher_pushes_total" and sample.labels == {"result": result}:
                    return sample.value
        return 0.0

    accepted, refused = pushes("accepted"), pushes("refused")
    sdk = app.sdk(master)
    for _ in range(2):
        sdk.trigger("c", "e", "d")
        sdk.trigger_batch([{"channel": "c", "name": "e", "data": "d"}])
    with pytest.raises(pusher.errors.PusherBadAuth):
        PusherApp(app.key, "wrong", app.app_id).sdk(master).trigger("c", "e", "d")
    # Both workers' counts are summed, a sibling's as of its last heartbeat (1 s here).
    wait_until(lambda: pushes("accepted") >= accepted + 4 and pushes("refused") >= refused + 1)


# --- refusals, with requests -------------------------------------------------------------------


def test_a_correctly_signed_plain_request_is_accepted(master, app) -> None:
    """The test's own signing agrees with the server (so the refusals below are the server's doing)."""
    response = signed(
        master, "POST", f"/apps/{app.app_id}/events", app, {"name": "e", "channel": "c", "data": "d"}
    )
    assert response.status_code == 200 and response.json() == {}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bad signature", "invalid auth_signature"),
        ("stale timestamp", "auth_timestamp"),
        ("future timestamp", "auth_timestamp"),
        ("unknown key", "unknown auth_key"),
        ("no key", "auth_key is missing"),
        ("wrong app_id", "app_id"),
        ("body_md5 mismatch", "body_md5"),
        ("body_md5 missing", "body_md5 is missing"),
        ("auth_version", "auth_version"),
        ("no secret", "no secret"),
    ],
)
def test_unauthenticated_requests_are_401_with_a_reason(
    master, app, redis_client, case: str, reason: str
) -> None:
    """Each way a request fails to prove it knows the app's secret is a 401 `{"error": reason}`."""
    path = f"/apps/{app.app_id}/events"
    body = {"name": "e", "channel": "c", "data": "d"}
    now = int(time.time())
    if case == "bad signature":
        response = signed(master, "POST", path, app, body, after={"auth_signature": "0" * 64})
    elif case == "stale timestamp":
        response = signed(master, "POST", path, app, body, timestamp=now - 700)
    elif case == "future timestamp":
        response = signed(master, "POST", path, app, body, timestamp=now + 700)
    elif case == "unknown key":
        response = signed(master, "POST", path, PusherApp("no-such-app", app.secret, app.app_id), body)
    elif case == "no key":
        response = signed(master, "POST", path, app, body, after={"auth_key": ""})
    elif case == "wrong app_id":
        response = signed(master, "POST", "/apps/999/events", app, body)
    elif case == "body_md5 mismatch":
        response = signed(
            master, "POST", path, app, body, after={"body_md5": hashlib.md5(b"other").hexdigest()}
        )
    elif case == "body_md5 missing":
        text = "\n".join(["POST", path, f"auth_key={app.key}&auth_timestamp={now}&auth_version=1.0"])
        signature = hmac.new(app.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        query = {
            "auth_key": app.key,
            "auth_timestamp": str(now),
            "auth_version": "1.0",
            "auth_signature": signature,
        }
        response = requests.post(master.url + path, params=query, json=body, timeout=5)
    elif case == "auth_version":
        response = signed(master, "POST", path, app, body, params={"auth_version": "2.0"})
    else:
        open_app = PusherApp(new_app_key("open"), "unused", "")
        redis_client.hset(open_app.key, "url", "http://127.0.0.1:9/auth")
        response = signed(master, "POST", "/apps/1/events", open_app, body)
    assert response.status_code == 401, response.text
    assert reason in response.json()["error"]


def test_a_bad_signature_names_the_string_to_sign_but_not_the_secret(master, app) -> None:
    """As at Pusher, the refusal shows what should have been signed, so a developer can compare."""
    response = signed(master, "GET", f"/apps/{app.app_id}/channels", app, after={"auth_signature": "f" * 64})
    error = response.json()["error"]
    assert response.status_code == 401 and f"GET\\n/apps/{app.app_id}/channels\\nauth_key={app.key}" in error
    assert app.secret not in error


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (
            {"name": "e", "data": "d", "channels": [f"c{i}" for i in range(101)]},
            400,
            "more than 100 channels",
        ),
        ({"name": "e", "data": "d", "channels": []}, 400, "non-empty list"),
        ({"name": "e", "data": "d"}, 400, "channel"),
        ({"name": "e", "data": "d", "channel": "a", "channels": ["b"]}, 400, "not both"),
        ({"name": "e", "data": "d", "channel": "bad name"}, 400, "Pusher channel name"),
        ({"name": "e", "data": "d", "channel": "c" * 201}, 400, "Pusher channel name"),
        ({"name": "e" * 201, "data": "d", "channel": "c"}, 400, "longer than 200"),
        ({"name": "", "data": "d", "channel": "c"}, 400, "empty"),
        ({"name": "e", "data": {"an": "object"}, "channel": "c"}, 400, "data must be a string"),
        ({"name": "e", "channel": "c"}, 400, "data must be a string"),
        ({"name": "e", "data": "d", "channel": "c", "socket_id": "abc"}, 400, "socket_id"),
        ({"name": "e", "data": "d", "channel": "c", "info": "occupied"}, 400, "info"),
        ({"name": "e", "data": "x" * 1_100_000, "channel": "c"}, 413, ""),
    ],
)
def test_bad_trigger_bodies_are_refused_clearly(master, app, body: Any, status: int, reason: str) -> None:
    """Every malformed trigger body is a 4xx `{"error": …}` naming what is wrong, never a 500."""
    response = signed(master, "POST", f"/apps/{app.app_id}/events", app, body)
    assert response.status_code == status, response.text
    assert reason in response.json()["error"]


def test_a_batch_over_the_bound_is_refused(master, app) -> None:
    """More than GUSHER_MAX_BATCH_EVENTS (100) events in one batch is a 400."""
    batch = [{"channel": "c", "name": "e", "data": "d"}] * 101
    response = signed(master, "POST", f"/apps/{app.app_id}/batch_events", app, {"batch": batch})
    assert response.status_code == 400 and "more than 100 events" in response.json()["error"]


def test_bad_read_requests_are_refused_clearly(master, app) -> None:
    """Unknown `info`, a malformed channel in the path, an unknown or repeated query name are 400s."""
    base = f"/apps/{app.app_id}/channels"
    assert signed(master, "GET", base, app, params={"info": "nonsense"}).status_code == 400
    assert signed(master, "GET", f"{base}/bad%20name", app).status_code == 400
    typo = signed(master, "GET", base, app, params={"filter_by_prefx": "room-"})
    assert typo.status_code == 400 and "unknown query parameter 'filter_by_prefx'" in typo.json()["error"]
    repeated = requests.get(f"{master.url}{base}?info=subscription_count&info=user_count", timeout=5)
    assert repeated.status_code == 400 and "more than once" in repeated.json()["error"]
    terminate = signed(master, "POST", f"/apps/{app.app_id}/users/bad%20user/terminate_connections", app, {})
    assert terminate.status_code == 400 and "user_id" in terminate.json()["error"]


# --- the npm SDK ------------------------------------------------------------------------------


def test_the_node_sdk_works_unchanged(master, slave, app, clients) -> None:
    """pusher-http-node 5: trigger (one, many, socket_id, info), triggerBatch, get channels and a channel,
    terminateUserConnections; a refused user_count and a wrong secret are its RequestError with the status."""
    if NODE is None or not (NODE_PACKAGE / "node_modules" / "pusher").exists():
        assert not os.environ.get("GUSHER_CI"), "CI installs node and runs `npm ci` in tests/pusher"
        pytest.skip("node or tests/pusher/node_modules is missing (`npm ci` in tests/pusher)")
    channel = "node"
    client = subscribed(slave, app.key, "n", channel, f"{channel}-b", clients=clients)
    excluded = subscribed(slave, app.key, "x", channel, clients=clients)
    excluded_id = excluded.subscribe(channel, "again")["socket_id"]
    sdk = app.sdk(master)
    wait_until(lambda: sdk.channel_info(channel, ["subscription_count"]).get("subscription_count") == 2)
    run = subprocess.run(
        [NODE, "http_api.mjs", "127.0.0.1", str(master.port), app.app_id, app.key, app.secret, channel],
        cwd=NODE_PACKAGE,
        env={**os.environ, "EXCLUDED": excluded_id},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(run.stdout)
    for name in ("trigger", "triggerMany", "triggerExcept", "terminate"):
        assert results[name] == {"status": 200, "body": {}}, (name, results[name])
    assert results["triggerInfo"]["body"] == {"channels": {channel: {"subscription_count": 2}}}
    assert results["batch"]["body"] == {"batch": [{}, {"subscription_count": 2}]}
    assert results["channels"]["body"] == {
        "channels": {channel: {"subscription_count": 2}, f"{channel}-b": {"subscription_count": 1}}
    }
    assert results["channel"]["body"] == {"occupied": True, "subscription_count": 2}
    assert (
        results["userCountRefused"]["status"] == 400 and "user_count" in results["userCountRefused"]["body"]
    )
    assert results["wrongSecret"]["status"] == 401 and "auth_signature" in results["wrongSecret"]["body"]
    assert by_channel(client.recv_json() for _ in range(7)) == {
        channel: [
            message(channel, "single", '{"n":1}'),
            message(channel, "many", "plain text"),
            message(channel, "except", "x"),
            message(channel, "info", "x"),
            message(channel, "b1", '{"k":1}'),
            message(channel, "b2", "two"),
        ],
        f"{channel}-b": [message(f"{channel}-b", "many", "plain text")],
    }
    got = [excluded.recv_json()["event"] for _ in range(5)]
    assert got == ["single", "many", "info", "b1", "b2"]  # not "except": its socket_id was excluded
