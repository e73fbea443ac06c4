"""The worker's fan-out: its connections, their commands, and message delivery.

Encode once, send bytes: each message from Redis is validated and framed once
per worker, and a burst of messages of one channel is joined into one buffer,
so every subscriber gets the whole burst in a single `send`. Commands are
handled in the event loop's callbacks; a subscribe that must wait for Redis
parks the connection's later commands (in order) until `on_ready`, so a
client's commands are answered in the order it sent them.
"""

from __future__ import annotations

import collections
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

import gevent

from gusher import frames, protocol
from gusher.auth import Identity
from gusher.bus import MessageBatch
from gusher.config import Settings
from gusher.connection import OPEN, Connection
from gusher.keys import is_targetable_user, pubsub_channel, user_channel
from gusher.registry import Registry, is_allowed

log = logging.getLogger(__name__)

# Yield to the event loop after this many sends, so that a huge fan-out never
# starves the worker's heartbeat or its gunicorn watchdog (FACTS).
_SENDS_PER_YIELD = 4096


@dataclass
class Stats:
    """Counters of one worker, reported in its heartbeat."""

    messages_in: int = 0
    deliveries: int = 0
    invalid_messages: int = 0
    slow_consumer_drops: int = 0
    ping_timeouts: int = 0
    rate_limited: int = 0
    connections_total: int = 0


@dataclass
class _PendingSubscribe:
    conn: Connection
    command: protocol.Command
    deadline: float


class Hub:
    """Owns the connections of one worker and delivers messages to them."""

    def __init__(self, settings: Settings, bus: Any, loop: Any = None) -> None:
        self.settings = settings
        self.bus = bus
        self.loop = loop if loop is not None else gevent.get_hub().loop
        self.registry: Registry[Connection] = Registry()
        # A dict used as a set: ~30 bytes per connection where a set's table
        # takes 50-105 (issue 4 counts every byte an idle connection holds).
        self.connections: dict[Connection, None] = {}
        self.stats = Stats()
        self._pending: dict[str, list[_PendingSubscribe]] = {}
        # Commands a client may send while a subscribe waits for Redis: enough
        # to subscribe to all its allowed channels in one go, but bounded.
        self._max_queued_commands = 2 * settings.max_subscriptions_per_connection + 64

    # -- connections -----------------------------------------------------------

    def attach(self, sock: Any, app_key: str, identity: Identity) -> Connection:
        """Adopt an upgraded, non-blocking socket."""
        # Interned: every connection of an app shares one key string, and so
        # does every subscription to a channel (`_subscribe`).
        conn = Connection(self, sock, sys.intern(app_key), identity)
        self.connections[conn] = None
        self.stats.connections_total += 1
        return conn

    def is_full(self) -> bool:
        """Whether this worker holds its maximum of connections."""
        return len(self.connections) >= self.settings.max_connections_per_worker

    def forget(self, conn: Connection) -> None:
        """Stop delivering to `conn`: drop its subscriptions and parked subscribes."""
        for key in self.registry.detach(conn):
            if key not in self._pending:
                self.bus.release(key)
        if conn.blocked:
            for key, waiting in list(self._pending.items()):
                kept = [p for p in waiting if p.conn is not conn]
                if kept:
                    self._pending[key] = kept
                    continue
                del self._pending[key]
                if not self.registry.has_subscribers(key):
                    self.bus.release(key)
        conn.blocked = False
        conn.commands = None

    def discard(self, conn: Connection) -> None:
        """`conn` released its socket; it is no longer counted."""
        self.connections.pop(conn, None)

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection (worker shutdown)."""
        for conn in list(self.connections):
            conn.close(code, reason)

    # -- events from clients ---------------------------------------------------

    def handle_event(self, conn: Connection, event: frames.Event) -> None:
        """React to one complete message or control frame from `conn`."""
        if isinstance(event, frames.TextMessage):
            self._receive_command(conn, event.data)
        elif isinstance(event, frames.Ping):
            conn.send(frames.encode_pong(event.payload))
        elif isinstance(event, frames.Close):
            conn.on_close_frame(event)
        elif isinstance(event, frames.BinaryMessage):
            conn.send(
                frames.encode_text(protocol.error_event("binary frames are not supported; send JSON text"))
            )
        # Pong: last_heard is already updated by the read itself.

    def _take_command_token(self, conn: Connection) -> bool:
        """Token bucket: `max_command_burst` at once, `max_commands_per_second` after."""
        now = conn.last_heard  # set by the read that delivered this command
        settings = self.settings
        tokens = conn.command_tokens + (now - conn.tokens_at) * settings.max_commands_per_second
        conn.tokens_at = now
        conn.command_tokens = min(tokens, float(settings.max_command_burst)) - 1
        return conn.command_tokens >= 0

    def _receive_command(self, conn: Connection, text: bytes) -> None:
        if not self._take_command_token(conn):
            self.stats.rate_limited += 1
            conn.close(frames.CLOSE_POLICY_VIOLATION, "command rate limit exceeded")
            return
        try:
            command = protocol.parse_command(text)
        except protocol.CommandError as exc:
            conn.send(frames.encode_text(exc.reply))
            return
        if conn.blocked:
            if len(conn.commands) >= self._max_queued_commands:
                conn.close(frames.CLOSE_POLICY_VIOLATION, "too many commands in flight")
                return
            conn.commands.append(command)
            return
        self._run(conn, command)

    def _run(self, conn: Connection, command: protocol.Command) -> None:
        if command.event == protocol.SUBSCRIBE:
            self._subscribe(conn, command)
        elif command.event == protocol.UNSUBSCRIBE:
            self._unsubscribe(conn, command)
        else:
            conn.send(frames.encode_text(command.succeeded()))

    def _subscribe(self, conn: Connection, command: protocol.Command) -> None:
        key = sys.intern(pubsub_channel(conn.app_key, command.channel))
        reason = self._refusal(conn, key, command.channel)
        if reason:
            conn.send(frames.encode_text(command.failed(reason)))
            return
        if self.bus.want(key):
            self.registry.subscribe(key, conn)
            conn.send(frames.encode_text(command.succeeded()))
            return
        deadline = time.monotonic() + self.settings.subscribe_timeout
        self._pending.setdefault(key, []).append(_PendingSubscribe(conn, command, deadline))
        conn.blocked = True
        if conn.commands is None:
            conn.commands = collections.deque()

    def _refusal(self, conn: Connection, key: str, channel: str) -> str:
        if not is_allowed(conn.identity.rules, channel):
            return "channel not allowed"
        if self.registry.is_subscribed(key, conn):
            return "already subscribed"
        if self.registry.subscription_count(conn) >= self.settings.max_subscriptions_per_connection:
            return f"subscription limit of {self.settings.max_subscriptions_per_connection} reached"
        return ""

    def _unsubscribe(self, conn: Connection, command: protocol.Command) -> None:
        key = pubsub_channel(conn.app_key, command.channel)
        if not self.registry.is_subscribed(key, conn):
            conn.send(frames.encode_text(command.failed("not subscribed")))
            return
        if self.registry.unsubscribe(key, conn) and key not in self._pending:
            self.bus.release(key)
        conn.send(frames.encode_text(command.succeeded()))

    def _resume(self, conn: Connection) -> None:
        """Run the commands `conn` sent while a subscribe was parked."""
        conn.blocked = False
        queued = conn.commands
        while queued and not conn.blocked and conn.state == OPEN:
            self._run(conn, queued.popleft())

    # -- events from Redis -----------------------------------------------------

    def on_ready(self, key: str) -> None:
        """Redis confirmed `key`: complete the subscribes parked on it."""
        for parked in self._pending.pop(key, ()):
            conn = parked.conn
            if conn.state != OPEN:
                continue
            self.registry.subscribe(key, conn)
            conn.send(frames.encode_text(parked.command.succeeded()))
            self._resume(conn)

    def expire_pending(self, now: float) -> None:
        """Fail parked subscribes whose Redis confirmation is overdue."""
        for key, waiting in list(self._pending.items()):
            expired = [p for p in waiting if p.deadline <= now]
            if not expired:
                continue
            kept = [p for p in waiting if p.deadline > now]
            if kept:
                self._pending[key] = kept
            else:
                del self._pending[key]
                if not self.registry.has_subscribers(key):
                    self.bus.release(key)
            for parked in expired:
                parked.conn.send(frames.encode_text(parked.command.failed("redis unavailable, try again")))
                self._resume(parked.conn)

    def on_messages(self, batch: MessageBatch) -> None:
        """Deliver a batch of `(pubsub channel, payload)` from Redis, in order."""
        self.stats.messages_in += len(batch)
        by_key: dict[bytes, list[bytes]] = {}
        for channel, payload in batch:
            if not payload.isascii():
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    self.stats.invalid_messages += 1
                    log.warning("dropped a message on %r: payload is not UTF-8", channel[:200])
                    continue
            by_key.setdefault(channel, []).append(frames.encode_text(payload))
        sends = 0
        for channel, encoded in by_key.items():
            subscribers = self.registry.subscribers(channel.decode("utf-8", "surrogateescape"))
            if not subscribers:
                continue
            data = encoded[0] if len(encoded) == 1 else b"".join(encoded)
            Connection.send_to_all(subscribers, data)
            self.stats.deliveries += len(subscribers) * len(encoded)
            sends += len(subscribers)
            if sends >= _SENDS_PER_YIELD:
                sends = 0
                gevent.sleep(0)

    # -- keep-alive ------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Ping quiet clients, drop dead ones, finish stalled closes."""
        ping_after = self.settings.ping_interval
        dead_after = ping_after + self.settings.ping_timeout
        ping = frames.encode_ping(b"")
        for conn in list(self.connections):
            quiet = now - conn.last_heard
            if conn.state != OPEN:
                if now - conn.closing_since > self.settings.close_timeout:
                    conn.release()
            elif ping_after and quiet > dead_after and conn.awaiting_pong:
                self.stats.ping_timeouts += 1
                conn.abort(frames.CLOSE_POLICY_VIOLATION, "ping timeout")
            elif ping_after and quiet > ping_after and not conn.awaiting_pong:
                conn.awaiting_pong = True
                conn.send(ping)

    # -- user targeting (issue 6) ----------------------------------------------

    def follow_user(self, conn: Connection) -> None:
        """Also deliver to `conn` what is pushed to its user (`gusher:user:{app}@{user_id}`).

        The user channel is one more key in the same registry, so fan-out,
        `forget` and the one-Redis-subscription-per-worker rule apply to it
        unchanged; the registry does not count it against the client's
        subscription limit, and no client can name it in a subscribe.
        """
        user_id = conn.identity.user_id
        if not is_targetable_user(user_id):
            return
        key = sys.intern(user_channel(conn.app_key, user_id))
        if self.registry.subscribe(key, conn):
            self.bus.want(key)
