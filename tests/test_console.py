"""The admin console at /ui on a real master: its access rules over HTTP, then clicked through in
headless Chromium (Debian's `chromium`, driven by Playwright), with screenshots kept as artifacts.

Screenshots go to `test-artifacts/console/` at the repository's root (not committed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from gusher.ops.heartbeat import external_ipv4
from tests.browser import needs_chromium, page_errors
from tests.support import Client, GunicornProcess, Webhook, allow, free_port, new_app_key, wait_until

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "console"
TOKEN = "console-admin-token-0123456789"


@pytest.fixture(scope="module")
def guarded(redis_server) -> Iterator[GunicornProcess]:
    """A master with an admin token: the console needs a sign-in."""
    process = GunicornProcess("master", redis_server.addr, workers=2, admin_token=TOKEN).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def open_to_all_interfaces(redis_server) -> Iterator[GunicornProcess]:
    """A master without an admin token, listening on every interface: loopback-only console."""
    port = free_port()
    process = GunicornProcess("master", redis_server.addr, workers=1, port=port)
    process.env["MASTER_API_LISTEN"] = f"0.0.0.0:{port}"
    yield process.start()
    process.stop()


def sign_in(master: GunicornProcess) -> requests.Session:
    session = requests.Session()
    response = session.post(
        f"{master.url}/ui/api/session", json={"token": TOKEN}, headers={"X-Gusher-CSRF": "-"}, timeout=5
    )
    assert response.status_code == 200, response.text
    session.headers["X-Gusher-CSRF"] = response.json()["csrf"]
    return session


# -- access over HTTP ---------------------------------------------------------------


def test_with_a_token_the_data_needs_a_session_and_the_cookie_is_httponly_strict(guarded) -> None:
    for path in ("/ui/api/cluster", "/ui/api/apps"):
        response = requests.get(guarded.url + path, timeout=5)
        assert response.status_code == 401 and "sign in" in response.json()["error"]
    assert requests.get(guarded.url + "/ui", timeout=5).status_code == 200  # the page, to sign in on
    wrong = requests.post(
        f"{guarded.url}/ui/api/session", json={"token": "nope"}, headers={"X-Gusher-CSRF": "-"}, timeout=5
    )
    assert wrong.status_code == 401 and "wrong admin token" in wrong.json()["error"]
    response = requests.post(
        f"{guarded.url}/ui/api/session", json={"token": TOKEN}, headers={"X-Gusher-CSRF": "-"}, timeout=5
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie, "plain http: a Secure cookie would never come back"
    behind_tls = requests.post(
        f"{guarded.url}/ui/api/session",
        json={"token": TOKEN},
        headers={"X-Gusher-CSRF": "-", "X-Forwarded-Proto": "https"},
        timeout=5,
    )
    assert "Secure" in behind_tls.headers["Set-Cookie"]
    session = sign_in(guarded)
    assert session.get(guarded.url + "/ui/api/cluster", timeout=5).status_code == 200
    assert session.delete(guarded.url + "/ui/api/session", timeout=5).status_code == 200
    session.cookies.clear()
    assert session.get(guarded.url + "/ui/api/cluster", timeout=5).status_code == 401


def test_the_app_list_shows_how_apps_are_secured_and_never_a_secret(
    guarded, redis_client: redis_lib.Redis, webhook: Webhook
) -> None:
    key = new_app_key("secured")
    redis_client.hset(
        key,
        mapping={
            "url": webhook.url + "?k=webhook-credential",
            "secret": "s3cr3t-app-secret",
            "jwt_key": "jwt-k3y",
        },
    )
    session = sign_in(guarded)
    response = session.get(guarded.url + "/ui/api/apps", timeout=5)
    listed = {app["key"]: app for app in response.json()["apps"]}
    assert listed[key] == {"key": key, "signed_pushes": True, "jwt": True, "webhook": True, "origins": []}
    for secret in ("s3cr3t-app-secret", "jwt-k3y", "webhook-credential", TOKEN):
        assert secret not in response.text


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "header is missing"),
        ({"X-Gusher-CSRF": "0" * 64}, "does not match"),
        ({"Sec-Fetch-Site": "cross-site"}, "cross-site"),
        ({"Origin": "http://evil.example"}, "cross-origin"),
    ],
)
def test_a_push_that_is_not_the_consoles_own_is_refused(
    guarded, slave, app_key, clients, headers, reason
) -> None:
    """CSRF: without the session's token, or sent from another site, nothing is published."""
    client = Client(slave.ws_url, app_key, allow("u", "c"))
    clients.append(client)
    assert client.subscribe("c")["event"] == "gusher.subscribe_succeeded"
    session = sign_in(guarded)
    csrf = session.headers.pop("X-Gusher-CSRF")
    sent = {"X-Gusher-CSRF": csrf, **headers} if "X-Gusher-CSRF" not in headers and headers else headers
    body = {"app_key": app_key, "channel": "c", "event": "e", "data": 1}
    response = session.post(guarded.url + "/ui/api/push", json=body, headers=sent, timeout=5)
    assert response.status_code == 403 and reason in response.json()["error"]
    client.expect_silence(0.3)
    ok = session.post(guarded.url + "/ui/api/push", json=body, headers={"X-Gusher-CSRF": csrf}, timeout=5)
    assert ok.status_code == 200
    assert client.recv_json() == {"channel": "c", "event": "e", "data": 1}


def test_without_a_token_the_console_answers_direct_loopback_visits_only(open_to_all_interfaces) -> None:
    master = open_to_all_interfaces
    assert requests.get(master.url + "/ui/api/cluster", timeout=5).status_code == 200
    for headers in (
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9"},
        {"Host": "evil.example"},
    ):
        response = requests.get(master.url + "/ui/api/cluster", headers=headers, timeout=5)
        assert response.status_code == 403 and "loopback only" in response.json()["error"], headers
    ip = external_ipv4()
    assert ip != "127.0.0.1", "this test needs an address other than loopback"
    remote = requests.get(f"http://{ip}:{master.port}/ui", timeout=5)
    assert remote.status_code == 403 and "GUSHER_ADMIN_TOKEN" in remote.json()["error"]
    assert requests.get(f"http://{ip}:{master.port}/healthz", timeout=5).status_code == 200  # the API is not


def test_every_console_answer_forbids_framing_and_caching(guarded) -> None:
    response = requests.get(guarded.url + "/ui", timeout=5)
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert requests.get(guarded.url + "/ui/static/../../config.py", timeout=5).status_code in (400, 404)


# -- in a browser ---------------------------------------------------------------------


@needs_chromium
def test_the_console_clicked_through_in_chromium(
    browser, guarded, slave, redis_client: redis_lib.Redis, webhook: Webhook, clients
) -> None:
    """Sign in, watch the cluster and its rates, open an app's channels and users, push from the
    form to a real client, sign out: every step in the page, each screenshotted."""
    key = new_app_key("console")
    redis_client.hset(key, mapping={"url": webhook.url, "secret": "never-shown-secret"})
    hostile = "<img src=x onerror=window.pwned=1>"
    for user, channel in (("alice", "news"), ("bob", "news"), ("carol", hostile)):
        client = Client(slave.ws_url, key, allow(user, channel))
        clients.append(client)
        assert client.subscribe(channel)["event"] == "gusher.subscribe_succeeded"
    listener = clients[0]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    errors = page_errors(page, ("status of 401", "status of 400"))  # the wrong token, the refused push
    page.goto(guarded.url + "/ui")
    page.wait_for_selector("#sign-in:not([hidden])")
    page.fill("#token", "wrong-token")
    page.click("#sign-in-form button")
    page.wait_for_selector("#sign-in-error:has-text('wrong admin token')")
    page.screenshot(path=str(ARTIFACTS / "1-sign-in-refused.png"))
    page.fill("#token", TOKEN)
    page.click("#sign-in-form button")
    page.wait_for_selector("#console:not([hidden])")
    cookie = next(c for c in context.cookies() if c["name"] == "gusher_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == "", "the session cookie is out of the page's reach"

    # The cluster: the slave's connections (from its heartbeats) and its workers.
    wait_until(lambda: shown_number(page, "#total-connections") >= 3, 15)
    assert page.locator("#slaves tbody tr").count() >= 2  # one row per worker
    assert f"@{slave.port}" in page.inner_text("#slaves")
    # Rates: pushes while the page polls draw both lines.
    signed_pushes(redis_client, guarded, key, 30)
    wait_until(lambda: shown_number(page, "#rate-deliveries") > 0, 15)
    assert page.locator("#chart polyline.deliveries").count() == 1
    page.screenshot(path=str(ARTIFACTS / "2-cluster.png"), full_page=True)

    # Apps, and how each is secured; the secret is nowhere in the page.
    row = page.locator(f"#apps tr[data-app='{key}']")
    row.wait_for()
    assert "signed" in row.inner_text() and "webhook" in row.inner_text()
    row.locator("button").click()
    page.wait_for_selector("#channels td:has-text('news')", timeout=15000)
    page.wait_for_selector("#users td:has-text('alice')")
    assert page.locator("#channels tbody tr").count() == 2
    assert hostile in page.inner_text("#channels"), "a client's channel name is shown as text"
    assert page.evaluate("window.pwned") is None, "and never run as HTML"
    assert "never-shown-secret" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "3-app.png"), full_page=True)

    # The push form reaches a real client.
    page.select_option("#push-app", key)
    page.fill("#push-channel", "news")
    page.fill("#push-event", "console-test")
    page.fill("#push-data", '{"from": "the console"}')
    page.click("#push-form button")
    page.wait_for_selector("#push-result:has-text('Pushed console-test')")
    assert drain_until(listener, "console-test")["data"] == {"from": "the console"}
    page.evaluate("document.getElementById('push-channel').value = 'c'.repeat(201)")
    page.click("#push-form button")
    page.wait_for_selector("#push-result:has-text('Refused')")
    page.screenshot(path=str(ARTIFACTS / "4-push.png"), full_page=True)

    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")
    assert not [c for c in context.cookies() if c["name"] == "gusher_console"]
    page.screenshot(path=str(ARTIFACTS / "5-signed-out.png"))
    assert errors == [], errors
    context.close()


def signed_pushes(redis_client: redis_lib.Redis, master: GunicornProcess, app_key: str, count: int) -> None:
    """`count` pushes to `news` signed with the app's secret (gusher's own signing, as a backend does)."""
    import time

    from gusher.core.signing import signed_headers

    secret = redis_client.hget(app_key, "secret").decode()
    for index in range(count):
        url = f"{master.url}/api/push/{app_key}/news/tick"
        body = f"data={index}".encode()
        content_type = "application/x-www-form-urlencoded"
        headers = signed_headers(secret, "POST", url, body, time.time(), content_type)
        headers["Content-Type"] = content_type
        response = requests.post(url, data=body, headers=headers, timeout=5)
        assert response.status_code == 200, response.text


def shown_number(page, selector: str) -> int:
    """A number the page shows ("1,234"), or -1 while it shows none (the page's CSP forbids
    Playwright's string predicates, so the test polls from here)."""
    text = page.inner_text(selector).replace(",", "")
    return int(text) if text.isdigit() else -1


def drain_until(client: Client, event: str) -> dict:
    """Read `client`'s messages until one of `event` arrives."""
    return wait_until(lambda: (m := client.recv_json())["event"] == event and m, 10)
