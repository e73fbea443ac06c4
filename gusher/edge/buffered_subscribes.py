"""Subscribes that wait on Redis before going live, with the key's messages buffered meanwhile.

A plain subscribe is registered as soon as the broker carries its key. Some
must first read or write Redis and answer with what they found: a numbered
subscribe (an app with history) replies with the channel's position and
replays what the client missed; a presence subscribe joins the member and
replies with the member list; a cache subscribe replies with the kept event.
Messages published during that step must reach the client once, and after
the reply: so from before the step until the connection is registered, the
hub's fan-out appends the key's live messages to a buffer of this
connection's (`buffers`), which follows the reply, merged by offset where
the channel is numbered. Between the buffer's last send and the registry
taking over nothing yields, so nothing falls between the two.

A connection that resumed stays "settling" for a moment after it joins
(`gusher.edge.settling`): `send_settling` is the send the fan-out gives it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

import gevent

from gusher.broker.base import HistoryStore
from gusher.config import Settings
from gusher.core.history import is_recoverable, merge
from gusher.core.metrics import Metrics
from gusher.core.publication import Publication
from gusher.core.registry import Registry
from gusher.edge.connection import Connection
from gusher.edge.continuity import Continuity
from gusher.edge.session import Session
from gusher.edge.settling import Settling
from gusher.edge.tasks import TaskPool
from gusher.errors import BackendUnavailable
from gusher.keys import pubsub_channel
from gusher.wire.base import ClientProtocol, Position, Subscribe

# What a prepared subscribe's step returns (`subscribe_prepared`): a refusal or "", the frames that
# answer the subscribe, and what of the messages buffered meanwhile follows them (None: all).
Prepared = tuple[str, bytes, Callable[[list[Publication]], list[Publication]] | None]


class Hub(Protocol):
    """What buffered subscribes need of the worker's hub (gusher.edge.hub.Hub)."""

    settings: Settings
    metrics: Metrics
    pool: TaskPool
    history: HistoryStore | None
    sessions: dict[Connection, Session]
    registries: dict[ClientProtocol, Registry[Connection]]
    continuity: Continuity
    settling: Settling[Connection]

    def refusal(self, registry: Registry[Connection], key: str, conn: Connection) -> str:
        """Why `conn` may not subscribe to `key` (already subscribed, at its limit), or ""."""

    def holding(self, key: str) -> AbstractContextManager[None]:
        """`key` is not released meanwhile: a subscribe to it is under way."""

    def wait_until_carried(self, key: str) -> bool:
        """True once the broker carries `key`; False if it does not within `subscribe_timeout`."""

    def register(self, registry: Registry[Connection], key: str, conn: Connection) -> None:
        """`conn` receives `key` from now on."""

    def release_if_unused(self, key: str) -> None:
        """Release `key` in the broker when no local client has it or is subscribing to it."""


class BufferedSubscribes:
    """The subscribes being brought live, and the buffers of live messages they will send first."""

    __slots__ = ("_hub", "buffers")

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        # Per key, each connection being brought live and its buffer: the hub's fan-out extends
        # every buffer of a key it delivers (one dict lookup per key), until the subscribe ends.
        self.buffers: dict[str, dict[Connection, list[Publication]]] = {}

    def subscribe_numbered(self, session: Session, command: Subscribe) -> None:
        """Subscribe to a history channel: the reply with its position, the replay, then live.

        Live messages of the key are buffered for this connection from before
        the history read until the replay is sent (`buffers`), then merged
        by offset (`gusher.core.history.merge`): no gap, no duplicate, whatever
        is pushed meanwhile. The replay is paced so that it never fills the
        connection's output bound: a healthy client is never cut off for it.
        """
        self._subscribe(session, command, lambda key, buffer: self._catch_up(session, command, key, buffer))

    def subscribe_prepared(
        self, session: Session, command: Subscribe, prepare: Callable[[str], Prepared]
    ) -> None:
        """Subscribe once the key is live and `prepare(key)` has run: its reply, then live messages.

        `prepare` may wait on Redis (a presence join, a cache read) and
        returns a refusal or "" with the frames that answer the subscribe
        (`Prepared`). What arrives on the key meanwhile is buffered for this
        connection and sent right after those frames (less what names it in
        `exclude`, and what `Prepared`'s filter drops), then the registry
        takes over with no yield in between: nothing is lost or sent before
        the reply.
        """
        hub, conn, protocol = self._hub, session.conn, session.protocol
        registry = hub.registries[protocol]

        def then(key: str, buffer: list[Publication]) -> str:
            ready = hub.wait_until_carried(key)
            if not conn.is_open:
                return "connection closed"
            if not ready:
                return "redis unavailable, try again"
            refusal, reply, follows = prepare(key)
            if not refusal and conn.is_open:
                rest = [p for p in buffer if p.exclude != session.socket_id]
                if follows is not None:
                    rest = follows(rest)
                conn.send(reply + b"".join(protocol.publication(p) for p in rest))
                hub.register(registry, key, conn)
            return refusal

        self._subscribe(session, command, then)

    def send_settling(self, key: str, conn: Connection, publications: list[Publication]) -> bool:
        """`Settling.deliver`'s send: False once `conn` is gone or no longer subscribed to `key`."""
        hub = self._hub
        session = hub.sessions.get(conn)
        if (
            session is None
            or not conn.is_open
            or not hub.registries[session.protocol].is_subscribed(key, conn)
        ):
            return False
        if publications:
            conn.send(b"".join(session.protocol.publication(p) for p in publications))
            hub.metrics.deliveries += len(publications)
        return True

    def _subscribe(
        self, session: Session, command: Subscribe, run: Callable[[str, list[Publication]], str]
    ) -> None:
        """A subscribe whose key's live messages are buffered for this connection while `run`
        (key, buffer) takes it live: the refusals every subscribe has first, the bookkeeping
        (`buffers`, the hub's `holding`) around it, and the refusal `run` returns, if any."""
        hub, conn = self._hub, session.conn
        key = sys.intern(pubsub_channel(session.app_key, command.channel))
        refusal = hub.refusal(hub.registries[session.protocol], key, conn)
        if not refusal and conn in self.buffers.get(key, {}):
            refusal = "already subscribed"
        if refusal:
            conn.send(session.protocol.subscribe_refused(command, refusal, session.socket_id))
            return
        buffer: list[Publication] = []
        self.buffers.setdefault(key, {})[conn] = buffer
        with hub.holding(key):
            try:
                refusal = run(key, buffer)
            finally:
                waiting = self.buffers.get(key, {})
                waiting.pop(conn, None)
                if not waiting:
                    self.buffers.pop(key, None)
        if refusal:
            hub.release_if_unused(key)
            if conn.is_open:
                conn.send(session.protocol.subscribe_refused(command, refusal, session.socket_id))

    def _catch_up(self, session: Session, command: Subscribe, key: str, buffer: list[Publication]) -> str:
        """The numbered subscribe's steps once its buffer is in place; a refusal, or "" once live."""
        hub = self._hub
        conn, since, policy = session.conn, command.since, session.history
        ready = hub.wait_until_carried(key)
        if not conn.is_open:
            return "connection closed"
        if not session.identity.allows(command.channel):
            return "channel not allowed"
        if not ready or hub.history is None or policy is None:
            return "redis unavailable, try again"
        limit = hub.settings.max_recovered_messages + 1 if since is not None else 0
        try:
            kept = hub.history.read(key, since.offset if since is not None else 0, limit, policy)
        except BackendUnavailable:
            return "redis unavailable, try again"
        recovered = None
        replay: tuple[Publication, ...] = ()
        after = kept.offset
        if since is not None:
            recovered = is_recoverable(since, kept, hub.settings.max_recovered_messages)
            if recovered:
                replay, after = kept.publications, since.offset
                hub.metrics.recoveries += 1
            else:
                hub.metrics.recoveries_failed += 1
        if not conn.is_open:
            return "connection closed"
        told = Position(kept.offset, kept.epoch, recovered)
        conn.send(session.protocol.subscribed(command, session.socket_id, told))
        last = self._replay(session, merge(replay, (), after))
        if last is None:
            return ""  # cut off while replaying: nothing more to send
        # No yield from here on: the buffer's rest, then the registry takes over.
        position = max(last, after)
        rest = merge((), buffer, position)
        if rest:
            conn.send(b"".join(session.protocol.publication(p) for p in rest))
            hub.metrics.deliveries += len(rest)
            position = max([position, *(p.offset for p in rest)])
        if conn.is_open:
            hub.register(hub.registries[session.protocol], key, conn)
            hub.settling.start(key, conn, position, kept.offset)
            hub.continuity.follow(key, policy, kept.offset, kept.epoch)
        return ""

    def _replay(self, session: Session, publications: list[Publication]) -> int | None:
        """Send `publications` without ever queueing more than half the output bound; the last offset.

        Waits (as a task, never the event loop) while the client reads; None
        when it does not within `ping_timeout` (it is cut off as a slow
        consumer) or goes away.
        """
        hub, conn, last = self._hub, session.conn, 0
        room = hub.settings.max_pending_bytes // 2
        for publication in publications:
            frame = session.protocol.publication(publication)
            if conn.pending_bytes and conn.pending_bytes + len(frame) > room:
                deadline = time.monotonic() + hub.settings.ping_timeout
                with hub.pool.waiting():
                    while conn.is_open and conn.pending_bytes > room // 2 and time.monotonic() < deadline:
                        gevent.sleep(0.005)
                if conn.is_open and conn.pending_bytes > room // 2:
                    session.on_backlog_full()
            if not conn.is_open:
                return None
            conn.send(frame)
            hub.metrics.deliveries += 1
            last = publication.offset
        return last
