"""Fan-out through Redis: one subscription per channel per worker, every worker and slave delivers."""

from __future__ import annotations

import json

import orjson
import redis as redis_lib

from tests.support import Client, GunicornProcess, allow, push, wait_until


def numsub(redis_client: redis_lib.Redis, channel: str) -> int:
    return int(redis_client.pubsub_numsub(channel)[0][1])


def worker_connections(redis_client: redis_lib.Redis, slave: GunicornProcess) -> dict[str, int]:
    """Connections per worker of `slave`, from its heartbeat hash."""
    for key in redis_client.scan_iter("gusher:slave:*"):
        fields = redis_client.hgetall(key)
        reports = [orjson.loads(raw) for raw in fields.values()]
        if reports and reports[0]["local_listen"] == f"127.0.0.1:{slave.port}":
            return {r["pid"]: r["connections"] for r in reports}
    return {}


def open_on_every_worker(
    slave: GunicornProcess, app_key: str, auth: str, redis_client, clients
) -> list[Client]:
    """Open clients until the heartbeats show each worker holding some (kernel spreads accepts)."""
    opened: list[Client] = []
    for _ in range(20):
        for _ in range(10):
            client = Client(slave.ws_url, app_key, auth)
            clients.append(client)
            opened.append(client)
        counts = wait_until(
            lambda: (
                worker_connections(redis_client, slave)
                if sum(worker_connections(redis_client, slave).values()) >= len(opened)
                else None
            ),
            5,
        )
        if len([c for c in counts.values() if c > 0]) >= slave.workers:
            return opened
    raise AssertionError("connections never reached every worker")


def test_every_worker_delivers_with_one_redis_subscription_each(
    slave, master, app_key, redis_client, clients
) -> None:
    """Clients spread over 2 workers all get a push; Redis sees one subscriber per worker, not per client."""
    channel = "all"
    group = open_on_every_worker(slave, app_key, allow("u", channel), redis_client, clients)
    for client in group:
        assert client.subscribe(channel)["event"] == "gusher.subscribe_succeeded"
    assert numsub(redis_client, f"{app_key}@{channel}") == slave.workers
    assert push(master.url, app_key, channel, "ev", "to-all").status_code == 200
    for client in group:
        assert client.recv_json() == {"channel": channel, "event": "ev", "data": "to-all"}
    for client in group:
        assert client.unsubscribe(channel)["event"] == "gusher.unsubscribe_succeeded"
    wait_until(lambda: numsub(redis_client, f"{app_key}@{channel}") == 0, 5)


def test_churning_subscriptions_settle_to_what_clients_want(slave, app_key, redis_client, clients) -> None:
    """Subscribe/unsubscribe in quick succession: Redis ends with one subscription, then none."""
    client = Client(slave.ws_url, app_key, allow("u", "churn"))
    clients.append(client)
    for i in range(10):  # sent back to back: the worker syncs with Redis while they arrive
        client.send_json({"event": "gusher.subscribe", "data": {"id": f"s{i}", "channel": "churn"}})
        client.send_json({"event": "gusher.unsubscribe", "data": {"id": f"u{i}", "channel": "churn"}})
    client.send_json({"event": "gusher.subscribe", "data": {"id": "last", "channel": "churn"}})
    replies = [client.recv_json()["event"] for _ in range(21)]
    assert replies == ["gusher.subscribe_succeeded", "gusher.unsubscribe_succeeded"] * 10 + [
        "gusher.subscribe_succeeded"
    ]
    wait_until(lambda: numsub(redis_client, f"{app_key}@churn") == 1, 5)
    redis_client.publish(f"{app_key}@churn", b'{"channel":"churn","event":"e","data":"after"}')
    assert client.recv_json() == {"channel": "churn", "event": "e", "data": "after"}
    assert client.unsubscribe("churn", "bye")["event"] == "gusher.unsubscribe_succeeded"
    wait_until(lambda: numsub(redis_client, f"{app_key}@churn") == 0, 5)


def test_disconnecting_last_subscriber_unsubscribes_the_worker(slave, app_key, redis_client) -> None:
    """When the last local subscriber goes away without unsubscribing, the worker's subscription goes too."""
    client = Client(slave.ws_url, app_key, allow("u", "leave"))
    client.subscribe("leave")
    assert numsub(redis_client, f"{app_key}@leave") == 1
    client.ws.sock.close()  # no Close frame: the slave must notice EOF
    wait_until(lambda: numsub(redis_client, f"{app_key}@leave") == 0, 5)


def test_several_slaves_all_deliver(redis_server, master, app_key, redis_client, clients) -> None:
    """Two more slaves on the same Redis: a push reaches clients of every slave."""
    slaves = [GunicornProcess("slave", redis_server.addr, workers=1).start() for _ in range(2)]
    try:
        group = []
        for process in slaves:
            client = Client(process.ws_url, app_key, allow("u", "multi"))
            clients.append(client)
            assert client.subscribe("multi")["event"] == "gusher.subscribe_succeeded"
            group.append(client)
        push(master.url, app_key, "multi", "ev", "everywhere")
        for client in group:
            assert client.recv_json()["data"] == "everywhere"
    finally:
        for process in slaves:
            process.stop()


def test_burst_is_delivered_complete_and_in_order(slave, app_key, redis_client, clients) -> None:
    """A burst of 500 messages to 20 subscribers: every one arrives, in order (coalesced writes)."""
    group = []
    for _ in range(20):
        client = Client(slave.ws_url, app_key, allow("u", "burst"))
        clients.append(client)
        client.subscribe("burst")
        group.append(client)
    pipe = redis_client.pipeline(transaction=False)
    for i in range(500):
        pipe.publish(f"{app_key}@burst", json.dumps({"channel": "burst", "event": "n", "data": i}))
    pipe.execute()
    for client in group:
        assert [client.recv_json()["data"] for _ in range(500)] == list(range(500))
