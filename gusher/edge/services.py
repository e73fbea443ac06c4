"""The per-worker machinery of a slave: broker, subscriber, hub, task pool and their loops.

Built by `create_slave_app` without side effects; `start` runs in gunicorn's
`post_worker_init` (after gevent's monkey-patching, FACTS), or on the first
request when the app is served some other way. `stop` closes every WebSocket
with 1001 and a reason, so clients reconnect elsewhere, and removes the
worker's heartbeat and presence at once.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import gevent

from gusher.broker.apps import AppCache
from gusher.broker.factory import create_broker
from gusher.config import Settings
from gusher.core.metrics import Metrics
from gusher.edge import keepalive
from gusher.edge.channel_events import ChannelEvents
from gusher.edge.hub import Hub
from gusher.edge.pusher_channels import PusherChannels
from gusher.edge.pusher_webhooks import PusherWebhooks
from gusher.edge.quota import ConnectionQuota
from gusher.edge.tasks import TaskPool
from gusher.edge.webhook import Authenticator
from gusher.ops.heartbeat import Heartbeat
from gusher.ops.presence import Presence
from gusher.wire.base import Disconnect
from gusher.wire.pusher import PusherProtocol

log = logging.getLogger(__name__)

_SWEEP_EVERY = 1.0


class SlaveServices:
    """Everything one slave worker runs besides the WSGI app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.broker = create_broker(settings, "gusher-slave")
        self.apps = AppCache(self.broker.apps, settings.app_cache_seconds)
        self.authenticator = Authenticator(
            settings.webhook_timeout,
            settings.webhook_max_body,
            settings.webhook_concurrency,
            settings.webhook_concurrency_per_app,
            self.metrics,
        )
        self.pool = TaskPool(settings.command_concurrency)
        self.subscriber = self.broker.subscriber(self.metrics, min(5.0, settings.heartbeat_interval))
        self.hub = Hub(settings, self.subscriber, self.metrics, self.pool, history=self.broker.history)
        # Pusher clients (issue 13): told to ping at the server's keep-alive interval.
        self.pusher_protocol = PusherProtocol(int(settings.ping_interval) or 120)
        self.pusher = PusherChannels(self.hub, self.broker, self.apps, settings.presence_max_members)
        self.hub.pusher = self.pusher
        # Pusher webhooks to apps' events_url (channel occupancy, members, client events).
        self.channel_events = ChannelEvents(
            self.apps,
            self.broker.occupancy,
            PusherWebhooks(settings, self.metrics),
            self.hub.worker_number,
            self.pusher.ensure_alive,
            self.broker.subscription_counts,
            self.hub.local_count,
        )
        self.pusher.events = self.hub.channel_events = self.channel_events
        self.heartbeat = Heartbeat(settings, self.broker.status, self.metrics.snapshot)
        self.presence = Presence(settings.heartbeat_interval, self.broker.status, self.hub)
        self.quota = ConnectionQuota(
            self.broker.status,
            self.presence.worker_id,
            lambda app_key: self.hub.app_connections.get(app_key, 0),
        )
        self.started = False
        self._greenlets: list[gevent.Greenlet] = []
        self.requests_in_flight = 0  # handshakes and HTTP requests: one greenlet each
        self.metrics.add_gauge("connections", lambda: len(self.hub.sessions))
        # The event loop's hub and main greenlets, each service loop, and one
        # per request in flight and per running task; an open WebSocket owns none.
        self.metrics.add_gauge("greenlets", lambda: 2 + self.requests_in_flight + self.service_greenlets())
        self.metrics.add_gauge("subscriptions", lambda: self.subscriber.subscription_count)

    def service_greenlets(self) -> int:
        """Greenlets of the subscriber, loops, sweeper, worker watcher and task pool."""
        loops = (self.heartbeat.loop.running, self.presence.loop.running)
        owned = sum(1 for g in self._greenlets if not g.dead)
        return owned + sum(loops) + self.subscriber.live_greenlets() + self.pool.greenlets

    def start(self, worker: Any = None) -> None:
        """Start the subscriber, heartbeat, presence and sweeper; watch `worker.alive` if given."""
        if self.started:
            return
        self.started = True
        # Everything imported so far lives as long as the worker: keep it out
        # of the cyclic GC's full collections, which otherwise rescan it.
        gc.freeze()
        self.subscriber.start(self.hub)
        self.heartbeat.start()
        self.presence.start()
        self._greenlets.append(gevent.spawn(self._sweep_forever))
        self._greenlets.append(gevent.spawn(self.pusher.run))
        self.channel_events.start()
        if worker is not None:
            self._greenlets.append(gevent.spawn(self._watch_worker, worker))
        log.info("slave worker services started")

    def stop(self) -> None:
        """Close every client with 1001 and leave the cluster."""
        if not self.started:
            return
        self.started = False
        self.pusher.stop()  # presence members leave at once, before their connections close
        self.hub.close_all(Disconnect.SHUTDOWN)
        self.channel_events.stop()  # this worker's channels vacated; their webhooks get 2 s
        self.heartbeat.stop()
        self.presence.stop()
        self.subscriber.stop()
        gevent.killall(self._greenlets, block=False)

    def _sweep_forever(self) -> None:
        while True:
            gevent.sleep(_SWEEP_EVERY)
            try:
                keepalive.sweep(
                    list(self.hub.sessions.values()), time.monotonic(), self.settings, self.metrics
                )
            except Exception:
                log.exception("sweep failed")

    def _watch_worker(self, worker: Any) -> None:
        """gunicorn's SIGTERM only clears `worker.alive` (FACTS); act on it."""
        while worker.alive:
            gevent.sleep(0.2)
        log.info("worker stopping: closing %d connections", len(self.hub.sessions))
        self.stop()
