"""Numbered history on a real master and Redis (issue 12): every channel push path numbers, keeps
and publishes in one step; the history API reads it back; the numbering restarts under a new
epoch when it cannot go on; raw PUBLISH and pushes to users stay unnumbered."""

from __future__ import annotations

import json
import time

import pytest
import redis as redis_lib
import requests

from gusher.keys import history_keys, pubsub_channel
from tests.support import Client, GunicornProcess, Webhook, allow, new_app_key, push, wait_until


@pytest.fixture
def history_app(redis_client: redis_lib.Redis, webhook: Webhook) -> str:
    key = new_app_key("hist")
    redis_client.hset(key, mapping={"url": webhook.url, "history_size": "3", "history_ttl": "60"})
    return key


def history(master: GunicornProcess, app_key: str, channel: str, **params: int) -> dict:
    response = requests.get(
        f"{master.url}/api/apps/{app_key}/channels/{channel}/history", params=params, timeout=5
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_seed_push_is_numbered_kept_and_delivered_with_its_offset(
    master, slave, history_app, clients
) -> None:
    client = Client(slave.ws_url, history_app, allow("u", "c"))
    clients.append(client)
    assert client.subscribe("c")["event"] == "gusher.subscribe_succeeded"
    answers = [push(master.url, history_app, "c", "e", f"m{n}") for n in range(1, 6)]
    assert [a.json()["offset"] for a in answers] == [1, 2, 3, 4, 5]
    assert answers[0].text == '{"channel":"c","event":"e","data":"m1","offset":1}'
    for n in range(1, 6):  # subscribers get the same bytes the push answered
        assert client.ws.recv() == answers[n - 1].text
    kept = history(master, history_app, "c")
    assert kept["offset"] == 5 and kept["epoch"]
    assert [m["offset"] for m in kept["messages"]] == [3, 4, 5], "history_size 3: the last three"
    assert kept["messages"][0] == {"channel": "c", "event": "e", "data": "m3", "offset": 3}
    assert [m["offset"] for m in history(master, history_app, "c", since=4)["messages"]] == [5]
    assert [m["offset"] for m in history(master, history_app, "c", limit=1)["messages"]] == [3]
    assert history(master, history_app, "c", since=5)["messages"] == []


def test_every_channel_push_path_numbers_per_channel(master, history_app) -> None:
    url = f"{master.url}/api/apps/{history_app}"
    assert (
        requests.post(f"{master.url}/api/push/{history_app}/a/e", json={"data": {"n": 1}}, timeout=5).json()[
            "offset"
        ]
        == 1
    )
    assert requests.post(
        f"{url}/events", json={"channels": ["a", "b"], "event": "e", "data": 2}, timeout=5
    ).ok
    batch = {"batch": [{"channel": "a", "event": "e", "data": 3}, {"channel": "b", "event": "e", "data": 4}]}
    assert requests.post(f"{url}/batch_events", json=batch, timeout=5).ok
    a, b = history(master, history_app, "a"), history(master, history_app, "b")
    assert [(m["offset"], m["data"]) for m in a["messages"]] == [(1, {"n": 1}), (2, 2), (3, 3)]
    assert [(m["offset"], m["data"]) for m in b["messages"]] == [(1, 2), (2, 4)]


def test_a_bad_batch_numbers_and_keeps_nothing(master, history_app) -> None:
    batch = {"batch": [{"channel": "a", "event": "e", "data": 1}, {"channel": "a", "event": "", "data": 1}]}
    assert (
        requests.post(f"{master.url}/api/apps/{history_app}/batch_events", json=batch, timeout=5).status_code
        == 400
    )
    assert history(master, history_app, "a")["offset"] == 0


def test_the_epoch_read_at_offset_zero_holds_after_the_first_publish(master, history_app) -> None:
    """SPEC: the epoch is fixed the first time the history is touched (a subscribe or a read)."""
    before = history(master, history_app, "fresh")
    assert before["offset"] == 0 and before["epoch"]
    push(master.url, history_app, "fresh", "e", "x")
    assert history(master, history_app, "fresh")["epoch"] == before["epoch"]


def test_lost_numbering_restarts_under_a_new_epoch(master, history_app, redis_client) -> None:
    """The meta hash gone (expired, flushed, evicted) or behind the stream: a new epoch, offset 1,
    and the old stream dropped, never appended to with reissued offsets (centrifuge#412)."""
    for n in range(3):
        push(master.url, history_app, "c", "e", f"old{n}")
    first = history(master, history_app, "c")
    stream, meta = history_keys(pubsub_channel(history_app, "c"))
    redis_client.delete(meta)
    assert push(master.url, history_app, "c", "e", "new").json()["offset"] == 1
    second = history(master, history_app, "c")
    assert second["epoch"] != first["epoch"] and [m["data"] for m in second["messages"]] == ["new"]
    redis_client.hset(meta, "s", 0)  # behind the stream (an older copy of the hash came back)
    assert push(master.url, history_app, "c", "e", "newer").json()["offset"] == 1
    third = history(master, history_app, "c")
    assert third["epoch"] not in (first["epoch"], second["epoch"])
    assert [m["data"] for m in third["messages"]] == ["newer"]
    assert redis_client.ttl(stream) > 0 and redis_client.ttl(meta) > 60


def test_messages_older_than_the_ttl_are_no_longer_kept(master, redis_client, webhook) -> None:
    key = new_app_key("ttl")
    redis_client.hset(key, mapping={"url": webhook.url, "history_size": "10", "history_ttl": "1"})
    push(master.url, key, "c", "e", "x")
    assert len(history(master, key, "c")["messages"]) == 1
    time.sleep(1.2)
    kept = history(master, key, "c")
    assert kept["messages"] == [] and kept["offset"] == 1, "the numbering goes on"
    assert push(master.url, key, "c", "e", "y").json()["offset"] == 2


def test_raw_publish_and_user_pushes_stay_unnumbered(
    master, slave, history_app, redis_client, clients
) -> None:
    client = Client(slave.ws_url, history_app, allow("u", "c"))
    clients.append(client)
    assert client.subscribe("c")["event"] == "gusher.subscribe_succeeded"
    redis_client.publish(pubsub_channel(history_app, "c"), '{"channel":"c","event":"raw","data":1}')
    assert client.recv_json() == {"channel": "c", "event": "raw", "data": 1}
    wait_until(
        lambda: (
            requests.post(
                f"{master.url}/api/apps/{history_app}/users/u/events",
                json={"event": "dm", "data": 1},
                timeout=5,
            ).ok
            and True
        ),
        5,
    )
    assert client.recv_json() == {"channel": "gusher.user", "event": "dm", "data": 1}
    assert history(master, history_app, "c")["offset"] == 0


def test_the_history_api_refuses_what_it_cannot_answer(master, app_key, history_app, redis_client) -> None:
    none = requests.get(f"{master.url}/api/apps/{app_key}/channels/c/history", timeout=5)
    assert none.status_code == 400 and "keeps no history" in none.json()["error"]
    for params, reason in (
        ({"since": "-1"}, "whole number"),
        ({"limit": "1001"}, "at most 1000"),
        ({"limit": "x"}, "whole"),
    ):
        response = requests.get(
            f"{master.url}/api/apps/{history_app}/channels/c/history", params=params, timeout=5
        )
        assert response.status_code == 400 and reason in response.json()["error"], params
    redis_client.hset(history_app, "secret", "s3cret")  # reaches the master within its app cache time
    url = f"{master.url}/api/apps/{history_app}/channels/c/history"
    assert wait_until(lambda: requests.get(url, timeout=5).status_code == 401, 5), "the listings' auth"


def test_an_app_without_history_answers_exactly_as_the_seed(master, app_key) -> None:
    response = push(master.url, app_key, "c", "e", "x")
    assert response.text == '{"channel":"c","event":"e","data":"x"}'
    assert json.loads(response.text) == {"channel": "c", "event": "e", "data": "x"}


def test_a_push_works_after_redis_forgot_the_script(master, history_app, redis_client) -> None:
    """SCRIPT FLUSH (or a restarted Redis): the NOSCRIPT of the shared EVALSHA loads it again."""
    assert push(master.url, history_app, "c", "e", "1").json()["offset"] == 1
    redis_client.script_flush()
    assert push(master.url, history_app, "c", "e", "2").json()["offset"] == 2
    batch = {"batch": [{"channel": "c", "event": "e", "data": 3}, {"channel": "d", "event": "e", "data": 4}]}
    redis_client.script_flush()
    assert requests.post(f"{master.url}/api/apps/{history_app}/batch_events", json=batch, timeout=5).ok
    assert history(master, history_app, "c")["offset"] == 3
