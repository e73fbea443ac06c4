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
engine, or a fake in a test, drives it unchanged. Subscribes that read or
write Redis before going live (history, presence, cache channels) are
`gusher.edge.buffered_subscribes`'s; the fan-out extends their buffers.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import gevent.event

from gusher.broker.base import HistoryStore, PublicationBatch, Subscriber
from gusher.config import Settings
from gusher.core.history import HistoryPolicy
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
from gusher.edge.buffered_subscribes import BufferedSubscribes
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
from gusher.wire.base import ClientProtocol, Disconnect, Subscribe

# The `skip` of a fan-out whose excluded socket lives on another worker.
_NOBODY: Any = object()

# Yield to the event loop after this many sends, so that a huge fan-out never
# starves the worker's heartbeat or its gunicorn watchdog (FACTS).
_SENDS_PER_YIELD = 4096


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
        # Numbered keys followed across pub/sub gaps and reconnects.
        self.continuity = Continuity(history, metrics, settings.max_recovered_messages, self._caught_up)
        # Caught-up connections that still skip late copies of what their replay held.
        self.settling: Settling[Connection] = Settling(self.continuity.live_offset)
        # Subscribes that read Redis before going live, the key's messages buffered meanwhile.
        self.buffered = BufferedSubscribes(self)
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
            self.release_if_unused(key)
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
        refusal = self.refusal(registry, key, session.conn)
        if refusal:
            return refusal
        if not self.subscriber.want(key):
            return None
        self.register(registry, key, session.conn)
        return ""

    def subscribe(self, session: Session, channel: str) -> str:
        """Subscribe `session` to `channel` once the broker carries it; "" or the refusal.

        Blocks the calling task (never the event loop) until the broker
        confirms the key, for at most `subscribe_timeout`.
        """
        key = sys.intern(pubsub_channel(session.app_key, channel))
        registry = self.registries[session.protocol]
        conn = session.conn
        refusal = self.refusal(registry, key, conn)
        if refusal:
            return refusal
        with self.holding(key):
            ready = self.wait_until_carried(key)
        allowed = session.identity.allows(channel)  # again: a runtime change may have come meanwhile
        if ready and conn.is_open and allowed:
            self.register(registry, key, conn)
            return ""
        self.release_if_unused(key)
        if not conn.is_open:
            return "connection closed"
        return "redis unavailable, try again" if allowed else "channel not allowed"

    def refusal(self, registry: Registry[Connection], key: str, conn: Connection) -> str:
        """Why `conn` may not subscribe to `key` (already subscribed, at its limit), or ""."""
        if registry.is_subscribed(key, conn):
            return "already subscribed"
        limit = self.settings.max_subscriptions_per_connection
        if registry.subscription_count(conn) >= limit:
            return f"subscription limit of {limit} reached"
        return ""

    @contextmanager
    def holding(self, key: str) -> Iterator[None]:
        """`key` is not released meanwhile (`release_if_unused`): a subscribe to it is under way."""
        self._pending[key] = self._pending.get(key, 0) + 1
        try:
            yield
        finally:
            left = self._pending.pop(key) - 1
            if left:
                self._pending[key] = left

    def wait_until_carried(self, key: str) -> bool:
        """True once the broker carries `key` (at once if it does); False after `subscribe_timeout`.

        Called `holding(key)`: the last of the key's waiters to give up drops its event.
        """
        if self.subscriber.want(key):
            return True
        event = self._ready.get(key)
        if event is None:
            event = self._ready[key] = gevent.event.Event()
        with self.pool.waiting():
            ready = event.wait(self.settings.subscribe_timeout)
        if not ready and self._pending.get(key) == 1 and self._ready.get(key) is event:
            del self._ready[key]  # the last subscribe waiting for it gave up
        return ready

    def subscribe_numbered(self, session: Session, command: Subscribe) -> None:
        """Subscribe to a history channel: its position, its replay, then live (`BufferedSubscribes`)."""
        self.buffered.subscribe_numbered(session, command)

    def unsubscribe(self, session: Session, channel: str) -> bool:
        """Unsubscribe `session` from `channel`; False if it was not subscribed."""
        key = pubsub_channel(session.app_key, channel)
        registry = self.registries[session.protocol]
        if not registry.is_subscribed(key, session.conn):
            return False
        registry.unsubscribe(key, session.conn)
        self.release_if_unused(key)
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

    def release_if_unused(self, key: str) -> None:
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

    def register(self, registry: Registry[Connection], key: str, conn: Connection) -> None:
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
        buffers = self.buffered.buffers.get(key)
        if buffers:
            for buffer in buffers.values():
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
            self.settling.deliver(
                key, publications, lambda conn, pubs: self.buffered.send_settling(key, conn, pubs)
            )
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
