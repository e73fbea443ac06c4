"""Slave heartbeats in Redis, and the master's merge into the seed's `slaveinfos`.

Each slave worker writes its own stats as one field (its worker id) of the hash
`gusher:slave:{ip}@{port}` every `RETURN_SERVERINFO_INTERVAL` seconds, and
scores the slave in the sorted set `gusher:slaves` with the time. The hash
expires after three intervals, so a dead slave vanishes from Redis by itself;
a dead worker's field is ignored by the master once it is three intervals old
and pruned by its siblings. A worker that stops cleanly deletes its field.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import gevent
import orjson
import psutil
import redis

from gusher import __version__
from gusher.apps import backend
from gusher.config import Settings, parse_listen
from gusher.keys import SLAVES_INDEX, slave_key

log = logging.getLogger(__name__)

DEAD_AFTER_INTERVALS = 3


def external_ipv4(configured: str = "") -> str:
    """The address other machines reach this slave at (`GUSHER_PUBLIC_IP` wins)."""
    if configured:
        return configured
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return "127.0.0.1"


def merge_workers(
    fields: Mapping[bytes, bytes], now: float, dead_after: float
) -> tuple[dict[str, Any] | None, list[bytes]]:
    """Merge one slave's worker reports into its `slaveinfos` entry — pure.

    Returns:
        The merged entry (None when no worker is alive) and the fields of dead
        workers, to prune.
    """
    live: list[dict[str, Any]] = []
    dead: list[bytes] = []
    for field, raw in fields.items():
        try:
            report = orjson.loads(raw)
            fresh = now - float(report["update_time"]) <= dead_after
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            fresh = False
        if fresh:
            live.append(report)
        else:
            dead.append(field)
    if not live:
        return None, dead
    newest = max(live, key=lambda r: r["update_time"])
    entry = {
        "ip": newest["ip"],
        "local_listen": newest["local_listen"],
        "version": newest["version"],
        "runtime_version": newest["runtime_version"],
        "cpu": newest["cpu"],
        "usage-memory": sum(int(r["usage-memory"]) for r in live),
        "goroutines": sum(int(r["goroutines"]) for r in live),
        "connections": sum(int(r["connections"]) for r in live),
        "send_interval": newest["send_interval"],
        "update_time": int(newest["update_time"]),
    }
    return entry, dead


def slave_infos(client: redis.Redis, interval: float) -> dict[str, dict[str, Any]]:
    """Every live slave's merged entry, keyed `{ip}@{port}` (seed shape)."""
    now = time.time()
    dead_after = interval * DEAD_AFTER_INTERVALS
    with backend():
        client.zremrangebyscore(SLAVES_INDEX, "-inf", now - dead_after)
        members = cast(list[bytes], client.zrange(SLAVES_INDEX, 0, -1))
        slave_ids = [member.decode() for member in members]
        pipe = client.pipeline(transaction=False)
        for slave_id in slave_ids:
            pipe.hgetall(slave_key(slave_id))
        reports = pipe.execute()
    infos = {}
    for slave_id, fields in zip(slave_ids, reports, strict=True):
        entry, _ = merge_workers(fields, now, dead_after)
        if entry is not None:
            infos[slave_id] = entry
    return infos


class Heartbeat:
    """Publishes one slave worker's stats every interval."""

    def __init__(
        self, settings: Settings, client: redis.Redis, stats: Callable[[], Mapping[str, int]]
    ) -> None:
        self.settings = settings
        self.client = client
        self.stats = stats
        _, port = parse_listen(settings.api_listen)
        self.ip = external_ipv4(settings.public_ip)
        self.slave_id = f"{self.ip}@{port}"
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._process = psutil.Process()
        self.greenlet: gevent.Greenlet | None = None

    def report(self) -> dict[str, Any]:
        """This worker's fields, in the seed's names."""
        counts = self.stats()
        return {
            "ip": self.ip,
            "local_listen": self.settings.api_listen,
            "version": __version__,
            "runtime_version": f"Python {platform.python_version()}",
            "cpu": psutil.cpu_count() or 1,
            "usage-memory": self._process.memory_info().rss,
            # The seed's goroutines; counted by the worker, not by scanning the
            # heap (gc.get_objects() blocked the loop ~40 ms per beat at 10k clients).
            "goroutines": counts.get("greenlets", 0),
            "connections": counts.get("connections", 0),
            "send_interval": self.settings.return_serverinfo_interval,
            "update_time": int(time.time()),
            "pid": os.getpid(),
            **{k: v for k, v in counts.items() if k not in ("connections", "greenlets")},
        }

    def beat(self) -> None:
        """Write this worker's report and refresh the slave's expiry."""
        interval = self.settings.heartbeat_interval
        key = slave_key(self.slave_id)
        with backend():
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, self.worker_id, orjson.dumps(self.report()))
            pipe.expire(key, max(1, int(interval * DEAD_AFTER_INTERVALS + 1)))
            pipe.zadd(SLAVES_INDEX, {self.slave_id: time.time()})
            pipe.execute()
            self._prune(key, interval * DEAD_AFTER_INTERVALS)

    def _prune(self, key: str, dead_after: float) -> None:
        fields = cast(Mapping[bytes, bytes], self.client.hgetall(key))
        _, dead = merge_workers(fields, time.time(), dead_after)
        if dead:
            self.client.hdel(key, *dead)

    def remove(self) -> None:
        """Delete this worker's report at once (clean stop)."""
        key = slave_key(self.slave_id)
        try:
            with backend():
                self.client.hdel(key, self.worker_id)
                if not self.client.hlen(key):
                    self.client.zrem(SLAVES_INDEX, self.slave_id)
        except Exception as exc:
            log.warning("could not remove heartbeat %s: %s", key, exc)

    def start(self) -> None:
        """Spawn the heartbeat greenlet."""
        self.greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop beating and remove the report."""
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
        self.remove()

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # Redis down: keep trying, say so once per beat
                log.warning("heartbeat failed: %s", exc)
            gevent.sleep(self.settings.heartbeat_interval)
