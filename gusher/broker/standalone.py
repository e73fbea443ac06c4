"""The single-Redis engine: a `REDIS_ADDR` of `host:port` (seed) or a `redis://`/`rediss://` URL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gusher.broker.apps import RedisAppStore
from gusher.broker.base import Routed, Subscriber
from gusher.broker.client import Client, command_client, pubsub_pool, translate_errors
from gusher.broker.coalesce import Coalescer
from gusher.broker.history import RedisHistory
from gusher.broker.members import RedisMembers
from gusher.broker.occupancy import RedisOccupancy
from gusher.broker.status import RedisStatus
from gusher.broker.subscriber import RedisSubscriber
from gusher.broker.subscription_counts import RedisSubscriptionCounts
from gusher.config import Settings
from gusher.core.history import HistoryPolicy
from gusher.core.metrics import Metrics
from gusher.core.publication import Publication
from gusher.core.pusher import CACHE_SECONDS, is_cache
from gusher.keys import cache_key

# A command and the key it touches (a cluster routes it by that key's slot).
Command = tuple[str, tuple[Any, ...]]

# What Redis's glob treats specially; a literal prefix escapes each with a backslash.
_GLOB_SPECIAL = frozenset("\\*?[]^")


def glob_prefix(prefix: str) -> str:
    """A PUBSUB pattern matching every name that starts with `prefix` (its glob characters escaped)."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in prefix) + "*"


class RedisBroker:
    """`gusher.broker.base.Broker` on one Redis server, through one bounded command pool.

    `gusher.broker.cluster.ClusterBroker` is this broker on a Redis Cluster:
    the same stores, `sharded`, a cluster's client, SPUBLISH;
    `gusher.broker.sentinel.SentinelBroker` is it on the primary Sentinel names.
    """

    sharded = False  # keys placed by slot and scripts that SPUBLISH (a Redis Cluster)
    PUBLISH = "PUBLISH"

    def __init__(self, settings: Settings, client_name: str = "gusher") -> None:
        self._redis_url = settings.redis_url
        self._pubsub_name = f"{client_name}-pubsub"  # its subscribers' connections, in CLIENT LIST
        self.client = self._command_client(settings, client_name)
        self.apps = RedisAppStore(self.client)
        self.status = RedisStatus(self.client)
        self._coalescer = Coalescer(self.client)
        self.history = RedisHistory(
            self.client,
            settings.history_meta_ttl,
            self._coalescer,
            self.sharded,
            settings.history_replicas,
            settings.history_replicas_timeout,
        )
        self.members = RedisMembers(self.client, self.sharded)
        self.occupancy = RedisOccupancy(self.client)
        self.subscription_counts = RedisSubscriptionCounts(self.client, self.sharded)

    def _command_client(self, settings: Settings, name: str) -> Client:
        return command_client(settings, name)

    def publish(self, items: Sequence[Routed], history: HistoryPolicy | None = None) -> list[tuple[int, str]]:
        """One PUBLISH, or several in one MULTI/EXEC: all of them or none.

        The payload is the publication's as built (SPEC's Redis layout), so
        every backend or tool listening on the key reads the same JSON a
        gusher client does; with `history`, the same JSON with its `offset`
        (`gusher.broker.history`). A cache channel's last event is kept
        beside it (`cache_key`).
        """
        cached = [(key, p) for key, p in items if p.is_common and not p.control and is_cache(p.channel)]
        if history is not None:
            positions = self.history.publish(items, history)
            if cached:
                with translate_errors():
                    self._run([_keep(key, publication) for key, publication in cached])
            return positions
        with translate_errors():
            if len(items) == 1 and not cached and self._coalescer.active and not self.sharded:
                key, publication = items[0]
                self._coalescer.call(lambda pipe: pipe.publish(key, publication.payload))
            else:
                commands = [(key, (self.PUBLISH, key, publication.payload)) for key, publication in items]
                self._run(commands + [_keep(key, publication) for key, publication in cached], atomic=True)
        return []

    def _run(self, commands: list[Command], atomic: bool = False) -> None:
        """Each (key, command) in order: one round trip, in one MULTI/EXEC when `atomic`."""
        if len(commands) == 1:
            self.client.execute_command(*commands[0][1])
            return
        pipe = self.client.pipeline(transaction=atomic)
        for _, command in commands:
            pipe.execute_command(*command)
        pipe.execute()

    def cached(self, key: str) -> bytes | None:
        """The last payload of a cache channel, kept `CACHE_SECONDS` after it was published."""
        with translate_errors():
            value = self.client.get(cache_key(key))
        return value.encode() if isinstance(value, str) else value

    def live_keys(self, prefix: str) -> list[str]:
        """PUBSUB CHANNELS for `prefix*`, the prefix's glob characters escaped.

        Exact at the moment it runs: every slave worker holds one
        subscription per channel its clients want. Redis walks all its
        channels for it (O(channels), ~1 ms per 100k).
        """
        with translate_errors():
            keys = self.client.pubsub_channels(glob_prefix(prefix))
        return [k.decode() if isinstance(k, bytes) else k for k in keys]

    def subscriber(self, metrics: Metrics, ping_every: float = 5.0) -> Subscriber:
        """A worker's pub/sub connection to the same server (not started)."""
        return RedisSubscriber(pubsub_pool(self._redis_url, self._pubsub_name), metrics, ping_every)

    def ping(self) -> None:
        """PING; `BackendUnavailable` when Redis does not answer."""
        with translate_errors():
            self.client.ping()


def _keep(key: str, publication: Publication) -> Command:
    """The SET that keeps a cache channel's last event for later subscribers."""
    kept = cache_key(key)
    return kept, ("SET", kept, publication.client_payload, "EX", CACHE_SECONDS)
