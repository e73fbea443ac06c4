"""Channel history in Redis: one Lua script numbers, keeps and publishes a message at once.

Per history channel (`gusher.keys.history_keys`):
- a meta hash: `e` the epoch, `s` the latest offset (expires `history_meta_ttl`
  after the last publish, far longer than the messages are kept, so the
  numbering outlives quiet spells);
- a stream whose entry IDs are the offsets (`N-0`), each entry `p` (the
  payload as published) and `t` (when, in ms); at most `history_size` entries,
  none read back once older than `history_ttl` (every 16th publish also
  deletes up to 32 such entries), the whole stream expiring `history_ttl`
  after the last publish.

The publish script, in one atomic step: the epoch (created when missing), the
next offset, the payload with its `"offset"` appended to the master's JSON
(so the kept and the published bytes are the same), XADD, trimming, PUBLISH.
The numbering restarts under a new epoch whenever it cannot go on: no meta (it
expired, was flushed or lost with its Redis) or a stream already past the
meta's offset (an evicted or restored meta) — the stream is dropped then, never
appended to with reissued offsets (centrifuge#412: XADD failed "equal or
smaller ID" until the stream expired).

The read script returns the epoch (creating it when missing: an epoch a
client got at offset 0 stays valid after the first publish), the latest
offset and the kept messages after a given offset.

In a Redis Cluster (`sharded`) the script SPUBLISHes, and its keys are
`gusher.keys.cluster_history_keys`, in the channel's slot. Several items
then cannot be one MULTI/EXEC (their slots differ, and redis-py refuses
scripts in a cluster pipeline): each is one script call, in order, each
atomic on its own, sent in one plain pipeline per node (`_publish_by_node`).
What stays all or nothing is the validation, done by the caller before
anything is published; a node failing half-way raises
`BackendUnavailable` after the items before it went out.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any, cast

import redis

from gusher.broker.client import NETWORK_ERRORS, Client, sharded_script, translate_errors
from gusher.broker.coalesce import Coalescer
from gusher.core.history import ChannelHistory, HistoryPolicy
from gusher.core.publication import Publication, Routed
from gusher.errors import BackendUnavailable
from gusher.keys import cluster_history_keys, history_keys, key_slot

# One script call: its keys and its arguments.
_Call = tuple[list[str], list[bytes | str | int]]
# What a node answers for a call it did not run.
_NOT_RUN = (redis.exceptions.NoScriptError, redis.exceptions.MovedError, redis.exceptions.AskError)

# KEYS: stream, meta. ARGV: pub/sub channel, payload head, size, ttl, meta ttl, epoch if new,
# '1' to publish ('0': keep only, and return the payload).
_PUBLISH = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local function restart()
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', ARGV[6], 's', 0)
  return ARGV[6]
end
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then epoch = restart() end
local offset = redis.call('HINCRBY', KEYS[2], 's', 1)
local payload = ARGV[2] .. ',"offset":' .. offset .. '}'
local added = redis.pcall('XADD', KEYS[1], 'MAXLEN', ARGV[3], offset .. '-0', 'p', payload, 't', ms)
if type(added) == 'table' and added.err then
  epoch = restart()
  offset = redis.call('HINCRBY', KEYS[2], 's', 1)
  payload = ARGV[2] .. ',"offset":' .. offset .. '}'
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], offset .. '-0', 'p', payload, 't', ms)
end
redis.call('EXPIRE', KEYS[2], ARGV[5])
if offset % 16 == 0 then  -- trimming by age is for memory only (reads skip old entries): now and then
  local cutoff = ms - tonumber(ARGV[4]) * 1000
  for _ = 1, 32 do
    local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
    if not first or tonumber(first[2][4]) >= cutoff then break end
    redis.call('XDEL', KEYS[1], first[1])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[7] == '0' then return {offset, epoch, payload} end  -- kept only: published once replicated
redis.call('PUBLISH', ARGV[1], payload)
return {offset, epoch}
"""

# KEYS: stream, meta. ARGV: since (exclusive), limit, ttl, meta ttl, epoch if new.
_READ = """
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', ARGV[5], 's', 0)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  return {0, ARGV[5], {}}
end
local top = tonumber(redis.call('HGET', KEYS[2], 's') or '0')
local since, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
if limit > 0 and top > since then
  local now = redis.call('TIME')
  local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3]) * 1000
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], (since + 1) .. '-0', '+', 'COUNT', limit)) do
    if tonumber(entry[2][4]) >= cutoff then out[#out + 1] = entry[2][2] end
  end
end
return {top, epoch, out}
"""


def new_epoch() -> str:
    """A short random epoch (8 URL-safe characters), proposed to the scripts on every call."""
    return secrets.token_urlsafe(6)


class RedisHistory:
    """Numbered publishing and history reads through one Redis client (or a cluster's, `sharded`)."""

    def __init__(
        self,
        client: Client,
        meta_ttl: int,
        coalescer: Coalescer | None = None,
        sharded: bool = False,
        replicas: int = 0,
        replicas_timeout: float = 0.5,
    ) -> None:
        self._client = client
        self._meta_ttl = meta_ttl
        # redis-py refuses EVALSHA in a cluster pipeline, so a cluster's pushes are not shared.
        self._coalescer = None if sharded else coalescer
        self._sharded = sharded
        self._keys = cluster_history_keys if sharded else history_keys
        self._publish = client.register_script(sharded_script(_PUBLISH, sharded))
        self._read = client.register_script(_READ)
        self._replicas = replicas
        self._replicas_timeout_ms = max(1, round(replicas_timeout * 1000))

    def publish(self, items: Sequence[Routed], policy: HistoryPolicy) -> list[tuple[int, str]]:
        """Number, keep and publish each item, in order; several at once in one MULTI/EXEC.

        Returns:
            (offset, epoch) of each item.
        """
        calls: list[_Call] = []
        for key, publication in items:
            stream, meta = self._keys(key)
            args: list[bytes | str | int] = [
                key,
                publication.head,
                policy.size,
                policy.ttl,
                self._meta_ttl,
                new_epoch(),
                "0" if self._replicas else "1",
            ]
            calls.append(([stream, meta], args))
        if self._replicas:
            return self._publish_replicated(items, calls)
        with translate_errors():
            if len(calls) == 1 and self._coalescer is not None and self._coalescer.active:
                # Shared with the other pushes in flight, as a bare EVALSHA: a Script in a
                # pipeline would ask SCRIPT EXISTS first on every shared pipeline.
                keys, args = calls[0]
                sha = self._publish.sha
                try:
                    results = [self._coalescer.call(lambda pipe: pipe.evalsha(sha, len(keys), *keys, *args))]
                except redis.exceptions.NoScriptError:  # it did not run: loading and running it is safe
                    results = [self._publish(keys=keys, args=args)]
            elif len(calls) == 1:
                # One EVALSHA (EVAL once after a NOSCRIPT): a pipeline would first ask
                # SCRIPT EXISTS on every call, one more round trip per push.
                results = [self._publish(keys=calls[0][0], args=calls[0][1])]
            elif self._sharded:
                results = self._publish_by_node(calls)
            else:
                pipe = self._client.pipeline(transaction=True)
                for keys, args in calls:
                    self._publish(keys=keys, args=args, client=pipe)
                results = pipe.execute()
        return [(int(offset), _text(epoch)) for offset, epoch in results]

    def _publish_by_node(self, calls: list[_Call]) -> list[Any]:
        """A cluster's script calls, each on the primary of its slot: one pipeline of EVALSHAs per node.

        redis-py refuses scripts in a cluster pipeline, and one call at a time
        through the cluster client costs a round trip and its routing each. A
        call its node could not run as asked (NOSCRIPT, MOVED, ASK: it did not
        run) or whose node was lost goes again through the cluster client,
        which loads the script, follows redirections and retries. Each
        channel's calls keep their order: one slot, one node, one pipeline.
        """
        cluster = cast(redis.RedisCluster, self._client)
        nodes: dict[str, tuple[Any, list[int]]] = {}
        for index, (keys, _) in enumerate(calls):
            node = cluster.nodes_manager.get_node_from_slot(key_slot(keys[0]))
            nodes.setdefault(node.name, (node, []))[1].append(index)
        results: list[Any] = [None] * len(calls)
        again: list[int] = []
        for node, indexes in nodes.values():
            pipe = cluster.get_redis_connection(node).pipeline(transaction=False)
            for index in indexes:
                keys, args = calls[index]
                pipe.evalsha(self._publish.sha, len(keys), *keys, *args)
            try:
                replies = pipe.execute(raise_on_error=False)
            except NETWORK_ERRORS:
                again += indexes
                continue
            for index, reply in zip(indexes, replies, strict=True):
                if isinstance(reply, _NOT_RUN):
                    again.append(index)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[index] = reply
        for index in sorted(again):
            keys, args = calls[index]
            results[index] = self._publish(keys=keys, args=args)
        return results

    def _publish_replicated(self, items: Sequence[Routed], calls: list[_Call]) -> list[tuple[int, str]]:
        """Keep each item, wait until `replicas` replicas have it, and only then publish it.

        A message a client has seen must outlive a failover: a primary's
        writes not yet replicated are lost with it (killed), or when it
        resyncs (demoted by a plain `SENTINEL FAILOVER` after taking writes
        for seconds), and the promoted replica would number other messages
        with the offsets clients already hold. So a message is published
        only once WAIT confirms it; otherwise the push fails (503), its
        message kept but unpublished (the next one's gap brings it to
        subscribers if that primary stays; with it, it is gone, never seen).
        A cluster's items go one at a time to their slot's primary, each
        confirmed before the next (one MULTI/EXEC cannot span slots).
        """
        with translate_errors():
            if not self._sharded:
                kept = self._keep_confirmed(cast(redis.Redis, self._client), calls)
                pipe = self._client.pipeline(transaction=False)
                for (key, _), (_, _, payload) in zip(items, kept, strict=True):
                    pipe.publish(key, payload)
                pipe.execute()
                return [(int(offset), _text(epoch)) for offset, epoch, _ in kept]
            positions = []
            for (key, _), call in zip(items, calls, strict=True):
                node = self._node_of(call[0][0])
                ((offset, epoch, payload),) = self._keep_confirmed(node, [call])
                node.execute_command("SPUBLISH", key, payload)
                positions.append((int(offset), _text(epoch)))
            return positions

    def _node_of(self, key: str) -> redis.Redis:
        """The client of the primary that owns `key`'s slot (the cluster's map, refreshed if stale)."""
        cluster = cast(redis.RedisCluster, self._client)
        return cluster.get_redis_connection(cluster.get_node_from_key(key))

    def _keep_confirmed(self, client: redis.Redis, calls: list[_Call]) -> list[Any]:
        """The keeping scripts (in MULTI/EXEC when several) and WAIT, in one round trip on one connection.

        WAIT counts the replicas that acknowledged this connection's writes,
        so it must follow them on the same connection: one pipeline.
        Raises `BackendUnavailable` when fewer than `replicas` confirm within the timeout.
        """
        several = len(calls) > 1
        for loaded in (False, True):
            pipe = client.pipeline(transaction=False)
            if several:
                pipe.execute_command("MULTI")
            for keys, args in calls:
                pipe.evalsha(self._publish.sha, len(keys), *keys, *args)
            if several:
                pipe.execute_command("EXEC")
            pipe.execute_command("WAIT", self._replicas, self._replicas_timeout_ms)
            replies = pipe.execute(raise_on_error=False)
            results = replies[-2] if several else replies[:1]
            inner = results if isinstance(results, list) else []
            errors = [r for r in [*replies[:-1], *inner] if isinstance(r, Exception)]
            if errors and not loaded and all(isinstance(e, redis.exceptions.NoScriptError) for e in errors):
                client.script_load(self._publish.script)  # nothing ran: loading and running again is safe
                continue
            if any("NOREPLICAS" in str(e) for e in errors):
                raise BackendUnavailable(
                    f"redis unavailable: fewer than {self._replicas} replicas connected, so the message "
                    "was neither kept nor published (NOREPLICAS)"
                )
            if errors or not isinstance(results, list):
                if any(isinstance(e, redis.exceptions.MovedError) for e in errors) and self._sharded:
                    cast(redis.RedisCluster, self._client).nodes_manager.initialize()
                raise errors[0] if errors else redis.ResponseError(f"transaction aborted: {results!r}")
            confirmed = int(replies[-1])
            if confirmed < self._replicas:
                raise BackendUnavailable(
                    f"redis unavailable: {confirmed} of {self._replicas} replicas confirmed the message "
                    f"within {self._replicas_timeout_ms} ms, so it was not published (it is kept: "
                    "if this primary stays, it reaches subscribers after the channel's next message)"
                )
            return results
        raise AssertionError("unreachable")

    def read(self, key: str, since: int, limit: int, policy: HistoryPolicy) -> ChannelHistory:
        """The channel's epoch and latest offset, and up to `limit` kept messages after `since`."""
        stream, meta = self._keys(key)
        with translate_errors():
            top, epoch, payloads = self._read(
                keys=[stream, meta],
                args=[max(0, since), max(0, limit), policy.ttl, self._meta_ttl, new_epoch()],
            )
        publications = tuple(p for p in map(Publication.parse, payloads) if p is not None)
        return ChannelHistory(_text(epoch), int(top), publications)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
