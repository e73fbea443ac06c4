"""The Sentinel engine: a `REDIS_ADDR` of `redis+sentinel://host:port[,host:port…]/<service_name>`.

`RedisBroker` as it is, on whichever server the Sentinels name primary of
the service: both its pools (commands, and each worker's pub/sub
connection) ask Sentinel for the primary's address on every connect
(`gusher.broker.client.sentinel_client`, `sentinel_pubsub_pool`). After a
failover, Sentinel closes the clients of the instances it reconfigures; a
command on a closed or demoted connection is retried by redis-py on a new
one, and the `RedisSubscriber` reconnects with its backoff (capped at 1 s)
to the new primary and subscribes everything again, so its hub catches
history channels up (`on_ready`). What pub/sub carried meanwhile is lost,
as on any reconnect (`gusher.broker.base`).

A demoted primary is not always closed at once: after `SENTINEL FAILOVER`
it keeps serving until a Sentinel reconfigures it (~10 s). So the command
pool checks each connection it hands out against Sentinel every
`PRIMARY_CHECK_EVERY` seconds, and `SentinelSubscriber` checks its pub/sub
connection as often: each leaves a server Sentinel no longer names primary.
"""

from __future__ import annotations

import logging

import gevent
import redis
from redis.sentinel import SentinelConnectionPool

from gusher.broker.base import SubscriberHandler
from gusher.broker.client import (
    NETWORK_ERRORS,
    PRIMARY_CHECK_EVERY,
    SentinelAddress,
    sentinel_client,
    sentinel_pubsub_pool,
)
from gusher.broker.standalone import RedisBroker
from gusher.broker.subscriber import RedisSubscriber
from gusher.config import Settings
from gusher.core.metrics import Metrics

log = logging.getLogger(__name__)


class SentinelSubscriber(RedisSubscriber):
    """`RedisSubscriber` on the primary Sentinel names, leaving a server that lost that role."""

    def __init__(self, pool: SentinelConnectionPool, metrics: Metrics, ping_every: float = 5.0) -> None:
        super().__init__(pool, metrics, ping_every, label="sentinel")
        self._sentinel_pool = pool  # `_pool`, typed as what can name the primary

    def start(self, handler: SubscriberHandler) -> None:
        """The listener and sync greenlets, and one that watches who is primary."""
        super().start(handler)
        self.greenlets.append(gevent.spawn(self._watch_forever))

    def _watch_forever(self) -> None:
        unanswered = False  # logged once per spell, not twice a second
        while True:
            gevent.sleep(PRIMARY_CHECK_EVERY)
            conn = self._conn
            if conn is None:
                continue
            try:
                primary = tuple(self._sentinel_pool.get_master_address())
            except NETWORK_ERRORS as exc:
                if not unanswered:
                    log.warning(
                        "no Sentinel names a primary (%s); staying on %s:%s", exc, conn.host, conn.port
                    )
                unanswered = True
                continue
            except Exception:  # a bug must not end the watch
                log.exception("asking Sentinel for the primary failed")
                continue
            unanswered = False
            if conn is self._conn and (conn.host, conn.port) != primary:
                log.warning("Sentinel names %s:%s primary; leaving %s:%s", *primary, conn.host, conn.port)
                conn.disconnect()  # the listener reconnects, asking Sentinel


class SentinelBroker(RedisBroker):
    """`gusher.broker.base.Broker` on a Sentinel-monitored primary, following its failovers."""

    def __init__(self, settings: Settings, client_name: str = "gusher") -> None:
        self._address = SentinelAddress.parse(settings.redis_url)
        super().__init__(settings, client_name)

    def _command_client(self, settings: Settings, name: str) -> redis.Redis:
        return sentinel_client(settings, name)

    def subscriber(self, metrics: Metrics, ping_every: float = 5.0) -> SentinelSubscriber:
        """A worker's pub/sub connection to the primary, following failovers (not started)."""
        return SentinelSubscriber(sentinel_pubsub_pool(self._address, self._pubsub_name), metrics, ping_every)
