"""Securing a deployment, end to end: signed pushes, admin token, signed webhooks, origins, JWTs, patterns."""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator

import jwt
import pytest
import redis as redis_lib
import requests
import websocket

from gusher.core import signing
from gusher.embedded import EmbeddedRedis
from tests.support import ROOT, Client, GunicornProcess, Webhook, allow, new_app_key, push, wait_until
from tests.test_tokens import PRIVATE, PUBLIC

SECRET = "s3cret-of-the-app-7f0e"
ADMIN = "admin-token-4b1d"


@pytest.fixture
def secured_app(redis_client: redis_lib.Redis, webhook: Webhook) -> str:
    key = new_app_key("sec")
    redis_client.hset(key, mapping={"url": webhook.url, "secret": SECRET})
    return key


@pytest.fixture(scope="module")
def strict_master(redis_server) -> Iterator[GunicornProcess]:
    """A master with an admin token and the bearer secret enabled."""
    process = GunicornProcess(
        "master", redis_server.addr, workers=1, admin_token=ADMIN, allow_bearer_secret="true"
    ).start()
    yield process
    process.stop()


def signed(
    method: str, url: str, body: bytes = b"", secret: str = SECRET, now: float | None = None, **headers: str
) -> requests.Response:
    """Send a request signed the documented way (its Content-Type signed too)."""
    now = time.time() if now is None else now
    signature = signing.signed_headers(secret, method, url, body, now, headers.get("Content-Type", ""))
    return requests.request(method, url, data=body, headers={**signature, **headers}, timeout=5)


def listen(redis_client: redis_lib.Redis, channel: str) -> redis_lib.client.PubSub:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(channel)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    return pubsub


# -- push authentication -----------------------------------------------------------


def test_open_apps_behave_as_in_the_seed(master, app_key) -> None:
    """An app without a secret accepts unsigned pushes and checks."""
    assert push(master.url, app_key, "c", "e", "x").status_code == 200
    assert requests.get(f"{master.url}/api/check/{app_key}", timeout=5).status_code == 200


def test_signed_push_to_a_secured_app_is_published(master, secured_app, redis_client) -> None:
    """A correctly signed push (query data or JSON body) is accepted and published."""
    pubsub = listen(redis_client, f"{secured_app}@news")
    response = signed("POST", f"{master.url}/api/push/{secured_app}/news/created?data=hello+world")
    assert response.status_code == 200, response.text
    assert response.json() == {"channel": "news", "event": "created", "data": "hello world"}
    body = json.dumps({"data": {"n": 1}}).encode()
    response = signed(
        "POST",
        f"{master.url}/api/push/{secured_app}/news/created",
        body,
        **{"Content-Type": "application/json"},
    )
    assert response.status_code == 200 and response.json()["data"] == {"n": 1}
    messages = [wait_until(lambda: pubsub.get_message(timeout=1)) for _ in range(2)]
    assert [json.loads(m["data"])["data"] for m in messages] == ["hello world", {"n": 1}]
    assert signed("GET", f"{master.url}/api/check/{secured_app}").status_code == 200


@pytest.mark.parametrize(
    "tamper, reason_part",
    [
        ("unsigned", "signed requests"),
        ("wrong secret", "does not match"),
        ("stale", "clock"),
        ("future", "clock"),
        ("other query", "does not match"),
        ("other body", "does not match"),
        ("garbage timestamp", "unix seconds"),
    ],
)
def test_pushes_to_a_secured_app_must_be_signed(
    master, secured_app, redis_client, tamper, reason_part
) -> None:
    """Unsigned, mis-signed, stale or tampered pushes get 401 with a reason, and nothing is published."""
    pubsub = listen(redis_client, f"{secured_app}@c")
    url = f"{master.url}/api/push/{secured_app}/c/e?data=x"
    headers = signing.signed_headers(SECRET, "POST", url, b"", time.time())
    body = b""
    if tamper == "unsigned":
        headers = {}
    elif tamper == "wrong secret":
        headers = signing.signed_headers("not-the-secret", "POST", url, b"", time.time())
    elif tamper == "stale":
        headers = signing.signed_headers(SECRET, "POST", url, b"", time.time() - 301)
    elif tamper == "future":
        headers = signing.signed_headers(SECRET, "POST", url, b"", time.time() + 400)
    elif tamper == "other query":
        url = url.replace("data=x", "data=y")
    elif tamper == "other body":
        url, body = url.replace("?data=x", ""), b"data=y"
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif tamper == "garbage timestamp":
        headers[signing.TIMESTAMP_HEADER] = "yesterday"
    response = requests.post(url, data=body, headers=headers, timeout=5)
    assert response.status_code == 401
    assert reason_part in response.json()["error"]
    assert signed("GET", f"{master.url}/api/check/{secured_app}", secret="bad").status_code == 401
    assert requests.get(f"{master.url}/api/check/{secured_app}", timeout=5).status_code == 401
    assert pubsub.get_message(timeout=0.3) is None


def test_a_signature_for_one_app_does_not_work_for_another(
    master, secured_app, redis_client, webhook
) -> None:
    """Cross-app: a request signed with app A's secret is refused by app B, even re-pointed at it."""
    other = new_app_key("sec")
    redis_client.hset(other, mapping={"url": webhook.url, "secret": "other-secret"})
    url_a = f"{master.url}/api/push/{secured_app}/c/e?data=x"
    headers = signing.signed_headers(SECRET, "POST", url_a, b"", time.time())
    url_b = url_a.replace(secured_app, other)
    assert requests.post(url_b, headers=headers, timeout=5).status_code == 401
    assert signed("POST", url_b).status_code == 401
    assert signed("POST", url_b, secret="other-secret").status_code == 200


def test_bearer_secret_only_where_enabled(master, strict_master, secured_app) -> None:
    """`Authorization: Bearer <secret>` works only on a master with GUSHER_ALLOW_BEARER_SECRET."""
    auth = {"Authorization": f"Bearer {SECRET}"}
    assert push(master.url, secured_app, "c", "e", "x", headers=auth).status_code == 401
    assert push(strict_master.url, secured_app, "c", "e", "x", headers=auth).status_code == 200
    wrong = {"Authorization": "Bearer nope"}
    response = push(strict_master.url, secured_app, "c", "e", "x", headers=wrong)
    assert response.status_code == 401 and "bearer" in response.json()["error"]


def test_a_signed_body_replayed_with_another_content_type_is_refused(
    master, secured_app, redis_client
) -> None:
    """Issue 17 #5: the content type is signed, so a JSON push cannot be replayed as a form."""
    url = f"{master.url}/api/push/{secured_app}/c/e"
    body = b'{"data":"hello &data=PWNED"}'
    headers = signing.signed_headers(SECRET, "POST", url, body, time.time(), "application/json")
    pubsub = listen(redis_client, f"{secured_app}@c")
    replayed = requests.post(
        url, data=body, headers={**headers, "Content-Type": "application/x-www-form-urlencoded"}, timeout=5
    )
    assert replayed.status_code == 401 and "does not match" in replayed.json()["error"]
    sent = requests.post(url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=5)
    assert sent.status_code == 200 and sent.json()["data"] == "hello &data=PWNED"
    message = wait_until(lambda: pubsub.get_message(timeout=1))
    assert json.loads(message["data"])["data"] == "hello &data=PWNED"


def test_a_bodyless_request_signed_the_earlier_way_still_passes(master, secured_app) -> None:
    """Without a body the five-line form of earlier versions is accepted; with one, never."""
    url = f"{master.url}/api/push/{secured_app}/c/e?data=old+style"
    timestamp = str(int(time.time()))
    path, pairs = f"/api/push/{secured_app}/c/e", [("data", "old style")]
    old = signing.sign(SECRET, signing.canonical_request("POST", path, pairs, b"", timestamp, None))
    headers = {signing.TIMESTAMP_HEADER: timestamp, signing.SIGNATURE_HEADER: old}
    assert requests.post(url, headers=headers, timeout=5).status_code == 200
    body = b"data=x"
    old = signing.sign(SECRET, signing.canonical_request("POST", path, pairs, body, timestamp, None))
    headers = {signing.TIMESTAMP_HEADER: timestamp, signing.SIGNATURE_HEADER: old}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert requests.post(url, data=body, headers={**headers, **form}, timeout=5).status_code == 401


def test_multipart_and_form_pushes_can_be_signed(master, secured_app) -> None:
    """The signature covers the raw body of any content type; form parsing still works afterwards."""
    url = f"{master.url}/api/push/{secured_app}/c/e"
    response = signed(
        "POST", url, b"data=form+value", **{"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200 and response.json()["data"] == "form value"
    prepared = requests.Request("POST", url, files={"data": (None, "multi")}).prepare()
    response = signed("POST", url, prepared.body, **{"Content-Type": prepared.headers["Content-Type"]})
    assert response.status_code == 200 and response.json()["data"] == "multi"


def test_gusher_sign_prints_a_working_curl_line(master, secured_app, tmp_path) -> None:
    """`gusher sign` prints a curl command that the master accepts."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    url = f"{master.url}/api/push/{secured_app}/news/signed"
    line = subprocess.run(
        [
            sys.executable,
            "-m",
            "gusher.cli",
            "sign",
            "--secret-file",
            str(secret_file),
            "--json",
            '{"data": {"via": "curl"}}',
            url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert line.startswith("curl ")
    result = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=30)
    assert json.loads(result.stdout) == {"channel": "news", "event": "signed", "data": {"via": "curl"}}


# -- admin endpoints ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/system/slaveinfos", "/api/system/apps"])
def test_admin_endpoints_need_the_admin_token_when_configured(strict_master, master, path) -> None:
    """With GUSHER_ADMIN_TOKEN set, /api/system/* answers 401 without it and 200 with it."""
    assert requests.get(strict_master.url + path, timeout=5).status_code == 401
    wrong = requests.get(strict_master.url + path, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401 and "admin token" in wrong.json()["error"]
    right = requests.get(strict_master.url + path, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
    assert right.status_code == 200
    assert requests.get(master.url + path, timeout=5).status_code == 200  # no token configured: open


def test_app_listing_reports_security_but_no_secrets(strict_master, secured_app, app_key) -> None:
    """/api/system/apps says which apps are secured and never shows a secret."""
    response = requests.get(
        f"{strict_master.url}/api/system/apps", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
    )
    apps = response.json()["apps"]
    assert apps[secured_app]["secured"] is True and apps[app_key]["secured"] is False
    assert SECRET not in response.text


def test_listings_of_an_app(strict_master, master, secured_app, app_key) -> None:
    """Presence listings: admin token or the app's own signature; open only when neither is configured."""
    users = "/api/apps/{}/users"
    assert requests.get(master.url + users.format(app_key), timeout=5).status_code == 200
    assert requests.get(strict_master.url + users.format(app_key), timeout=5).status_code == 401
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert (
        requests.get(strict_master.url + users.format(app_key), headers=admin, timeout=5).status_code == 200
    )
    assert requests.get(master.url + users.format(secured_app), timeout=5).status_code == 401
    assert signed("GET", master.url + users.format(secured_app)).status_code == 200
    assert signed("GET", strict_master.url + users.format(secured_app)).status_code == 200


def test_master_logs_which_apps_are_open(webhook) -> None:
    """At start the master names the apps anyone may push to, and never prints a secret."""
    own = EmbeddedRedis().start()  # a Redis of its own: only this test's apps are listed
    client = redis_lib.Redis(host=own.host, port=own.port)
    open_key, shut_key = new_app_key("open"), new_app_key("shut")
    client.hset(open_key, "url", webhook.url)
    client.hset(shut_key, mapping={"url": webhook.url, "secret": SECRET})
    process = GunicornProcess("master", own.addr, workers=1).start()
    try:
        wait_until(lambda: "no secret" in process.log(), 10)
        log = process.log()
        line = next(line for line in log.splitlines() if "no secret" in line)
        assert "1 app(s)" in line and open_key in line and shut_key not in line
        assert SECRET not in log and "GUSHER_ADMIN_TOKEN is not set" in log
    finally:
        process.stop()
        own.stop()


# -- the slave: signed webhooks, origins, JWTs, patterns -------------------------------


def _remote_addr_seen(webhook, slave_url: str, app_key: str, forwarded: str) -> str:
    token = allow(f"u-{forwarded}", "c")
    Client(slave_url, app_key, token, header=[f"X-Forwarded-For: {forwarded}"]).close()
    call = next(r for r in reversed(webhook.requests) if r["form"].get("auth") == [token])
    return call["form"]["remote_addr"][0]


def test_forwarded_for_is_believed_only_from_trusted_proxies(redis_server, app_key, webhook) -> None:
    """X-Forwarded-For names the client only when the peer is a trusted proxy (default: loopback)."""
    trusting = GunicornProcess("slave", redis_server.addr, workers=1).start()
    wary = GunicornProcess("slave", redis_server.addr, workers=1, trusted_proxies="10.9.9.9").start()
    try:
        assert _remote_addr_seen(webhook, trusting.ws_url, app_key, "203.0.113.7") == "203.0.113.7"
        assert _remote_addr_seen(webhook, trusting.ws_url, app_key, "203.0.113.7, 127.0.0.1") == "203.0.113.7"
        assert _remote_addr_seen(webhook, wary.ws_url, app_key, "203.0.113.7") == "127.0.0.1"
    finally:
        trusting.stop()
        wary.stop()


def test_webhook_calls_are_signed_and_carry_app_and_address(slave, secured_app, webhook, clients) -> None:
    """The webhook gets X-Gusher-Signature = HMAC(secret, body), plus app_key and remote_addr fields."""
    token = allow("u-signed", "c")
    clients.append(Client(slave.ws_url, secured_app, token))
    call = next(r for r in reversed(webhook.requests) if r["form"].get("auth") == [token])
    assert call["form"]["app_key"] == [secured_app]
    assert call["form"]["remote_addr"] == ["127.0.0.1"]
    body = urllib.parse.urlencode(
        {"auth": token, "app_key": secured_app, "remote_addr": "127.0.0.1"}
    ).encode()
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert call["headers"][signing.SIGNATURE_HEADER] == expected


def test_open_apps_webhook_calls_are_unsigned(slave, app_key, webhook, clients) -> None:
    """Without a secret there is nothing to sign with; the seed's `auth` field is still there."""
    token = allow("u-open", "c")
    clients.append(Client(slave.ws_url, app_key, token))
    call = next(r for r in reversed(webhook.requests) if r["form"].get("auth") == [token])
    assert signing.SIGNATURE_HEADER not in call["headers"] and call["form"]["app_key"] == [app_key]


def handshake_refusal(slave: GunicornProcess, app: str, auth: str, **options) -> tuple[int, str]:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Client(slave.ws_url, app, auth, **options)
    return refused.value.status_code, json.loads(refused.value.resp_body)["error"]


@pytest.fixture
def origin_app(redis_client: redis_lib.Redis, webhook: Webhook) -> str:
    key = new_app_key("orig")
    redis_client.hset(
        key, mapping={"url": webhook.url, "origins": "https://app.example.com, https://*.example.org"}
    )
    return key


@pytest.mark.parametrize(
    "origin", ["https://app.example.com", "https://APP.example.com", "https://a.b.example.org", None]
)
def test_listed_origins_connect(slave, origin_app, clients, origin) -> None:
    """Listed origins (exact, case-insensitive, or by `*` pattern) and non-browser clients connect."""
    options = {"suppress_origin": True} if origin is None else {"origin": origin}
    client = Client(slave.ws_url, origin_app, allow("u", "c"), **options)
    clients.append(client)
    assert client.subscribe("c")["event"] == "gusher.subscribe_succeeded"


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.example.com",
        "https://example.org",
        "https://app.example.com.evil.net",
        "null",
    ],
)
def test_other_origins_get_403_before_any_webhook_call(slave, origin_app, webhook, origin) -> None:
    """Cross-site WebSocket hijacking: unlisted origins get 403; the webhook never hears of them."""
    token = allow("victim", "c") + ":" + origin
    status, reason = handshake_refusal(slave, origin_app, token, origin=origin)
    assert status == 403 and "origin" in reason
    assert not [r for r in webhook.requests if r["form"].get("auth") == [token]]


HS_KEY = "jwt-shared-secret-for-the-app-0123456789abcdef"


@pytest.fixture
def jwt_app(redis_client: redis_lib.Redis, webhook: Webhook) -> str:
    key = new_app_key("jwt")
    redis_client.hset(key, mapping={"url": webhook.url, "jwt_key": HS_KEY})
    return key


def token(key: str = HS_KEY, algorithm: str = "HS256", **claims) -> str:
    payload = {
        "user_id": "j1",
        "channels": ["news.*", "private.{user_id}"],
        "exp": int(time.time()) + 60,
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm)


def test_jwt_clients_connect_without_any_webhook_call(slave, jwt_app, webhook, clients) -> None:
    """An app with `jwt_key` verifies `?auth=<jwt>` locally; its claims decide the channels."""
    before = len(webhook.requests)
    client = Client(slave.ws_url, jwt_app, token())
    clients.append(client)
    assert client.subscribe("news.today")["event"] == "gusher.subscribe_succeeded"
    assert client.subscribe("private.j1")["event"] == "gusher.subscribe_succeeded"
    assert client.subscribe("private.j2")["event"] == "gusher.subscribe_error"
    assert client.subscribe("news")["event"] == "gusher.subscribe_error"
    assert len(webhook.requests) == before


def test_a_jwt_of_7800_characters_connects(slave, jwt_app, clients) -> None:
    """Issue 17 #10: the documented URL limit holds: a ~7,800-character token fits the request line."""
    long_token = token(channels=[f"room.{i:05d}" for i in range(440)])
    assert 7500 < len(long_token) <= 7900
    client = Client(slave.ws_url, jwt_app, long_token)
    clients.append(client)
    assert client.subscribe("room.00042")["event"] == "gusher.subscribe_succeeded"


def test_rs256_apps_verify_with_the_public_key(slave, redis_client, webhook, clients) -> None:
    """An app holding a PEM public key accepts RS256 tokens signed by the private key."""
    key = new_app_key("rsa")
    redis_client.hset(key, mapping={"url": webhook.url, "jwt_key": PUBLIC})
    client = Client(slave.ws_url, key, token(PRIVATE, "RS256"))
    clients.append(client)
    assert client.subscribe("news.x")["event"] == "gusher.subscribe_succeeded"
    status, reason = handshake_refusal(slave, key, token(PUBLIC.encode().decode()[:0] + HS_KEY))
    assert status == 401 and "RS256" in reason


@pytest.mark.parametrize(
    "make, reason_part",
    [
        (lambda: token(exp=int(time.time()) - 10), "expired"),
        (lambda: token(key="forged-by-someone-without-the-secret-000000"), "signature"),
        (lambda: token(PRIVATE, "RS256"), "HS256"),
        (lambda: jwt.encode({"user_id": "x", "channels": ["c"]}, HS_KEY, algorithm="HS256"), "'exp'"),
        (lambda: "allow:u:c", "malformed"),  # a webhook-style token is not a JWT
    ],
)
def test_forged_or_expired_jwts_get_401(slave, jwt_app, webhook, make, reason_part) -> None:
    """Expired, forged, algorithm-swapped or exp-less tokens are refused with 401, no webhook call."""
    before = len(webhook.requests)
    status, reason = handshake_refusal(slave, jwt_app, make())
    assert status == 401 and reason_part in reason
    assert len(webhook.requests) == before


def test_a_jwt_for_one_app_is_refused_by_another(slave, jwt_app, redis_client, webhook) -> None:
    """Cross-app: a token signed with app A's key does not open app B."""
    other = new_app_key("jwt")
    redis_client.hset(
        other, mapping={"url": webhook.url, "jwt_key": "b-key-entirely-different-0123456789abcd"}
    )
    status, _ = handshake_refusal(slave, other, token())
    assert status == 401


def test_webhook_patterns_and_user_placeholder(slave, app_key, clients) -> None:
    """Webhook channel lists may hold `*` globs and `{user_id}`; nothing else is a wildcard."""
    client = Client(slave.ws_url, app_key, allow("42", "news.*", "private.{user_id}", "a.b"))
    clients.append(client)
    for channel, event in [
        ("news.sport", "succeeded"),
        ("news", "error"),
        ("private.42", "succeeded"),
        ("private.43", "error"),
        ("private.{user_id}", "error"),
        ("aXb", "error"),
        ("a.b", "succeeded"),
    ]:
        assert client.subscribe(channel)["event"] == f"gusher.subscribe_{event}", channel


# -- logs -------------------------------------------------------------------------------


def test_logs_never_contain_secrets_or_tokens(redis_server, redis_client, webhook) -> None:
    """Debug logs of signed pushes, JWTs and webhook tokens hold no secret or token."""
    secret, admin, hs_key = (
        "log-secret-aaaa1111",
        "log-admin-bbbb2222",
        "log-jwt-key-cccc3333-0123456789abcdef",
    )
    app_secure, app_jwt = new_app_key("logs"), new_app_key("logs")
    redis_client.hset(app_secure, mapping={"url": webhook.url, "secret": secret})
    redis_client.hset(app_jwt, mapping={"url": webhook.url, "jwt_key": hs_key})
    master = GunicornProcess(
        "master",
        redis_server.addr,
        workers=1,
        admin_token=admin,
        log_level="debug",
        allow_bearer_secret="true",
    ).start()
    slave = GunicornProcess("slave", redis_server.addr, workers=1, log_level="debug").start()
    webhook_token = allow("log-user", "c") + ":webhook-token-dddd4444"
    jwt_token = token(hs_key)
    expired = token(hs_key, exp=int(time.time()) - 5)
    try:
        signed("POST", f"{master.url}/api/push/{app_secure}/c/e?data=x", secret=secret)
        signed("POST", f"{master.url}/api/push/{app_secure}/c/e?data=x", secret="wrong")
        push(master.url, app_secure, "c", "e", "x", headers={"Authorization": f"Bearer {secret}"})
        push(master.url, app_secure, "c", "e", "x", headers={"Authorization": "Bearer guess-eeee5555"})
        requests.get(
            f"{master.url}/api/system/slaveinfos", headers={"Authorization": f"Bearer {admin}"}, timeout=5
        )
        Client(slave.ws_url, app_secure, webhook_token).close()
        Client(slave.ws_url, app_jwt, jwt_token).close()
        for bad in (expired, "deny-ffff6666"):
            with pytest.raises(websocket.WebSocketBadStatusException):
                Client(slave.ws_url, app_jwt if bad == expired else app_secure, bad)
    finally:
        master.stop()
        slave.stop()
    logs = master.log() + slave.log()
    assert "DEBUG" in logs or "debug" in logs.lower()
    for needle in (secret, admin, hs_key, "dddd4444", jwt_token, expired, "eeee5555", "ffff6666"):
        assert needle not in logs, needle


# -- review of issue 6: canonicalisation and key-handling edge cases ------------------------


def test_swapping_repeated_query_values_breaks_the_signature(master, secured_app) -> None:
    """Replay with `?data=b&data=a` of a request signed as `?data=a&data=b` (which pushes "a") is refused."""
    url = f"{master.url}/api/push/{secured_app}/c/e?data=a&data=b"
    headers = signing.signed_headers(SECRET, "POST", url, b"", time.time())
    response = requests.post(url, headers=headers, timeout=5)
    assert response.status_code == 200 and response.json()["data"] == "a"
    swapped = url.replace("data=a&data=b", "data=b&data=a")
    response = requests.post(swapped, headers=headers, timeout=5)
    assert response.status_code == 401 and "does not match" in response.json()["error"]


def test_an_empty_secret_field_locks_the_app(master, redis_client, webhook) -> None:
    """A `secret` field left blank refuses every push (fail closed) instead of leaving the app open."""
    key = new_app_key("blank")
    redis_client.hset(key, mapping={"url": webhook.url, "secret": ""})
    response = push(master.url, key, "c", "e", "x")
    assert response.status_code == 401 and "secret field is empty" in response.json()["error"]
    assert signed("POST", f"{master.url}/api/push/{key}/c/e?data=x", secret="").status_code == 401


def test_binary_secrets_are_not_collapsed(master, redis_client, webhook) -> None:
    """A secret of non-UTF-8 bytes signs with exactly those bytes; the U+FFFD look-alike is refused."""
    key = new_app_key("bin")
    raw = bytes(range(0x80, 0xA0))
    redis_client.hset(key, mapping={"url": webhook.url, "secret": raw})
    url = f"{master.url}/api/push/{key}/c/e?data=x"
    assert signed("POST", url, secret=raw.decode("utf-8", "surrogateescape")).status_code == 200
    lossy = raw.decode("utf-8", "replace")  # what the master used to verify with
    assert signed("POST", url, secret=lossy).status_code == 401


def test_non_ascii_bearer_secret(strict_master, redis_client, webhook) -> None:
    """A UTF-8 secret sent as `Bearer` bytes matches the secret stored in Redis."""
    key = new_app_key("utf8")
    redis_client.hset(key, mapping={"url": webhook.url, "secret": "sécret-ü-0123"})
    good = {"Authorization": "Bearer sécret-ü-0123".encode()}
    assert push(strict_master.url, key, "c", "e", "x", headers=good).status_code == 200
    bad = {"Authorization": "Bearer sécret-ü-0124".encode()}
    assert push(strict_master.url, key, "c", "e", "x", headers=bad).status_code == 401


@pytest.mark.parametrize(
    "channel, body",
    [("news.{x}", "data=plain"), ("list[1]", "data=plain"), ("c", "@not-a-file")],
)
def test_gusher_sign_curl_lines_send_exactly_what_was_signed(master, secured_app, channel, body) -> None:
    """curl must not glob `{}`/`[]` in the URL nor read a body starting with `@` as a file name."""
    url = f"{master.url}/api/push/{secured_app}/{channel}/e"
    line = subprocess.run(
        [sys.executable, "-m", "gusher.cli", "sign", "--secret", SECRET, "--form", body, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    result = subprocess.run(
        [*shlex.split(line), "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=30
    )
    text, _, status = result.stdout.rpartition("\n")
    expected = 400 if body.startswith("@") else 200  # `@not-a-file` has no `data` field: signed, then 400
    assert int(status) == expected, (line, result.stdout, result.stderr)
    if expected == 200:
        assert json.loads(text)["channel"] == channel


def test_a_private_key_stored_as_jwt_key_is_a_401_not_a_500(slave, redis_client, webhook) -> None:
    """An operator storing the RSA *private* key gets clean refusals, not internal errors."""
    key = new_app_key("rsapriv")
    redis_client.hset(key, mapping={"url": webhook.url, "jwt_key": PRIVATE})
    status, reason = handshake_refusal(slave, key, token(PRIVATE, "RS256"))
    assert status == 401 and "public key" in reason
