"""Issue 14 point 5, across hosts: a master, two slaves and a 3-primary Valkey Cluster, each process
on a host of its own (a Linux network namespace, tests/netns.py); one slave's cable pulled under
steady pushes. The other slave's clients keep receiving, never noticing; the cut slave's clients
notice the silence, resume on the other slave from their last offsets, and every client ends with
every message the master acknowledged, once, in order.

The test process is the backend (it pushes to the master over HTTP), hosts the auth webhook on
the network's gateway address, and runs the WebSocket clients, one thread each.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import redis as redis_lib
import requests
import websocket

from gusher.broker.formation import form_cluster
from gusher.embedded import EmbeddedRedis, cluster_node_args
from tests import netns
from tests.support import Client, GunicornProcess, Webhook, allow, new_app_key, push, wait_until

pytestmark = pytest.mark.slow

CHANNELS = ("c0", "c1", "c2", "c3")
CLIENTS_PER_SLAVE = 20
RATE = 80  # pushes per second, spread over CHANNELS
BEFORE_CUT = 160  # pushes before slave A's cable is pulled (~2 s)
AFTER_BACK = 160  # pushes once every client of A is back, through B
SILENCE = 3.0  # seconds without a message after which a client gives its slave up (80 msg/s each)
REDIS_HOSTS = ("redis1", "redis2", "redis3")
HOSTS = ("master", "slave-a", "slave-b", *REDIS_HOSTS)
PORT = 7000  # every server listens on its own host's IP: one port for all
AUTH = allow("u", *CHANNELS)


def _require_namespaces() -> None:
    reason = netns.unavailable()
    if reason is None:
        return
    if os.environ.get("GUSHER_CI"):
        pytest.fail(f"CI must run the multi-host test, but {reason}")
    pytest.skip(reason)


@pytest.fixture
def network() -> Iterator[netns.Network]:
    _require_namespaces()
    netns.sweep_stale()
    made = netns.Network(HOSTS).start()
    try:
        yield made
    finally:
        made.stop()
        assert made.leftovers() == [], "the network was not removed"


@dataclass
class Deployment:
    network: netns.Network
    nodes: list[EmbeddedRedis]
    master: GunicornProcess
    slaves: dict[str, GunicornProcess]
    webhook: Webhook


@pytest.fixture
def deployment(network: netns.Network) -> Iterator[Deployment]:
    """Three cluster nodes, the master and slaves A and B, each on its host; the webhook here."""
    nodes: list[EmbeddedRedis] = []
    roles: list[GunicornProcess] = []
    webhook = Webhook(host=network.gateway)
    try:
        for host in REDIS_HOSTS:
            ip = network.ip(host)
            # Reached from the other hosts, not over loopback: protected mode would refuse them.
            args = (*cluster_node_args(), "--cluster-announce-ip", ip, "--protected-mode", "no")
            nodes.append(EmbeddedRedis(PORT, args, host=ip, launcher=network.launcher(host)).start())
        form_cluster([(node.host, node.port) for node in nodes], 20)
        url = "redis+cluster://" + ",".join(node.addr for node in nodes)

        def role(kind: str, host: str, **settings: object) -> GunicornProcess:
            made = GunicornProcess(
                kind, url, 1, PORT, host=network.ip(host), launcher=network.launcher(host), **settings
            )
            roles.append(made)
            return made

        master = role("master", "master")
        slaves = {name: role("slave", f"slave-{name}", max_recovered_messages=2000) for name in ("a", "b")}
        with ThreadPoolExecutor(len(roles)) as pool:
            list(pool.map(lambda process: process.start(wait_ready=False), roles))
        for process in roles:
            process.wait_ready(30)
        yield Deployment(network, nodes, master, slaves, webhook)
    finally:
        for host in network.hosts:  # a failed test may leave a cable pulled: let the roles stop cleanly
            with contextlib.suppress(subprocess.CalledProcessError):
                network.restore(host)
        for process in roles:
            process.stop(timeout=10)
            print(f"--- {process.role} on {process.host}:\n{process.log()[-3000:]}")
        for node in nodes:
            node.stop()
        webhook.shutdown()
        webhook.server_close()


@pytest.fixture
def history_app(deployment: Deployment) -> str:
    key = new_app_key("multihost")
    first = deployment.nodes[0]
    admin = redis_lib.RedisCluster(host=first.host, port=first.port)
    try:
        admin.hset(key, mapping={"url": deployment.webhook.url, "history_size": "5000", "history_ttl": "600"})
    finally:
        admin.close()
    return key


@dataclass
class Connection:
    """One WebSocket of a subscriber: where, and when its subscriptions were all answered."""

    url: str
    opened_at: float
    answered_at: float | None = None
    given_up_at: float | None = None
    not_recovered: list[str] = field(default_factory=list)


class Subscriber:
    """A client of every channel, in a thread: it gives its slave up after SILENCE seconds without
    a message and resumes on the next URL from its last offsets, as a client of several edges
    (or behind a load balancer) does."""

    def __init__(self, name: str, urls: list[str], app_key: str) -> None:
        self.name = name
        self.urls = urls
        self.app_key = app_key
        self.received: dict[str, list[tuple[int, str]]] = {channel: [] for channel in CHANNELS}
        self.arrivals: list[float] = []  # the time of each message, in arrival order
        self.epochs: dict[str, str] = {}
        self.connections: list[Connection] = []
        self.expected: dict[str, int] | None = None  # set once the pushes stopped: the acked counts
        self.error: BaseException | None = None
        self._client: Client | None = None
        self._unanswered: set[str] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- what the test reads -------------------------------------------------------------

    @property
    def answered(self) -> bool:
        """Whether every subscription of the current connection was answered."""
        return bool(self.connections) and self.connections[-1].answered_at is not None

    def complete(self) -> bool:
        expected = self.expected
        return expected is not None and all(len(self.received[c]) >= n for c, n in expected.items())

    # -- life ---------------------------------------------------------------------------

    def connect(self, url: str) -> None:
        """Open a WebSocket to `url` and subscribe every channel, from the last offsets if any."""
        self._client = Client(url, self.app_key, AUTH, timeout=5)
        self.connections.append(Connection(url, time.monotonic()))
        self._unanswered = set(CHANNELS)
        for channel in CHANNELS:
            data: dict[str, object] = {"id": channel, "channel": channel}
            if channel in self.epochs:
                last = self.received[channel][-1][0] if self.received[channel] else 0
                data["since"] = {"offset": last, "epoch": self.epochs[channel]}
            self._client.send_json({"event": "gusher.subscribe", "data": data})

    def read_answers(self, timeout: float = 10.0) -> None:
        """Read until every subscription is answered (before any push: nothing else arrives)."""
        assert self._client is not None
        while not self.answered:
            self._handle(self._client.recv_json(timeout))

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.name} still reading after {timeout} s"

    def _run(self) -> None:
        try:
            target = 0
            while not self.complete():
                if self._client is None:
                    target = (target + 1) % len(self.urls)
                    try:
                        self.connect(self.urls[target])
                    except (OSError, websocket.WebSocketException):
                        time.sleep(0.2)
                        continue
                self._read_until_lost()
        except BaseException as exc:  # the test reports it
            self.error = exc
        finally:
            if self._client is not None:
                self._client.close()

    def _read_until_lost(self) -> None:
        """Read until complete, or until SILENCE seconds without a message: then drop the socket."""
        assert self._client is not None
        ws = self._client.ws
        heard = time.monotonic()
        while not self.complete():
            try:
                ws.settimeout(0.25)
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                if time.monotonic() - heard < SILENCE:
                    continue
            except (OSError, websocket.WebSocketException):
                pass
            else:
                heard = time.monotonic()
                self._handle(json.loads(raw))
                continue
            # Silent or broken: no goodbye (the cable is cut), the next slave instead.
            self.connections[-1].given_up_at = time.monotonic()
            ws.shutdown()
            self._client = None
            return

    def _handle(self, message: dict) -> None:
        connection = self.connections[-1]
        if message.get("event") == "gusher.subscribe_succeeded":
            data = message["data"]
            self.epochs[data["channel"]] = data["epoch"]
            if data.get("recovered") is False:
                connection.not_recovered.append(data["channel"])
            self._unanswered.discard(data["channel"])
            if not self._unanswered:
                connection.answered_at = time.monotonic()
        elif "offset" in message:
            self.received[message["channel"]].append((message["offset"], message["data"]))
            self.arrivals.append(time.monotonic())
        else:
            raise AssertionError(f"{self.name} got {message}")


def _push(session: requests.Session, deployment: Deployment, app_key: str, channel: str, n: int) -> dict:
    url = f"{deployment.master.url}/api/push/{app_key}/{channel}/tick"
    response = session.post(url, params={"data": str(n)}, timeout=10)
    assert response.ok, response.text
    return response.json()


def test_a_cut_slaves_clients_resume_on_the_other_slave_and_lose_nothing(
    deployment: Deployment, history_app: str
) -> None:
    """20 clients on each slave, 80 pushes/s over 4 history channels, slave A's cable pulled: B's
    clients never notice, A's resume on B, and all 40 end with exactly what the master acked."""
    started = time.monotonic()
    network, master, slaves = deployment.network, deployment.master, deployment.slaves
    a_urls = [slaves["a"].ws_url, slaves["b"].ws_url]
    on_a = [Subscriber(f"a{i}", a_urls, history_app) for i in range(CLIENTS_PER_SLAVE)]
    on_b = [Subscriber(f"b{i}", [slaves["b"].ws_url], history_app) for i in range(CLIENTS_PER_SLAVE)]
    everyone = on_a + on_b
    for subscriber in everyone:
        subscriber.connect(subscriber.urls[0])
    for subscriber in everyone:
        subscriber.read_answers()
        subscriber.start()

    acked: dict[str, list[str]] = {channel: [] for channel in CHANNELS}  # data in offset order
    session = requests.Session()
    cut_at = back_at = 0.0
    back_after = 0  # pushes acked when every client of A was answered on B
    pushing = time.monotonic()
    n = 0
    try:
        while not back_after or n < back_after + AFTER_BACK:
            n += 1
            channel = CHANNELS[n % len(CHANNELS)]
            answer = _push(session, deployment, history_app, channel, n)
            assert answer["offset"] == len(acked[channel]) + 1, answer
            acked[channel].append(answer["data"])
            if n == BEFORE_CUT:
                network.cut("slave-a")
                cut_at = time.monotonic()
            if cut_at and not back_after and all(s.answered and len(s.connections) == 2 for s in on_a):
                back_after, back_at = n, time.monotonic()
            assert time.monotonic() - pushing < 30, "slave A's clients did not come back through B"
            pause = pushing + n / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        expected = {channel: len(data) for channel, data in acked.items()}
        for subscriber in everyone:
            subscriber.expected = expected
        for subscriber in everyone:
            subscriber.join(30)
    finally:
        network.restore("slave-a")
        for subscriber in everyone:
            subscriber.expected = subscriber.expected or {}  # stops a reader left behind

    for subscriber in everyone:
        assert subscriber.error is None, f"{subscriber.name}: {subscriber.error!r}"
        for channel in CHANNELS:
            offsets = [offset for offset, _ in subscriber.received[channel]]
            assert offsets == list(range(1, expected[channel] + 1)), (subscriber.name, channel, offsets)
            assert [data for _, data in subscriber.received[channel]] == acked[channel]
    for subscriber in on_b:
        assert len(subscriber.connections) == 1, f"{subscriber.name} lost slave B"
        meanwhile = sum(1 for arrival in subscriber.arrivals if cut_at < arrival < back_at)
        assert meanwhile > 0, f"{subscriber.name} received nothing while A was cut"
    for subscriber in on_a:
        first, second = subscriber.connections
        assert first.url == slaves["a"].ws_url and second.url == slaves["b"].ws_url
        assert first.given_up_at is not None and first.given_up_at > cut_at, subscriber.name
        assert second.not_recovered == [], f"{subscriber.name} resumed without recovery"
    for channel in CHANNELS:
        history = requests.get(f"{master.url}/api/apps/{history_app}/channels/{channel}/history", timeout=10)
        assert history.json()["offset"] == expected[channel], "the master's history agrees"

    restored = time.monotonic()
    wait_until(lambda: _slave_delivers(slaves["a"], master, history_app), 30, 0.5)
    a_back = time.monotonic() - restored

    during_cut = [sum(1 for t in s.arrivals if cut_at < t < back_at) for s in on_b]
    came_back = [_answered(s.connections[1]) - cut_at for s in on_a]
    resubscribed = [_answered(s.connections[1]) - s.connections[1].opened_at for s in on_a]
    print(
        f"multihost: {sum(expected.values())} messages per client over {len(CHANNELS)} channels; "
        f"A's clients back on B {min(came_back):.2f}-{max(came_back):.2f} s after the cut "
        f"(median {statistics.median(came_back):.2f} s, silence limit {SILENCE} s; "
        f"connect and resubscribe median {statistics.median(resubscribed) * 1000:.0f} ms); "
        f"B's clients got {min(during_cut)}-{max(during_cut)} messages each meanwhile; "
        f"A delivers again {a_back:.2f} s after the restore; test {time.monotonic() - started:.1f} s"
    )


def _answered(connection: Connection) -> float:
    assert connection.answered_at is not None
    return connection.answered_at


def _slave_delivers(slave: GunicornProcess, master: GunicornProcess, app_key: str) -> bool:
    """Whether a new client of `slave` subscribes every channel and receives a push on each (its
    links to every cluster node work again)."""
    try:
        client = Client(slave.ws_url, app_key, AUTH, timeout=3)
    except (OSError, websocket.WebSocketException):
        return False
    try:
        for channel in CHANNELS:
            if client.subscribe(channel)["event"] != "gusher.subscribe_succeeded":
                return False
        sent = {
            channel: push(master.url, app_key, channel, "tick", "restored").json() for channel in CHANNELS
        }
        got = [client.recv_json(timeout=3) for _ in CHANNELS]
        return sorted(got, key=lambda message: message["channel"]) == [sent[c] for c in CHANNELS]
    except (OSError, websocket.WebSocketException, ValueError, KeyError):
        return False
    finally:
        client.close()
