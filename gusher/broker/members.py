"""Pusher presence members in Redis: exact across every slave, and swept after a crash.

Per presence channel (`gusher.keys.members_keys`), three hashes in one slot:
members (user id → user info JSON), counts (user id → its connections) and
connections (socket id → user id). One Lua script joins a connection and
one removes it, so the member list and its events agree whatever the
slaves do at the same moment: `pusher_internal:member_added` is published
only when a user's first connection joins, `member_removed` only when its
last one leaves (Reverb #213, Sockudo PR #75), and each is published in the
same atomic step that changes the list. The events are publications with
the `member` control (`gusher.core.publication`): only Pusher clients see
them, and `member_added` skips the connection that joined (it gets the
list in its `subscription_succeeded`).

Crashes (Sockudo #87, ghost members): each worker that holds members keeps
the set of what it joined (`worker_members_key`) and a liveness key
(`worker_alive_key`) that expires two heartbeat intervals after its last
refresh. Any live worker sweeps the members of a worker whose liveness key
is gone, through the same leave script, so their `member_removed` events go
out. A worker that finds its own liveness key gone (it stalled past the
deadline and was swept) joins its members again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson

from gusher.broker.client import REDIS_ERRORS, Client, sharded_script, translate_errors
from gusher.keys import (
    MEMBER_WORKERS,
    members_keys,
    split_pubsub_channel,
    worker_alive_key,
    worker_members_key,
)

log = logging.getLogger(__name__)

# KEYS: members, counts, connections. ARGV: socket id, user id, user info, max members,
# pub/sub key, member_added payload. Returns {1, first, members...} (first: 1 when this
# was the user's first connection) or {0} when the channel is full.
_JOIN = """
local first = 0
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then
  local n = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  if n == 1 then
    if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
      redis.call('HDEL', KEYS[2], ARGV[2])
      return {0}
    end
    redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
    redis.call('PUBLISH', ARGV[5], ARGV[6])
    first = 1
  end
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
end
return {1, first, redis.call('HGETALL', KEYS[1])}
"""

# KEYS: members, counts, connections. ARGV: socket id, pub/sub key, channel.
# Returns the user id when this was the user's last connection, else "" (also when the
# connection was no member any more, e.g. swept).
_LEAVE = """
local user = redis.call('HGET', KEYS[3], ARGV[1])
if not user then return '' end
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
  redis.call('HDEL', KEYS[2], user)
  redis.call('HDEL', KEYS[1], user)
  redis.call('PUBLISH', ARGV[2], '{"channel":' .. cjson.encode(ARGV[3]) ..
    ',"event":"pusher_internal:member_removed","data":{"user_id":' .. cjson.encode(user) ..
    '},"gusher_control":"member"}')
  return user
end
return ''
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(key: str, socket_id: str) -> str:
    return f"{socket_id} {key}"  # socket ids hold no space; keys may


class RedisMembers:
    """`gusher.broker.base.MemberStore` on one Redis server, or a cluster (`sharded`: the
    scripts SPUBLISH in their channel's slot, where `members_keys` are)."""

    def __init__(self, client: Client, sharded: bool = False) -> None:
        self._client = client
        self._join = client.register_script(sharded_script(_JOIN, sharded))
        self._leave = client.register_script(sharded_script(_LEAVE, sharded))

    def join(
        self,
        key: str,
        socket_id: str,
        worker: int,
        user_id: str,
        user_info: bytes,
        max_members: int,
        added: bytes,
    ) -> tuple[dict[str, Any], bool] | None:
        """Make `socket_id` a member of `key` as `user_id`: the members then, and whether this
        is the user's first connection (then `added`, the `member_added` payload, went out);
        None when the channel is full.

        The worker's own records come first, so a sweep after a crash
        anywhere in between finds the connection.
        """
        with translate_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.sadd(worker_members_key(worker), _entry(key, socket_id))
            pipe.sadd(MEMBER_WORKERS, str(worker))
            pipe.execute()
            reply = self._join(
                keys=members_keys(key), args=[socket_id, user_id, user_info, max_members, key, added]
            )
        if not reply[0]:
            self._forget(worker, [_entry(key, socket_id)])
            return None
        flat = reply[2]
        return {_text(flat[i]): orjson.loads(flat[i + 1]) for i in range(0, len(flat), 2)}, bool(reply[1])

    def leave(self, key: str, socket_id: str, worker: int) -> str:
        """`socket_id` is no member of `key` any more: the user id when it was the user's last
        connection (`member_removed` went out), else ""."""
        with translate_errors():
            removed = self._leave_one(key, socket_id)
        self._forget(worker, [_entry(key, socket_id)])
        return removed

    def members(self, key: str) -> dict[str, Any]:
        """The members of a presence channel: user id → user info."""
        with translate_errors():
            raw = self._client.hgetall(members_keys(key)[0])
        return {_text(k): orjson.loads(v) for k, v in raw.items()}

    def count(self, key: str) -> int:
        """How many users are members of a presence channel."""
        with translate_errors():
            return int(self._client.hlen(members_keys(key)[0]))

    def keep_alive(self, worker: int, ttl: float) -> bool:
        """Refresh the worker's liveness; False when it had lapsed (its members may have been swept)."""
        with translate_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.set(worker_alive_key(worker), b"1", px=int(ttl * 1000), get=True)
            pipe.sadd(MEMBER_WORKERS, str(worker))
            before, _ = pipe.execute()
        return before is not None

    def sweep(self, skip: int) -> list[tuple[str, str]]:
        """Remove the members of every worker whose liveness lapsed; (key, user id) of each
        user that left a channel for good (its `member_removed` went out)."""
        with translate_errors():
            workers = [_text(w) for w in self._client.smembers(MEMBER_WORKERS)]
            others = [w for w in workers if w != str(skip)]
            if not others:
                return []
            pipe = self._client.pipeline(transaction=False)
            for worker in others:
                pipe.exists(worker_alive_key(int(worker)))
            alive = pipe.execute()
            removed: list[tuple[str, str]] = []
            for worker, is_alive in zip(others, alive, strict=True):
                if not is_alive:
                    removed.extend(self._sweep_worker(int(worker)))
        return removed

    def stop(self, worker: int, joined: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """A clean stop: every (key, socket id) of the worker leaves, and its records go;
        (key, user id) of each user that left for good."""
        removed = []
        with translate_errors():
            for key, socket_id in joined:
                user = self._leave_one(key, socket_id)
                if user:
                    removed.append((key, user))
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(worker_members_key(worker))  # one key per DEL: a cluster puts them apart
            pipe.delete(worker_alive_key(worker))
            pipe.srem(MEMBER_WORKERS, str(worker))
            pipe.execute()
        return removed

    def _sweep_worker(self, worker: int) -> list[tuple[str, str]]:
        """Each entry is taken off the worker's set before it leaves, so a worker that comes
        back meanwhile and joins again keeps its new entries."""
        swept = 0
        removed = []
        records = worker_members_key(worker)
        for raw in list(self._client.sscan_iter(records, count=500)):
            if not self._client.srem(records, raw):
                continue  # another sweeper took it
            socket_id, _, key = _text(raw).partition(" ")
            user = self._leave_one(key, socket_id)
            swept += 1
            if user:
                removed.append((key, user))
        if not self._client.exists(records, worker_alive_key(worker)):
            self._client.srem(MEMBER_WORKERS, str(worker))
        if swept:
            log.info("swept %d presence connections of lapsed slave worker %d", swept, worker)
        return removed

    def _leave_one(self, key: str, socket_id: str) -> str:
        channel = split_pubsub_channel(key)[1]
        return _text(self._leave(keys=members_keys(key), args=[socket_id, key, channel]))

    def _forget(self, worker: int, entries: list[str]) -> None:
        try:
            self._client.srem(worker_members_key(worker), *entries)
        except REDIS_ERRORS:
            pass  # a stale entry only costs a sweep's idempotent leave
