"""Issue 12's proofs, end to end: clients of clients/js/gusher.js behind the tested nginx with two
slaves, steady pushes, one slave SIGKILLed mid-way; every client ends with every message exactly
once, in order. In headless Chromium, and from Node with a few hundred clients.

Also the Redis cases: restarted with AOF (same epoch, nothing lost), and without persistence
(a new epoch: clients are told `recovered: false`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis as redis_lib
import requests

from gusher.embedded import EmbeddedRedis
from tests.browser import needs_chromium
from tests.nginx import Nginx, needs_nginx
from tests.support import ROOT, Client, GunicornProcess, Webhook, allow, new_app_key, push, wait_until

CLIENT_DIR = ROOT / "clients" / "js"
NODE = shutil.which("node")
RATE = 100  # pushes per second
SECONDS = 8


class Cluster:
    """A master, two slaves (one worker each) and nginx in front, on one Redis."""

    def __init__(self, redis_addr: str) -> None:
        self.master = GunicornProcess("master", redis_addr, workers=1).start()
        self.slaves = [
            GunicornProcess(
                "slave", redis_addr, workers=1, ping_interval=1, max_recovered_messages=2000
            ).start()
            for _ in range(2)
        ]
        self.nginx = Nginx([s.port for s in self.slaves], self.master.port, read_timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx.port}"

    def stop(self) -> None:
        self.nginx.stop()
        for process in (*self.slaves, self.master):
            process.stop()

    def kill_a_slave_with_clients(self) -> GunicornProcess:
        """SIGKILL the slave holding most connections: its master and its worker, at once."""

        def connections(slave: GunicornProcess) -> int:
            page = requests.get(f"{slave.url}/metrics", timeout=5).text
            line = next(line for line in page.splitlines() if line.startswith("gusher_connections "))
            return int(float(line.split()[1]))

        victim = max(self.slaves, key=connections)
        assert connections(victim) > 0
        assert victim.process is not None
        pids = [victim.process.pid, *victim.worker_pids()]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        victim.process.wait(10)
        return victim


@pytest.fixture
def cluster(redis_server) -> Iterator[Cluster]:
    running = Cluster(redis_server.addr)
    yield running
    running.stop()


@pytest.fixture
def history_app(redis_client: redis_lib.Redis, webhook: Webhook) -> str:
    key = new_app_key("lost")
    redis_client.hset(key, mapping={"url": webhook.url, "history_size": "5000", "history_ttl": "600"})
    return key


def steady_pushes(master_url: str, app_key: str, total: int, kill_at: int, kill) -> None:
    """`total` pushes at RATE per second; `kill()` after push number `kill_at`."""
    session = requests.Session()
    started = time.monotonic()
    for n in range(1, total + 1):
        response = session.post(f"{master_url}/api/push/{app_key}/c/tick", params={"data": n}, timeout=5)
        assert response.ok, response.text
        if n == kill_at:
            kill()
        pause = started + n / RATE - time.monotonic()
        if pause > 0:
            time.sleep(pause)


@needs_nginx
@needs_chromium
def test_browsers_lose_nothing_when_their_slave_is_killed(browser, cluster, history_app) -> None:
    pages = []
    for index in range(4):
        page = browser.new_page()
        page.goto(f"{cluster.url}/gusher.js")  # any page of nginx's origin: the module imports from it
        page.evaluate(
            """async ([app, auth]) => {
                const { Gusher } = await import("/gusher.js");
                window.received = []; window.events = [];
                const gusher = new Gusher(location.origin, { app, auth, minReconnectDelay: 200 });
                const sub = gusher.subscribe("c");
                sub.on("message", (m) => window.received.push(m.offset));
                sub.on("subscribed", (r) => window.events.push(["subscribed", r.recovered]));
                sub.on("unrecovered", () => window.events.push(["unrecovered"]));
                await new Promise((resolve) => sub.on("subscribed", resolve));
            }""",
            [history_app, allow(f"browser{index}", "c")],
        )
        pages.append(page)
    total = RATE * SECONDS
    steady_pushes(cluster.master.url, history_app, total, total // 2, cluster.kill_a_slave_with_clients)
    for page in pages:
        wait_until(lambda page=page: page.evaluate("window.received.length") >= total, 20)
        assert page.evaluate("window.received") == list(range(1, total + 1))
        events = page.evaluate("window.events")
        assert ["unrecovered"] not in events, events
    assert any(["subscribed", True] in page.evaluate("window.events") for page in pages), "some resumed"
    for page in pages:
        page.close()


@needs_nginx
@pytest.mark.skipif(NODE is None and not os.environ.get("GUSHER_CI"), reason="node is not installed")
def test_node_clients_lose_nothing_when_their_slave_is_killed(cluster, history_app) -> None:
    """300 clients of the same module in Node (ws), through nginx."""
    if not (CLIENT_DIR / "node_modules" / "ws").exists():
        assert not os.environ.get("GUSHER_CI"), "`make test` runs `npm ci` in clients/js"
        pytest.skip("clients/js has no node_modules (`make test` installs them when npm is there)")
    total, count = RATE * SECONDS, 300
    node = subprocess.Popen(
        [
            NODE or "node",
            str(CLIENT_DIR / "test" / "load.mjs"),
            cluster.url.replace("http", "ws"),
            history_app,
            "c",
            str(count),
            str(total),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stdout is not None
        assert node.stdout.readline().strip() == "ready"
        steady_pushes(cluster.master.url, history_app, total, total // 2, cluster.kill_a_slave_with_clients)
        summary = json.loads(node.stdout.readline())
    finally:
        node.kill()
        node.wait(10)
    records = summary["clients"]
    assert len(records) == count
    for record in records:
        assert record["offsets"] == list(range(1, total + 1))
        assert record["unrecovered"] == 0
    assert sum(r["reconnects"] for r in records) > 0, "the killed slave's clients came back"


def _roles(redis: EmbeddedRedis) -> tuple[GunicornProcess, GunicornProcess]:
    return (
        GunicornProcess("master", redis.addr, workers=1).start(),
        GunicornProcess("slave", redis.addr, workers=1).start(),
    )


def _resume(slave: GunicornProcess, app_key: str, since: dict) -> tuple[Client, dict]:
    client = Client(slave.ws_url, app_key, allow("u", "c"))
    client.send_json({"event": "gusher.subscribe", "data": {"id": "r", "channel": "c", "since": since}})
    return client, client.recv_json()


def _restart(redis: EmbeddedRedis, args: tuple[str, ...]) -> EmbeddedRedis:
    redis.stop()
    return EmbeddedRedis(port=redis.port, extra_args=args).start()


def _history_app(redis: EmbeddedRedis, webhook: Webhook, key: str = "") -> str:
    """An app keeping history in `redis` (made again under `key` after a Redis lost everything)."""
    key = key or new_app_key("restart")
    redis_lib.Redis(host=redis.host, port=redis.port).hset(
        key, mapping={"url": webhook.url, "history_size": "100", "history_ttl": "600"}
    )
    return key


def _listening_to_pushes(
    master: GunicornProcess, slave: GunicornProcess, app_key: str, count: int
) -> tuple[Client, str]:
    """A client subscribed to `c`, and `count` pushes it received (offsets 1..count); its epoch."""
    client = Client(slave.ws_url, app_key, allow("u", "c"))
    client.send_json({"event": "gusher.subscribe", "data": {"id": "1", "channel": "c"}})
    epoch = client.recv_json()["data"]["epoch"]
    for n in range(1, count + 1):
        assert push(master.url, app_key, "c", "e", str(n)).ok
    assert [client.recv_json()["offset"] for _ in range(count)] == list(range(1, count + 1))
    return client, epoch


def test_a_redis_restarted_with_aof_keeps_the_epoch_and_loses_nothing(tmp_path, webhook) -> None:
    args = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))
    redis = EmbeddedRedis(extra_args=args).start()
    master, slave = _roles(redis)
    try:
        app_key = _history_app(redis, webhook)
        client, epoch = _listening_to_pushes(master, slave, app_key, 5)
        redis = _restart(redis, args)
        wait_until(lambda: push(master.url, app_key, "c", "e", "6").ok, 15)
        for n in range(7, 11):
            assert push(master.url, app_key, "c", "e", str(n)).ok
        assert [client.recv_json(timeout=10)["offset"] for _ in range(5)] == [6, 7, 8, 9, 10]
        resumed, reply = _resume(slave, app_key, {"offset": 5, "epoch": epoch})
        assert reply["data"]["recovered"] is True and reply["data"]["epoch"] == epoch
        assert [resumed.recv_json()["offset"] for _ in range(5)] == [6, 7, 8, 9, 10]
        resumed.close()
        client.close()
    finally:
        slave.stop()
        master.stop()
        redis.stop()


def test_a_redis_restarted_without_persistence_changes_the_epoch(webhook) -> None:
    redis = EmbeddedRedis().start()
    master, slave = _roles(redis)
    try:
        app_key = _history_app(redis, webhook)
        client, epoch = _listening_to_pushes(master, slave, app_key, 3)
        redis = _restart(redis, ())
        _history_app(redis, webhook, app_key)  # the app went with everything else
        wait_until(lambda: push(master.url, app_key, "c", "e", "after").ok, 15)
        message = client.recv_json(timeout=10)
        assert message["offset"] == 1, "a new numbering reaches the connected client as it comes"
        resumed, reply = _resume(slave, app_key, {"offset": 3, "epoch": epoch})
        assert reply["data"]["recovered"] is False and reply["data"]["epoch"] != epoch
        resumed.expect_silence(0.3)
        resumed.close()
        client.close()
    finally:
        slave.stop()
        master.stop()
        redis.stop()
