"""The per-worker machinery of a slave: bus, hub, heartbeat and their loops.

Built by `create_slave_app` without side effects; `start` runs in gunicorn's
`post_worker_init` (after gevent's monkey-patching, FACTS), or on the first
request when the app is served some other way. `stop` closes every WebSocket
with 1001 and a reason, so clients reconnect elsewhere, and removes the
worker's heartbeat at once.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import gevent

from gusher import apps, frames
from gusher.auth import Authenticator
from gusher.bus import Bus
from gusher.config import Settings
from gusher.heartbeat import Heartbeat
from gusher.hub import Hub
from gusher.presence import Presence

log = logging.getLogger(__name__)

_SWEEP_EVERY = 1.0


class SlaveServices:
    """Everything one slave worker runs besides the WSGI app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = apps.connect_redis(settings, "gusher-slave")
        self.apps = apps.AppCache(settings.app_cache_seconds)
        self.authenticator = Authenticator(
            settings.webhook_timeout, settings.webhook_max_body, settings.webhook_concurrency
        )
        self.bus = Bus(
            settings.redis_url,
            self._on_messages,
            self._on_ready,
            ping_every=min(5.0, settings.heartbeat_interval),
        )
        self.hub = Hub(settings, self.bus)
        self.heartbeat = Heartbeat(settings, self.redis, self.stats)
        self.presence = Presence(settings.heartbeat_interval, self.redis, self.hub)
        self.started = False
        self._greenlets: list[gevent.Greenlet] = []
        self.requests_in_flight = 0  # handshakes and HTTP requests: one greenlet each

    # The bus is built before the hub; these forward to it.
    def _on_messages(self, batch: Any) -> None:
        self.hub.on_messages(batch)

    def _on_ready(self, key: str) -> None:
        self.hub.on_ready(key)

    def stats(self) -> dict[str, int]:
        """Counters for the heartbeat (`connections` is the seed's field)."""
        hub = self.hub
        return {
            "connections": len(hub.connections),
            # The event loop's hub and main greenlets, each service loop, and one
            # per request in flight; an open WebSocket owns none.
            "greenlets": 2 + self.requests_in_flight + self.service_greenlets(),
            "subscriptions": self.bus.subscription_count,
            "messages_in": hub.stats.messages_in,
            "deliveries": hub.stats.deliveries,
            "slow_consumer_drops": hub.stats.slow_consumer_drops,
            "ping_timeouts": hub.stats.ping_timeouts,
            "rate_limited": hub.stats.rate_limited,
            "invalid_messages": hub.stats.invalid_messages,
            "redis_reconnects": self.bus.reconnects,
        }

    def service_greenlets(self) -> int:
        """Greenlets of the bus, heartbeat, presence, sweeper and worker watcher."""
        owned = [*self._greenlets, *self.bus.greenlets, self.heartbeat.greenlet, self.presence.greenlet]
        return sum(1 for g in owned if g is not None and not g.dead)

    def start(self, worker: Any = None) -> None:
        """Start the bus, heartbeat and sweeper; watch `worker.alive` if given."""
        if self.started:
            return
        self.started = True
        # Everything imported so far lives as long as the worker: keep it out
        # of the cyclic GC's full collections, which otherwise rescan it.
        gc.freeze()
        self.bus.start()
        self.heartbeat.start()
        self.presence.start()
        self._greenlets.append(gevent.spawn(self._sweep_forever))
        if worker is not None:
            self._greenlets.append(gevent.spawn(self._watch_worker, worker))
        log.info("slave worker services started")

    def stop(self) -> None:
        """Close every client with 1001 and leave the cluster."""
        if not self.started:
            return
        self.started = False
        self.hub.close_all(frames.CLOSE_GOING_AWAY, "server shutting down")
        self.heartbeat.stop()
        self.presence.stop()
        self.bus.stop()
        gevent.killall(self._greenlets, block=False)

    def _sweep_forever(self) -> None:
        while True:
            gevent.sleep(_SWEEP_EVERY)
            try:
                now = time.monotonic()
                self.hub.expire_pending(now)
                self.hub.sweep(now)
            except Exception:
                log.exception("sweep failed")

    def _watch_worker(self, worker: Any) -> None:
        """gunicorn's SIGTERM only clears `worker.alive` (FACTS); act on it."""
        while worker.alive:
            gevent.sleep(0.2)
        log.info("worker stopping: closing %d connections", len(self.hub.connections))
        self.stop()
