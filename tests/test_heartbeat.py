"""Slave heartbeats and the master's `slaveinfos`, with real processes dying and stopping."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from gusher.ops.heartbeat import COUNTED, merge_workers
from tests.support import Client, GunicornProcess, allow, wait_until

SEED_FIELDS = {
    "ip": str,
    "local_listen": str,
    "version": str,
    "runtime_version": str,
    "cpu": int,
    "usage-memory": int,
    "goroutines": int,
    "connections": int,
    "send_interval": str,
    "update_time": int,
}


def entry_of(master: GunicornProcess, slave: GunicornProcess) -> tuple[str, dict] | None:
    infos = requests.get(f"{master.url}/api/system/slaveinfos", timeout=5).json()
    for key, entry in infos.items():
        if entry["local_listen"] == f"127.0.0.1:{slave.port}":
            return key, entry
    return None


@pytest.fixture
def own_slave(redis_server):
    """A slave of this test's own, so that no other test's connections count."""
    process = GunicornProcess("slave", redis_server.addr, workers=2).start()
    yield process
    process.stop()


def test_slaveinfos_has_the_seed_shape(master, own_slave, app_key, clients) -> None:
    """Each live slave is `{ip}@{port}` with every seed field, of the seed's type, summed over workers."""
    slave = own_slave
    for _ in range(3):
        clients.append(Client(slave.ws_url, app_key, allow("u", "c")))
    key, entry = wait_until(lambda: (e := entry_of(master, slave)) and e[1]["connections"] >= 3 and e, 10)
    assert key == f"{entry['ip']}@{slave.port}"
    for field, kind in SEED_FIELDS.items():
        assert type(entry[field]) is kind, field
    # Issue 15: the workers' counters, summed, beside the seed's fields (ext: fields may be added).
    assert set(entry) == set(SEED_FIELDS) | set(COUNTED)
    assert entry["connections_total"] >= 3 and all(type(entry[name]) is int for name in COUNTED)
    assert entry["send_interval"] == "1"
    assert entry["connections"] == 3
    assert entry["goroutines"] > 0 and entry["usage-memory"] > 10_000_000
    assert abs(entry["update_time"] - time.time()) < 5


def test_killed_worker_disappears_and_clean_stop_removes_at_once(redis_server, master, app_key) -> None:
    """SIGKILL of a worker drops its connections within 3 intervals; SIGTERM removes the slave at once."""
    slave = GunicornProcess("slave", redis_server.addr, workers=2).start()
    try:
        clients = [Client(slave.ws_url, app_key, allow("u", "c")) for _ in range(12)]
        wait_until(lambda: (e := entry_of(master, slave)) and e[1]["connections"] == 12, 10)
        victim = slave.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        # The victim's clients are disconnected; the totals drop within three 1 s intervals.
        entry = wait_until(lambda: (e := entry_of(master, slave)) and e[1]["connections"] < 12 and e, 4.5)
        assert entry is not None
        slave.stop(signal.SIGTERM)
        assert entry_of(master, slave) is None
        for client in clients:
            client.close()
    finally:
        slave.stop()


def test_merge_workers_sums_live_and_reports_dead() -> None:
    """Pure merge: live workers are summed, stale or broken reports are returned for pruning."""
    now = 1000.0
    base = {
        "ip": "10.0.0.1",
        "local_listen": ":8000",
        "version": "v",
        "runtime_version": "r",
        "cpu": 2,
        "send_interval": "5",
    }
    import orjson

    fields = {
        b"w1": orjson.dumps(
            {**base, "usage-memory": 10, "goroutines": 3, "connections": 4, "update_time": 999}
        ),
        b"w2": orjson.dumps(
            {**base, "usage-memory": 5, "goroutines": 2, "connections": 1, "update_time": 998}
        ),
        b"w3": orjson.dumps(
            {**base, "usage-memory": 7, "goroutines": 9, "connections": 9, "update_time": 900}
        ),
        b"w4": b"not json",
    }
    entry, dead = merge_workers(fields, now, 15)
    assert entry is not None
    assert (entry["usage-memory"], entry["goroutines"], entry["connections"]) == (15, 5, 5)
    assert entry["deliveries"] == 0 and entry["subscriptions"] == 0
    assert entry["update_time"] == 999
    assert sorted(dead) == [b"w3", b"w4"]
    assert merge_workers({b"w3": fields[b"w3"]}, now, 15) == (None, [b"w3"])


def test_sigterm_closes_clients_with_1001_and_exits_promptly(redis_server, app_key) -> None:
    """A stopped slave closes every WebSocket with 1001 and a reason, well within the graceful timeout."""
    slave = GunicornProcess("slave", redis_server.addr, workers=2).start()
    try:
        clients = [Client(slave.ws_url, app_key, allow("u", "c")) for _ in range(10)]
        for client in clients:
            client.subscribe("c")
        started = time.monotonic()
        assert slave.process is not None
        process = slave.process
        process.send_signal(signal.SIGTERM)
        for client in clients:
            code, reason = client.recv_close()
            assert code == 1001 and reason
        process.wait(10)
        assert time.monotonic() - started < 5
    finally:
        slave.stop()
