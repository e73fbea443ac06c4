"""Pusher-format webhooks from real slaves to an app's `events_url` (issue 13, point 6).

The receiver checks every body with the PyPI `pusher` SDK's `validate_webhook`
(key, signature, and a `time_ms` within 5 minutes), as an app's backend does.
Occupancy and member events must be exact across slaves: one
`channel_occupied` however many slaves carry the channel, `channel_vacated`
only after the last subscriber anywhere left (soketi #616), and after a
crash too.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pusher
import pytest

from gusher.embedded import EmbeddedRedis
from tests.pusher_support import PusherSocket, pusher_app
from tests.support import GunicornProcess, wait_until

SECRET = "app-secret"


class _Receiver(BaseHTTPRequestHandler):
    server: EventsReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        checked = self.server.sdk.validate_webhook(
            self.headers.get("X-Pusher-Key", ""), self.headers.get("X-Pusher-Signature", ""), body
        )
        with self.server.lock:
            if checked is None or self.headers.get("Content-Type") != "application/json":
                self.server.invalid.append(body)
            else:
                self.server.events.extend(checked["events"])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class EventsReceiver(ThreadingHTTPServer):
    """An app backend's webhook endpoint, validating with the Pusher SDK."""

    daemon_threads = True

    def __init__(self, key: str) -> None:
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.sdk = pusher.Pusher(app_id="4242", key=key, secret=SECRET)
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.invalid: list[bytes] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/pusher/webhooks"

    def names(self, channel: str) -> list[str]:
        with self.lock:
            return [e["name"] for e in self.events if e.get("channel") == channel]

    def wait_for(self, channel: str, names: list[str]) -> None:
        """Until `channel`'s events are exactly `names`, in order (then a little longer)."""
        wait_until(lambda: self.names(channel) == names, timeout=15)
        threading.Event().wait(0.5)
        assert self.names(channel) == names, self.events
        assert not self.invalid


@pytest.fixture(scope="module")
def second_slave(redis_server: EmbeddedRedis) -> Iterator[GunicornProcess]:
    process = GunicornProcess("slave", redis_server.addr, workers=1).start()
    yield process
    process.stop()


@pytest.fixture
def app(redis_client) -> Iterator[tuple[str, EventsReceiver]]:
    key = pusher_app(redis_client, client_events="1")
    receiver = EventsReceiver(key)
    redis_client.hset(key, "events_url", receiver.url)
    yield key, receiver
    receiver.shutdown()


def test_occupancy_and_members_are_told_once_across_slaves(
    slave: GunicornProcess, second_slave: GunicornProcess, app: tuple[str, EventsReceiver]
) -> None:
    key, receiver = app
    channel = "presence-team"
    first = [PusherSocket(slave, key), PusherSocket(slave, key)]
    second = [PusherSocket(second_slave, key)]
    try:
        first[0].join(channel, "ann")
        receiver.wait_for(channel, ["channel_occupied", "member_added"])
        first[1].join(channel, "ann")  # her second connection: no event
        second[0].join(channel, "ben")  # another slave: member_added only
        receiver.wait_for(channel, ["channel_occupied", "member_added", "member_added"])
        with receiver.lock:
            assert [e.get("user_id") for e in receiver.events if e["name"] == "member_added"] == [
                "ann",
                "ben",
            ]

        second[0].send("client-wave", {"hi": 1}, channel=channel)
        receiver.wait_for(channel, ["channel_occupied", "member_added", "member_added", "client_event"])
        with receiver.lock:
            event = receiver.events[-1]
        assert event["event"] == "client-wave" and event["user_id"] == "ben"
        assert event["socket_id"] == second[0].socket_id

        first[0].close()  # ann is still there through first[1]
        second[0].close()
        expected = ["channel_occupied", "member_added", "member_added", "client_event", "member_removed"]
        receiver.wait_for(channel, expected)
        first[1].close()
        receiver.wait_for(channel, [*expected, "member_removed", "channel_vacated"])
    finally:
        for client in first + second:
            client.close()


def test_a_crashed_slaves_channels_are_vacated(
    redis_server: EmbeddedRedis, app: tuple[str, EventsReceiver]
) -> None:
    key, receiver = app
    doomed = GunicornProcess("slave", redis_server.addr, workers=1).start()
    client = PusherSocket(doomed, key)
    try:
        client.subscribe("orders")
        receiver.wait_for("orders", ["channel_occupied"])
        os.kill(doomed.worker_pids()[0], signal.SIGKILL)  # no clean stop: a live worker sweeps it
        receiver.wait_for("orders", ["channel_occupied", "channel_vacated"])
    finally:
        client.close()
        doomed.stop()


def test_a_cache_miss_is_told(slave: GunicornProcess, app: tuple[str, EventsReceiver]) -> None:
    key, receiver = app
    client = PusherSocket(slave, key)
    try:
        client.subscribe("cache-rates")
        assert client.recv()["event"] == "pusher:cache_miss"
        receiver.wait_for("cache-rates", ["channel_occupied", "cache_miss"])
    finally:
        client.close()


def test_the_bodies_are_pushers(
    slave: GunicornProcess, app: tuple[str, EventsReceiver], redis_client
) -> None:
    """`{time_ms, events}`; an app without events_url gets nothing (nothing counted against it)."""
    key, receiver = app
    client = PusherSocket(slave, key)
    try:
        client.subscribe("plain")
        receiver.wait_for("plain", ["channel_occupied"])
    finally:
        client.close()
    receiver.wait_for("plain", ["channel_occupied", "channel_vacated"])
    with receiver.lock:
        assert all(set(e) == {"name", "channel"} for e in receiver.events)
    assert json.loads(json.dumps(receiver.events))  # plain JSON the SDK parsed
