"""pusher-js 8's browser build and Laravel Echo 2 (pusher connector), unchanged, in headless Chromium
against a real slave (issue 13): what a Laravel or plain Pusher front end sees of gusher.

A test HTTP server (a thread here) serves one page and the libraries' own files from
tests/pusher/node_modules; the page only keeps a log (`seen`) of what the libraries hand to
their callbacks. Signatures come from `tests.pusher_support.AuthBackend` (the PyPI `pusher`
SDK, another origin, so the browser really makes CORS requests), and messages are published
the way any backend may publish to gusher: a raw Redis PUBLISH of the common message.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis as redis_lib

from gusher.keys import pubsub_channel
from tests.browser import needs_chromium, page_errors
from tests.pusher_support import MODULES, AuthBackend, pusher_app
from tests.support import GunicornProcess

pytestmark = needs_chromium

# The files a page would load from a CDN (pusher-js's own "web" build, Echo's IIFE build).
LIBRARIES = {
    "/pusher.js": MODULES / "pusher-js" / "dist" / "web" / "pusher.js",
    "/echo.js": MODULES / "laravel-echo" / "dist" / "echo.iife.js",
}

# `seen` is all the page does: each library callback appends what it was given. The helpers
# only spell the options every test shares; the scenarios are written in the tests.
PAGE = """<!doctype html>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>gusher: pusher-js and Laravel Echo</title>
<script src="/pusher.js"></script>
<script src="/echo.js"></script>
<script>
window.seen = [];
function note(kind, fields) { seen.push({kind, ...fields}); }

// What a self-hosted Pusher app sets: pusher-js 8 wants a cluster even when wsHost wins.
function hostOptions(port) {
  return {cluster: "mt1", wsHost: "127.0.0.1", wsPort: port, wssPort: port, forceTLS: false,
          enabledTransports: ["ws"], disableStats: true};
}

function connect(key, port, auth) {
  window.client = new Pusher(key, {...hostOptions(port), channelAuthorization: {endpoint: auth}});
  client.connection.bind("state_change", (states) =>
    note("state", {state: states.current, socket_id: client.connection.socket_id || null}));
}

function members(channel) {
  if (!channel.members) return null;
  const m = channel.members;
  return {count: m.count, me: m.me, ids: Object.keys(m.members).sort()};
}

function watch(name) {
  const channel = client.subscribe(name);
  channel.bind("pusher:subscription_succeeded", () =>
    note("subscribed", {channel: name, members: members(channel)}));
  channel.bind("pusher:subscription_error", (error) => note("subscription_error", {channel: name, error}));
  channel.bind("pusher:member_added", (member) =>
    note("member_added", {channel: name, member, count: channel.members.count}));
  channel.bind("pusher:member_removed", (member) =>
    note("member_removed", {channel: name, member, count: channel.members.count}));
  channel.bind_global((event, data) => {
    if (!event.startsWith("pusher:") && !event.startsWith("pusher_internal:")) {
      note("event", {channel: name, event, data});
    }
  });
}

// Laravel's resources/js/echo.js does `window.Pusher = Pusher; window.Echo = new Echo({...})`;
// the IIFE build's global is the module, its class is `Echo.default`. `how` picks which of
// Echo 2's three ways to find the client is used: the global, the `Pusher` option, `client`.
function echo(key, port, auth, how) {
  const config = {broadcaster: "pusher", key, ...hostOptions(port), authEndpoint: auth};
  if (how === "option") config.Pusher = Pusher;
  if (how === "client") config.client = new Pusher(key, {...hostOptions(port), authEndpoint: auth});
  window.laravel = new Echo.default(config);
  laravel.connector.pusher.connection.bind("connected", () =>
    note("state", {state: "connected", socket_id: laravel.socketId()}));
}
</script>
"""


def needs_the_libraries() -> None:
    """Skip without tests/pusher/node_modules, unless in CI (where it is a failure)."""
    if all(path.exists() for path in LIBRARIES.values()):
        return
    assert not os.environ.get("GUSHER_CI"), "CI must run the browser Pusher tests (`make test` runs npm ci)"
    pytest.skip("tests/pusher/node_modules missing (`make test` installs it when npm is there)")


class _SiteHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/":
            self._answer(PAGE.encode(), "text/html; charset=utf-8")
        elif path in LIBRARIES:
            self._answer(LIBRARIES[path].read_bytes(), "text/javascript; charset=utf-8")
        else:
            self.send_error(404)

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The page and the two library files, served from a thread on a free port."""
    needs_the_libraries()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SiteHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def backend() -> Iterator[AuthBackend]:
    server = AuthBackend()
    yield server
    server.shutdown()
    server.server_close()


class Page:
    """One browser page (its own context): its callbacks' log, its errors, its WebSocket frames."""

    def __init__(self, browser: Any, site: str) -> None:
        self.page = browser.new_page()
        self.errors = page_errors(self.page)
        self.sockets: list[str] = []
        self.frames: list[tuple[str, Any]] = []  # ("sent" | "received", the parsed JSON frame)
        self.page.on("websocket", self._record)
        self.page.goto(site)

    def _record(self, socket: Any) -> None:
        self.sockets.append(socket.url)
        socket.on("framesent", lambda payload: self.frames.append(("sent", _parsed(payload))))
        socket.on("framereceived", lambda payload: self.frames.append(("received", _parsed(payload))))

    def run(self, script: str, *args: Any) -> Any:
        """Evaluate `script`, a JS function body, with `args` as `args`."""
        return self.page.evaluate(f"(args) => {{ {script} }}", list(args))

    def expect(self, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first logged callback with these fields (deep-equal), waiting up to `timeout` s."""
        from playwright.sync_api import TimeoutError as PageTimeout

        found = (
            "(m) => seen.find((s) => Object.entries(m).every(([k, v]) =>"
            " JSON.stringify(s[k]) === JSON.stringify(v)))"
        )
        try:
            handle = self.page.wait_for_function(found, arg=match, timeout=timeout * 1000)
        except PageTimeout as exc:  # say what the page did see, and what went over the wire
            seen = self.page.evaluate("seen")
            raise AssertionError(
                f"the page never logged {match};\nit logged {seen}\nframes {self.frames}\n"
                f"errors {self.errors}"
            ) from exc
        return dict(handle.json_value())

    def logged(self, kind: str) -> list[dict[str, Any]]:
        """Everything logged of this kind so far."""
        return list(self.page.evaluate("(kind) => seen.filter((s) => s.kind === kind)", kind))

    def expect_none(self, seconds: float = 0.7, **match: Any) -> None:
        """Nothing with these fields is logged within `seconds`."""
        try:
            line = self.expect(timeout=seconds, **match)
        except AssertionError:
            return
        raise AssertionError(f"the page logged {line}, which must not happen")

    def close(self) -> list[str]:
        """Close the page; its uncaught errors."""
        self.page.context.close()
        return self.errors


def _parsed(payload: str | bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload


@pytest.fixture
def open_page(browser: Any, site: str) -> Iterator[Callable[[], Page]]:
    """A factory of pages; afterwards asserts none had an uncaught error, and closes them."""
    opened: list[Page] = []

    def make() -> Page:
        opened.append(Page(browser, site))
        return opened[-1]

    yield make
    errors = [error for page in opened for error in page.close()]
    assert errors == [], f"uncaught page errors: {errors}"


def publish(redis_client: redis_lib.Redis, key: str, channel: str, event: str, data: str) -> None:
    """What any backend may do: PUBLISH the common message on `{app_key}@{channel}`."""
    payload = json.dumps({"channel": channel, "event": event, "data": data})
    assert redis_client.publish(pubsub_channel(key, channel), payload) >= 1, "no slave subscribed"


def connected(page: Page) -> str:
    """Wait until the library says connected; its socket id (Pusher's `\\d+.\\d+`)."""
    socket_id = str(page.expect(kind="state", state="connected")["socket_id"])
    assert re.fullmatch(r"\d+\.\d+", socket_id), socket_id
    return socket_id


def auth_requests(backend: AuthBackend, socket_id: str) -> list[str]:
    """The channels the backend was asked to sign for this connection."""
    return [form["channel_name"] for _, form in backend.requests if form.get("socket_id") == socket_id]


# -- pusher-js, its web build ---------------------------------------------------------


def test_pusher_js_connects_and_receives_public_and_private_events(
    open_page, slave: GunicornProcess, redis_client, backend: AuthBackend
) -> None:
    """The browser build connects on /app/{key} with protocol 7, gets a Pusher socket id, and
    receives what a backend publishes on a public and on a backend-signed private channel."""
    key = pusher_app(redis_client)
    page = open_page()
    page.run("connect(...args)", key, slave.port, backend.auth_url(key, user="alice"))
    socket_id = connected(page)
    url = urllib.parse.urlsplit(page.sockets[0])
    assert url.path == f"/app/{key}" and "protocol=7" in url.query and "client=js" in url.query, url

    page.run("watch('news'); watch('private-orders')")
    page.expect(kind="subscribed", channel="news")
    page.expect(kind="subscribed", channel="private-orders")
    assert auth_requests(backend, socket_id) == ["private-orders"]  # only the private one is signed
    publish(redis_client, key, "news", "created", "hello")
    publish(redis_client, key, "news", "updated", json.dumps({"id": 7}))
    publish(redis_client, key, "private-orders", "paid", json.dumps({"order": 42}))

    assert page.expect(kind="event", event="created")["data"] == "hello"
    assert page.expect(kind="event", event="updated")["data"] == {"id": 7}  # pusher-js parses JSON data
    assert page.expect(kind="event", channel="private-orders")["data"] == {"order": 42}
    assert page.logged("subscription_error") == []


def test_pusher_js_presence_lists_members_and_announces_who_joins_and_leaves(
    open_page, slave: GunicornProcess, redis_client, backend: AuthBackend
) -> None:
    """A presence subscription carries the member list (`me` from the backend's channel_data);
    another page joining is `pusher:member_added` here, its leaving `pusher:member_removed`."""
    key = pusher_app(redis_client)
    alice, bob = open_page(), open_page()
    alice.run(
        "connect(...args); watch('presence-room')", key, slave.port, backend.auth_url(key, user="alice")
    )
    me = {"id": "alice", "info": {"name": "Alice"}}
    assert alice.expect(kind="subscribed")["members"] == {"count": 1, "me": me, "ids": ["alice"]}

    bob.run("connect(...args); watch('presence-room')", key, slave.port, backend.auth_url(key, user="bob"))
    assert bob.expect(kind="subscribed")["members"]["ids"] == ["alice", "bob"]
    added = alice.expect(kind="member_added")
    assert added["member"] == {"id": "bob", "info": {"name": "Bob"}} and added["count"] == 2
    bob.expect_none(kind="member_added")  # its own join is in its list, not an event

    bob.run("client.disconnect()")
    removed = alice.expect(kind="member_removed")
    assert removed["member"]["id"] == "bob" and removed["count"] == 1


# -- Laravel Echo, pusher connector -------------------------------------------------


@pytest.mark.parametrize("how", ["global", "option", "client"])
def test_echo_listens_on_public_and_private_channels_by_laravel_event_names(
    open_page, slave: GunicornProcess, redis_client, backend: AuthBackend, how: str
) -> None:
    """Echo finds pusher-js however it is given (window.Pusher, `Pusher`, `client`); `.listen`
    without a dot hears Laravel's `App\\Events\\` class name, with a dot the raw name; `private()`
    subscribes to `private-` + name, signed through the backend."""
    key = pusher_app(redis_client)
    page = open_page()
    page.run("echo(...args)", key, slave.port, backend.auth_url(key, user="bob"), how)
    socket_id = connected(page)
    page.run(
        """
        const channel = laravel.channel('orders');
        channel.subscribed(() => note('subscribed', {channel: 'orders'}));
        channel.listen('.OrderShipped', (e) => note('raw', {data: e}));
        channel.listen('OrderShipped', (e) => note('namespaced', {data: e}));
        laravel.private('orders.1')
          .subscribed(() => note('subscribed', {channel: 'private'}))
          .listen('OrderPaid', (e) => note('paid', {data: e}));
        """
    )
    page.expect(kind="subscribed", channel="orders")
    page.expect(kind="subscribed", channel="private")
    assert auth_requests(backend, socket_id) == ["private-orders.1"]

    # What Laravel's Pusher broadcaster sends: the event's class name, its payload JSON-encoded.
    publish(redis_client, key, "orders", "OrderShipped", json.dumps({"order": {"id": 1}}))
    publish(redis_client, key, "orders", "App\\Events\\OrderShipped", json.dumps({"order": {"id": 2}}))
    publish(redis_client, key, "private-orders.1", "App\\Events\\OrderPaid", json.dumps({"total": 9}))

    assert page.expect(kind="raw")["data"] == {"order": {"id": 1}}
    assert page.expect(kind="namespaced")["data"] == {"order": {"id": 2}}
    assert page.expect(kind="paid")["data"] == {"total": 9}
    received = [frame["event"] for way, frame in page.frames if way == "received" and "channel" in frame]
    assert "App\\Events\\OrderShipped" in received  # the backslashes reached the browser unchanged
    # Each form hears only its own name (one channel's events arrive in order: nothing is late).
    assert [note["data"]["order"]["id"] for note in page.logged("raw") + page.logged("namespaced")] == [1, 2]


def test_echo_presence_here_joining_and_leaving(
    open_page, slave: GunicornProcess, redis_client, backend: AuthBackend
) -> None:
    """`join()` subscribes to `presence-` + name; `here` gets the members' infos, `joining` and
    `leaving` the info of whoever comes and goes."""
    key = pusher_app(redis_client)
    bob, alice = open_page(), open_page()
    join = """
        echo(...args);
        laravel.join('room.1')
          .here((users) => note('here', {users}))
          .joining((user) => note('joining', {user}))
          .leaving((user) => note('leaving', {user}));
        """
    bob.run(join, key, slave.port, backend.auth_url(key, user="bob"), "global")
    assert bob.expect(kind="here")["users"] == [{"name": "Bob"}]
    alice.run(join, key, slave.port, backend.auth_url(key, user="alice"), "global")
    users = alice.expect(kind="here")["users"]
    assert sorted(user["name"] for user in users) == ["Alice", "Bob"]
    assert bob.expect(kind="joining")["user"] == {"name": "Alice"}
    sent = [frame for way, frame in alice.frames if way == "sent" and frame["event"] == "pusher:subscribe"]
    assert [frame["data"]["channel"] for frame in sent] == ["presence-room.1"]

    alice.run("laravel.leave('room.1')")
    assert bob.expect(kind="leaving")["user"] == {"name": "Alice"}


def test_echo_whispers_between_pages_on_a_private_channel(
    open_page, slave: GunicornProcess, redis_client, backend: AuthBackend
) -> None:
    """With the app's `client_events` on, `whisper('typing')` goes out as the client event
    `client-typing` and reaches the other page's `listenForWhisper('typing')`, not the sender's."""
    key = pusher_app(redis_client, client_events="1")
    alice, bob = open_page(), open_page()
    for page, user in ((alice, "alice"), (bob, "bob")):
        page.run(
            """
            echo(...args);
            laravel.private('chat.1')
              .subscribed(() => note('subscribed', {}))
              .listenForWhisper('typing', (e) => note('whisper', {data: e}));
            """,
            key,
            slave.port,
            backend.auth_url(key, user=user),
            "global",
        )
        page.expect(kind="subscribed")
    alice.run("laravel.private('chat.1').whisper('typing', {name: 'Alice', typing: true})")

    assert bob.expect(kind="whisper")["data"] == {"name": "Alice", "typing": True}
    sent = [frame for way, frame in alice.frames if way == "sent" and frame["event"].startswith("client-")]
    assert sent == [
        {"event": "client-typing", "channel": "private-chat.1", "data": {"name": "Alice", "typing": True}}
    ]
    alice.expect_none(kind="whisper")  # never echoed to the sender
    errors = [frame for way, frame in alice.frames if way == "received" and frame["event"] == "pusher:error"]
    assert errors == []
