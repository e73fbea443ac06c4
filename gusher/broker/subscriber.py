"""A worker's subscriptions on one Redis server: one pub/sub connection, kept in sync.

Implements `gusher.broker.base.Subscriber` (its guarantees are written
there). Subscription changes are serialised in one place, the sync greenlet,
which also pings Redis so that a dead connection is noticed by the
listener's read timeout. The listener owns reading and reconnecting, and
turns each payload into a `Publication` once.

A Redis Cluster's worker holds one of these per primary, speaking sharded
pub/sub (`gusher.broker.cluster_subscriber.ShardLink`): the command and
reply names, how keys are grouped into commands, the replies other than
messages and confirmations, and what a lost connection means are the
places it differs.
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Iterable
from typing import Any, cast

import gevent
import gevent.event
import gevent.lock
import redis
from redis.connection import Connection

from gusher.broker.base import PublicationBatch, SubscriberHandler
from gusher.broker.client import NETWORK_ERRORS
from gusher.core.metrics import Metrics
from gusher.core.publication import Publication

log = logging.getLogger(__name__)

_RawBatch = list[tuple[bytes, bytes]]
Reply = list[Any]

_CHUNK = 500  # channels per SUBSCRIBE/UNSUBSCRIBE command
_BATCH_LIMIT = 512  # messages handed on at most per batch
# Capped low: one connection per worker is no load on Redis, and clients must
# hear pushes again within ~2 s of Redis coming back.
_MAX_BACKOFF = 1.0
# A key's state bits: some local client wants it; the last command sent for it
# was SUBSCRIBE; Redis confirmed that SUBSCRIBE (messages flow).
_WANTED, _SENT, _ACTIVE = 1, 2, 4
# The sync greenlet waits this long after each write, so that what clients ask
# for meanwhile goes out in one command: in a connect storm every handshake
# subscribes its user's channel, and one SUBSCRIBE write per handshake was
# ~14 % of a JWT connect's CPU (py-spy, issue 16; on loopback a send pays for
# Redis's side of TCP too). A quiet worker's first change is still sent at once.
_SYNC_SPACING = 0.005


class RedisSubscriber:
    """Keeps this worker's Redis subscriptions equal to what its clients want."""

    _handler: SubscriberHandler  # given by `start`, before any message can arrive
    # Classic pub/sub; a cluster's shard link speaks the sharded commands.
    SUBSCRIBE, UNSUBSCRIBE = "SUBSCRIBE", "UNSUBSCRIBE"
    MESSAGE, CONFIRMED = b"message", b"subscribe"

    def __init__(
        self,
        pool: redis.ConnectionPool,
        metrics: Metrics,
        ping_every: float = 5.0,
        label: str = "redis",
    ) -> None:
        self._pool = pool  # `client.pubsub_pool`: no read timeout, RESP2
        self._label = label  # who this connects to, for log lines
        self._metrics = metrics
        self._ping_every = ping_every
        self._conn: Connection | None = None
        # Every key's state in one dict of bit flags (_WANTED, _SENT, _ACTIVE):
        # a worker holds a key per connected user, and one dict entry costs
        # ~30 bytes where three sets of keys cost 150-300 (issue 4).
        self._state: dict[str, int] = {}
        self._active_count = 0
        self._dirty: dict[str, None] = {}  # keys wanted or released since the last sync
        self._inflight: dict[str, int] = {}  # SUBSCRIBE replies still to come
        self._wake = gevent.event.Event()
        self._write_lock = gevent.lock.Semaphore()
        self.greenlets: list[gevent.Greenlet] = []
        self.connected = False
        self._ever_connected = False

    # -- what the hub calls -------------------------------------------------

    def want(self, key: str) -> bool:
        """Make sure `key` is subscribed; True if it already is (no `on_ready` follows)."""
        state = self._state.get(key, 0)
        self._state[key] = state | _WANTED
        if state & _ACTIVE:
            return True
        self._dirty[key] = None
        self._wake.set()
        return False

    def release(self, key: str) -> None:
        """No local client wants `key` any more; unsubscribe it soon."""
        state = self._state.get(key, 0) & ~_WANTED
        if state:
            self._state[key] = state
            self._dirty[key] = None
            self._wake.set()
        else:
            self._state.pop(key, None)  # never sent: nothing to undo in Redis

    def start(self, handler: SubscriberHandler) -> None:
        """Spawn the listener and the sync greenlets; `handler` gets what arrives."""
        self._handler = handler
        self.greenlets = [gevent.spawn(self._listen_forever), gevent.spawn(self._sync_forever)]

    def stop(self) -> None:
        """Stop both greenlets and close the connection."""
        gevent.killall(self.greenlets, block=False)
        self._drop_connection()

    @property
    def subscription_count(self) -> int:
        """Channels this worker holds in Redis."""
        return self._active_count

    def live_greenlets(self) -> int:
        """The listener and the sync greenlet, while they run."""
        return sum(1 for g in self.greenlets if not g.dead)

    # -- listener --------------------------------------------------------------

    def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            try:
                conn = self._connect()
                backoff = 0.1
                self._read(conn)
            except NETWORK_ERRORS as exc:
                log.warning("%s pub/sub connection lost (%s); retrying in %.1f s", self._label, exc, backoff)
            except Exception:  # a bug must not end the listener: log it, reconnect
                log.exception("pub/sub listener failed; reconnecting")
            self._drop_connection()
            gevent.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _connect(self) -> Connection:
        conn = cast(Connection, self._pool.make_connection())
        conn.connect()
        with self._write_lock:
            self._state = {key: _WANTED | _SENT for key, state in self._state.items() if state & _WANTED}
            self._active_count = 0
            self._dirty = {}
            self._inflight.clear()
            self._send(conn, self.SUBSCRIBE, self._state)
            self._conn = conn
        if self._ever_connected:
            self._metrics.redis_reconnects += 1
        self._ever_connected = self.connected = True
        log.info("%s pub/sub connected; subscribing %d channels", self._label, len(self._state))
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self.connected = False
        if self._active_count:
            self._state = {key: state & ~_ACTIVE for key, state in self._state.items()}
            self._active_count = 0
        if conn is not None:
            conn.disconnect()

    def _read(self, conn: Connection) -> None:
        batch: _RawBatch = []
        read_timeout = self._ping_every * 3
        while True:
            if batch and (len(batch) >= _BATCH_LIMIT or not conn.can_read(0)):
                self._hand_on(batch)
                batch = []
            reply = self._reply(conn, read_timeout)
            if reply is None:
                continue
            kind = reply[0]
            if kind == self.MESSAGE:
                batch.append((reply[1], reply[2]))
                continue
            if batch:
                self._hand_on(batch)
                batch = []
            if kind == self.CONFIRMED:
                # Interned: the hub interns every key it wants, so this finds
                # that same string and the decoded copy is freed at once.
                self._confirmed(sys.intern(reply[1].decode("utf-8", "surrogateescape")))
            else:
                self._other_reply(kind, reply)

    def _reply(self, conn: Connection, timeout: float) -> Reply | None:
        """The next reply; an error reply raises (the listener reconnects), None means none to act on."""
        return cast(Reply, conn.read_response(timeout=timeout, disconnect_on_error=False))

    def _other_reply(self, kind: bytes, reply: Reply) -> None:
        """Replies to UNSUBSCRIBE and PING: nothing to do on one server."""

    def _hand_on(self, batch: _RawBatch) -> None:
        try:
            self._handler.on_publications(self._parse(batch))
        except Exception:  # one bad batch must not cost the connection
            log.exception("fan-out of %d messages failed", len(batch))

    def _parse(self, batch: _RawBatch) -> PublicationBatch:
        """Each payload read once, for every local subscriber and protocol; non-UTF-8 dropped."""
        metrics = self._metrics
        metrics.messages_in += len(batch)
        parsed: PublicationBatch = []
        for channel, payload in batch:
            publication = Publication.parse(payload)
            if publication is None:
                metrics.invalid_messages += 1
                log.warning("dropped a message on %r: payload is not UTF-8", channel[:200])
                continue
            parsed.append((channel.decode("utf-8", "surrogateescape"), publication))
        return parsed

    def _confirmed(self, key: str) -> None:
        left = self._inflight.get(key, 0) - 1
        if left > 0:
            self._inflight[key] = left
            return
        self._inflight.pop(key, None)
        state = self._state.get(key, 0)
        if state & _SENT and not state & _ACTIVE:
            self._state[key] = state | _ACTIVE
            self._active_count += 1
            self._handler.on_ready(key)

    # -- sync ------------------------------------------------------------------

    def _sync_forever(self) -> None:
        while True:
            self._wake.wait(self._ping_every)
            self._wake.clear()
            conn = self._conn
            if conn is None:
                continue
            try:
                self._sync(conn)
            except NETWORK_ERRORS as exc:
                log.warning("redis pub/sub write failed (%s)", exc)
                if conn is self._conn:
                    conn.disconnect()  # wakes the listener, which reconnects
            except Exception:
                log.exception("pub/sub sync failed")
            gevent.sleep(_SYNC_SPACING)

    def _sync(self, conn: Connection) -> None:
        with self._write_lock:
            if conn is not self._conn:
                return
            dirty, self._dirty = self._dirty, {}
            to_unsubscribe = []
            to_subscribe = []
            for key in dirty:
                state = self._state.get(key, 0)
                if state & _WANTED and not state & _SENT:
                    self._state[key] = state | _SENT
                    to_subscribe.append(key)
                elif state & _SENT and not state & _WANTED:
                    del self._state[key]  # _WANTED is gone and so will _SENT be
                    self._active_count -= bool(state & _ACTIVE)
                    to_unsubscribe.append(key)
            if to_unsubscribe:
                self._send(conn, self.UNSUBSCRIBE, to_unsubscribe)
            if to_subscribe:
                self._send(conn, self.SUBSCRIBE, to_subscribe)
            if not (to_subscribe or to_unsubscribe):
                conn.send_command("PING", check_health=False)

    def _send(self, conn: Connection, command: str, keys: Iterable[str]) -> None:
        ordered = list(keys)
        if command == self.SUBSCRIBE:
            for key in ordered:
                self._inflight[key] = self._inflight.get(key, 0) + 1
        commands = [(command, *group) for group in self._groups(ordered)]
        if commands:  # one write for all of them
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)

    def _groups(self, keys: list[str]) -> Iterable[list[str]]:
        """The keys of one command each: at most `_CHUNK`."""
        return (keys[start : start + _CHUNK] for start in range(0, len(keys), _CHUNK))
