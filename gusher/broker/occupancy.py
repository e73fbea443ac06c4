"""Which channels are occupied, counted across every slave worker, and swept after a crash.

Pusher's `channel_occupied` goes out when a channel gets its first subscriber
anywhere and `channel_vacated` when it loses its last one. Each slave worker
only knows its own subscribers, and soketi, deciding per node, sent
`channel_vacated` while users were still subscribed through another node
(soketi #616). So the set of workers that have a subscriber on a channel lives
in Redis (`gusher.keys.occupancy_key`), and one Lua script adds a worker to it
and one removes it: each returns 1 only to the worker whose change took the set
from empty to one or from one to empty, so exactly one worker sends each
event, whatever the slaves do at the same moment.

A worker calls `occupy` when a channel gets its first subscriber in the worker,
and `vacate` after its last one there (the hub keeps that count already: one
broker subscription per key per worker).

Crashes: each worker keeps the set of keys it occupies
(`gusher.keys.worker_occupancy_key`), written before the channel's set, and
is listed in `gusher.keys.OCCUPANCY_WORKERS`. Any live worker's `sweep`
vacates the keys of a worker whose liveness key (`gusher.keys.worker_alive_key`,
the one presence members use, refreshed by the worker's heartbeat) is gone,
through the same script, and returns the keys that became vacant so their
`channel_vacated` goes out once. So a worker's liveness key must be set
before its first `occupy`, and kept fresh while it occupies anything (else
the others sweep it at once). A worker that finds its own liveness lapsed (it
stalled past the deadline and may have been swept) calls `restore` with the
keys it still holds.

Left open: a lapsed worker that comes back in the instant between a
sweeper's check of its liveness and the sweeper taking a key off its record
keeps the channel but loses the record entry, so a later crash of it leaves
that channel occupied. It takes a stall past the deadline and that timing;
the cost is one missing `channel_vacated`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from gusher.broker.client import REDIS_ERRORS, Client, translate_errors
from gusher.keys import OCCUPANCY_WORKERS, occupancy_key, worker_alive_key, worker_occupancy_key

log = logging.getLogger(__name__)

# KEYS: the channel's set of workers. ARGV: worker id. 1 when the set was empty before.
_OCCUPY = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 1 then
  return 1
end
return 0
"""

# KEYS: the channel's set of workers. ARGV: worker id. 1 when this emptied the set
# (Redis deletes an empty set, so nothing is left behind).
_VACATE = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[1]) == 0 then
  return 1
end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisOccupancy:
    """Channel occupancy across slave workers on one Redis server.

    Every method may raise `BackendUnavailable` (translated where redis-py
    errors enter) and may block on Redis: call them from the task pool or a
    service loop, never from an event-loop callback.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._occupy = client.register_script(_OCCUPY)
        self._vacate = client.register_script(_VACATE)

    def occupy(self, key: str, worker: int) -> bool:
        """`worker` has a subscriber on the pub/sub key `key`; True when no worker had one before.

        Idempotent: occupying a key the worker occupies already returns False.
        The worker's record comes first, so a sweep after a crash in between
        finds the key.
        """
        with translate_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.sadd(worker_occupancy_key(worker), key)
            pipe.sadd(OCCUPANCY_WORKERS, str(worker))
            pipe.execute()
            return bool(self._occupy(keys=[occupancy_key(key)], args=[worker]))

    def vacate(self, key: str, worker: int) -> bool:
        """`worker` has no subscriber left on `key`; True when it was the last worker anywhere.

        False when another worker still has one, or when this worker did not
        occupy `key` (already swept, or vacated twice): so `channel_vacated`
        is sent once.
        """
        with translate_errors():
            vacant = bool(self._vacate(keys=[occupancy_key(key)], args=[worker]))
        self._forget(worker, key)
        return vacant

    def is_occupied(self, key: str) -> bool:
        """Whether any slave worker has a subscriber on `key` (Pusher's `occupied` of a channel)."""
        with translate_errors():
            return bool(self._client.exists(occupancy_key(key)))

    def sweep(self, skip: int) -> list[str]:
        """Vacate the keys of every worker but `skip` whose liveness lapsed; the keys left vacant.

        A sweep cut short by Redis returns what it vacated so far (their
        `channel_vacated` still goes out); the rest waits for the next sweep.
        """
        with translate_errors():
            workers = [_text(w) for w in self._client.smembers(OCCUPANCY_WORKERS)]
            others = [int(w) for w in workers if w != str(skip)]
            if not others:
                return []
            pipe = self._client.pipeline(transaction=False)
            for worker in others:
                pipe.exists(worker_alive_key(worker))
            alive = pipe.execute()
        vacated: list[str] = []
        try:
            for worker, is_alive in zip(others, alive, strict=True):
                if not is_alive:
                    self._sweep_worker(worker, vacated)
        except REDIS_ERRORS as exc:
            log.warning("occupancy sweep cut short: %s", exc.__class__.__name__)
        return vacated

    def restore(self, worker: int, keys: Iterable[str]) -> list[str]:
        """After the worker's liveness lapsed: occupy `keys` again; the keys that became occupied."""
        return [key for key in keys if self.occupy(key, worker)]

    def stop(self, worker: int, keys: Iterable[str]) -> list[str]:
        """A clean stop: the worker vacates `keys` and whatever its record still holds; the keys
        left vacant (send their `channel_vacated`). The worker's liveness key is not touched:
        its owner removes it."""
        with translate_errors():
            records = worker_occupancy_key(worker)
            held = {_text(raw) for raw in self._client.sscan_iter(records, count=500)}
            vacated = [
                key
                for key in sorted(held.union(keys))
                if self._vacate(keys=[occupancy_key(key)], args=[worker])
            ]
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(records)
            pipe.srem(OCCUPANCY_WORKERS, str(worker))
            pipe.execute()
        return vacated

    def _sweep_worker(self, worker: int, vacated: list[str]) -> None:
        """Vacate each of a lapsed worker's keys, then take it off the worker's record.

        In that order, a sweep cut short leaves the rest in the record, and two
        sweepers at once report each key once between them (the script says 1
        to one of them only). A worker that comes back sets its liveness key
        before it restores its keys: finding it alive after a vacate, the
        sweeper occupies the key for it again, reports the key only when
        someone else saw it occupied meanwhile, and leaves the worker alone.
        """
        records = worker_occupancy_key(worker)
        swept = 0
        for raw in list(self._client.sscan_iter(records, count=500)):
            key = _text(raw)
            vacant = bool(self._vacate(keys=[occupancy_key(key)], args=[worker]))
            if self._client.exists(worker_alive_key(worker)):
                if vacant and not self._occupy(keys=[occupancy_key(key)], args=[worker]):
                    vacated.append(key)  # occupied again by another, who said so
                return
            self._client.srem(records, raw)
            swept += 1
            if vacant:
                vacated.append(key)
        if not self._client.exists(records, worker_alive_key(worker)):
            self._client.srem(OCCUPANCY_WORKERS, str(worker))
        if swept:
            log.info("swept %d occupied channels of lapsed slave worker %d", swept, worker)

    def _forget(self, worker: int, key: str) -> None:
        try:
            self._client.srem(worker_occupancy_key(worker), key)
        except REDIS_ERRORS:
            pass  # a stale entry only costs a sweep's idempotent vacate
