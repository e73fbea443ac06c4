"""Pusher's webhooks: channel and member events POSTed to an app's `events_url`, signed, retried.

What Pusher sends (and its SDKs' `validate_webhook` accept): a POST of
`{"time_ms": …, "events": [{"name": …, …}, …]}` with `Content-Type:
application/json`, `X-Pusher-Key: <app key>` and `X-Pusher-Signature: <hex
HMAC-SHA256 of the body under the app's secret>`. The receiver refuses a
`time_ms` more than 5 minutes from its clock, so it is stamped at each
attempt, not when the event happened. Pusher expects a 2xx within 4 s and
retries with exponential backoff for 5 minutes; soketi never retried
(soketi #683), so a backend restart lost every event of its downtime.

Here, `emit` only queues (it runs in event-loop callbacks: no I/O, no
raise); `WebhookQueue`, pure, decides what goes out when; a sender greenlet
starts the deliveries it hands out, each in a bounded pool:

- **batches**: an app's events wait up to 50 ms (soketi's window; Pusher's
  is 250 ms) and at most `GUSHER_PUSHER_WEBHOOK_BATCH` (Pusher: 20) go in one
  body;
- **order**: one delivery per app at a time, so `channel_vacated` never
  overtakes the `channel_occupied` before it;
- **retries**: a failed delivery (connection error, timeout, non-2xx) is sent
  again, the same events under a new `time_ms` and signature, after 1 s,
  2 s, 4 s … (at most 60 s), until `GUSHER_PUSHER_WEBHOOK_RETRY_SECONDS`
  after its oldest event was queued; then its events are dropped and counted;
- **bounds**: events held per app and bytes held in all, a whole-call
  timeout, and deliveries in flight per worker. A dead or slow endpoint
  holds one delivery slot and its own app's queue: other apps' events go out
  on time.

Each event is encoded once, when queued; a body is those bytes joined.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.pool
import requests
from requests.adapters import HTTPAdapter

from gusher import __version__
from gusher.config import Settings
from gusher.core import exactjson
from gusher.core.apps import AppConfig
from gusher.core.metrics import Metrics
from gusher.core.pusher import sign
from gusher.errors import WebhookError

log = logging.getLogger(__name__)

WINDOW = 0.05  # seconds an app's first event waits for more to share its body
FIRST_RETRY = 1.0  # seconds before the first retry; doubled after each failure...
MAX_RETRY = 60.0  # ...up to this
_MAX_ANSWER = 65536  # an answer is read (and discarded) up to this, so its connection is reused
_DROP_LOG_EVERY = 10.0  # seconds between two "queue full" lines
_USER_AGENT = f"gusher/{__version__}"

# What `WebhookQueue.put` did with an event.
QUEUED = "queued"  # held; the sender's next wake-up is unchanged
DUE = "due"  # held, and the app's delivery is due sooner: wake the sender
DROPPED = "dropped"  # a queue is full
SKIPPED = "skipped"  # the app has no events_url or no secret


# -- events (pure) --------------------------------------------------------------------


def channel_occupied(channel: str) -> dict[str, Any]:
    """A channel got its first subscriber on any slave."""
    return {"name": "channel_occupied", "channel": channel}


def channel_vacated(channel: str) -> dict[str, Any]:
    """A channel lost its last subscriber on every slave."""
    return {"name": "channel_vacated", "channel": channel}


def member_added(channel: str, user_id: str) -> dict[str, Any]:
    """A user's first connection joined a presence channel."""
    return {"name": "member_added", "channel": channel, "user_id": user_id}


def member_removed(channel: str, user_id: str) -> dict[str, Any]:
    """A user's last connection left a presence channel."""
    return {"name": "member_removed", "channel": channel, "user_id": user_id}


def client_event(
    channel: str, event: str, data: Any, socket_id: str, user_id: str | None = None
) -> dict[str, Any]:
    """A client event (`client-*`) a connection sent; `user_id` on presence channels only.

    `data` is passed through as the client sent it (Pusher's clients send a
    string or a JSON value).
    """
    body = {"name": "client_event", "channel": channel, "event": event, "data": data, "socket_id": socket_id}
    if user_id is not None:
        body["user_id"] = user_id
    return body


def cache_miss(channel: str) -> dict[str, Any]:
    """A client subscribed to a cache channel that has no kept event."""
    return {"name": "cache_miss", "channel": channel}


def signed_request(app: AppConfig, events: list[bytes], time_ms: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one webhook call — pure.

    `events` are encoded events (`exactjson.dumps`); the signature is over
    the exact bytes sent, under the app's secret (`gusher.core.pusher.sign`,
    as every Pusher signature).
    """
    body = b'{"time_ms":%d,"events":[%b]}' % (time_ms, b",".join(events))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": _USER_AGENT,
        "X-Pusher-Key": app.key,
        "X-Pusher-Signature": sign(app.secret, body.decode()),  # JSON bytes are UTF-8
    }
    return body, headers


# -- what goes out when (pure) --------------------------------------------------------


@dataclass
class Batch:
    """One body's events for one app, sent again as they are until a 2xx or their time is up."""

    app: AppConfig
    events: list[bytes]
    since: float  # when its oldest event was queued (monotonic seconds)
    attempts: int = 0


@dataclass(frozen=True)
class Outcome:
    """What a delivery's end changed: events sent or given up, a retry, a change of health."""

    sent: int = 0
    expired: int = 0
    retry_in: float | None = None
    began_failing: bool = False
    recovered: bool = False


class _AppState:
    """One app's held events. It exists while the app has events held or a delivery in flight."""

    __slots__ = ("app", "batch", "delay", "due", "events", "failing", "held", "in_flight")

    def __init__(self, app: AppConfig) -> None:
        self.app = app
        self.events: deque[tuple[float, bytes]] = deque()  # (queued at, encoded event)
        self.batch: Batch | None = None  # taken from `events`, awaiting a retry or in flight
        self.held = 0  # events in `events` and `batch`
        self.due: float | None = None  # when the sender should hand out its next delivery
        self.in_flight = False
        self.delay = FIRST_RETRY  # before the next retry
        self.failing = False  # its last delivery failed


class WebhookQueue:
    """Which app's events go out when, within the bounds — pure (the caller passes the time).

    Apps due for a delivery wait in a heap by due time; an entry whose app
    was rescheduled since is skipped when it comes up.
    """

    def __init__(
        self,
        metrics: Metrics,
        per_app: int,
        max_bytes: int,
        batch: int,
        retry_for: float,
        window: float = WINDOW,
    ) -> None:
        self.metrics = metrics
        self.per_app = per_app
        self.max_bytes = max_bytes
        self.batch = max(1, batch)
        self.retry_for = retry_for
        self.window = window
        self.held = 0  # events held, all apps
        self.held_bytes = 0
        self._apps: dict[str, _AppState] = {}
        self._heap: list[tuple[float, int, str]] = []  # (due, tie-breaker, app key)
        self._seq = 0

    @property
    def apps(self) -> int:
        """Apps with events held or a delivery in flight."""
        return len(self._apps)

    def put(self, app: AppConfig, event: bytes, now: float) -> str:
        """Hold an encoded event for `app`: `QUEUED`, `DUE`, `DROPPED` (full) or `SKIPPED`."""
        if not (app.events_url and app.secret):
            self.metrics.pusher_webhook_events_skipped += 1
            return SKIPPED
        state = self._apps.get(app.key)
        app_full = state is not None and state.held >= self.per_app
        if app_full or self.held_bytes + len(event) > self.max_bytes:
            self.metrics.pusher_webhook_events_dropped += 1
            return DROPPED
        if state is None:
            state = self._apps[app.key] = _AppState(app)
        state.app = app  # the newest record: a new secret or URL applies to what is held
        state.events.append((now, event))
        state.held += 1
        self.held += 1
        self.held_bytes += len(event)
        if state.in_flight or state.batch is not None or state.failing:
            return QUEUED  # it goes out after the delivery or retry before it
        if state.due is None:
            self._schedule(state, now + self.window)
            return DUE
        if len(state.events) >= self.batch and state.due > now:
            self._schedule(state, now)  # a full body does not wait for the window
            return DUE
        return QUEUED

    def next_due(self) -> float | None:
        """When the next delivery is due (it may be now or past), or None."""
        while self._heap and not self._is_current(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def take(self, now: float) -> Batch | None:
        """The next delivery due at `now`, marked in flight; None when none is due."""
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if not self._is_current(entry):
                continue
            state = self._apps[entry[2]]
            state.due = None
            batch = state.batch or self._next_batch(state, now)
            if batch is None:
                self._forget_if_idle(state)
                continue
            state.batch, state.in_flight = batch, True
            batch.app = state.app
            batch.attempts += 1
            return batch
        return None

    def settle(self, batch: Batch, ok: bool, now: float) -> Outcome:
        """A delivery of `batch` ended: answered 2xx (`ok`) or failed. Counts and reschedules."""
        state = self._apps.get(batch.app.key)
        if state is None or state.batch is not batch:
            return Outcome()  # cleared (a stop) while it was in flight
        state.in_flight = False
        if ok:
            recovered = state.failing
            state.failing, state.delay = False, FIRST_RETRY
            self._release(state)
            self.metrics.pusher_webhook_events_sent += len(batch.events)
            self._schedule_rest(state, now)
            return Outcome(sent=len(batch.events), recovered=recovered)
        self.metrics.pusher_webhook_failures += 1
        began_failing = not state.failing
        state.failing = True
        delay, state.delay = state.delay, min(state.delay * 2, MAX_RETRY)
        if now + delay - batch.since <= self.retry_for:
            self._schedule(state, now + delay)
            return Outcome(retry_in=delay, began_failing=began_failing)
        self._release(state)
        self.metrics.pusher_webhook_events_expired += len(batch.events)
        if state.events:
            self._schedule(state, now + delay)  # the endpoint is failing: its next body waits too
        else:
            self._forget_if_idle(state)
        return Outcome(expired=len(batch.events), began_failing=began_failing)

    def clear(self) -> int:
        """Forget everything held (a worker stopping); how many events that was."""
        held = self.held
        self._apps.clear()
        self._heap.clear()
        self.held = self.held_bytes = 0
        return held

    def _is_current(self, entry: tuple[float, int, str]) -> bool:
        state = self._apps.get(entry[2])
        return state is not None and not state.in_flight and state.due == entry[0]

    def _schedule(self, state: _AppState, due: float) -> None:
        state.due = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, state.app.key))

    def _schedule_rest(self, state: _AppState, now: float) -> None:
        if not state.events:
            self._forget_if_idle(state)
        elif len(state.events) >= self.batch:
            self._schedule(state, now)
        else:
            self._schedule(state, max(now, state.events[0][0] + self.window))

    def _next_batch(self, state: _AppState, now: float) -> Batch | None:
        """Up to `batch` of the app's oldest events; those held past the retry time are dropped."""
        events = state.events
        expired = 0
        while events and now - events[0][0] > self.retry_for:
            self._drop(state, events.popleft()[1])
            expired += 1
        self.metrics.pusher_webhook_events_expired += expired
        if not events:
            return None
        since = events[0][0]
        return Batch(state.app, [events.popleft()[1] for _ in range(min(self.batch, len(events)))], since)

    def _release(self, state: _AppState) -> None:
        """The app's batch is done with (sent or given up)."""
        if state.batch is not None:
            for event in state.batch.events:
                self._drop(state, event)
            state.batch = None

    def _drop(self, state: _AppState, event: bytes) -> None:
        state.held -= 1
        self.held -= 1
        self.held_bytes -= len(event)

    def _forget_if_idle(self, state: _AppState) -> None:
        if not (state.held or state.in_flight):
            del self._apps[state.app.key]


# -- the sender (gevent) --------------------------------------------------------------


class PusherWebhooks:
    """One slave worker's Pusher webhooks: `emit` queues, a sender greenlet delivers.

    `emit` may be called from anywhere in the worker (event-loop callbacks,
    tasks, service loops): it never blocks and never raises. `start` and
    `stop` run in a greenlet that may block (the worker's start and stop).
    """

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.metrics = metrics
        self.timeout = settings.pusher_webhook_timeout
        self.queue = WebhookQueue(
            metrics,
            settings.pusher_webhook_queue_per_app,
            settings.pusher_webhook_queue_bytes,
            settings.pusher_webhook_batch,
            settings.pusher_webhook_retry_seconds,
        )
        concurrency = max(1, settings.pusher_webhook_concurrency)
        self._pool = gevent.pool.Pool(concurrency)
        # Straight to the transport adapter, as the auth webhook (edge/webhook.py): no
        # Session's cookie jar shared between apps, no proxy/.netrc lookups per call.
        self._adapter = HTTPAdapter(pool_connections=16, pool_maxsize=concurrency)
        self._wake = gevent.event.Event()
        self._sender: gevent.Greenlet | None = None
        self._drops = 0  # events dropped since the last "queue full" line
        self._drop_logged = float("-inf")

    @property
    def running(self) -> bool:
        """Whether the sender greenlet is alive."""
        return self._sender is not None and not self._sender.dead

    def start(self) -> None:
        """Spawn the sender (idempotent)."""
        if self._sender is None:
            self._sender = gevent.spawn(self._send_forever)

    def stop(self, flush: float = 0.0) -> None:
        """Wait up to `flush` seconds for what is held to go out, then stop; the rest is counted
        as expired."""
        deadline = time.monotonic() + flush
        while self.running and self.queue.held and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if self._sender is not None:
            self._sender.kill(block=False)
            self._sender = None
        self._pool.kill(block=False)
        lost = self.queue.clear()
        if lost:
            self.metrics.pusher_webhook_events_expired += lost
            log.warning("%d Pusher webhook events not delivered at stop", lost)

    def emit(self, app: AppConfig, event: dict[str, Any]) -> None:
        """Queue `event` (one of this module's event dicts) for `app`'s `events_url`."""
        try:
            done = self.queue.put(app, exactjson.dumps(event), time.monotonic())
        except Exception as exc:  # never into the caller's event-loop callback
            self.metrics.pusher_webhook_events_dropped += 1
            self._note_drop(app, f"not encodable: {exc.__class__.__name__}")
            return
        if done == DUE:
            self._wake.set()
        elif done == DROPPED:
            self._note_drop(app, "queue full")

    def _note_drop(self, app: AppConfig, reason: str) -> None:
        """One line per `_DROP_LOG_EVERY` seconds, however many events a dead endpoint costs."""
        self._drops += 1
        now = time.monotonic()
        if now - self._drop_logged >= _DROP_LOG_EVERY:
            log.warning(
                "Pusher webhook events dropped (%s): %d since the last such line (latest of app %s; %d held)",
                reason,
                self._drops,
                app.key[:100],
                self.queue.held,
            )
            self._drops, self._drop_logged = 0, now

    def _send_forever(self) -> None:
        failures = 0
        while True:
            try:
                self._send_due()
                failures = 0
            except Exception:  # a bug: say so, back off, keep going
                failures += 1
                log.exception("Pusher webhook sender failed")
                gevent.sleep(min(0.1 * 2**failures, 5.0))

    def _send_due(self) -> None:
        """Start every delivery that is due and has a slot, then sleep until the next is due."""
        self._wake.clear()
        now = time.monotonic()
        while self._pool.free_count():
            batch = self.queue.take(now)
            if batch is None:
                break
            self._pool.spawn(self._deliver, batch)
        due = self.queue.next_due()
        # With every slot taken, a delivery's end wakes the sender.
        timeout = None if due is None or not self._pool.free_count() else max(0.0, due - now)
        self._wake.wait(timeout)

    def _deliver(self, batch: Batch) -> None:
        try:
            failure = self._attempt(batch)
        except Exception as exc:  # a bug: the events are retried as after any failure
            log.exception("Pusher webhook delivery of app %s failed", batch.app.key[:100])
            failure = exc.__class__.__name__
        outcome = self.queue.settle(batch, failure is None, time.monotonic())
        self._report(batch, outcome, failure)
        self._wake.set()

    def _attempt(self, batch: Batch) -> str | None:
        """POST the batch once; None on a 2xx, else why not."""
        body, headers = signed_request(batch.app, batch.events, int(time.time() * 1000))
        expired = WebhookError(f"no answer within {self.timeout:g} s")
        try:
            # requests' timeout is per socket operation: bound the whole call.
            with gevent.Timeout(self.timeout, expired):
                status = self._post(batch.app.events_url, body, headers)
        except WebhookError as exc:
            return str(exc)
        except (requests.RequestException, OSError) as exc:
            return exc.__class__.__name__
        return None if 200 <= status < 300 else f"HTTP {status}"

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        request = requests.Request("POST", url, data=body, headers=headers).prepare()
        with self._adapter.send(request, stream=True, timeout=self.timeout) as response:
            read = 0
            for chunk in response.iter_content(16384):
                read += len(chunk)
                if read > _MAX_ANSWER:
                    break  # not worth reading: its connection is closed instead of reused
            return response.status_code

    def _report(self, batch: Batch, outcome: Outcome, failure: str | None) -> None:
        """A line when an app's endpoint starts failing, when events are given up, and when it
        answers again: a dead endpoint writes one line per retry window, not one per attempt."""
        app = batch.app.key[:100]
        if outcome.began_failing:
            log.warning(
                "Pusher webhook of app %s failed (%s); retrying for up to %g s",
                app,
                failure,
                self.queue.retry_for,
            )
        if outcome.expired:
            log.warning(
                "Pusher webhook of app %s: %d events given up after %d attempts (%s)",
                app,
                outcome.expired,
                batch.attempts,
                failure,
            )
        if outcome.recovered:
            log.info("Pusher webhook of app %s answers again", app)
