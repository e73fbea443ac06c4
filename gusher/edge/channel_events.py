"""What a worker tells apps' `events_url` about their channels (Pusher webhooks, issue 13).

The hub says when a key gets its first subscriber in this worker and loses
its last (`occupied`, `vacated`; both may come from event-loop callbacks).
Those go through one greenlet, in order, which asks the app's record and,
for an app with an `events_url` and a `secret`, counts the worker in or out
of the channel's occupancy in Redis (`gusher.broker.occupancy`): only the
first worker anywhere sends `channel_occupied`, only the last
`channel_vacated`. Member events come from the presence scripts, which say
when a user's first connection joined or last one left; client events and
cache misses from `gusher.edge.pusher_channels`. Sending is
`gusher.edge.pusher_webhooks`: queued, batched, signed, retried, bounded.

Apps without an `events_url` cost one cached app lookup per key change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
import gevent.queue

from gusher.broker.apps import AppCache
from gusher.broker.base import OccupancyStore, SubscriptionCountStore
from gusher.core.apps import AppConfig
from gusher.edge import pusher_webhooks as events
from gusher.edge.pusher_webhooks import PusherWebhooks
from gusher.errors import GusherError
from gusher.keys import is_internal, split_pubsub_channel

log = logging.getLogger(__name__)

# Key changes waiting for the greenlet; past it they are dropped (and logged) rather than
# held without bound while Redis is away.
_MAX_PENDING = 100_000
# Seconds between a channel's last subscriber here leaving and its vacating (Pusher: ≤ 3 s).
VACATE_DELAY = 1.0
# Seconds between the subscriber counts a worker sends of one channel (a crowd joining is one update).
COUNT_EVERY = 0.5


class ChannelEvents:
    """One worker's channel webhooks: occupancy in order, the rest straight to the sender."""

    def __init__(
        self,
        apps: AppCache,
        occupancy: OccupancyStore,
        webhooks: PusherWebhooks,
        worker: int,
        ensure_alive: Callable[[], None],
        counts: SubscriptionCountStore | None = None,
        local_count: Callable[[str], int] = lambda key: 0,
    ) -> None:
        self.apps = apps
        # Apps with `subscription_count`: each changed key's local count, twice a second at most.
        self.counts = counts
        self.local_count = local_count
        self._dirty: set[str] = set()
        self._counting: set[str] = set()  # keys whose count this worker keeps in Redis
        # The worker's liveness key must exist before its first occupy (else others sweep it).
        self.ensure_alive = ensure_alive
        self.occupancy = occupancy
        self.webhooks = webhooks
        self.worker = worker
        self._changes: gevent.queue.Queue[tuple[bool, str]] = gevent.queue.Queue(_MAX_PENDING)
        self._counted: set[str] = set()  # keys this worker counted in Redis's occupancy
        self._local: set[str] = set()  # keys of webhook apps with a subscriber here now
        self._greenlet: gevent.Greenlet | None = None
        self._counter: gevent.Greenlet | None = None

    def start(self) -> None:
        """Start the sender and the occupancy greenlet."""
        self.webhooks.start()
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)
            self._counter = gevent.spawn(self._count_forever)

    def stop(self) -> None:
        """A clean stop: this worker's channels are vacated (their webhooks get 2 s to go out)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            if self._counter is not None:
                self._counter.kill(block=False)
            self._greenlet = None
        if self.counts is not None and self._counting:
            try:
                self.counts.stop(self.worker, list(self._counting))
            except GusherError as exc:
                log.warning("subscription counts not cleared at stop (swept later): %s", exc.reason)
        try:
            for key in self.occupancy.stop(self.worker, list(self._counted)):
                self._emit(key, events.channel_vacated)
        except GusherError as exc:
            log.warning("channel occupancy not cleared at stop (swept later): %s", exc.reason)
        self._counted.clear()
        self.webhooks.stop(flush=2.0)

    # -- what happened (may be an event-loop callback: never block) -------------------

    def occupied(self, key: str) -> None:
        """`key` got its first subscriber in this worker."""
        if not is_internal(key):
            self._put(("occupied", key))

    def vacated(self, key: str) -> None:
        """`key` lost its last subscriber in this worker."""
        if not is_internal(key):
            self._put(("vacated", key))

    def member_added(self, key: str, user_id: str) -> None:
        """A user's first connection joined presence channel `key`."""
        self._put(("member_added", key, user_id))

    def member_removed(self, key: str, user_id: str) -> None:
        """A user's last connection left presence channel `key`."""
        self._put(("member_removed", key, user_id))

    def cache_miss(self, key: str) -> None:
        """A cache channel had nothing to replay to a new subscriber."""
        self._put(("cache_miss", key))

    def client_event(self, key: str, event: str, data: Any, socket_id: str, user_id: str) -> None:
        """A client event was relayed on `key`."""
        self._put(("client_event", key, event, data, socket_id, user_id or None))

    def changed(self, key: str) -> None:
        """`key` gained or lost a subscriber here (its count is sent within half a second)."""
        if self.counts is not None and not is_internal(key):
            self._dirty.add(key)

    def _count_forever(self) -> None:
        while True:
            gevent.sleep(COUNT_EVERY)
            dirty, self._dirty = self._dirty, set()
            for key in dirty:
                try:
                    self._count(key)
                except GusherError as exc:
                    log.warning("subscription count of %r not updated: %s", key[:200], exc.reason)
                    self._dirty.add(key)  # tried again next round
                except Exception:
                    log.exception("subscription count of %r failed", key[:200])

    def _count(self, key: str) -> None:
        if self.counts is None:
            return
        count = self.local_count(key)
        if key not in self._counting:
            if not count:
                return
            app = self.apps.load(split_pubsub_channel(key)[0])
            if not app.subscription_count:
                return
            self.ensure_alive()
            self._counting.add(key)
        elif not count:
            self._counting.discard(key)
        self.counts.update(key, self.worker, count)

    def _put(self, change: tuple[Any, ...]) -> None:
        try:
            self._changes.put_nowait(change)
        except gevent.queue.Full:
            log.warning("channel events dropped: %d waiting", _MAX_PENDING)

    def _run(self) -> None:
        """One greenlet, in order: a channel's `channel_occupied` goes before its member
        events (the member joins before its connection is registered), its `channel_vacated`
        after them."""
        while True:
            change = self._changes.get()
            try:
                self._apply(*change)
            except GusherError as exc:
                log.warning("channel event %s of %r not sent: %s", change[0], change[1][:200], exc.reason)
            except Exception:
                log.exception("channel event %s of %r failed", change[0], change[1][:200])

    def _apply(self, kind: str, key: str, *args: Any) -> None:
        if kind == "vacated":
            # Told a moment later, as Pusher does (≤ 3 s): the member_removed of the same
            # close (its leave runs as a task) goes first, and a resubscribe cancels it.
            self._local.discard(key)
            gevent.spawn_later(VACATE_DELAY, self._put, ("vacate_now", key))
            return
        if kind == "vacate_now":
            if key in self._counted and key not in self._local:
                self._counted.discard(key)
                if self.occupancy.vacate(key, self.worker):
                    self._emit(key, events.channel_vacated)
            return
        app = self._app(key)
        if app is None:
            return
        channel = split_pubsub_channel(key)[1]
        if kind == "member_removed":
            self.webhooks.emit(app, events.member_removed(channel, *args))
            return
        if kind == "occupied":
            self._local.add(key)
        if key not in self._counted:  # occupied, or what a subscriber does before it is registered
            self.ensure_alive()
            self._counted.add(key)
            if self.occupancy.occupy(key, self.worker):
                self.webhooks.emit(app, events.channel_occupied(channel))
        if kind != "occupied":
            self.webhooks.emit(app, getattr(events, kind)(channel, *args))

    # -- upkeep (the worker's presence loop) -----------------------------------------

    def sweep(self) -> None:
        """Vacate the channels of crashed workers (their `channel_vacated` goes out once) and
        zero their subscriber counts."""
        for key in self.occupancy.sweep(self.worker):
            self._emit(key, events.channel_vacated)
        if self.counts is not None:
            self.counts.sweep(self.worker)

    def restore(self) -> None:
        """This worker's liveness had lapsed: count its channels in again."""
        for key in self.occupancy.restore(self.worker, list(self._counted)):
            self._emit(key, events.channel_occupied)

    def _emit(self, key: str, build: Any, *args: Any) -> None:
        app = self._app(key)
        if app is not None:
            self.webhooks.emit(app, build(split_pubsub_channel(key)[1], *args))

    def _app(self, key: str) -> AppConfig | None:
        """The key's app when it takes webhooks (cached lookups; may wait on Redis)."""
        app_key = split_pubsub_channel(key)[0]
        try:
            app = self.apps.load(app_key)
        except GusherError:
            return None
        return app if app.events_url and app.secret else None
