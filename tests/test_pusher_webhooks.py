"""Pusher-format webhooks (gusher/edge/pusher_webhooks.py) and channel occupancy across slaves
(gusher/broker/occupancy.py).

Three kinds of test, each as real as it can be simply:

- the pure parts in-process: the event shapes, the signed body (checked by
  Pusher's own PyPI SDK, `pusher.Pusher.validate_webhook`), and
  `WebhookQueue`'s (gusher/core/webhook_queue.py) batching, backoff, expiry and bounds under a clock the test
  moves;
- delivery in a subprocess: `PusherWebhooks` needs gevent's monkey-patching
  (as in a slave worker) to run its sender and pooled requests cooperatively,
  which this test process must not do. `_DRIVER` runs it there, calls `emit`
  from event-loop callbacks (where the hub calls it) on the test's command,
  and reports its counters; the receivers are real HTTP servers in threads of
  the test process;
- `RedisOccupancy` against the session's embedded Redis.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pusher
import pytest
import redis as redis_lib

from gusher.broker.occupancy import RedisOccupancy
from gusher.core import exactjson
from gusher.core import webhook_queue as queues
from gusher.core.apps import AppConfig
from gusher.core.metrics import Metrics
from gusher.edge import pusher_webhooks as hooks
from gusher.keys import OCCUPANCY_WORKERS, occupancy_key, worker_alive_key, worker_occupancy_key
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


def _app(key: str = "app", url: str = "http://127.0.0.1:9/hooks", secret: str = "s3cret") -> AppConfig:
    return AppConfig(key, "http://127.0.0.1:9/auth", secret, events_url=url)


def _validated(app: AppConfig, headers: dict[str, str], body: bytes) -> Any:
    """The body as Pusher's SDK reads it, or None when it refuses it."""
    client = pusher.Pusher(app_id="1", key=app.key, secret=app.secret)
    return client.validate_webhook(headers["X-Pusher-Key"], headers["X-Pusher-Signature"], body)


# -- pure: events and signing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (hooks.channel_occupied("c"), {"name": "channel_occupied", "channel": "c"}),
        (hooks.channel_vacated("c"), {"name": "channel_vacated", "channel": "c"}),
        (
            hooks.member_added("presence-c", "u1"),
            {"name": "member_added", "channel": "presence-c", "user_id": "u1"},
        ),
        (
            hooks.member_removed("presence-c", "u1"),
            {"name": "member_removed", "channel": "presence-c", "user_id": "u1"},
        ),
        (
            hooks.client_event("private-c", "client-x", '{"a":1}', "1.2"),
            {
                "name": "client_event",
                "channel": "private-c",
                "event": "client-x",
                "data": '{"a":1}',
                "socket_id": "1.2",
            },
        ),
        (
            hooks.client_event("presence-c", "client-x", {"a": 1}, "1.2", "u1"),
            {
                "name": "client_event",
                "channel": "presence-c",
                "event": "client-x",
                "data": {"a": 1},
                "socket_id": "1.2",
                "user_id": "u1",
            },
        ),
        (hooks.cache_miss("cache-c"), {"name": "cache_miss", "channel": "cache-c"}),
    ],
)
def test_events_have_the_shapes_pusher_sends(event: dict[str, Any], expected: dict[str, Any]) -> None:
    """Each helper builds soketi's (and Pusher's) event; `user_id` only when given (presence)."""
    assert event == expected


def test_a_signed_body_is_accepted_by_pushers_sdk_and_only_under_the_apps_secret() -> None:
    """The body is `{time_ms, events}` with the events as encoded, signed over its exact bytes."""
    app = _app(secret="sécret")
    events = [
        exactjson.dumps(hooks.channel_occupied("é")),
        exactjson.dumps(hooks.member_added("presence-x", "7")),
    ]
    body, headers = hooks.signed_request(app, events, int(time.time() * 1000))
    assert headers["Content-Type"] == "application/json" and headers["X-Pusher-Key"] == "app"
    read = _validated(app, headers, body)
    assert read["events"] == [hooks.channel_occupied("é"), hooks.member_added("presence-x", "7")]
    assert _validated(_app(secret="other"), headers, body) is None
    stale, stale_headers = hooks.signed_request(app, events, int((time.time() - 301) * 1000))
    assert _validated(app, stale_headers, stale) is None  # why time_ms is stamped at each attempt


# -- pure: what goes out when ---------------------------------------------------------


def _queue(metrics: Metrics, **bounds: Any) -> queues.WebhookQueue:
    settings = {"per_app": 1000, "max_bytes": 1 << 20, "batch": 20, "retry_for": 300.0} | bounds
    return queues.WebhookQueue(metrics, **settings)


def test_an_apps_events_share_one_body_after_the_window_and_a_full_body_goes_at_once() -> None:
    """Events wait `WINDOW` for company; `batch` of them go without waiting, in order."""
    queue = _queue(Metrics(), batch=3)
    app = _app()
    assert queue.put(app, b"1", 0.0) == queues.DUE
    assert queue.put(app, b"2", 0.01) == queues.QUEUED
    assert queue.take(0.02) is None and queue.next_due() == queues.WINDOW
    batch = queue.take(queues.WINDOW)
    assert batch is not None and batch.events == [b"1", b"2"]
    for n in range(3, 8):
        queue.put(app, str(n).encode(), 0.1)  # while the first body is in flight: they wait
    assert queue.take(1.0) is None
    queue.settle(batch, True, 0.2)
    second = queue.take(0.2)  # a full body is due at once
    assert second is not None and second.events == [b"3", b"4", b"5"]
    queue.settle(second, True, 0.3)
    third = queue.take(0.3)
    assert third is not None and third.events == [b"6", b"7"]


def test_one_apps_delivery_in_flight_does_not_hold_another_apps() -> None:
    """Each app has its own turn: a second app's events are due on their own window."""
    queue = _queue(Metrics())
    queue.put(_app("slow"), b"s", 0.0)
    queue.put(_app("fast"), b"f", 0.01)
    first = queue.take(1.0)
    second = queue.take(1.0)
    assert first is not None and second is not None
    assert {first.app.key, second.app.key} == {"slow", "fast"}


def test_a_failing_endpoint_is_retried_with_doubling_delays_until_its_time_is_up() -> None:
    """1, 2, 4 … 60 s apart; once the next try would pass `retry_for` after the event was queued, the
    events are given up and counted, and the app is forgotten."""
    metrics = Metrics()
    queue = _queue(metrics, retry_for=300.0)
    app = _app()
    queue.put(app, b"e", 0.0)
    now, delays = queues.WINDOW, []
    while True:
        batch = queue.take(now)
        assert batch is not None
        outcome = queue.settle(batch, False, now)
        assert outcome.began_failing == (not delays)
        if outcome.retry_in is None:
            break
        delays.append(outcome.retry_in)
        now += outcome.retry_in
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]  # tries at 0, 1, 3, 7 … 243 s; 303 is too late
    assert outcome.expired == 1 and metrics.pusher_webhook_events_expired == 1
    assert metrics.pusher_webhook_failures == len(delays) + 1
    assert queue.held == 0 and queue.held_bytes == 0 and queue.apps == 0


def test_after_a_failure_the_same_events_are_sent_and_later_ones_follow_in_order() -> None:
    """A retry carries exactly its batch; events queued meanwhile go in the body after it."""
    metrics = Metrics()
    queue = _queue(metrics)
    app = _app()
    queue.put(app, b"a", 0.0)
    batch = queue.take(1.0)
    assert batch is not None
    assert queue.settle(batch, False, 1.0).retry_in == queues.FIRST_RETRY
    assert queue.put(app, b"b", 1.1) == queues.QUEUED  # it waits behind the retry
    assert queue.take(1.5) is None
    retry = queue.take(2.0)
    assert retry is not None and retry.events == [b"a"] and retry.attempts == 2
    assert queue.settle(retry, True, 2.1).recovered
    after = queue.take(2.1)
    assert after is not None and after.events == [b"b"]
    queue.settle(after, True, 2.2)
    assert metrics.pusher_webhook_events_sent == 2 and queue.apps == 0


def test_full_queues_drop_the_newest_and_unconfigured_apps_get_nothing() -> None:
    """Over the per-app event bound or the global byte bound, new events are dropped and counted;
    an app without events_url or secret is skipped and counted."""
    metrics = Metrics()
    queue = _queue(metrics, per_app=3, max_bytes=50)
    for n in range(5):
        queue.put(_app("a"), b"%09d" % n, 0.0)  # 10 bytes each
    assert queue.held == 3 and metrics.pusher_webhook_events_dropped == 2
    results = [queue.put(_app("b"), b"%09d" % n, 0.0) for n in range(3)]
    assert results == [queues.DUE, queues.QUEUED, queues.DROPPED]  # 50 bytes held in all
    assert metrics.pusher_webhook_events_dropped == 3
    assert queue.put(_app("c", url=""), b"x", 0.0) == queues.SKIPPED
    assert queue.put(_app("d", secret=""), b"x", 0.0) == queues.SKIPPED
    assert metrics.pusher_webhook_events_skipped == 2
    batch = queue.take(1.0)
    assert batch is not None and batch.events == [b"000000000", b"000000001", b"000000002"]


# -- delivery, in a monkey-patched subprocess -----------------------------------------

_DRIVER = r"""
from gevent import monkey

monkey.patch_all()

import json
import logging
import sys

import gevent
from gevent.fileobject import FileObject

from gusher.config import load_settings
from gusher.core.apps import AppConfig
from gusher.core.metrics import Metrics
from gusher.edge.pusher_webhooks import PusherWebhooks

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
settings = load_settings("/nonexistent/.env", environ=json.loads(sys.argv[1]))
metrics = Metrics()
webhooks = PusherWebhooks(settings, metrics)
webhooks.start()
loop = gevent.get_hub().loop
for line in FileObject(sys.stdin.fileno(), "rb"):
    command, *args = json.loads(line)
    if command == "emit":  # from event-loop callbacks, as the hub does
        app = AppConfig(**args[0])
        for event in args[1]:
            loop.run_callback(webhooks.emit, app, event)
    elif command == "snapshot":
        gevent.sleep(0)
        print(json.dumps(metrics.snapshot()), flush=True)
webhooks.stop()
"""


class _Driver:
    """A subprocess running `PusherWebhooks` under gevent, driven over its stdin."""

    def __init__(self, tmp_path: Path, settings: dict[str, str]) -> None:
        self.log_path = tmp_path / "driver.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _DRIVER, json.dumps(settings)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )

    def emit(self, app: AppConfig, *events: dict[str, Any]) -> None:
        fields = {"key": app.key, "url": app.url, "secret": app.secret, "events_url": app.events_url}
        self._send(["emit", fields, list(events)])

    def counters(self) -> dict[str, Any]:
        self._send(["snapshot"])
        line = self.process.stdout.readline() if self.process.stdout else b""
        assert line, f"the driver died:\n{self.log()}"
        return {k: v for k, v in json.loads(line).items() if k.startswith("pusher_webhook")}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()  # the driver stops its webhooks and exits
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def _send(self, command: list[Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.record(self.path, dict(self.headers), body)
        answer = self.server.answer(self.path)
        if answer == "hang":
            time.sleep(self.server.hang)
            answer = 200
        try:
            self.send_response(int(answer))
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass  # the sender gave up waiting: that was the point

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Receiver(ThreadingHTTPServer):
    """Webhook endpoints in a thread: each path answers from its script, then 200."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.lock = threading.Lock()
        self.calls: list[tuple[float, str, dict[str, str], bytes]] = []
        self.scripts: dict[str, list[Any]] = {}  # path → answers ("hang" or a status), in turn
        self.hang = 3.0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        with self.lock:
            self.calls.append((time.monotonic(), path, headers, body))

    def answer(self, path: str) -> Any:
        with self.lock:
            script = self.scripts.get(path)
            return script.pop(0) if script else 200

    def calls_to(self, path: str) -> list[tuple[float, str, dict[str, str], bytes]]:
        with self.lock:
            return [call for call in self.calls if call[1] == path]


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    """Starts drivers with the given settings; stops them, and checks their logs, afterwards."""
    started: list[_Driver] = []

    def start(**settings: str) -> _Driver:
        started.append(_Driver(tmp_path, {f"GUSHER_{k.upper()}": v for k, v in settings.items()}))
        return started[-1]

    yield start
    for each in started:
        each.close()
        assert "Traceback" not in each.log(), each.log()


def test_a_delivery_is_one_signed_post_that_pushers_sdk_accepts(receiver: _Receiver, driver: Any) -> None:
    """Events of one app emitted together arrive in one JSON body with Pusher's headers."""
    webhooks = driver()
    app = _app("sdk", receiver.url("/sdk"), "the-secret")
    webhooks.emit(app, hooks.channel_occupied("presence-room"), hooks.member_added("presence-room", "42"))
    wait_until(lambda: receiver.calls_to("/sdk"))
    time.sleep(0.2)
    [(_, _, headers, body)] = receiver.calls_to("/sdk")
    assert headers["Content-Type"] == "application/json"
    read = _validated(app, headers, body)
    assert read is not None, body
    assert read["events"] == [
        hooks.channel_occupied("presence-room"),
        hooks.member_added("presence-room", "42"),
    ]
    assert abs(read["time_ms"] - time.time() * 1000) < 5000
    assert wait_until(lambda: webhooks.counters()["pusher_webhook_events_sent"] == 2)


def test_a_failed_delivery_is_retried_with_backoff_until_it_is_answered_2xx(
    receiver: _Receiver, driver: Any
) -> None:
    """500, then 503, then 200: the same events three times, 1 s then 2 s apart, each body stamped
    and signed anew."""
    receiver.scripts["/flaky"] = [500, 503]
    webhooks = driver()
    app = _app("flaky", receiver.url("/flaky"))
    webhooks.emit(app, hooks.channel_vacated("news"))
    wait_until(lambda: len(receiver.calls_to("/flaky")) == 3, timeout=10)
    calls = receiver.calls_to("/flaky")
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(calls)]
    assert 0.9 <= gaps[0] < 1.8 and 1.9 <= gaps[1] < 3.0, gaps
    bodies = [_validated(app, headers, body) for _, _, headers, body in calls]
    assert all(b is not None and b["events"] == [hooks.channel_vacated("news")] for b in bodies)
    assert bodies[0]["time_ms"] < bodies[1]["time_ms"] < bodies[2]["time_ms"]
    time.sleep(0.3)
    assert webhooks.counters() | {"pusher_webhook_events_skipped": 0} == {
        "pusher_webhook_events_sent": 1,
        "pusher_webhook_failures": 2,
        "pusher_webhook_events_expired": 0,
        "pusher_webhook_events_dropped": 0,
        "pusher_webhook_events_skipped": 0,
    }


def test_an_endpoint_that_never_answers_is_given_up_after_the_retry_time(driver: Any) -> None:
    """Connection refused at 0 s and 1 s; the next try (3 s) would pass the 2.5 s retry time, so the
    event is dropped and counted, with one line for the failure and one for the giving up."""
    webhooks = driver(pusher_webhook_retry_seconds="2.5")
    webhooks.emit(_app("dead", f"http://127.0.0.1:{free_port()}/gone"), hooks.channel_occupied("x"))
    assert wait_until(lambda: webhooks.counters()["pusher_webhook_events_expired"] == 1, timeout=5)
    assert webhooks.counters()["pusher_webhook_failures"] == 2
    lines = [line for line in webhooks.log().splitlines() if "app dead" in line]
    assert len(lines) == 2 and "ConnectionError" in lines[0] and "given up after 2 attempts" in lines[1]


def test_an_endpoint_that_hangs_does_not_delay_another_apps_deliveries(
    receiver: _Receiver, driver: Any
) -> None:
    """While one app's POST waits on an endpoint that never answers, another app's event arrives at
    once; the hanging call is cut at the timeout and counted as a failure."""
    receiver.scripts["/hang"] = ["hang", "hang", "hang"]
    webhooks = driver(pusher_webhook_timeout="1")
    webhooks.emit(_app("stuck", receiver.url("/hang")), hooks.channel_occupied("a"))
    wait_until(lambda: receiver.calls_to("/hang"))
    emitted = time.monotonic()
    app = _app("lively", receiver.url("/lively"))
    webhooks.emit(app, hooks.channel_occupied("b"))
    wait_until(lambda: receiver.calls_to("/lively"), timeout=3)
    [(arrived, _, headers, body)] = receiver.calls_to("/lively")
    assert arrived - emitted < 0.8, "the other app's webhook waited for the hanging one (1 s timeout)"
    assert _validated(app, headers, body) is not None
    assert wait_until(lambda: webhooks.counters()["pusher_webhook_failures"] >= 1, timeout=3)


def test_a_burst_over_the_bounds_drops_the_newest_and_counts_them(receiver: _Receiver, driver: Any) -> None:
    """Ten events into a queue of three: the first three are delivered (in one body), seven dropped
    with one log line; an app without a secret gets nothing."""
    webhooks = driver(pusher_webhook_queue_per_app="3")
    app = _app("burst", receiver.url("/burst"))
    webhooks.emit(app, *[hooks.channel_occupied(f"c{n}") for n in range(10)])
    webhooks.emit(_app("open", receiver.url("/open"), secret=""), hooks.channel_occupied("c"))
    wait_until(lambda: receiver.calls_to("/burst"))
    time.sleep(0.3)
    [(_, _, headers, body)] = receiver.calls_to("/burst")
    assert _validated(app, headers, body)["events"] == [hooks.channel_occupied(f"c{n}") for n in range(3)]
    assert not receiver.calls_to("/open")
    counters = webhooks.counters()
    assert counters["pusher_webhook_events_dropped"] == 7 and counters["pusher_webhook_events_skipped"] == 1
    assert webhooks.log().count("queue full") == 1


# -- occupancy across slave workers (real Redis) --------------------------------------


@pytest.fixture
def occupancy(redis_client: redis_lib.Redis) -> Iterator[RedisOccupancy]:
    yield RedisOccupancy(redis_client)
    # Whatever a test left behind: its workers' records, listing and liveness.
    for raw in redis_client.smembers(OCCUPANCY_WORKERS):
        worker = int(raw)
        if worker >= _FIRST_TEST_WORKER:
            RedisOccupancy(redis_client).stop(worker, [])
            redis_client.delete(worker_alive_key(worker))


_FIRST_TEST_WORKER = 900_000_000


def _workers(n: int) -> list[int]:
    base = _FIRST_TEST_WORKER + uuid.uuid4().int % 1_000_000 * 100
    return [base + i for i in range(n)]


def _key(name: str) -> str:
    return f"occ-{uuid.uuid4().hex[:8]}@{name}"


def test_only_the_first_worker_to_occupy_a_channel_anywhere_is_told_so(occupancy: RedisOccupancy) -> None:
    """Two workers occupy one key: only the first gets True, and again is no news."""
    one, two = _workers(2)
    key = _key("news")
    assert occupancy.occupy(key, one) is True
    assert occupancy.occupy(key, two) is False
    assert occupancy.occupy(key, one) is False
    assert occupancy.is_occupied(key)


def test_only_the_last_worker_to_vacate_a_channel_is_told_so(
    occupancy: RedisOccupancy, redis_client: redis_lib.Redis
) -> None:
    """The first to leave gets False, the last True; vacating again is False; nothing is left behind."""
    one, two = _workers(2)
    key = _key("news")
    occupancy.occupy(key, one)
    occupancy.occupy(key, two)
    assert occupancy.vacate(key, one) is False
    assert occupancy.vacate(key, two) is True
    assert occupancy.vacate(key, two) is False
    assert not occupancy.is_occupied(key)
    assert not redis_client.exists(occupancy_key(key), worker_occupancy_key(one), worker_occupancy_key(two))


def test_concurrent_workers_agree_on_one_first_and_one_last(occupancy: RedisOccupancy) -> None:
    """Twenty threads occupy and then vacate one key at once: exactly one True each way."""
    workers = _workers(20)
    key = _key("busy")
    barrier = threading.Barrier(len(workers))
    firsts: list[bool] = []
    lasts: list[bool] = []

    def run(worker: int) -> None:
        barrier.wait()
        firsts.append(occupancy.occupy(key, worker))
        barrier.wait()
        lasts.append(occupancy.vacate(key, worker))

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert firsts.count(True) == 1 and lasts.count(True) == 1


def test_a_lapsed_worker_is_swept_and_only_its_sole_channels_come_back_vacated(
    occupancy: RedisOccupancy, redis_client: redis_lib.Redis
) -> None:
    """A worker whose liveness key is gone loses its channels: those it alone held are returned
    (send channel_vacated), a channel a live worker shares stays occupied, a live worker keeps its
    own; a second sweep finds nothing, and the lapsed worker is no longer listed."""
    live, dead, other = _workers(3)
    for worker in (live, other):
        redis_client.set(worker_alive_key(worker), b"1", px=60_000)
    sole, shared, others = _key("sole"), _key("shared"), _key("others")
    occupancy.occupy(sole, dead)
    occupancy.occupy(shared, live)
    occupancy.occupy(shared, dead)
    occupancy.occupy(others, other)
    swept = [k for k in occupancy.sweep(skip=live) if k in (sole, shared, others)]
    assert swept == [sole]
    assert not occupancy.is_occupied(sole) and occupancy.is_occupied(shared) and occupancy.is_occupied(others)
    assert not {sole, shared} & set(occupancy.sweep(skip=live))
    assert not redis_client.sismember(OCCUPANCY_WORKERS, str(dead))
    assert occupancy.vacate(shared, dead) is False  # it was swept: no second channel_vacated
    assert occupancy.vacate(shared, live) is True


def test_a_swept_worker_that_comes_back_restores_its_channels(
    occupancy: RedisOccupancy, redis_client: redis_lib.Redis
) -> None:
    """After its liveness lapsed, `restore` occupies its keys again; those now occupied are returned."""
    (worker,) = _workers(1)
    key = _key("back")
    occupancy.occupy(key, worker)
    assert key in occupancy.sweep(skip=0)
    assert not occupancy.is_occupied(key)
    redis_client.set(worker_alive_key(worker), b"1", px=60_000)
    assert occupancy.restore(worker, [key]) == [key]
    assert occupancy.is_occupied(key) and key not in occupancy.sweep(skip=0)


def test_a_clean_stop_vacates_every_key_the_worker_held(
    occupancy: RedisOccupancy, redis_client: redis_lib.Redis
) -> None:
    """`stop` returns the keys that became vacant (its sole ones), leaves shared ones occupied, and
    removes the worker's record and listing."""
    one, two = _workers(2)
    sole, shared = _key("sole"), _key("shared")
    occupancy.occupy(sole, one)
    occupancy.occupy(shared, one)
    occupancy.occupy(shared, two)
    assert occupancy.stop(one, [sole]) == [sole]  # `shared` came from its record
    assert occupancy.is_occupied(shared) and not occupancy.is_occupied(sole)
    assert not redis_client.exists(worker_occupancy_key(one))
    assert not redis_client.sismember(OCCUPANCY_WORKERS, str(one))
