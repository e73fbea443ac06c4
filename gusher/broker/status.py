"""Slave heartbeats and presence snapshots in Redis (`gusher:slave:…`, `gusher:presence:…`).

`gusher.broker.base.StatusStore` on one Redis server. What a report holds
and when it counts as dead is `gusher.ops`'s business; here they are opaque
bytes in hashes that expire by themselves, so a crashed slave's entries
vanish without anyone deleting them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

import redis

from gusher.broker.client import translate_errors
from gusher.keys import SLAVES_INDEX, presence_key, slave_key


class RedisStatus:
    """Heartbeats: one hash per slave (field = worker), indexed by the sorted set `gusher:slaves`.

    Presence: one hash per app (field = worker).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def write_heartbeat(self, slave_id: str, worker_id: str, report: bytes, ttl: int, now: float) -> None:
        """Store the report, refresh the slave hash's expiry and its score in the index."""
        key = slave_key(slave_id)
        with translate_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(key, worker_id, report)
            pipe.expire(key, ttl)
            pipe.zadd(SLAVES_INDEX, {slave_id: now})
            pipe.execute()

    def heartbeat_reports(self, slave_id: str) -> Mapping[bytes, bytes]:
        """HGETALL of the slave's hash."""
        return self._fields(slave_key(slave_id))

    def delete_heartbeat_reports(self, slave_id: str, workers: Iterable[bytes]) -> None:
        """HDEL dead workers' fields."""
        self._delete_fields(slave_key(slave_id), workers)

    def remove_heartbeat(self, slave_id: str, worker_id: str) -> None:
        """HDEL this worker's field; drop the slave from the index once its hash is empty."""
        key = slave_key(slave_id)
        with translate_errors():
            self._client.hdel(key, worker_id)
            if not self._client.hlen(key):
                self._client.zrem(SLAVES_INDEX, slave_id)

    def live_slaves(self, since: float) -> dict[str, Mapping[bytes, bytes]]:
        """Prune the index of slaves silent since before `since`, then read the others' hashes."""
        with translate_errors():
            self._client.zremrangebyscore(SLAVES_INDEX, "-inf", since)
            members = cast(list[bytes], self._client.zrange(SLAVES_INDEX, 0, -1))
            slave_ids = [member.decode() for member in members]
            pipe = self._client.pipeline(transaction=False)
            for slave_id in slave_ids:
                pipe.hgetall(slave_key(slave_id))
            reports = pipe.execute()
        return dict(zip(slave_ids, reports, strict=True))

    def write_presence(
        self, worker_id: str, reports: Mapping[str, bytes], ttl: int, gone: Iterable[str]
    ) -> None:
        """One pipeline: each app's report with the hash's expiry, and HDELs for the apps left."""
        with translate_errors():
            pipe = self._client.pipeline(transaction=False)
            for app_key, report in reports.items():
                key = presence_key(app_key)
                pipe.hset(key, worker_id, report)
                pipe.expire(key, ttl)
            for app_key in gone:
                pipe.hdel(presence_key(app_key), worker_id)
            pipe.execute()

    def presence_reports(self, app_key: str) -> Mapping[bytes, bytes]:
        """HGETALL of the app's presence hash."""
        return self._fields(presence_key(app_key))

    def delete_presence_reports(self, app_key: str, workers: Iterable[bytes]) -> None:
        """HDEL dead workers' fields."""
        self._delete_fields(presence_key(app_key), workers)

    def _fields(self, key: str) -> Mapping[bytes, bytes]:
        with translate_errors():
            return cast(Mapping[bytes, bytes], self._client.hgetall(key))

    def _delete_fields(self, key: str, fields: Iterable[bytes]) -> None:
        names = list(fields)
        if names:
            with translate_errors():
                self._client.hdel(key, *names)
