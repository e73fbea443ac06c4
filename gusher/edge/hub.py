"""The worker's fan-out: its sessions, their subscriptions, and delivery.

Encode once, send bytes: the subscriber hands over each message parsed once
(a `Publication`); the hub encodes it once per client protocol that has
subscribers on its channel, joins a burst of one channel into one buffer,
and writes the same bytes to every subscriber of that protocol in a single
`send` each. Each protocol has its own registry, so a channel with only
gusher clients costs exactly one encoding, as before there were two.

Subscriptions: the hub asks its `Subscriber` (`gusher.broker.base`) for a key
when the key's first local client wants it and releases it after the last.
A subscribe waits, in the session's task, until the broker confirms the key
(`on_ready`), so a client told `subscribed` receives every later message.
The hub knows the broker only through that interface: a Redis Cluster
engine, or a fake in a test, drives it unchanged.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from gusher.broker.base import HistoryStore, PublicationBatch, Subscriber
from gusher.config import Settings
from gusher.core.history import HistoryPolicy, is_recoverable, merge
from gusher.core.identity import Identity
from gusher.core.metrics import Metrics
from gusher.core.publication import (
    CHANNELS_CONTROL,
    COUNT_CONTROL,
    MEMBER_CONTROL,
    TERMINATE_CONTROL,
    Publication,
)
from gusher.core.registry import Registry
from gusher.edge import controls
from gusher.edge.channel_events import ChannelEvents
from gusher.edge.connection import Connection, RawSocket, SocketContext
from gusher.edge.continuity import Continuity
from gusher.edge.session import PusherHandler, Session
from gusher.edge.settling import Settling
from gusher.edge.tasks import TaskPool
from gusher.errors import BackendUnavailable
from gusher.keys import (
    USER_PREFIX,
    is_targetable_user,
    pubsub_channel,
    split_pubsub_channel,
    user_channel,
    worker_channel,
)
from gusher.wire.base import ClientProtocol, Disconnect, Position, Subscribe

# The `skip` of a fan-out whose excluded socket lives on another worker.
_NOBODY: Any = object()

# Yield to the event loop after this many sends, so that a huge fan-out never
# starves the worker's heartbeat or its gunicorn watchdog (FACTS).
_SENDS_PER_YIELD = 4096

# What a prepared subscribe's step returns (`Hub.subscribe_prepared`): a refusal or "", the frames
# that answer the subscribe, and what of the messages buffered meanwhile follows them (None: all).
Prepared = tuple[str, bytes, Callable[[list[Publication]], list[Publication]] | None]


class Hub:
    """Owns one worker's sessions and delivers publications to them."""

    def __init__(
        self,
        settings: Settings,
        subscriber: Subscriber,
        metrics: Metrics,
        pool: TaskPool,
        loop: Any = None,
        history: HistoryStore | None = None,
    ) -> None:
        self.settings = settings
        self.subscriber = subscriber
        self.history = history
        self.metrics = metrics
        self.pool = pool
        self.sockets = SocketContext(
            loop if loop is not None else gevent.get_hub().loop,
            settings.max_message_size,
            settings.max_pending_bytes,
            metrics,
        )
        # Commands a client may have queued: a full burst, plus enough to
        # subscribe to all its allowed channels while the first one waits.
        self.max_queued_commands = (
            settings.max_command_burst + 2 * settings.max_subscriptions_per_connection + 64
        )
        # Every open connection and its session: a dict entry is ~30 bytes per
        # connection where a set's table takes 50-105 (issue 4).
        self.sessions: dict[Connection, Session] = {}
        self.app_connections: dict[str, int] = {}  # open connections per app key (quotas)
        # Socket ids are `{worker_number}.{number}`: the worker's channel carries pushes to one
        # socket, so none needs a Redis subscription of its own (a dict entry here instead).
        self.worker_number = secrets.randbits(48)
        self.worker_key = sys.intern(worker_channel(self.worker_number))
        self._last_socket = 0
        self._sockets: dict[int, Connection] = {}
        # One registry per protocol with subscribers: the fan-out encodes once for each.
        self.registries: dict[ClientProtocol, Registry[Connection]] = {}
        self.handshakes = 0  # handshakes in flight, each holding a connection slot (`reserve`)
        self._pending: dict[str, int] = {}  # subscribes between `want` and their registration
        self._ready: dict[str, gevent.event.Event] = {}  # keys subscribes wait on
        # History subscribes being caught up: their live messages, buffered until the replay is sent.
        self._catching_up: dict[str, dict[Connection, list[Publication]]] = {}
        # Numbered keys followed across pub/sub gaps and reconnects.
        self.continuity = Continuity(history, metrics, settings.max_recovered_messages, self._caught_up)
        # Caught-up connections that still skip late copies of what their replay held.
        self.settling: Settling[Connection] = Settling(self.continuity.live_offset)
        # Pusher's private, presence, cache and user channels, client events and sign-in
        # (gusher.edge.pusher_channels), set by the worker's services; None serves no Pusher client.
        self.pusher: PusherHandler | None = None
        # Pusher webhooks of channel occupancy (gusher.edge.channel_events); None sends none.
        self.channel_events: ChannelEvents | None = None
        self.subscriber.want(self.worker_key)

    # -- sessions ----------------------------------------------------------------

    def attach(
        self,
        sock: RawSocket,
        app_key: str,
        identity: Identity,
        protocol: ClientProtocol,
        history: HistoryPolicy | None = None,
    ) -> Session:
        """Adopt an upgraded, non-blocking socket speaking `protocol` (`history`: its app's)."""
        if protocol not in self.registries:
            self.registries[protocol] = Registry()
        # Interned: every connection of an app shares one key string, and so
        # does every subscription to a channel (`subscribe`).
        self._last_socket += 1
        session = Session(self, sock, sys.intern(app_key), identity, protocol, self._last_socket, history)
        self.sessions[session.conn] = session
        self._sockets[session.socket_number] = session.conn
        self.app_connections[session.app_key] = self.app_connections.get(session.app_key, 0) + 1
        self.metrics.connections_total += 1
        session.greet()  # may find the peer gone: the session is known by then, so it is discarded
        return session

    def reserve(self) -> None:
        """Hold a connection slot for a handshake in flight, or refuse it (503) when none is left.

        The slot is taken before the webhook call and given back by `unreserve`
        once the handshake is over (`attach` has counted the connection by
        then): checking only held connections let 600 concurrent handshakes
        leave a worker limited to 200 holding 264 (issue 17).
        """
        if len(self.sessions) + self.handshakes >= self.settings.max_connections_per_worker:
            raise BackendUnavailable("this worker holds its maximum of connections")
        self.handshakes += 1

    def unreserve(self) -> None:
        """A handshake that held a slot is over, upgraded or refused."""
        self.handshakes -= 1

    def forget(self, session: Session) -> None:
        """Stop delivering to `session`: drop its subscriptions (and its presence memberships)."""
        events = self.channel_events
        for key in self.registries[session.protocol].detach(session.conn):
            self._release_if_unused(key)
            if events is not None:
                events.changed(key)
        if session.pusher is not None and session.pusher.presence and self.pusher is not None:
            for key in list(session.pusher.presence):
                self.pusher.unsubscribed(session, split_pubsub_channel(key)[1])

    def discard(self, session: Session) -> None:
        """`session` released its socket; it is no longer counted."""
        if self.sessions.pop(session.conn, None) is not None:
            left = self.app_connections.get(session.app_key, 1) - 1
            if left > 0:
                self.app_connections[session.app_key] = left
            else:
                self.app_connections.pop(session.app_key, None)
        self._sockets.pop(session.socket_number, None)

    def close_all(self, why: Disconnect) -> None:
        """Close every connection (worker shutdown)."""
        for session in list(self.sessions.values()):
            session.disconnect(why)

    # -- subscriptions (called from sessions' tasks) -----------------------------

    def try_subscribe(self, session: Session, channel: str) -> str | None:
        """Subscribe `session` to `channel` if that needs no wait: "", the refusal, or None to wait.

        Never blocks, so the event loop may call it: a subscribe to a key the
        broker carries already (every client of a busy channel) is answered
        at once, without a task.
        """
        key = sys.intern(pubsub_channel(session.app_key, channel))
        registry = self.registries[session.protocol]
        refusal = self._refusal(registry, key, session.conn)
        if refusal:
            return refusal
        if not self.subscriber.want(key):
            return None
        self._register(registry, key, session.conn)
        return ""

    def subscribe(self, session: Session, channel: str) -> str:
        """Subscribe `session` to `channel` once the broker carries it; "" or the refusal.

        Blocks the calling task (never the event loop) until the broker
        confirms the key, for at most `subscribe_timeout`.
        """
        key = sys.intern(pubsub_channel(session.app_key, channel))
        registry = self.registries[session.protocol]
        conn = session.conn
        refusal = self._refusal(registry, key, conn)
        if refusal:
            return refusal
        self._pending[key] = self._pending.get(key, 0) + 1
        try:
            ready = self.subscriber.want(key) or self._wait_ready(key)
        finally:
            left = self._pending.pop(key) - 1
            if left:
                self._pending[key] = left
        allowed = session.identity.allows(channel)  # again: a runtime change may have come meanwhile
        if ready and conn.is_open and allowed:
            self._register(registry, key, conn)
            return ""
        self._release_if_unused(key)
        if not conn.is_open:
            return "connection closed"
        return "redis unavailable, try again" if allowed else "channel not allowed"

    def _refusal(self, registry: Registry[Connection], key: str, conn: Connection) -> str:
        if registry.is_subscribed(key, conn):
            return "already subscribed"
        limit = self.settings.max_subscriptions_per_connection
        if registry.subscription_count(conn) >= limit:
            return f"subscription limit of {limit} reached"
        return ""

    def _wait_ready(self, key: str) -> bool:
        event = self._ready.get(key)
        if event is None:
            event = self._ready[key] = gevent.event.Event()
        with self.pool.waiting():
            ready = event.wait(self.settings.subscribe_timeout)
        if not ready and self._pending.get(key) == 1 and self._ready.get(key) is event:
            del self._ready[key]  # the last subscribe waiting for it gave up
        return ready

    def subscribe_numbered(self, session: Session, command: Subscribe) -> None:
        """Subscribe to a history channel: the reply with its position, the replay, then live.

        Live messages of the key are buffered for this connection from before
        the history read until the replay is sent (`_catching_up`), then merged
        by offset (`gusher.core.history.merge`): no gap, no duplicate, whatever
        is pushed meanwhile. The replay is paced so that it never fills the
        connection's output bound: a healthy client is never cut off for it.
        """
        self._subscribe_buffered(
            session, command, lambda key, buffer: self._catch_up(session, command, key, buffer)
        )

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
        conn, protocol = session.conn, session.protocol
        registry = self.registries[protocol]

        def then(key: str, buffer: list[Publication]) -> str:
            ready = self.subscriber.want(key) or self._wait_ready(key)
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
                self._register(registry, key, conn)
            return refusal

        self._subscribe_buffered(session, command, then)

    def _subscribe_buffered(
        self, session: Session, command: Subscribe, run: Callable[[str, list[Publication]], str]
    ) -> None:
        """A subscribe whose key's live messages are buffered for this connection while `run`
        (key, buffer) takes it live: the refusals every subscribe has first, the bookkeeping
        (`_catching_up`, `_pending`) around it, and the refusal `run` returns, if any."""
        conn = session.conn
        key = sys.intern(pubsub_channel(session.app_key, command.channel))
        refusal = self._refusal(self.registries[session.protocol], key, conn)
        if not refusal and conn in self._catching_up.get(key, {}):
            refusal = "already subscribed"
        if refusal:
            conn.send(session.protocol.subscribe_refused(command, refusal, session.socket_id))
            return
        buffer: list[Publication] = []
        self._catching_up.setdefault(key, {})[conn] = buffer
        self._pending[key] = self._pending.get(key, 0) + 1
        try:
            refusal = run(key, buffer)
        finally:
            waiting = self._catching_up.get(key, {})
            waiting.pop(conn, None)
            if not waiting:
                self._catching_up.pop(key, None)
            left = self._pending.pop(key) - 1
            if left:
                self._pending[key] = left
        if refusal:
            self._release_if_unused(key)
            if conn.is_open:
                conn.send(session.protocol.subscribe_refused(command, refusal, session.socket_id))

    def _catch_up(self, session: Session, command: Subscribe, key: str, buffer: list[Publication]) -> str:
        """The numbered subscribe's steps once its buffer is in place; a refusal, or "" once live."""
        conn, since, policy = session.conn, command.since, session.history
        ready = self.subscriber.want(key) or self._wait_ready(key)
        if not conn.is_open:
            return "connection closed"
        if not session.identity.allows(command.channel):
            return "channel not allowed"
        if not ready or self.history is None or policy is None:
            return "redis unavailable, try again"
        limit = self.settings.max_recovered_messages + 1 if since is not None else 0
        try:
            kept = self.history.read(key, since.offset if since is not None else 0, limit, policy)
        except BackendUnavailable:
            return "redis unavailable, try again"
        recovered = None
        replay: tuple[Publication, ...] = ()
        after = kept.offset
        if since is not None:
            recovered = is_recoverable(since, kept, self.settings.max_recovered_messages)
            if recovered:
                replay, after = kept.publications, since.offset
                self.metrics.recoveries += 1
            else:
                self.metrics.recoveries_failed += 1
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
            self.metrics.deliveries += len(rest)
            position = max([position, *(p.offset for p in rest)])
        if conn.is_open:
            self._register(self.registries[session.protocol], key, conn)
            self.settling.start(key, conn, position, kept.offset)
            self.continuity.follow(key, policy, kept.offset, kept.epoch)
        return ""

    def _send_settling(self, key: str, conn: Connection, publications: list[Publication]) -> bool:
        """`Settling.deliver`'s send: False once `conn` is gone or no longer subscribed to `key`."""
        session = self.sessions.get(conn)
        if (
            session is None
            or not conn.is_open
            or not self.registries[session.protocol].is_subscribed(key, conn)
        ):
            return False
        if publications:
            conn.send(b"".join(session.protocol.publication(p) for p in publications))
            self.metrics.deliveries += len(publications)
        return True

    def _replay(self, session: Session, publications: list[Publication]) -> int | None:
        """Send `publications` without ever queueing more than half the output bound; the last offset.

        Waits (as a task, never the event loop) while the client reads; None
        when it does not within `ping_timeout` (it is cut off as a slow
        consumer) or goes away.
        """
        conn, last = session.conn, 0
        room = self.settings.max_pending_bytes // 2
        for publication in publications:
            frame = session.protocol.publication(publication)
            if conn.pending_bytes and conn.pending_bytes + len(frame) > room:
                deadline = time.monotonic() + self.settings.ping_timeout
                with self.pool.waiting():
                    while conn.is_open and conn.pending_bytes > room // 2 and time.monotonic() < deadline:
                        gevent.sleep(0.005)
                if conn.is_open and conn.pending_bytes > room // 2:
                    session.on_backlog_full()
            if not conn.is_open:
                return None
            conn.send(frame)
            self.metrics.deliveries += 1
            last = publication.offset
        return last

    def unsubscribe(self, session: Session, channel: str) -> bool:
        """Unsubscribe `session` from `channel`; False if it was not subscribed."""
        key = pubsub_channel(session.app_key, channel)
        registry = self.registries[session.protocol]
        if not registry.is_subscribed(key, session.conn):
            return False
        registry.unsubscribe(key, session.conn)
        self._release_if_unused(key)
        if self.channel_events is not None:
            self.channel_events.changed(key)
        return True

    def follow_user(self, session: Session) -> None:
        """Also deliver to `session` what is pushed to its user (`gusher:user:{app}@{user_id}`).

        The user channel is one more key in the same registry, so fan-out,
        `forget` and the one-subscription-per-worker rule apply to it
        unchanged; the registry does not count it against the client's
        subscription limit, and no client can name it in a subscribe. It is
        not waited for: a push to a user is for connections already there.
        """
        user_id = session.identity.user_id
        if not is_targetable_user(user_id):
            return
        key = sys.intern(user_channel(session.app_key, user_id))
        if self.registries[session.protocol].subscribe(key, session.conn):
            self.subscriber.want(key)

    def _release_if_unused(self, key: str) -> None:
        """Release `key` in the broker when no local client has it or is subscribing to it."""
        if key in self._pending:
            return
        for registry in self.registries.values():
            if registry.has_subscribers(key):
                return
        self.continuity.forget(key)
        self.subscriber.release(key)
        if self.channel_events is not None:
            self.channel_events.vacated(key)

    def _register(self, registry: Registry[Connection], key: str, conn: Connection) -> None:
        """`conn` receives `key` from now on; the key's first subscriber here is told to the
        channel events (Pusher's channel_occupied)."""
        first = registry.subscribe(key, conn)
        if self.channel_events is not None:
            self.channel_events.changed(key)
        if first and self.channel_events is not None and len(self.registries) > 1:
            first = not any(r.has_subscribers(key) for r in self.registries.values() if r is not registry)
        if first and self.channel_events is not None:
            self.channel_events.occupied(key)

    # -- from the broker (the subscriber's greenlet) -----------------------------

    def on_ready(self, key: str) -> None:
        """The broker carries `key` now: wake the subscribes waiting for it."""
        event = self._ready.pop(key, None)
        if event is not None:
            event.set()
        self.continuity.on_ready(key)  # after a reconnect: what was missed, read back

    def on_publications(self, batch: PublicationBatch) -> None:
        """Deliver a batch from the broker, in order, each publication encoded once per protocol."""
        by_key: dict[str, list[Publication]] = {}
        for key, publication in batch:
            group = by_key.get(key)
            if group is None:
                by_key[key] = [publication]
            else:
                group.append(publication)
        sends = 0
        for key, publications in by_key.items():
            if key == self.worker_key:
                controls.to_sockets(self, publications)
                continue
            # One message on its key is the common case of per-user channels, one per delivery:
            # its fields are read directly, no generator per check (issue 16).
            if len(publications) == 1:
                control, numbered = bool(publications[0].control), publications[0].offset
            else:
                control = any(publication.control for publication in publications)
                numbered = publications[-1].offset or publications[0].offset
            if control:
                self._with_controls(key, publications)
                continue
            if numbered:
                ready = self.continuity.on_live(key, publications)
                if ready is None:
                    continue  # held until the key is caught up from history
                publications = ready
            sends = self._fan_out(key, publications, sends)

    def _caught_up(self, key: str, publications: list[Publication], renumbered: bool) -> None:
        """What a catch-up read back (`Continuity`), to every subscriber; a new numbering to all of it."""
        if renumbered:
            self.settling.end(key)  # their offsets belong to the old numbering
        self._fan_out(key, publications)

    def _fan_out(
        self, key: str, publications: list[Publication], sends: int = 0, skip: Connection | None = None
    ) -> int:
        """Every local subscriber of `key` gets `publications`, encoded once per protocol.

        A publication that excludes a socket (`exclude`) goes out on its own,
        past that socket if it is one of this worker's (`skip`). Returns the
        sends so far (the caller yields to the loop every `_SENDS_PER_YIELD`).
        """
        single = len(publications) == 1
        if skip is None and (
            publications[0].exclude if single else any(publication.exclude for publication in publications)
        ):
            for publication in publications:
                excluded = self._local_socket(publication.exclude) if publication.exclude else None
                sends = self._fan_out(key, [publication], sends, excluded or _NOBODY)
            return sends
        metrics = self.metrics
        catching_up = self._catching_up.get(key)
        if catching_up:
            for buffer in catching_up.values():
                buffer.extend(publications)
        settling = self.settling.of(key)
        for protocol, registry in self.registries.items():
            subscribers = registry.subscribers(key)
            if settling:
                subscribers = tuple(conn for conn in subscribers if conn not in settling)
            if skip is not None and skip in subscribers:
                subscribers = tuple(conn for conn in subscribers if conn is not skip)
            if not subscribers:
                continue
            if single:
                data = protocol.publication(publications[0])
            else:
                data = b"".join([protocol.publication(publication) for publication in publications])
            if not data:
                continue  # nothing this protocol delivers (a member event to gusher clients)
            Connection.send_to_all(subscribers, data)
            metrics.deliveries += len(subscribers) * len(publications)
            sends += len(subscribers)
            if sends >= _SENDS_PER_YIELD:
                sends = 0
                gevent.sleep(0)
        if settling:
            self.settling.deliver(key, publications, lambda conn, pubs: self._send_settling(key, conn, pubs))
        return sends

    def _with_controls(self, key: str, publications: list[Publication]) -> None:
        """A key with a control among its messages: each in turn, the control applied first."""
        for publication in publications:
            control = publication.control
            if control == CHANNELS_CONTROL and key.startswith(USER_PREFIX):
                controls.change_channels(self, key, publication)
            elif control == TERMINATE_CONTROL and key.startswith(USER_PREFIX):
                controls.terminate(self, key)
            elif control in (MEMBER_CONTROL, COUNT_CONTROL) and not key.startswith(USER_PREFIX):
                self._fan_out(key, [publication])  # only Pusher's protocol encodes it
            elif not control:
                self.on_publications([(key, publication)])

    def _local_socket(self, socket_id: str) -> Connection | None:
        """This worker's connection named `socket_id` (`{worker}.{number}`), if it is one."""
        worker, _, number = socket_id.partition(".")
        if worker != str(self.worker_number) or not number.isdigit() or len(number) > 19:
            return None
        return self._sockets.get(int(number))

    def connection(self, number: int) -> Connection | None:
        """This worker's connection with socket number `number` (`{worker}.{number}`), if open."""
        return self._sockets.get(number)

    # -- what presence reads (gusher.ops.presence.PresenceSource) ----------------

    def online_users(self) -> list[tuple[str, str]]:
        """(app_key, user_id) of each open connection."""
        return [(s.app_key, s.identity.user_id) for s in list(self.sessions.values()) if s.is_open]

    def subscribed_keys(self) -> list[str]:
        """Every key with a local subscriber, whatever its protocol."""
        if len(self.registries) == 1:
            return next(iter(self.registries.values())).channels()
        return list(dict.fromkeys(key for r in self.registries.values() for key in r.channels()))

    def local_count(self, key: str) -> int:
        """How many local connections receive `key`, whatever their protocol."""
        return sum(len(registry.subscribers(key)) for registry in self.registries.values())

    def subscriber_users(self, key: str) -> tuple[int, list[str]]:
        """How many local connections receive `key`, and their user ids."""
        sessions = self.sessions
        users = []
        count = 0
        for registry in self.registries.values():
            for conn in registry.subscribers(key):
                count += 1
                session = sessions.get(conn)
                if session is not None:
                    users.append(session.identity.user_id)
        return count, users
