"""Recovery on subscribe against real processes (issue 12 item 2): the reply's position, a resume
that gets every missed message then live ones with no gap and no duplicate while pushes keep
coming, all-or-nothing refusals, and a large replay that never trips the slow-consumer cut-off."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis as redis_lib
import requests
import websocket

from tests.support import Client, GunicornProcess, Webhook, allow, new_app_key, push

MAX_RECOVERED = 50


@pytest.fixture(scope="module")
def bounded_slave(redis_server) -> Iterator[GunicornProcess]:
    """One worker, a small recovery bound and a small output bound (256 KB)."""
    process = GunicornProcess(
        "slave", redis_server.addr, workers=1, max_recovered_messages=MAX_RECOVERED, max_pending_bytes=262144
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def roomy_slave(redis_server) -> Iterator[GunicornProcess]:
    """`bounded_slave` with room to recover everything a channel kept (400): a resume that a
    loaded machine lets fall 50 behind is still whole, so the races are what is tested."""
    process = GunicornProcess(
        "slave", redis_server.addr, workers=1, max_recovered_messages=400, max_pending_bytes=262144
    ).start()
    yield process
    process.stop()


@pytest.fixture
def history_app(redis_client: redis_lib.Redis, webhook: Webhook) -> str:
    key = new_app_key("rec")
    redis_client.hset(key, mapping={"url": webhook.url, "history_size": "400", "history_ttl": "300"})
    return key


def subscribe(client: Client, channel: str, since: dict | None = None) -> dict:
    data: dict = {"id": "s", "channel": channel}
    if since is not None:
        data["since"] = since
    client.send_json({"event": "gusher.subscribe", "data": data})
    return client.recv_json()


def connect(slave: GunicornProcess, app_key: str, clients: list) -> Client:
    client = Client(slave.ws_url, app_key, allow("u", "c"))
    clients.append(client)
    return client


def test_a_subscribe_tells_the_channels_position_and_messages_carry_offsets(
    bounded_slave, master, history_app, clients
) -> None:
    for n in range(2):
        push(master.url, history_app, "c", "e", f"m{n}")
    client = connect(bounded_slave, history_app, clients)
    reply = subscribe(client, "c")
    assert reply["event"] == "gusher.subscribe_succeeded"
    assert reply["data"]["offset"] == 2 and reply["data"]["epoch"] and "recovered" not in reply["data"]
    push(master.url, history_app, "c", "e", "live")
    assert client.recv_json() == {"channel": "c", "event": "e", "data": "live", "offset": 3}


def test_a_resume_gets_every_missed_message_then_live_ones(
    bounded_slave, master, history_app, clients
) -> None:
    first = connect(bounded_slave, history_app, clients)
    epoch = subscribe(first, "c")["data"]["epoch"]
    for n in range(1, 4):
        push(master.url, history_app, "c", "e", f"m{n}")
    assert [first.recv_json()["offset"] for _ in range(3)] == [1, 2, 3]
    first.close()
    for n in range(4, 8):  # missed while away
        push(master.url, history_app, "c", "e", f"m{n}")
    again = connect(bounded_slave, history_app, clients)
    reply = subscribe(again, "c", {"offset": 3, "epoch": epoch})
    assert reply["data"] == {"id": "s", "channel": "c", "offset": 7, "epoch": epoch, "recovered": True}
    assert [(m["offset"], m["data"]) for m in (again.recv_json() for _ in range(4))] == [
        (4, "m4"), (5, "m5"), (6, "m6"), (7, "m7"),
    ]  # fmt: skip
    push(master.url, history_app, "c", "e", "m8")
    assert again.recv_json()["offset"] == 8
    again.expect_silence(0.2)


@pytest.mark.parametrize(
    "missed, since_of, reason",
    [
        (
            MAX_RECOVERED + 1,
            lambda e: {"offset": 0, "epoch": e},
            "more missed than GUSHER_MAX_RECOVERED_MESSAGES",
        ),
        (3, lambda e: {"offset": 0, "epoch": "another"}, "another epoch"),
        (3, lambda e: {"offset": 99, "epoch": e}, "ahead of the channel"),
    ],
)
def test_what_cannot_be_recovered_whole_is_not_replayed_at_all(
    bounded_slave, master, history_app, clients, missed, since_of, reason
) -> None:
    probe = connect(bounded_slave, history_app, clients)
    epoch = subscribe(probe, "c")["data"]["epoch"]
    probe.close()
    for n in range(missed):
        push(master.url, history_app, "c", "e", f"m{n}")
    client = connect(bounded_slave, history_app, clients)
    reply = subscribe(client, "c", since_of(epoch))
    assert reply["data"]["recovered"] is False and reply["data"]["offset"] == missed, reason
    client.expect_silence(0.3)
    push(master.url, history_app, "c", "e", "live")
    assert client.recv_json()["offset"] == missed + 1


def test_messages_no_longer_kept_cannot_be_recovered(
    bounded_slave, master, redis_client, webhook, clients
) -> None:
    """SPEC's case: with offsets 6..10 kept, since 5 recovers and since 4 does not."""
    key = new_app_key("rec")
    redis_client.hset(key, mapping={"url": webhook.url, "history_size": "5", "history_ttl": "300"})
    for n in range(1, 11):
        push(master.url, key, "c", "e", f"m{n}")
    epoch = requests.get(f"{master.url}/api/apps/{key}/channels/c/history", timeout=5).json()["epoch"]
    five = connect(bounded_slave, key, clients)
    assert subscribe(five, "c", {"offset": 5, "epoch": epoch})["data"]["recovered"] is True
    assert [five.recv_json()["offset"] for _ in range(5)] == [6, 7, 8, 9, 10]
    four = connect(bounded_slave, key, clients)
    assert subscribe(four, "c", {"offset": 4, "epoch": epoch})["data"]["recovered"] is False
    four.expect_silence(0.2)


def test_no_gap_and_no_duplicate_while_pushes_keep_coming(roomy_slave, master, history_app, clients) -> None:
    """Resumes land while a backend pushes as fast as it can: each client ends with every offset
    after its `since`, once, in order."""
    watcher = connect(roomy_slave, history_app, clients)
    epoch = subscribe(watcher, "c")["data"]["epoch"]
    total = 400
    session = requests.Session()

    def pusher() -> None:
        for n in range(1, total + 1):
            assert session.post(f"{master.url}/api/push/{history_app}/c/e", params={"data": n}, timeout=5).ok

    thread = threading.Thread(target=pusher)
    thread.start()
    resumed = []
    try:
        for since in (5, 40, 80, 120):
            while True:  # wait until the channel is past `since`, then resume from it
                seen = watcher.recv_json()["offset"]
                if seen >= since + 10:
                    break
            client = connect(roomy_slave, history_app, clients)
            reply = subscribe(client, "c", {"offset": since, "epoch": epoch})
            assert reply["data"]["recovered"] is True, reply
            resumed.append((since, client))
    finally:
        thread.join()
    seen_by_watcher = []
    while True:
        try:
            seen_by_watcher.append(watcher.recv_json(timeout=1)["offset"])
        except websocket.WebSocketTimeoutException:
            break
    assert len(seen_by_watcher) == len(set(seen_by_watcher)), ("watcher dups", seen_by_watcher[:50])
    for since, client in resumed:
        offsets = [client.recv_json(timeout=10)["offset"] for _ in range(total - since)]
        assert offsets == list(range(since + 1, total + 1)), f"since {since}: {offsets}"
        client.expect_silence(0.2)


def test_a_large_replay_never_trips_the_slow_consumer_cut_off(
    bounded_slave, master, history_app, clients
) -> None:
    """50 messages of 40 KB (2 MB, eight times the 256 KB output bound) reach a client that reads."""
    probe = connect(bounded_slave, history_app, clients)
    epoch = subscribe(probe, "c")["data"]["epoch"]
    probe.close()
    big = "x" * 40_000
    for _ in range(MAX_RECOVERED):
        assert requests.post(f"{master.url}/api/push/{history_app}/c/e", data={"data": big}, timeout=5).ok
    client = connect(bounded_slave, history_app, clients)
    assert subscribe(client, "c", {"offset": 0, "epoch": epoch})["data"]["recovered"] is True
    offsets = [client.recv_json(timeout=10)["offset"] for _ in range(MAX_RECOVERED)]
    assert offsets == list(range(1, MAX_RECOVERED + 1))


@pytest.mark.parametrize(
    "since, reason",
    [
        ({"offset": -1, "epoch": "e"}, "whole number"),
        ({"offset": "3", "epoch": "e"}, "whole number"),
        ({"offset": 3}, "epoch"),
        ({"offset": 3, "epoch": "e" * 65}, "epoch"),
        ("3", "whole number"),
    ],
)
def test_a_malformed_since_is_a_subscribe_error(bounded_slave, history_app, clients, since, reason) -> None:
    client = connect(bounded_slave, history_app, clients)
    reply = subscribe(client, "c", since)
    assert reply["event"] == "gusher.subscribe_error" and reason in reply["data"]["reason"]
    assert subscribe(client, "c")["event"] == "gusher.subscribe_succeeded", "the connection goes on"


def test_an_app_without_history_ignores_since_as_the_seed_would(slave, master, app_key, clients) -> None:
    client = Client(slave.ws_url, app_key, allow("u", "c"))
    clients.append(client)
    reply = subscribe(client, "c", {"offset": 3, "epoch": "e"})
    assert reply["data"] == {"id": "s", "channel": "c"}
    push(master.url, app_key, "c", "e", "x")
    assert client.recv_json() == {"channel": "c", "event": "e", "data": "x"}


def test_a_killed_pubsub_connection_loses_no_message(
    bounded_slave, master, history_app, redis_client, clients
) -> None:
    """Issue 12 item 3: `CLIENT KILL TYPE pubsub` under steady pushes; the worker reconnects and
    reads back from history what Redis published meanwhile: every client gets every offset once."""
    import time

    listeners = [connect(bounded_slave, history_app, clients) for _ in range(3)]
    for client in listeners:
        assert subscribe(client, "c")["data"]["offset"] == 0
    total = 300
    session = requests.Session()

    def pusher() -> None:
        for n in range(1, total + 1):
            assert session.post(f"{master.url}/api/push/{history_app}/c/e", params={"data": n}, timeout=5).ok
            time.sleep(0.003)

    thread = threading.Thread(target=pusher)
    thread.start()
    try:
        time.sleep(0.3)
        killed = redis_client.client_kill_filter(_type="pubsub")
        assert killed >= 1
    finally:
        thread.join()
    for client in listeners:
        offsets = [client.recv_json(timeout=10)["offset"] for _ in range(total)]
        assert offsets == list(range(1, total + 1))
        client.expect_silence(0.2)
    page = requests.get(f"{bounded_slave.url}/metrics", timeout=5).text
    assert "gusher_history_catchups_total 0.0" not in page, "the reconnect was caught up from history"
