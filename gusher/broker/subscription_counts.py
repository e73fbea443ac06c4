"""How many connections subscribe to a channel across every slave worker (Pusher's subscription_count).

An app with the hash field `subscription_count` = `1` has its channels'
subscribers counted: each worker keeps its own count in the channel's hash
(`gusher.keys.subscription_count_keys`: worker id → count) and one Lua
script sets it, sums the hash, and, when the sum changed, keeps it and
publishes `pusher_internal:subscription_count` on the channel (a `count`
control: only Pusher clients see it; pusher-js sets `channel.subscriptionCount`
and emits `pusher:subscription_count`). Workers update at most twice a second
per channel (`gusher.edge.channel_events`), so a crowd joining costs a few
messages, not one per join.

Crashes: like occupancy, each worker records the keys it counts
(`worker_subscription_counts_key`) and any live worker zeroes the counts of a
worker whose liveness key is gone, through the same script.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from gusher.broker.client import Client, sharded_script, translate_errors
from gusher.keys import (
    SUBSCRIPTION_COUNT_WORKERS,
    split_pubsub_channel,
    subscription_count_keys,
    worker_alive_key,
    worker_subscription_counts_key,
)

log = logging.getLogger(__name__)

# KEYS: the per-worker counts hash, the kept total. ARGV: worker, its count, pub/sub key, channel.
# Returns the new total when it changed (and was published), else -1.
_UPDATE = """
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local total = 0
for _, n in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(n) end
local kept = tonumber(redis.call('GET', KEYS[2]) or '0')
if total == kept then return -1 end
if total == 0 then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], total) end
redis.call('PUBLISH', ARGV[3], '{"channel":' .. cjson.encode(ARGV[4]) ..
  ',"event":"pusher_internal:subscription_count","data":{"subscription_count":' .. total ..
  '},"gusher_control":"count"}')
return total
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisSubscriptionCounts:
    """`gusher.broker.base.SubscriptionCountStore` on one Redis server, or a cluster (`sharded`:
    the script SPUBLISHes in the channel's slot); calls may block."""

    def __init__(self, client: Client, sharded: bool = False) -> None:
        self._client = client
        self._update = client.register_script(sharded_script(_UPDATE, sharded))

    def update(self, key: str, worker: int, count: int) -> int | None:
        """This worker has `count` subscribers on `key`: the channel's new total, or None when
        it did not change (nothing was published)."""
        with translate_errors():
            records = worker_subscription_counts_key(worker)
            pipe = self._client.pipeline(transaction=False)
            if count > 0:
                pipe.sadd(records, key)
                pipe.sadd(SUBSCRIPTION_COUNT_WORKERS, str(worker))
            pipe.execute()
            total = int(self._set(key, worker, count))
            if count <= 0:
                self._client.srem(records, key)
        return None if total < 0 else total

    def total(self, key: str) -> int:
        """The channel's subscribers on every slave worker (0 when not counted)."""
        with translate_errors():
            return int(self._client.get(subscription_count_keys(key)[1]) or 0)

    def sweep(self, skip: int) -> int:
        """Zero the counts of every worker but `skip` whose liveness lapsed; how many keys."""
        with translate_errors():
            workers = [int(_text(w)) for w in self._client.smembers(SUBSCRIPTION_COUNT_WORKERS)]
            others = [w for w in workers if w != skip]
            if not others:
                return 0
            pipe = self._client.pipeline(transaction=False)
            for worker in others:
                pipe.exists(worker_alive_key(worker))
            alive = pipe.execute()
            swept = 0
            for worker, is_alive in zip(others, alive, strict=True):
                if not is_alive:
                    swept += self._zero(worker, None)
        return swept

    def stop(self, worker: int, keys: Iterable[str] = ()) -> None:
        """A clean stop: the worker's counts go (the totals drop and are published)."""
        with translate_errors():
            self._zero(worker, keys)

    def _zero(self, worker: int, keys: Iterable[str] | None) -> int:
        records = worker_subscription_counts_key(worker)
        held = {_text(raw) for raw in self._client.sscan_iter(records, count=500)}
        for key in held.union(keys or ()):
            self._set(key, worker, 0)
            self._client.srem(records, key)
        if not self._client.exists(records):
            self._client.srem(SUBSCRIPTION_COUNT_WORKERS, str(worker))
        return len(held)

    def _set(self, key: str, worker: int, count: int) -> int:
        channel = split_pubsub_channel(key)[1]
        return int(
            self._update(keys=subscription_count_keys(key), args=[worker, max(0, count), key, channel])
        )
