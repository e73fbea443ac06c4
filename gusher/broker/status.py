"""Heartbeats and presence snapshots in Redis (`gusher:slave:…`, `gusher:master:…`, `gusher:presence:…`).

`gusher.broker.base.StatusStore` on one Redis server. What a report holds
and when it counts as dead is `gusher.ops`'s business; here they are opaque
bytes in hashes that expire by themselves, so a crashed slave's entries
vanish without anyone deleting them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

from gusher.broker.client import Client, translate_errors
from gusher.keys import presence_key, server_key, servers_index


class RedisStatus:
    """Heartbeats: one hash per server (field = worker), indexed by `gusher:slaves` / `gusher:masters`.

    Presence: one hash per app (field = worker).
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def write_heartbeat(
        self, server_id: str, worker_id: str, report: bytes, ttl: int, now: float, role: str = "slave"
    ) -> None:
        """Store the report, refresh the server hash's expiry and its score in its role's index."""
        key = server_key(role, server_id)
        with translate_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(key, worker_id, report)
            pipe.expire(key, ttl)
            pipe.zadd(servers_index(role), {server_id: now})
            pipe.execute()

    def heartbeat_reports(self, server_id: str, role: str = "slave") -> Mapping[bytes, bytes]:
        """HGETALL of the server's hash."""
        return self._fields(server_key(role, server_id))

    def delete_heartbeat_reports(self, server_id: str, workers: Iterable[bytes], role: str = "slave") -> None:
        """HDEL dead workers' fields."""
        self._delete_fields(server_key(role, server_id), workers)

    def remove_heartbeat(self, server_id: str, worker_id: str, role: str = "slave") -> None:
        """HDEL this worker's field; drop the server from the index once its hash is empty."""
        key = server_key(role, server_id)
        with translate_errors():
            self._client.hdel(key, worker_id)
            if not self._client.hlen(key):
                self._client.zrem(servers_index(role), server_id)

    def live_servers(self, since: float, role: str = "slave") -> dict[str, Mapping[bytes, bytes]]:
        """Prune the index of servers silent since before `since`, then read the others' hashes."""
        index = servers_index(role)
        with translate_errors():
            self._client.zremrangebyscore(index, "-inf", since)
            members = cast(list[bytes], self._client.zrange(index, 0, -1))
            server_ids = [member.decode() for member in members]
            pipe = self._client.pipeline(transaction=False)
            for server_id in server_ids:
                pipe.hgetall(server_key(role, server_id))
            reports = pipe.execute()
        return dict(zip(server_ids, reports, strict=True))

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
