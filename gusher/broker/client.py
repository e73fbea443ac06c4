"""The one place where redis-py clients are built and where its errors become ours."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.cluster import ClusterNode
from redis.commands.core import Script
from redis.connection import Connection, Encoder
from redis.exceptions import RedisClusterException
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from gusher.config import Settings
from gusher.errors import BackendUnavailable, ConfigError

# What gusher's stores run their commands on: one server, or a cluster's command router.
Client = redis.Redis | redis.RedisCluster

CLUSTER_SCHEME = "redis+cluster"
SENTINEL_SCHEME = "redis+sentinel"


def command_client(settings: Settings, name: str = "gusher") -> redis.Redis:
    """A pooled client for commands (not pub/sub); connects lazily.

    Timeouts are bounded so that an unreachable Redis fails a request within
    seconds (503) instead of hanging it. The pool holds at most
    `redis_max_connections` and greenlets wait their turn: each command holds
    a connection for a fraction of a millisecond, and an unbounded pool grew
    to one connection per concurrent request (a reconnect storm opened ~100
    per worker, each keeping hiredis's 64 KB read buffer for good). Connections
    are named (`CLIENT LIST`) after the role.
    """
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=5.0,  # waiting for a free connection: then 503, like a Redis timeout
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
        client_name=name,
    )
    return redis.Redis(connection_pool=pool)


@dataclass(frozen=True)
class ClusterAddress:
    """A `redis+cluster://[user[:password]@]host:port[,host:port…]` URL, parsed."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> ClusterAddress:
        """Raises `ConfigError` naming what is wrong (never echoing a password)."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme != CLUSTER_SCHEME:
            raise ConfigError(f"a cluster REDIS_ADDR starts with {CLUSTER_SCHEME}://")
        hosts, username, password = _credentials(rest.split("/", 1)[0].split("?", 1)[0])
        nodes = tuple(_host_port(part) for part in hosts.split(",") if part)
        if not nodes:
            raise ConfigError(f"{CLUSTER_SCHEME}:// names no node (host:port[,host:port…])")
        return cls(nodes, username, password)


def _credentials(netloc: str) -> tuple[str, str | None, str | None]:
    """`[user[:password]@]hosts` split: the hosts, and the user and password %-decoded (None if absent)."""
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return hosts, None, None
    user, colon, secret = userinfo.partition(":")
    return hosts, urllib.parse.unquote(user) or None, urllib.parse.unquote(secret) if colon else None


def _host_port(text: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, or a host alone (port 6379)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "6379"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, "6379"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"bad node {text!r} in REDIS_ADDR (host:port)")
    return host, int(port)


@dataclass(frozen=True)
class SentinelAddress:
    """A `redis+sentinel://[user[:password]@]host:port[,host:port…]/<service_name>` URL, parsed.

    The hosts are Sentinels; the credentials are the primary's (Sentinels
    are asked without them, as they usually run without a password).
    """

    sentinels: tuple[tuple[str, int], ...]
    service: str
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelAddress:
        """Raises `ConfigError` naming what is wrong (never echoing a password)."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme != SENTINEL_SCHEME:
            raise ConfigError(f"a Sentinel REDIS_ADDR starts with {SENTINEL_SCHEME}://")
        netloc, _, path = rest.split("?", 1)[0].partition("/")
        hosts, username, password = _credentials(netloc)
        sentinels = tuple(_host_port(part) for part in hosts.split(",") if part)
        if not sentinels:
            raise ConfigError(f"{SENTINEL_SCHEME}:// names no Sentinel (host:port[,host:port…])")
        service = urllib.parse.unquote(path.strip("/"))
        if not service or "/" in service:
            raise ConfigError(f"{SENTINEL_SCHEME}://… ends with /<service_name>, the name Sentinel monitors")
        return cls(sentinels, service, username, password)

    def sentinel(self) -> Sentinel:
        """Who is asked for the primary's address: every Sentinel, in turn, with short timeouts."""
        return _Sentinel(
            list(self.sentinels), sentinel_kwargs={"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
        )


class _Sentinel(Sentinel):
    """redis-py's `Sentinel`, asking for the primary as Sentinel's client guidelines say.

    redis-py reads the address from `SENTINEL MASTERS`, which names the old
    primary until a failover has ended, i.e. until every other replica has
    been reconfigured: seconds after the promotion with two replicas, while
    the old primary still takes writes (lost when it resyncs).
    `SENTINEL GET-MASTER-ADDR-BY-NAME` names the promoted replica as soon as
    replicas are being pointed at it.
    """

    def discover_master(self, service_name: str) -> tuple[str, int]:
        errors = []
        for number, sentinel in enumerate(self.sentinels):
            try:
                address = cast(Any, sentinel.sentinel_get_master_addr_by_name(service_name))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                errors.append(f"{sentinel} - {exc!r}")
                continue
            if address:
                # The one that answered is asked first next time, as redis-py does.
                self.sentinels[0], self.sentinels[number] = sentinel, self.sentinels[0]
                host, port = address
                return host.decode() if isinstance(host, bytes) else host, int(port)
        raise MasterNotFoundError(
            f"No master found for {service_name!r}" + (": " + ", ".join(errors) if errors else "")
        )


# How often a Sentinel-backed connection in use checks that Sentinel still names its server
# primary. After `SENTINEL FAILOVER` the old primary keeps accepting writes (lost when it
# resyncs) until its Sentinel reconfigures it, ~10 s later here: a connection left on it
# would write there, and a subscriber there would hear nothing the master sends.
PRIMARY_CHECK_EVERY = 0.5


class _BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool (each connect asks Sentinel for the primary), bounded and blocking.

    redis-py has no blocking Sentinel pool; this one takes the connect from
    `SentinelConnectionPool` and the bounded queue from `BlockingConnectionPool`
    (`command_client` says why it must block). A connection handed out is
    checked against Sentinel's answer every `PRIMARY_CHECK_EVERY` seconds
    (one round trip to a Sentinel), and moved if its server is no longer primary.
    """

    _checked_at = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Connection:
        conn = cast(Connection, super().get_connection(*args, **kwargs))
        now = time.monotonic()
        if now - self._checked_at >= PRIMARY_CHECK_EVERY:
            self._checked_at = now
            try:
                primary = self.get_master_address()  # drops idle connections if it moved
            except redis.ConnectionError:
                return conn  # no Sentinel answers: keep what works
            if (conn.host, conn.port) != tuple(primary):
                conn.disconnect()
                conn.connect()  # asks Sentinel again
        return conn


def sentinel_client(settings: Settings, name: str = "gusher") -> redis.Redis:
    """`command_client` on the primary Sentinel names; follows a failover.

    A connection that finds its server demoted (READONLY, or closed: a
    Sentinel kills the clients of an instance it reconfigures) raises
    `ConnectionError`; redis-py retries the command on a new connection,
    whose connect asks Sentinel again.
    """
    address = SentinelAddress.parse(settings.redis_url)
    pool = _BlockingSentinelPool(
        address.service,
        address.sentinel(),
        max_connections=settings.redis_max_connections,
        timeout=5.0,
        username=address.username,
        password=address.password,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
        client_name=name,
    )
    return redis.Redis(connection_pool=pool)


def sentinel_pubsub_pool(address: SentinelAddress, name: str = "gusher-pubsub") -> SentinelConnectionPool:
    """`pubsub_pool` whose every connect asks Sentinel for the primary (after a failover, the new one)."""
    return SentinelConnectionPool(
        address.service,
        address.sentinel(),
        username=address.username,
        password=address.password,
        socket_connect_timeout=2.0,
        socket_timeout=None,
        socket_keepalive=True,
        protocol=2,
        client_name=name,
    )


class LazyCluster:
    """A `redis.RedisCluster` made at its first use, standing in for it until then.

    redis-py's cluster client asks a node for the slot map in its
    constructor and raises when none answers. gusher's brokers connect
    lazily (a master or slave starts while Redis is still coming up), so
    this proxy builds the client on the first command, and again on the
    next one after a failed attempt (`redis.ConnectionError` then, turned
    into `BackendUnavailable` by `translate_errors`). Scripts are registered
    on the proxy itself: their SHA needs only the encoder.
    """

    def __init__(self, factory: Callable[[], redis.RedisCluster]) -> None:
        self._factory = factory
        self._cluster: redis.RedisCluster | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether the client exists (a slot map was read once)."""
        return self._cluster is not None

    def get_encoder(self) -> Encoder:
        return Encoder("utf-8", "strict", False)  # redis-py's defaults, as the real client's

    def register_script(self, script: str) -> Script:
        return Script(cast(redis.RedisCluster, self), script)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster(), name)

    def cluster(self) -> redis.RedisCluster:
        """The real client, made now if it is not yet (may block on the network)."""
        if self._cluster is None:
            with self._lock:
                if self._cluster is None:
                    try:
                        self._cluster = self._factory()
                    except RedisClusterException as exc:
                        raise redis.ConnectionError(str(exc)) from exc
        return self._cluster


def cluster_client(settings: Settings, name: str = "gusher") -> LazyCluster:
    """A cluster's command router, bounded per node as `command_client` is; connects lazily.

    Every node of `REDIS_ADDR` is a startup node (any one that answers gives
    the slot map). Each node's pool is a `BlockingConnectionPool` of
    `redis_max_connections`, which redis-py uses only for a client made from
    a URL: hence the first node as `url`.
    """
    address = ClusterAddress.parse(settings.redis_url)
    host, port = address.nodes[0]

    def make() -> redis.RedisCluster:
        return redis.RedisCluster(
            url=f"redis://{'[' + host + ']' if ':' in host else host}:{port}",
            startup_nodes=[ClusterNode(h, p) for h, p in address.nodes[1:]],
            username=address.username,
            password=address.password,
            connection_pool_class=redis.BlockingConnectionPool,
            max_connections=settings.redis_max_connections,
            timeout=5.0,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=30,
            client_name=name,
            # A slot left uncovered for a moment (a failover) fails its own commands, not the client.
            require_full_coverage=False,
        )

    return LazyCluster(make)


def sharded_script(source: str, sharded: bool) -> str:
    """A Lua script's `PUBLISH` as the engine needs it: `SPUBLISH` in a cluster (same arguments).

    In a cluster only a shard channel's subscribers (SSUBSCRIBE) hear a
    SPUBLISH, and a script may SPUBLISH only in the slot of its keys
    (`gusher.keys.colocated`).
    """
    return source.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'") if sharded else source


def pubsub_pool(redis_url: str, name: str = "gusher-pubsub") -> redis.ConnectionPool:
    """Connections for a subscriber: no read timeout (an idle channel is silent), RESP2.

    RESP2 because redis-py 8 defaults to RESP3, where pub/sub messages come
    as push frames that a hand-driven connection does not read (FACTS).
    Named, as the command pools are, so `CLIENT LIST` tells them apart
    (`gusher-slave-pubsub`).
    """
    return redis.ConnectionPool.from_url(
        redis_url,
        socket_connect_timeout=2.0,
        socket_timeout=None,
        socket_keepalive=True,
        protocol=2,
        client_name=name,
    )


def node_pubsub_pool(
    host: str, port: int, address: ClusterAddress, name: str = "gusher-pubsub"
) -> redis.ConnectionPool:
    """`pubsub_pool` for one cluster node (a shard's sharded pub/sub connection)."""
    return redis.ConnectionPool(
        host=host,
        port=port,
        username=address.username,
        password=address.password,
        socket_connect_timeout=2.0,
        socket_timeout=None,
        socket_keepalive=True,
        protocol=2,
        client_name=name,
    )


# Every error of redis-py: a cluster's own (`RedisClusterException`: no node answers, a
# slot is uncovered) is no `RedisError`.
REDIS_ERRORS = (redis.RedisError, RedisClusterException)

# What a lost or unreachable server raises, for loops that reconnect.
NETWORK_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn redis-py errors into `BackendUnavailable` where they enter.

    A cluster's own errors too (`REDIS_ERRORS`).
    """
    try:
        yield
    except REDIS_ERRORS as exc:
        raise BackendUnavailable(f"redis unavailable: {exc.__class__.__name__}") from exc
