"""The master's HTTP API against real gunicorn and a real Redis (seed contract)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redis_lib
import requests

from gusher.embedded import EmbeddedRedis
from tests.support import GunicornProcess, new_app_key, push, wait_until


def test_check_existing_app(master: GunicornProcess, app_key: str) -> None:
    """GET /api/check/{app_key} answers 200 {"app_key"} for an app with a url."""
    response = requests.get(f"{master.url}/api/check/{app_key}", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"app_key": app_key}


@pytest.mark.parametrize(
    "path", ["/api/check/no-such-app", "/api/check/", "/api/check/a@b", "/api/check/" + "x" * 300]
)
def test_check_refuses_unknown_or_malformed_apps(master: GunicornProcess, path: str) -> None:
    """Unknown, empty, '@'-holding or absurdly long app keys get 400 with a JSON reason."""
    response = requests.get(master.url + path, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]


def test_check_app_without_url_field_is_unknown(
    master: GunicornProcess, redis_client: redis_lib.Redis
) -> None:
    """An app exists only if its hash has the `url` field."""
    redis_client.hset("only-secret-app", "secret", "s")
    assert requests.get(f"{master.url}/api/check/only-secret-app", timeout=5).status_code == 400


def _listen(redis_client: redis_lib.Redis, channel: str) -> redis_lib.client.PubSub:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(channel)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    return pubsub


@pytest.mark.parametrize("via", ["query", "form"])
def test_push_publishes_the_common_message(
    master: GunicornProcess, app_key: str, redis_client: redis_lib.Redis, via: str
) -> None:
    """A push answers the message and publishes the same bytes on {app_key}@{channel}."""
    pubsub = _listen(redis_client, f"{app_key}@news")
    url = f"{master.url}/api/push/{app_key}/news/created"
    data = 'a "quoted" ünicode & string'
    if via == "query":
        response = requests.post(url, params={"data": data}, timeout=5)
    else:
        response = requests.post(url, data={"data": data}, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"channel": "news", "event": "created", "data": data}
    assert list(response.json()) == ["channel", "event", "data"]
    message = wait_until(lambda: pubsub.get_message(timeout=1))
    assert message["channel"] == f"{app_key}@news".encode()
    assert message["data"] == response.content
    assert json.loads(message["data"]) == {"channel": "news", "event": "created", "data": data}


def test_data_stays_a_string_even_when_it_looks_like_json(master: GunicornProcess, app_key: str) -> None:
    """Seed: `data` is delivered as the string given, never parsed."""
    response = push(master.url, app_key, "c", "e", '{"n": 1}')
    assert response.json()["data"] == '{"n": 1}'


@pytest.mark.parametrize(
    "path, params, reason_part",
    [
        ("/api/push/APP/c/e", {}, "data"),
        ("/api/push/APP/c/e", {"data": ""}, "data"),
        ("/api/push/no-such-app/c/e", {"data": "x"}, "unknown"),
        ("/api/push/APP//e", {"data": "x"}, "channel"),
        ("/api/push/APP/c/", {"data": "x"}, "event"),
        ("/api/push/APP/c", {"data": "x"}, "event"),
        ("/api/push/", {"data": "x"}, "app_key"),
        ("/api/push/a@b/c/e", {"data": "x"}, "@"),
        ("/api/push/APP/" + "c" * 300 + "/e", {"data": "x"}, "channel"),
        ("/api/push/APP/c%01x/e", {"data": "x"}, "control"),
        # Issue 17 #9: not U+FFFD, and %fe and %ff never reach one channel.
        ("/api/push/APP/%ff/e", {"data": "x"}, "path is not valid UTF-8"),
        ("/api/push/APP/c/%fe", {"data": "x"}, "path is not valid UTF-8"),
        # Issue 17 #12: the first `data` counts, as the signing scheme says, even when empty.
        ("/api/push/APP/c/e", [("data", ""), ("data", "y")], "data is empty"),
    ],
)
def test_push_refusals(
    master: GunicornProcess, app_key: str, path: str, params: dict, reason_part: str
) -> None:
    """Each malformed push gets 400 and a JSON reason naming the problem."""
    response = requests.post(master.url + path.replace("APP", app_key), params=params, timeout=5)
    assert response.status_code == 400, response.text
    assert reason_part in response.json()["error"]


def test_push_over_the_size_limit_is_413(master: GunicornProcess, app_key: str) -> None:
    """A push body over GUSHER_MAX_PUSH_BYTES is refused with 413."""
    response = requests.post(
        f"{master.url}/api/push/{app_key}/c/e", data={"data": "x" * 2_000_000}, timeout=10
    )
    assert response.status_code == 413
    assert "error" in response.json()


def test_push_with_non_utf8_form_is_refused(master: GunicornProcess, app_key: str) -> None:
    """A form body that is not UTF-8 gets a 400, not a 500."""
    response = requests.post(
        f"{master.url}/api/push/{app_key}/c/e",
        data=b"data=%ff%fe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert response.status_code == 400
    assert "UTF-8" in response.json()["error"]


def test_push_with_non_utf8_query_is_refused(master: GunicornProcess, app_key: str) -> None:
    """Undecodable percent-escapes in the query string get a 400, never replacement characters."""
    response = requests.post(f"{master.url}/api/push/{app_key}/c/e?data=%ff", timeout=5)
    assert response.status_code == 400
    assert "UTF-8" in response.json()["error"]


def test_push_accepts_multipart_forms(master: GunicornProcess, app_key: str) -> None:
    """`curl -F data=...` (multipart) works like an urlencoded form."""
    response = requests.post(
        f"{master.url}/api/push/{app_key}/c/e", files={"data": (None, "multi")}, timeout=5
    )
    assert response.status_code == 200
    assert response.json()["data"] == "multi"


def test_unknown_routes_answer_json(master: GunicornProcess) -> None:
    """Even a 404 carries a JSON error body."""
    response = requests.get(f"{master.url}/api/nothing-here", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]


def test_masters_are_stateless(redis_server, app_key: str, redis_client: redis_lib.Redis) -> None:
    """Two masters on one Redis both accept pushes for the same app."""
    second = GunicornProcess("master", redis_server.addr, workers=1).start()
    try:
        pubsub = _listen(redis_client, f"{app_key}@c")
        assert push(second.url, app_key, "c", "e", "from-second").status_code == 200
        message = wait_until(lambda: pubsub.get_message(timeout=1))
        assert json.loads(message["data"])["data"] == "from-second"
    finally:
        second.stop()


def test_redis_connections_per_worker_are_bounded() -> None:
    """60 pushes at once share GUSHER_REDIS_MAX_CONNECTIONS connections, named after the role.

    Before the bound, a worker opened one Redis connection per concurrent
    request and kept each (with its 64 KB read buffer) for good.
    """
    server = EmbeddedRedis().start()
    master = GunicornProcess("master", server.addr, workers=1, redis_max_connections=3)
    try:
        client = redis_lib.Redis(host=server.host, port=server.port)
        client.hset("bounded-app", "url", "http://127.0.0.1:9/")
        master.start()
        with ThreadPoolExecutor(60) as pool:
            statuses = list(
                pool.map(lambda i: push(master.url, "bounded-app", "c", "e", str(i)).status_code, range(60))
            )
        assert statuses == [200] * 60
        others = [c for c in client.client_list() if c["name"] != "" or c["cmd"] != "client|list"]
        assert 1 <= len(others) <= 3
        assert {c["name"] for c in others} == {"gusher-master"}
    finally:
        master.stop()
        server.stop()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("get", "/api/push/APP/c/e", {"POST"}), ("post", "/api/check/APP", {"GET", "HEAD"})],
)
def test_a_wrong_method_is_a_json_405_with_allow(
    master: GunicornProcess, app_key: str, method: str, path: str, allowed: set
) -> None:
    """Issue 17 #10: 405 answers are JSON and say which methods the route has (`Allow`)."""
    response = requests.request(method, master.url + path.replace("APP", app_key), timeout=5)
    assert response.status_code == 405 and response.json()["error"]
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_readyz_and_version_on_both_roles(master, slave) -> None:
    """Issue 15 (later gusher.cluster's probes): /readyz is ready with Redis; /version names the build."""
    from gusher import __version__

    for server, role in ((master, "master"), (slave, "slave")):
        assert requests.get(f"{server.url}/readyz", timeout=5).json() == {"status": "ready", "role": role}
        shown = requests.get(f"{server.url}/version", timeout=5).json()
        assert shown["version"] == __version__ and shown["role"] == role and shown["runtime_version"]


def test_the_master_reuses_app_records_for_the_cache_time_only(master, redis_client, webhook) -> None:
    """Issue 16: a push reads its app from the worker's cache (GUSHER_APP_CACHE_SECONDS, 1 s), not
    Redis: a new app works at once (unknown apps are never cached), a secret set later is enforced
    within the cache time, and removing the app refuses pushes within it too."""
    app = new_app_key("cache")
    url = f"{master.url}/api/push/{app}/c/e"
    assert requests.post(url, params={"data": "x"}, timeout=5).status_code == 400  # unknown
    redis_client.hset(app, "url", webhook.url)
    assert requests.post(url, params={"data": "x"}, timeout=5).status_code == 200, "at once"
    hgetalls = _calls(redis_client, "hgetall")
    session = requests.Session()
    for _ in range(50):
        assert session.post(url, params={"data": "x"}, timeout=5).status_code == 200
    assert _calls(redis_client, "hgetall") - hgetalls <= 10, (
        "one read per worker per cache time, not per push"
    )
    redis_client.hset(app, "secret", "s3cret")
    wait_until(lambda: requests.post(url, params={"data": "x"}, timeout=5).status_code == 401, 5)
    redis_client.delete(app)
    wait_until(lambda: requests.post(url, params={"data": "x"}, timeout=5).status_code == 400, 5)


def _calls(redis_client: redis_lib.Redis, command: str) -> int:
    return int(redis_client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
