"""A worker's subscriptions on a Redis Cluster: one sharded pub/sub connection per primary.

Implements `gusher.broker.base.Subscriber` with the guarantees written
there. Each key (a shard channel) lives in one slot, and its messages reach
only the subscribers of that slot's primary, so each key is SSUBSCRIBEd on
the primary that owns its slot, through that node's `ShardLink`: a
`RedisSubscriber` speaking sharded pub/sub, with its own reader and sync
greenlets. The router greenlet of `ClusterSubscriber` decides which link
holds which key.

A key leaves its link when the slot is no longer the link's node's, which
shows in three ways, each measured against Valkey 9.1 with redis-py 8.1:
- the node pushes an unrequested `sunsubscribe` for each of the slot's
  channels (a slot migrated away, the node demoted by a failover);
- an SSUBSCRIBE or SUNSUBSCRIBE is answered with MOVED (the slot map here
  was stale when it was sent);
- the connection is lost (the node died; its replica may take over).
The link hands such keys back; the router reads the slot map again (the
command client's, `nodes_manager.initialize()`), moves every key whose
slot's owner changed, and subscribes them where they now belong, calling
`on_ready` again after each confirmation, so that the hub's continuity
catches up a numbered channel's history. redis-py's own `ClusterPubSub`
acts on none of the three (it reconciles only after a refresh that a
command's MOVED triggered), which is why gusher drives the connections.

Bounds: refreshes are spaced by a backoff that doubles from 50 ms to 1 s
while they keep being needed; a link reconnects with the subscriber's
capped backoff; every move and refresh is logged. Messages published while
a key is between two nodes are lost, as across any reconnect.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

import gevent
import gevent.event
import redis
from redis.connection import Connection
from redis.exceptions import MovedError

from gusher.broker.base import SubscriberHandler
from gusher.broker.client import NETWORK_ERRORS, REDIS_ERRORS, ClusterAddress, LazyCluster, node_pubsub_pool
from gusher.broker.subscriber import _ACTIVE, _CHUNK, _MAX_BACKOFF, _WANTED, RedisSubscriber, Reply
from gusher.core.metrics import Metrics
from gusher.keys import key_slot

log = logging.getLogger(__name__)

_REFRESH_PAUSE = 0.05  # first pause before reading the slot map again (lets a burst of moves gather)
_CALM_AFTER = 5.0  # seconds without a refresh after which the pause starts small again
# The slot map is read again this often even when nothing moved: a node cut off from
# the cluster keeps its subscribers while the others fail its slots over, and tells nobody.
_VERIFY_EVERY = 30.0


class ShardLink(RedisSubscriber):
    """One primary's sharded pub/sub connection: the keys of the slots it owns.

    Keys it learns are no longer its node's are dropped at once (the server
    has unsubscribed them, or never subscribed them) and handed to `lost`,
    the router's, which places them again.
    """

    SUBSCRIBE, UNSUBSCRIBE = "SSUBSCRIBE", "SUNSUBSCRIBE"
    MESSAGE, CONFIRMED = b"smessage", b"ssubscribe"

    def __init__(
        self,
        name: str,
        pool: redis.ConnectionPool,
        metrics: Metrics,
        ping_every: float,
        lost: Callable[[ShardLink, list[str], str], None],
    ) -> None:
        super().__init__(pool, metrics, ping_every, label=f"redis cluster node {name}")
        self.name = name
        self._lost = lost
        self._unsubscribing: dict[str, int] = {}  # SUNSUBSCRIBE replies still to come

    def wanted(self) -> list[str]:
        """The keys some local client wants through this link."""
        return [key for key, state in self._state.items() if state & _WANTED]

    def holds(self) -> bool:
        """Whether any key is subscribed or wanted here (cheaper than `wanted`)."""
        return bool(self._state)

    def drop(self, keys: Iterable[str]) -> None:
        """Forget `keys` without unsubscribing: their slot is no longer this node's."""
        for key in keys:
            state = self._state.pop(key, 0)
            self._active_count -= bool(state & _ACTIVE)
            self._inflight.pop(key, None)
            self._unsubscribing.pop(key, None)

    def _hand_back(self, keys: Iterable[str], why: str) -> None:
        dropped = list(keys)
        wanted = [key for key in dropped if self._state.get(key, 0) & _WANTED]
        self.drop(dropped)
        if wanted:
            self._lost(self, wanted, why)

    # -- what differs from one server's connection -------------------------------

    def _groups(self, keys: list[str]) -> Iterable[list[str]]:
        """One command per slot: SSUBSCRIBE over two slots is refused (CROSSSLOT), even on one node."""
        by_slot: dict[int, list[str]] = defaultdict(list)
        for key in keys:
            by_slot[key_slot(key)].append(key)
        for group in by_slot.values():
            yield from (group[start : start + _CHUNK] for start in range(0, len(group), _CHUNK))

    def _send(self, conn: Connection, command: str, keys: Iterable[str]) -> None:
        ordered = list(keys)
        if command == self.UNSUBSCRIBE:
            for key in ordered:
                self._unsubscribing[key] = self._unsubscribing.get(key, 0) + 1
        super()._send(conn, command, ordered)

    def _reply(self, conn: Connection, timeout: float) -> Reply | None:
        try:
            return super()._reply(conn, timeout)
        except MovedError as exc:  # the slot is another node's: everything of it here goes
            moved = [key for key in self._state if key_slot(key) == exc.slot_id]
            self._hand_back(moved, f"MOVED to {exc.host}:{exc.port}")
            return None

    def _other_reply(self, kind: bytes, reply: Reply) -> None:
        if kind != b"sunsubscribe":
            return
        key = reply[1].decode("utf-8", "surrogateescape")
        left = self._unsubscribing.get(key, 0)
        if left > 1:
            self._unsubscribing[key] = left - 1
        elif left == 1:
            del self._unsubscribing[key]
        else:  # unrequested: the node gave the slot away (migrated, or the node was demoted)
            self._hand_back([key], "unsubscribed by the server")

    def _listen_forever(self) -> None:
        """Read until the connection fails; then hand every key back and connect again later.

        The keys go back because a dead node's slots may now be its
        replica's; the router returns those still here to this link.
        """
        backoff = 0.1
        while True:
            try:
                conn = self._connect()
                backoff = 0.1
                self._read(conn)
            except NETWORK_ERRORS as exc:
                log.warning("%s: pub/sub connection lost (%s)", self._label, exc)
            except redis.ResponseError as exc:  # CLUSTERDOWN, LOADING…: start again
                log.warning("%s: pub/sub refused (%s); reconnecting", self._label, exc)
            except Exception:  # a bug must not end the listener: log it, reconnect
                log.exception("%s: pub/sub listener failed; reconnecting", self._label)
            self._drop_connection()
            self._hand_back(list(self._state), "connection lost")
            self._unsubscribing.clear()
            gevent.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, _MAX_BACKOFF)


class ClusterSubscriber:
    """Keeps this worker's shard subscriptions equal to what its clients want, node by node."""

    def __init__(
        self,
        cluster: LazyCluster,
        address: ClusterAddress,
        metrics: Metrics,
        ping_every: float = 5.0,
        name: str = "gusher-pubsub",
    ) -> None:
        self._cluster = cluster  # the broker's command client: its slot map is shared
        self._address = address
        self._name = name  # each link's connection's, in CLIENT LIST
        self._metrics = metrics
        self._ping_every = ping_every
        self._links: dict[str, ShardLink] = {}  # node name (host:port) → its link
        self._route: dict[str, ShardLink] = {}  # key → the link holding it
        self._unrouted: dict[str, None] = {}  # keys wanted that wait for a link
        self._stale = False  # the slot map must be read again before routing
        self._wake = gevent.event.Event()
        self._handler: SubscriberHandler | None = None
        self._router: gevent.Greenlet | None = None

    # -- what the hub calls -------------------------------------------------

    @property
    def connected(self) -> bool:
        """The slot map is known, every wanted key has a link, and every link holding keys is up.

        So a shard's failover makes it False for its duration, as a lost
        Redis does on one server.
        """
        if not self._cluster.ready or self._unrouted:
            return False
        return all(link.connected for link in self._links.values() if link.holds())

    @property
    def subscription_count(self) -> int:
        """Channels this worker holds subscribed, on every node."""
        return sum(link.subscription_count for link in self._links.values())

    def want(self, key: str) -> bool:
        """Make sure `key` is subscribed; True if it already is (no `on_ready` follows)."""
        link = self._route.get(key)
        if link is not None:
            return link.want(key)
        if key not in self._unrouted and not self._place(key):
            self._unrouted[key] = None
            self._wake.set()
        return False

    def release(self, key: str) -> None:
        """No local client wants `key` any more; its link unsubscribes it soon."""
        if key in self._unrouted:
            del self._unrouted[key]
            return
        link = self._route.pop(key, None)
        if link is not None:
            link.release(key)

    def start(self, handler: SubscriberHandler) -> None:
        """Start the router, and the links made so far; `handler` gets what arrives."""
        self._handler = handler
        for link in self._links.values():
            link.start(handler)
        self._router = gevent.spawn(self._route_forever)
        self._wake.set()

    def stop(self) -> None:
        """Stop the router and every link."""
        if self._router is not None:
            self._router.kill(block=False)
        for link in self._links.values():
            link.stop()

    def live_greenlets(self) -> int:
        """The router's and each link's two."""
        router = int(self._router is not None and not self._router.dead)
        return router + sum(link.live_greenlets() for link in self._links.values())

    # -- placing keys -------------------------------------------------------

    def _owner(self, key: str) -> str | None:
        """The name of the primary owning `key`'s slot by the known map; None if unknown or stale."""
        if self._stale or not self._cluster.ready:
            return None
        return self._lookup(key)

    def _lookup(self, key: str) -> str | None:
        """`_owner` by the map as it is, stale or not (None: the slot is uncovered now)."""
        try:
            node = self._cluster.nodes_manager.get_node_from_slot(key_slot(key))
        except REDIS_ERRORS:
            return None
        return str(node.name)

    def _place(self, key: str) -> bool:
        """Give `key` to the link of its slot's owner; False when the owner is not known now."""
        name = self._owner(key)
        if name is None:
            return False
        link = self._links.get(name)
        if link is None:
            link = self._links[name] = self._new_link(name)
        self._route[key] = link
        link.want(key)
        return True

    def _new_link(self, name: str) -> ShardLink:
        host, _, port = name.rpartition(":")
        pool = node_pubsub_pool(host, int(port), self._address, self._name)
        link = ShardLink(name, pool, self._metrics, self._ping_every, self._lost)
        if self._handler is not None:
            link.start(self._handler)
        return link

    def _lost(self, link: ShardLink, keys: list[str], why: str) -> None:
        """A link gave keys back (its reader greenlet calls this): place them again after a refresh."""
        moved = [key for key in keys if self._route.get(key) is link]
        for key in moved:
            del self._route[key]
            self._unrouted[key] = None
        self._metrics.redis_channels_moved += len(moved)
        log.info("redis cluster node %s: %d channels to move (%s)", link.name, len(moved), why)
        self._stale = True
        self._wake.set()

    # -- the router -----------------------------------------------------------

    def _route_forever(self) -> None:
        pause = _REFRESH_PAUSE
        last_refresh = 0.0
        while True:
            self._wake.wait(_VERIFY_EVERY)
            self._wake.clear()
            due = time.monotonic() - last_refresh >= _VERIFY_EVERY
            if not (self._stale or self._unrouted or due or not self._cluster.ready):
                continue
            if time.monotonic() - last_refresh > _CALM_AFTER:
                pause = _REFRESH_PAUSE
            gevent.sleep(pause * random.uniform(0.8, 1.2))
            try:
                if self._stale or due or not self._cluster.ready:
                    last_refresh = time.monotonic()
                    self._refresh()
                    pause = min(pause * 2, _MAX_BACKOFF)
                self._place_waiting()
            except REDIS_ERRORS as exc:
                log.warning(
                    "redis cluster slot map unavailable (%s); %d channels wait", exc, len(self._unrouted)
                )
                self._stale = True  # read it again before placing anything
                pause = min(pause * 2, _MAX_BACKOFF)
            except Exception:  # a bug must not end the router: log it, go on
                log.exception("redis cluster routing failed")
            if self._unrouted or self._stale:
                self._wake.set()

    def _refresh(self) -> None:
        """Read the slot map; move each key whose slot changed owner; retire idle links of ex-primaries."""
        if self._cluster.ready:
            # Not disconnecting the startup nodes' pools: the command client keeps its connections.
            self._cluster.nodes_manager.initialize(disconnect_startup_nodes_pools=False)
        else:
            self._cluster.cluster()  # made now: reads the map
        self._stale = False
        self._metrics.redis_slot_map_reads += 1
        moved = sum(self._move_misplaced(link) for link in list(self._links.values()))
        self._metrics.redis_channels_moved += moved
        primaries = {node.name for node in self._cluster.nodes_manager.get_nodes_by_server_type("primary")}
        for name, link in list(self._links.items()):
            if name not in primaries and not link.holds():
                link.stop()
                del self._links[name]
        log.info(
            "redis cluster slot map read: %d primaries; %d channels moved, %d waiting to be placed",
            len(primaries),
            moved,
            len(self._unrouted),
        )

    def _move_misplaced(self, link: ShardLink) -> int:
        """Move `link`'s keys whose slot another node owns now; how many.

        Yields every `_CHUNK` keys: a worker may hold 100k keys, and this
        runs on every refresh, so it must not hold the event loop for long.
        """
        moved = 0
        for n, key in enumerate(link.wanted(), 1):
            if n % _CHUNK == 0:
                gevent.sleep(0)
            if self._route.get(key) is not link or self._lookup(key) == link.name:
                continue  # released (or moved) meanwhile, or in place
            link.drop([key])
            if not self._place(key):
                del self._route[key]
                self._unrouted[key] = None
            moved += 1
        return moved

    def _place_waiting(self) -> None:
        waiting, self._unrouted = self._unrouted, {}
        for key in waiting:
            if not self._place(key):
                self._unrouted[key] = None
        if self._unrouted:
            raise redis.ConnectionError(f"{len(self._unrouted)} channels are in slots no node serves now")
