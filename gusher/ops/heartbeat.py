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
from typing import Any

import orjson
import psutil

from gusher import __version__
from gusher.broker.base import StatusStore
from gusher.config import Settings, parse_listen
from gusher.core.metrics import COUNTERS
from gusher.ops.periodic import Periodic

log = logging.getLogger(__name__)

DEAD_AFTER_INTERVALS = 3
# Beyond the seed's fields, slaveinfos sums these over a slave's workers.
COUNTED = ("subscriptions", *COUNTERS)


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
    # ext: the workers' counters, summed (the seed's fields above keep their names and types).
    for name in COUNTED:
        entry[name] = sum(_as_int(r.get(name)) for r in live)
    return entry, dead


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def slave_infos(status: StatusStore, interval: float) -> dict[str, dict[str, Any]]:
    """Every live slave's merged entry, keyed `{ip}@{port}` (seed shape)."""
    now = time.time()
    dead_after = interval * DEAD_AFTER_INTERVALS
    infos = {}
    for slave_id, fields in status.live_servers(now - dead_after).items():
        entry, _ = merge_workers(fields, now, dead_after)
        if entry is not None:
            infos[slave_id] = entry
    return infos


class Heartbeat:
    """Publishes one worker's stats every interval: a slave's (slaveinfos), or a master's (/metrics)."""

    def __init__(
        self,
        settings: Settings,
        status: StatusStore,
        stats: Callable[[], Mapping[str, Any]],
        role: str = "slave",
    ) -> None:
        self.settings = settings
        self.status = status
        self.stats = stats
        self.role = role
        self.listen = settings.api_listen if role == "slave" else settings.master_api_listen
        _, port = parse_listen(self.listen)
        self.ip = external_ipv4(settings.public_ip)
        self.slave_id = f"{self.ip}@{port}"
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._process = psutil.Process()
        self.loop = Periodic("heartbeat", settings.heartbeat_interval, self.beat)

    def report(self) -> dict[str, Any]:
        """This worker's fields, in the seed's names."""
        counts = self.stats()
        return {
            "ip": self.ip,
            "local_listen": self.listen,
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
        """Write this worker's report, keep its server listed, prune dead siblings."""
        dead_after = self.settings.heartbeat_interval * DEAD_AFTER_INTERVALS
        ttl = max(1, int(dead_after + 1))
        report = orjson.dumps(self.report())
        self.status.write_heartbeat(self.slave_id, self.worker_id, report, ttl, time.time(), self.role)
        fields = self.status.heartbeat_reports(self.slave_id, self.role)
        _, dead = merge_workers(fields, time.time(), dead_after)
        self.status.delete_heartbeat_reports(self.slave_id, dead, self.role)

    def remove(self) -> None:
        """Delete this worker's report at once (clean stop)."""
        try:
            self.status.remove_heartbeat(self.slave_id, self.worker_id, self.role)
        except Exception as exc:
            log.warning("could not remove heartbeat of %s: %s", self.slave_id, exc)

    def start(self) -> None:
        """Start beating."""
        self.loop.start()

    def stop(self) -> None:
        """Stop beating and remove the report."""
        self.loop.stop()
        self.remove()
