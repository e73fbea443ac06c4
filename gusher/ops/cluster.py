"""The cluster as the admin console shows it: every live server and worker of both roles.

Read from the heartbeats (`gusher.ops.heartbeat`), like `slaveinfos` and the
master's `/metrics`, so it is at most one heartbeat interval old and costs one
round trip per role. `view` is pure; `read` does the I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gusher.broker.base import StatusStore
from gusher.ops.exposition import live_reports, summed
from gusher.ops.heartbeat import DEAD_AFTER_INTERVALS

# What the console shows of each worker (the reports hold more: histograms, every counter).
WORKER_FIELDS = (
    "pid",
    "connections",
    "subscriptions",
    "usage-memory",
    "goroutines",
    "deliveries",
    "messages_in",
    "slow_consumer_drops",
    "ping_timeouts",
    "handshakes_refused_auth",
    "pushes",
    "pushes_refused",
    "publications",
    "update_time",
)
# Totals the console turns into rates (it polls and takes differences).
TOTALS = ("connections", "subscriptions", "deliveries", "messages_in", "pushes", "publications")


def _servers(
    servers: Mapping[str, Mapping[bytes, bytes]], now: float, interval: float
) -> list[dict[str, Any]]:
    out = []
    for server_id, fields in sorted(servers.items()):
        reports = sorted(live_reports(fields, now, interval), key=lambda r: r.get("pid", 0))
        if not reports:
            continue
        newest, total = max(reports, key=lambda r: r.get("update_time", 0)), summed(reports)
        out.append(
            {
                "id": server_id,
                "version": newest.get("version", ""),
                "runtime_version": newest.get("runtime_version", ""),
                "listen": newest.get("local_listen", ""),
                "workers": [{name: r.get(name, 0) for name in WORKER_FIELDS} for r in reports],
                "totals": {name: total.get(name, 0) for name in (*TOTALS, "usage-memory")},
            }
        )
    return out


def view(
    slaves: Mapping[str, Mapping[bytes, bytes]],
    masters: Mapping[str, Mapping[bytes, bytes]],
    now: float,
    interval: float,
) -> dict[str, Any]:
    """Both roles' live servers with their workers, and the cluster's totals — pure."""
    slave_rows, master_rows = _servers(slaves, now, interval), _servers(masters, now, interval)
    totals = {name: 0 for name in TOTALS}
    for row in (*slave_rows, *master_rows):
        for name in TOTALS:
            totals[name] += int(row["totals"].get(name, 0))
    return {
        "time": now,
        "interval": interval,
        "slaves": slave_rows,
        "masters": master_rows,
        "workers": sum(len(row["workers"]) for row in (*slave_rows, *master_rows)),
        "totals": totals,
    }


def read(status: StatusStore, interval: float) -> dict[str, Any]:
    """The cluster now."""
    now = time.time()
    since = now - interval * DEAD_AFTER_INTERVALS
    return view(status.live_servers(since, "slave"), status.live_servers(since, "master"), now, interval)
