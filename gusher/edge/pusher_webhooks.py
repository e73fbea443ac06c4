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
raise); `gusher.core.webhook_queue.WebhookQueue`, pure, decides what goes out when; a sender greenlet
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

import logging
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.pool

from gusher import __version__
from gusher.config import Settings
from gusher.core import exactjson
from gusher.core.apps import AppConfig
from gusher.core.metrics import Metrics
from gusher.core.pusher import sign
from gusher.core.webhook_queue import DROPPED, DUE, Batch, Outcome, WebhookQueue
from gusher.errors import WebhookError

if TYPE_CHECKING:
    from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

_MAX_ANSWER = 65536  # an answer is read (and discarded) up to this, so its connection is reused
_DROP_LOG_EVERY = 10.0  # seconds between two "queue full" lines
_USER_AGENT = f"gusher/{__version__}"

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
        # Straight to requests' transport adapter: no Session's cookie jar shared between
        # apps, no proxy/.netrc lookups per call. Made at the first delivery, and requests
        # imported then: a slave whose apps have no `events_url` never loads it, 4 MB
        # less in each worker (RSS, issue 16).
        self._concurrency = concurrency
        self._adapter: HTTPAdapter | None = None
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
        import requests  # at the first delivery (see __init__)

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
        import requests  # at the first delivery (see __init__)
        from requests.adapters import HTTPAdapter

        if self._adapter is None:
            self._adapter = HTTPAdapter(pool_connections=16, pool_maxsize=self._concurrency)
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
