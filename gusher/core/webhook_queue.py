"""Which app's Pusher webhook events go out when: batches, order, retries, bounds — pure.

`gusher.edge.pusher_webhooks` queues every event here and delivers what
`WebhookQueue.take` hands out; the caller passes the time, so the batching
window, the backoff, the expiry and the bounds are tested under a clock of
the test's own. The rules (Pusher's, soketi's) are in that module's docstring.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from gusher.core.apps import AppConfig
from gusher.core.metrics import Metrics

WINDOW = 0.05  # seconds an app's first event waits for more to share its body
FIRST_RETRY = 1.0  # seconds before the first retry; doubled after each failure...
MAX_RETRY = 60.0  # ...up to this

# What `WebhookQueue.put` did with an event.
QUEUED = "queued"  # held; the sender's next wake-up is unchanged
DUE = "due"  # held, and the app's delivery is due sooner: wake the sender
DROPPED = "dropped"  # a queue is full
SKIPPED = "skipped"  # the app has no events_url or no secret


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
