"""The slave's WebSocket route and protocol, end to end (seed contract)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import redis as redis_lib
import requests
import websocket

from tests.support import Client, GunicornProcess, Webhook, allow, new_app_key, push, without_socket_id


def connect(slave: GunicornProcess, app_key: str, auth: str | None, clients: list[Client]) -> Client:
    client = Client(slave.ws_url, app_key, auth)
    clients.append(client)
    return client


def handshake_status(slave: GunicornProcess, app_key: str, auth: str | None, **options) -> tuple[int, dict]:
    """Try to connect; return the HTTP status and JSON body of the refusal."""
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Client(slave.ws_url, app_key, auth, **options)
    body = refused.value.resp_body
    return refused.value.status_code, json.loads(body) if body else {}


# -- handshake and authentication ----------------------------------------------


def test_webhook_receives_form_encoded_auth(slave, app_key, webhook: Webhook, clients) -> None:
    """The slave POSTs `auth=<token>` form-encoded to the app's url."""
    token = allow("u1", "a")
    connect(slave, app_key, token, clients)
    posted = [r for r in webhook.requests if r["form"].get("auth") == [token]]
    assert posted and posted[-1]["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_webhook_calls_carry_no_cookies_from_other_calls(slave, app_key, webhook: Webhook, clients) -> None:
    """A cookie the webhook set while answering one user is never sent for another."""
    tokens = [allow(f"cookie{i}", "a") for i in range(6)]
    for token in tokens:  # several per worker, over kept-alive webhook connections
        connect(slave, app_key, token, clients)
    posted = [r for r in webhook.requests if r["form"].get("auth", [""])[0] in tokens]
    assert len(posted) == len(tokens)
    assert all("Cookie" not in r["headers"] for r in posted)
    assert all(r["headers"]["User-Agent"].startswith("gusher/") for r in posted)


@pytest.mark.parametrize(
    "auth, reason_part",
    [
        (None, "missing auth"),
        ("", "missing auth"),
        ("status:500", "HTTP 500"),
        ("status:404", "HTTP 404"),
        ("garbage", "not JSON"),
        ("empty", "no channels"),
        ("huge", "over"),
        ("slow:3", "timed out"),
    ],
)
def test_refused_handshakes_get_401_with_a_reason(slave, app_key, auth, reason_part) -> None:
    """Missing auth and every kind of webhook failure: 401, JSON reason, no upgrade."""
    status, body = handshake_status(slave, app_key, auth)
    assert status == 401
    assert reason_part in body["error"]


@pytest.mark.parametrize("app", ["no-such-app", "a@b", "x" * 300])
def test_unknown_or_malformed_app_gets_401(slave, app) -> None:
    """Unknown apps and keys that cannot name an app are refused before any webhook call."""
    status, body = handshake_status(slave, app, allow("u", "c"))
    assert status == 401
    assert body["error"]


def test_a_non_utf8_handshake_is_refused_before_the_webhook(slave, app_key, webhook) -> None:
    """Issue 17 #9: `auth=%ff` is a 400, not U+FFFD sent to the webhook."""
    calls = len(webhook.requests)
    response = requests.get(f"{slave.url}/ws/{app_key}?auth=%ff", timeout=5)
    assert response.status_code == 400 and "UTF-8" in response.json()["error"]
    response = requests.get(f"{slave.url}/ws/%ff?auth=x", timeout=5)
    assert response.status_code == 400 and "UTF-8" in response.json()["error"]
    assert len(webhook.requests) == calls


def test_unreachable_webhook_is_401(slave, redis_client: redis_lib.Redis) -> None:
    """A webhook nobody listens on is a 401, not a hang or a 500."""
    redis_client.hset("app-dead-hook", "url", "http://127.0.0.1:9/nothing")
    status, body = handshake_status(slave, "app-dead-hook", allow("u", "c"))
    assert status == 401 and "unreachable" in body["error"]


def test_a_changed_app_reaches_new_connections_within_the_cache_time(
    slave, app_key, redis_client: redis_lib.Redis, clients
) -> None:
    """Workers reuse an app's record for GUSHER_APP_CACHE_SECONDS (1 s), never longer."""
    for _ in range(4):  # both workers have read the record
        connect(slave, app_key, allow("u", "c"), clients)
    redis_client.hset(app_key, "url", "http://127.0.0.1:9/moved")
    time.sleep(1.3)
    for _ in range(4):
        status, body = handshake_status(slave, app_key, allow("u", "c"))
        assert status == 401 and "unreachable" in body["error"]


def test_webhook_connections_are_kept_for_concurrent_calls(slave, redis_client: redis_lib.Redis) -> None:
    """Waves of concurrent handshakes reuse the webhook connections of the first wave.

    requests' default pool keeps 10 connections per host and closes the rest
    after each call: 3 waves of 40 concurrent handshakes opened about 80
    connections to the webhook. Kept up to GUSHER_WEBHOOK_CONCURRENCY, they
    are opened once.
    """
    hook = Webhook(delay=0.2)  # slow enough that each wave's calls overlap
    key = new_app_key("pool")
    redis_client.hset(key, "url", hook.url)
    held: list[Client] = []
    try:
        for _ in range(3):
            threads = [
                threading.Thread(target=lambda: held.append(Client(slave.ws_url, key, allow("u", "c"))))
                for _ in range(40)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
        assert len(held) == 120
        peers = {r["peer"] for r in hook.requests}
        assert len(peers) <= 52, f"{len(peers)} connections for 120 calls"
    finally:
        for client in held:
            client.close()
        hook.shutdown()


def test_slow_webhook_is_bounded_and_blocks_nobody(slave, app_key, clients) -> None:
    """A webhook slower than the timeout (1 s here) is cut off; other clients connect meanwhile."""
    outcome = {}

    def slow() -> None:
        started = time.monotonic()
        outcome["status"] = handshake_status(slave, app_key, "slow:4")[0]
        outcome["seconds"] = time.monotonic() - started

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    client = connect(slave, app_key, allow("u", "fast"), clients)
    assert client.subscribe("fast")["event"] == "gusher.subscribe_succeeded"
    fast_seconds = time.monotonic() - started
    for thread in threads:
        thread.join()
    assert outcome["status"] == 401
    assert outcome["seconds"] < 3  # the 1 s timeout, not the webhook's 4 s
    assert fast_seconds < 0.9  # well under the slow webhook's timeout


def test_one_apps_hanging_webhook_leaves_other_apps_their_share(redis_server, redis_client, webhook) -> None:
    """Issue 17 #4: an app whose webhook hangs fills only its own share of the worker's webhook
    slots; another app's client connects at once instead of waiting for those calls to time out."""
    slave = GunicornProcess(
        "slave", redis_server.addr, workers=1, webhook_concurrency=4, webhook_concurrency_per_app=2
    ).start()
    hanging, healthy = new_app_key("hang"), new_app_key("ok")
    redis_client.hset(hanging, "url", webhook.url)
    redis_client.hset(healthy, "url", webhook.url)

    def hang() -> None:
        try:  # answered after 3 s, or refused once the webhook timeout passed while it waited
            Client(slave.ws_url, hanging, "slow:3", timeout=10).close()
        except (websocket.WebSocketException, OSError):
            pass

    threads = [threading.Thread(target=hang) for _ in range(12)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.3)  # every worker slot would be taken by now without a per-app share
        client = Client(slave.ws_url, healthy, allow("u", "c"), timeout=2)  # the hanging calls take 3 s
        assert client.subscribe("c")["event"] == "gusher.subscribe_succeeded"
        client.close()
    finally:
        for thread in threads:
            thread.join(15)
        slave.stop()


@pytest.mark.parametrize(
    "header, value, status, version",
    [
        ("Sec-WebSocket-Version", "8", 426, "1.1"),
        ("Sec-WebSocket-Key", "not-base64!", 400, "1.1"),
        # Issue 17 #6: without Host the webhook was called, then wsproto raised (500).
        ("Host", None, 400, "1.1"),
        ("Host", None, 400, "1.0"),
        ("Upgrade", None, 400, "1.1"),
        ("Upgrade", "h2c", 400, "1.1"),
        ("Connection", "keep-alive", 400, "1.1"),
    ],
)
def test_malformed_handshakes_are_refused(slave, app_key, webhook, header, value, status, version) -> None:
    """Handshakes RFC 6455 §4.2.1 does not allow are refused with a JSON error before any webhook call."""
    calls = len(webhook.requests)
    sock = socket.create_connection(("127.0.0.1", slave.port), timeout=5)
    headers = {
        "Host": "x",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    headers[header] = value
    request = f"GET /ws/{app_key}?auth={allow('u', 'c')} HTTP/{version}\r\n"
    request += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if v is not None) + "\r\n"
    sock.sendall(request.encode())
    answer = b""
    while b'"error"' not in answer:  # headers and body may come in separate segments
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    sock.close()
    answer = answer.decode()
    assert answer.split(" ")[1] == str(status)
    assert '"error"' in answer
    assert len(webhook.requests) == calls


def _hgetalls_of(redis_client, key: str, action) -> int:
    """How many `HGETALL key` Redis served while `action` ran (MONITOR: other keys' reads, such as
    the heartbeats', do not count)."""
    marker = f"done-{key}"
    seen: list[str] = []
    watching = threading.Event()

    def watch() -> None:
        with redis_client.monitor() as monitor:
            watching.set()
            for entry in monitor.listen():
                if entry["command"] == f"ECHO {marker}":
                    return
                if entry["command"] == f"HGETALL {key}":
                    seen.append(entry["command"])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert watching.wait(5)
    action()
    redis_client.echo(marker)
    watcher.join(5)
    return len(seen)


def test_a_connect_storm_reads_its_app_once_per_worker(slave, app_key, redis_client) -> None:
    """Handshakes that miss the app cache together share one HGETALL (real Redis counts them)."""
    request = (
        f"GET /ws/{app_key}?auth={allow('u', 'c')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    sockets = [socket.create_connection(("127.0.0.1", slave.port), timeout=10) for _ in range(40)]
    answers: list[bytes] = []

    def storm() -> None:
        for sock in sockets:  # every request is in before any answer is read
            sock.sendall(request)
        answers.extend(sock.recv(12) for sock in sockets)

    try:
        reads = _hgetalls_of(redis_client, app_key, storm)
    finally:
        for sock in sockets:
            sock.close()
    assert answers == [b"HTTP/1.1 101"] * 40
    # One read per worker (two workers), plus one if a cached record expired mid-way.
    assert 1 <= reads <= 3


def test_the_upgrade_answer_is_the_one_wsproto_writes(slave, app_key) -> None:
    """The 101 the slave computes itself (no second parse) is byte for byte wsproto's."""
    from tests.test_handshake import wsproto_answer

    request = (
        f"GET /ws/{app_key}?auth={allow('u', 'c')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", slave.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, f"closed after {answer!r}"
            answer += chunk
    assert answer.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" == wsproto_answer("dGhlIHNhbXBsZSBub25jZQ==")


def test_compression_is_never_negotiated(slave, app_key, clients) -> None:
    """permessage-deflate offers are declined (FACTS: +95 KB per connection)."""
    client = Client(
        slave.ws_url,
        app_key,
        allow("u", "c"),
        header=["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"],
    )
    clients.append(client)
    assert "sec-websocket-extensions" not in {k.lower() for k in client.ws.getheaders()}
    assert client.subscribe("c")["event"] == "gusher.subscribe_succeeded"


def test_plain_http_get_on_the_ws_route_is_a_json_400(slave, app_key) -> None:
    """A browser opening /ws/... as a page gets a JSON error, not a crash."""
    import requests

    response = requests.get(f"{slave.url}/ws/{app_key}?auth=x", timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]


# -- protocol --------------------------------------------------------------------


def test_subscribe_replies_echo_id_and_channel(slave, app_key, clients) -> None:
    """subscribe_succeeded / _error and unsubscribe_succeeded / _error echo {id, channel}."""
    client = connect(slave, app_key, allow("u", "a", "b"), clients)
    first = client.subscribe("a", "r1")
    socket_id = first["socket_id"]
    assert without_socket_id(first) == {
        "event": "gusher.subscribe_succeeded",
        "data": {"id": "r1", "channel": "a"},
    }
    again = client.subscribe("a", "r2")
    assert again["event"] == "gusher.subscribe_error"
    assert again["data"]["id"] == "r2" and again["data"]["channel"] == "a"
    assert "already" in again["data"]["reason"]
    denied = client.subscribe("z", 7)
    assert denied["event"] == "gusher.subscribe_error"
    assert denied["data"]["id"] == 7 and denied["data"]["channel"] == "z"
    assert "not allowed" in denied["data"]["reason"]
    assert client.unsubscribe("a", "r3") == {
        "event": "gusher.unsubscribe_succeeded",
        "data": {"id": "r3", "channel": "a"},
        "socket_id": socket_id,  # the same in every reply of the connection
    }
    missing = client.unsubscribe("a", "r4")
    assert missing["event"] == "gusher.unsubscribe_error"
    assert missing["data"]["id"] == "r4" and missing["data"]["channel"] == "a"


def test_a_long_integer_id_is_echoed_exactly(slave, app_key, clients) -> None:
    """Issue 17 #11: an `id` beyond 64 bits comes back as the same integer, not a float."""
    client = connect(slave, app_key, allow("u", "c"), clients)
    client.ws.send('{"event":"gusher.subscribe","data":{"id":123456789012345678901234567890,"channel":"c"}}')
    client.ws.settimeout(5)
    assert client.ws.recv().startswith(
        '{"event":"gusher.subscribe_succeeded","data":{"id":123456789012345678901234567890,"channel":"c"}'
    )


def test_message_pushed_right_after_subscribe_succeeded_arrives(slave, master, app_key, clients) -> None:
    """The worker's Redis SUBSCRIBE is confirmed before the reply, so nothing is missed."""
    for attempt in range(10):
        client = connect(slave, app_key, allow("u", f"fresh{attempt}"), clients)
        assert client.subscribe(f"fresh{attempt}")["event"] == "gusher.subscribe_succeeded"
        assert push(master.url, app_key, f"fresh{attempt}", "ev", "first").status_code == 200
        assert client.recv_json() == {"channel": f"fresh{attempt}", "event": "ev", "data": "first"}


def test_messages_arrive_in_publish_order_once(slave, master, app_key, clients, redis_client) -> None:
    """200 messages of a channel arrive in order, each exactly once."""
    client = connect(slave, app_key, allow("u", "seq"), clients)
    client.subscribe("seq")
    for i in range(200):
        message = json.dumps({"channel": "seq", "event": "n", "data": str(i)})
        redis_client.publish(f"{app_key}@seq", message)
    received = [client.recv_json()["data"] for _ in range(200)]
    assert received == [str(i) for i in range(200)]
    client.expect_silence(0.3)


def test_no_messages_after_unsubscribe(slave, master, app_key, clients) -> None:
    """After unsubscribe_succeeded the channel's messages stop."""
    client = connect(slave, app_key, allow("u", "c"), clients)
    client.subscribe("c")
    client.unsubscribe("c")
    push(master.url, app_key, "c", "e", "x")
    client.expect_silence(0.5)


def test_apps_are_isolated(slave, master, redis_client, webhook, clients) -> None:
    """A client of app A never sees app B's messages on a channel of the same name."""
    app_a, app_b = "iso-a", "iso-b"
    for key in (app_a, app_b):
        redis_client.hset(key, "url", webhook.url)
    client_a = connect(slave, app_a, allow("u", "shared"), clients)
    client_b = connect(slave, app_b, allow("u", "shared"), clients)
    client_a.subscribe("shared")
    client_b.subscribe("shared")
    push(master.url, app_b, "shared", "e", "for-b")
    assert client_b.recv_json()["data"] == "for-b"
    client_a.expect_silence(0.5)


def test_direct_redis_publish_reaches_clients(slave, app_key, clients, redis_client) -> None:
    """`PUBLISH {app_key}@{channel} '<json>'` from redis-cli reaches clients verbatim."""
    client = connect(slave, app_key, allow("u", "c"), clients)
    client.subscribe("c")
    payload = '{"channel":"c","event":"raw","data":{"n":[1,2]}}'
    assert redis_client.publish(f"{app_key}@c", payload) >= 1
    assert client.ws.recv() == payload


def test_non_utf8_publish_is_dropped_not_sent(slave, app_key, clients, redis_client) -> None:
    """A payload that cannot be a text frame is dropped; the next one still arrives."""
    client = connect(slave, app_key, allow("u", "c"), clients)
    client.subscribe("c")
    redis_client.publish(f"{app_key}@c", b"\xff\xfe")
    redis_client.publish(f"{app_key}@c", b'{"ok": true}')
    assert client.recv_json() == {"ok": True}


def test_gusher_ping_is_answered(slave, app_key, clients) -> None:
    """ext: `gusher.ping` gets `gusher.pong` with the id."""
    client = connect(slave, app_key, allow("u", "c"), clients)
    client.send_json({"event": "gusher.ping", "data": {"id": "p"}})
    assert without_socket_id(client.recv_json()) == {"event": "gusher.pong", "data": {"id": "p"}}


def test_websocket_ping_gets_pong(slave, app_key, clients) -> None:
    """A control Ping is answered with a Pong carrying the same payload."""
    client = connect(slave, app_key, allow("u", "c"), clients)
    client.ws.ping(b"hello")
    frame = client.ws.recv_frame()
    assert frame.opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"hello"


def test_commands_are_answered_in_order(slave, app_key, clients) -> None:
    """A burst of subscribe/unsubscribe commands is answered in the order sent."""
    channels = [f"burst{i}" for i in range(20)]
    client = connect(slave, app_key, allow("u", *channels), clients)
    for i, channel in enumerate(channels):
        client.send_json({"event": "gusher.subscribe", "data": {"id": i, "channel": channel}})
        client.send_json({"event": "gusher.unsubscribe", "data": {"id": i, "channel": channel}})
    replies = [without_socket_id(client.recv_json()) for _ in range(40)]
    expected = []
    for i, channel in enumerate(channels):
        expected.append({"event": "gusher.subscribe_succeeded", "data": {"id": i, "channel": channel}})
        expected.append({"event": "gusher.unsubscribe_succeeded", "data": {"id": i, "channel": channel}})
    assert replies == expected


def test_client_close_is_answered(slave, app_key, clients) -> None:
    """A client's Close gets the server's Close back (clean closing handshake)."""
    client = connect(slave, app_key, allow("u", "c"), clients)
    client.ws.send_close(1000, b"bye")
    assert client.recv_close()[0] == 1000


def test_demo_page_is_served(slave) -> None:
    """The slave serves the demo page that subscribes and shows messages."""
    import requests

    response = requests.get(f"{slave.url}/demo", timeout=5)
    assert response.status_code == 200 and "gusher.subscribe" in response.text


def test_each_workers_pubsub_connection_is_named_after_the_role(slave, redis_client) -> None:
    """`CLIENT LIST` names a slave worker's pub/sub connection as it names its command pool's
    (`gusher-slave`): `gusher-slave-pubsub`, so an operator can tell them apart (it was unnamed)."""
    named = [c for c in redis_client.client_list() if c["name"] == "gusher-slave-pubsub"]
    assert len(named) >= slave.workers  # other slaves of the session may hold theirs too
    pubsub_commands = {"subscribe", "psubscribe", "ping", "unsubscribe", "client"}
    assert {c["cmd"].split("|")[0] for c in named} <= pubsub_commands
