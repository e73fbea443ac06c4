"""The Redis Cluster engine: a `REDIS_ADDR` of `redis+cluster://host:port[,host:port…]`.

`RedisBroker`'s stores on a cluster's command client (redis-py's
`RedisCluster`, routing each command to its slot's primary), `sharded`:
- publications go out with SPUBLISH on the seed's channel names
  `{app_key}@{channel}`; only shard subscribers (SSUBSCRIBE) hear them, and
  a backend pushing straight into the cluster SPUBLISHes too;
- the scripts that publish (history, presence members, subscription counts)
  SPUBLISH in their channel's slot, where their keys are placed
  (`gusher.keys.colocated`); history keys get cluster names of their own
  (`gusher.keys.cluster_history_keys`);
- every other command touches one key (app hashes, heartbeats, presence
  reports, cache keys), so no command crosses slots;
- `live_keys` asks every primary (PUBSUB SHARDCHANNELS) and merges;
- each slave worker subscribes through `ClusterSubscriber`: one sharded
  pub/sub connection per primary, following migrations and failovers.

All or nothing, in a cluster: several publications go to several slots,
which no MULTI/EXEC spans (a cluster refuses a transaction over two
slots). What the push API promises as all or nothing is its validation:
every name, size and permission of a multi-channel or batch push is
checked before anything is published (`gusher.api`). Then each
publication is one command, atomic by itself, sent in order in one
pipeline (one round trip per node); a node failing in between raises
`BackendUnavailable` after the others went out. One channel's publications
keep their order: they all go to one node, in the order given.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.cluster import ClusterNode

from gusher.broker.client import NETWORK_ERRORS, ClusterAddress, LazyCluster, cluster_client, translate_errors
from gusher.broker.cluster_subscriber import ClusterSubscriber
from gusher.broker.standalone import Command, RedisBroker, glob_prefix
from gusher.config import Settings
from gusher.core.metrics import Metrics
from gusher.keys import key_slot


class ClusterBroker(RedisBroker):
    """`gusher.broker.base.Broker` on a Redis (or Valkey) Cluster."""

    sharded = True
    PUBLISH = "SPUBLISH"  # only shard subscribers (SSUBSCRIBE) hear it
    _lazy: LazyCluster  # the client, typed as what it is (`self.client` as what it stands for)

    def __init__(self, settings: Settings, client_name: str = "gusher") -> None:
        self._address = ClusterAddress.parse(settings.redis_url)
        super().__init__(settings, client_name)

    def _command_client(self, settings: Settings, name: str) -> redis.RedisCluster:
        self._lazy = cluster_client(settings, name)
        return cast(redis.RedisCluster, self._lazy)  # stands in for one until it is made

    def _run(self, commands: list[Command], atomic: bool = False) -> None:
        """Each (key, command) straight to the primary of its key's slot: one pipeline per node.

        redis-py's cluster client works out each command's slot in Python
        (its command parser, per command): on a batch push that made the
        master spend 1.8 times the CPU per message it spends on one Redis
        (bench.shards). gusher knows its keys, so it places them itself
        (`key_slot`, the client's slot map) and sends each node its share in
        order. What a node answers MOVED or ASK (a slot moving) did not run,
        and what a lost node could not take may not have: those go again
        through the cluster client, which follows redirections, refreshes its
        map and retries on a lost connection, as it did for every command
        before. `atomic` cannot hold across slots (module docstring).
        """
        cluster = self._lazy.cluster()
        by_node: dict[str, tuple[ClusterNode, list[tuple[Any, ...]]]] = {}
        for key, command in commands:
            node = cluster.nodes_manager.get_node_from_slot(key_slot(key))
            by_node.setdefault(node.name, (node, []))[1].append(command)
        again: list[tuple[Any, ...]] = []  # for the cluster client, which finds where they go
        for node, batch in by_node.values():
            try:
                again += _on_node(cluster.get_redis_connection(node), batch)
            except NETWORK_ERRORS:
                again += batch  # the node is gone or going: the cluster client refreshes its map
        if len(again) == 1:
            cluster.execute_command(*again[0])
        elif again:
            pipe = cluster.pipeline(transaction=False)
            for command in again:
                pipe.execute_command(*command)
            pipe.execute()

    def live_keys(self, prefix: str) -> list[str]:
        """PUBSUB SHARDCHANNELS `prefix*` on every primary, merged.

        Exact at the moment it runs: a slave worker subscribes each channel
        on the primary owning its slot, so every primary reports its own.
        """
        with translate_errors():
            keys = self.client.pubsub_shardchannels(
                glob_prefix(prefix), target_nodes=redis.RedisCluster.PRIMARIES
            )
        return sorted({k.decode() if isinstance(k, bytes) else k for k in keys})

    def subscriber(self, metrics: Metrics, ping_every: float = 5.0) -> ClusterSubscriber:
        """A worker's sharded pub/sub connections, sharing this broker's slot map (not started)."""
        return ClusterSubscriber(self._lazy, self._address, metrics, ping_every, self._pubsub_name)


def _on_node(client: redis.Redis, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """`batch` in order on one node (one round trip); the commands it redirected, not run."""
    redirects = (redis.exceptions.MovedError, redis.exceptions.AskError)
    if len(batch) == 1:
        try:
            client.execute_command(*batch[0])
        except redirects:
            return batch
        return []
    pipe = client.pipeline(transaction=False)
    for command in batch:
        pipe.execute_command(*command)
    redirected = []
    for command, reply in zip(batch, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(reply, redirects):
            redirected.append(command)
        elif isinstance(reply, Exception):
            raise reply
    return redirected
