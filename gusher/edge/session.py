"""One client's protocol state: who it is, what it speaks, and its commands, in order.

The connection hands every complete message to its session from the event
loop, where nothing may block. The session parses it with its protocol and
applies the rate limit. A command that needs no wait, with nothing queued
before it, runs right there; any other is queued, and the queue runs in the
worker's task pool, one command after the other, so a command may wait
(for its subscription to take effect, later for Redis) and each client's
replies still come in the order of its commands. Error replies to messages
that are not commands take their turn in the same queue.

A session holds no greenlet while idle: its queue exists only while it has
commands to run.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from gusher.config import Settings
from gusher.core.history import HistoryPolicy
from gusher.core.identity import Identity
from gusher.core.metrics import Metrics
from gusher.core.pusher import USER_CHANNEL_PREFIX, is_cache, needs_signature
from gusher.edge.connection import Connection, Message, RawSocket, SocketContext
from gusher.edge.pusher_state import PusherState
from gusher.edge.tasks import TaskPool
from gusher.errors import CommandError
from gusher.wire import frames
from gusher.wire.base import (
    ClientEvent,
    ClientProtocol,
    Command,
    Disconnect,
    MultiSubscribe,
    Ping,
    Signin,
    Subscribe,
    Unsubscribe,
)

log = logging.getLogger(__name__)


class PusherHandler(Protocol):
    """What a Pusher session's own commands need (gusher.edge.pusher_channels); they run as tasks."""

    def subscribe(self, session: Session, command: Subscribe) -> None:
        """A private, presence, cache or user channel: checked, joined, replied to."""

    def unsubscribed(self, session: Session, channel: str) -> None:
        """`session` left `channel` (a presence channel's member leaves)."""

    def client_event(self, session: Session, command: ClientEvent) -> None:
        """Relay a client event to the channel's other subscribers, or say why not."""

    def signin(self, session: Session, command: Signin) -> None:
        """Sign the connection in as a user, or refuse it."""


def is_special_pusher_channel(channel: str) -> bool:
    """A channel whose Pusher subscribe needs more than the plain path (a signature, a cache, a user)."""
    return needs_signature(channel) or is_cache(channel) or channel.startswith(USER_CHANNEL_PREFIX)


class SessionOwner(Protocol):
    """What a session needs of its worker (the hub)."""

    pusher: PusherHandler | None

    settings: Settings
    metrics: Metrics
    pool: TaskPool
    sockets: SocketContext
    max_queued_commands: int
    worker_number: int

    def try_subscribe(self, session: Session, channel: str) -> str | None:
        """Subscribe `session` to `channel` if that needs no wait: "", why not, or None to wait."""

    def subscribe_numbered(self, session: Session, command: Subscribe) -> None:
        """Subscribe to a history channel, resuming when asked; sends the reply and what follows."""

    def subscribe(self, session: Session, channel: str) -> str:
        """Subscribe `session` to `channel`, waiting until it takes effect; "" or why not."""

    def unsubscribe(self, session: Session, channel: str) -> bool:
        """Unsubscribe `session` from `channel`; False if it was not subscribed."""

    def forget(self, session: Session) -> None:
        """`session` closes: deliver nothing more to it."""

    def discard(self, session: Session) -> None:
        """`session`'s socket is gone."""


class Session:
    """One client of the worker: its connection, identity, protocol and command queue."""

    __slots__ = (
        "_commands",
        "_owner",
        "_tokens",
        "_tokens_at",
        "app_key",
        "conn",
        "history",
        "identity",
        "protocol",
        "pusher",
        "socket_number",
    )

    def __init__(
        self,
        owner: SessionOwner,
        sock: RawSocket,
        app_key: str,
        identity: Identity,
        protocol: ClientProtocol,
        socket_number: int = 0,
        history: HistoryPolicy | None = None,
    ) -> None:
        self._owner = owner
        # The app's history when the client connected: its channels are numbered and resumable.
        self.history = history
        self.socket_number = socket_number
        self.app_key = app_key
        self.identity = identity
        self.protocol = protocol
        # Pusher's per-connection state; None for every other protocol.
        self.pusher = PusherState() if protocol.name == "pusher" else None
        self._tokens = float(owner.settings.max_command_burst)
        self._tokens_at = time.monotonic()
        # Commands, replies and a close waiting their turn; None while no task is scheduled.
        self._commands: list[Command | bytes | Disconnect] | None = None
        self.conn = Connection(owner.sockets, sock, self)

    def __repr__(self) -> str:
        return f"<Session {self.protocol.name} app={self.app_key!r} user={self.identity.user_id!r}>"

    @property
    def socket_id(self) -> str:
        """`{worker}.{number}`: names this connection across the cluster (pushes to one socket)."""
        return f"{self._owner.worker_number}.{self.socket_number}"

    def greet(self) -> None:
        """Send what the protocol sends a new connection (once its owner knows the session)."""
        greeting = self.protocol.greeting(self.socket_id)
        if greeting:
            self.conn.send(greeting)

    @property
    def is_open(self) -> bool:
        """Whether the client still receives what is sent to it."""
        return self.conn.is_open

    def disconnect(self, why: Disconnect, at_once: bool = False) -> None:
        """Close with the code this protocol gives `why`; `at_once` skips the closing handshake."""
        code, reason = self.protocol.close_reason(why)
        if at_once:
            self.conn.abort(code, reason)
        else:
            self.conn.close(code, reason)

    # -- what the connection tells us (event loop: never block) ----------------

    def on_message(self, message: Message) -> None:
        """Parse one message and queue it, or queue the reply that says why not."""
        commands = self._commands
        if commands and isinstance(commands[-1], Disconnect):
            return  # the session closes once the commands before are answered
        if isinstance(message, frames.BinaryMessage):
            self._reply(self.protocol.binary_refused(self.socket_id))
            return
        if not self._take_token():
            self._owner.metrics.rate_limited += 1
            # Commands accepted before the flood are still answered, then the close.
            if commands is None:
                self.disconnect(Disconnect.RATE_LIMITED)
            else:
                commands.append(Disconnect.RATE_LIMITED)
            return
        try:
            command = self.protocol.parse(message.data, self.socket_id)
        except CommandError as exc:
            self._reply(exc.reply)
            return
        if commands is None and self._run_at_once(command):
            return
        self._enqueue(command)

    def on_closing(self) -> None:
        """Nothing more is delivered; queued commands are dropped by the running task."""
        self._owner.forget(self)

    def on_released(self) -> None:
        """The socket is gone."""
        self._owner.discard(self)

    def on_backlog_full(self) -> None:
        """The client does not read what it is sent: cut it off, never wait for it."""
        self._owner.metrics.slow_consumer_drops += 1
        self.conn.cut_off(*self.protocol.close_reason(Disconnect.SLOW_CONSUMER))

    def _take_token(self) -> bool:
        """Token bucket: `max_command_burst` at once, `max_commands_per_second` after."""
        settings = self._owner.settings
        now = self.conn.last_heard  # set by the read that delivered this command
        tokens = self._tokens + (now - self._tokens_at) * settings.max_commands_per_second
        self._tokens_at = now
        self._tokens = min(tokens, float(settings.max_command_burst)) - 1
        return self._tokens >= 0

    # -- the queue ---------------------------------------------------------------

    def _reply(self, frame: bytes) -> None:
        """Send `frame` after the replies of the commands still queued."""
        if self._commands is None:
            self.conn.send(frame)
        else:
            self._enqueue(frame)

    def _enqueue(self, item: Command | bytes) -> None:
        """Queue `item`; past `max_queued_commands` the client is closed (it floods us)."""
        commands = self._commands
        if commands is None:
            self._commands = [item]
            self._owner.pool.schedule(self._run)
        elif len(commands) >= self._owner.max_queued_commands:
            self.disconnect(Disconnect.TOO_MANY_COMMANDS)
        else:
            commands.append(item)

    def _run(self) -> None:
        """In the task pool: run queued commands in order until none is left."""
        commands = self._commands
        try:
            while commands and self.conn.is_open:
                item = commands.pop(0)
                if isinstance(item, bytes):
                    self.conn.send(item)
                    continue
                if isinstance(item, Disconnect):
                    self.disconnect(item)
                    break
                try:
                    self._execute(item)
                except Exception:  # a bug in one command must not cost the worker
                    log.exception("running %r for %r failed", item, self)
                    self.conn.close(frames.CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            self._commands = None

    # -- the commands ------------------------------------------------------------

    def _execute(self, command: Command) -> None:
        pusher = self._owner.pusher if self.pusher is not None else None
        if pusher is not None:
            if isinstance(command, Subscribe) and is_special_pusher_channel(command.channel):
                pusher.subscribe(self, command)
                return
            if isinstance(command, ClientEvent):
                pusher.client_event(self, command)
                return
            if isinstance(command, Signin):
                pusher.signin(self, command)
                return
        if isinstance(command, Subscribe):
            self._subscribe(command)
        elif isinstance(command, MultiSubscribe):
            self._multi_subscribe(command)
        elif isinstance(command, Unsubscribe):
            self._unsubscribe(command)
        elif isinstance(command, Ping):
            self.conn.send(self.protocol.pong(command, self.socket_id))

    def _run_at_once(self, command: Command) -> bool:
        """Run `command` here, in the event loop, if it needs no wait; False if it must be queued.

        Only when nothing is queued (the caller checks), so order holds. A
        task per command cost a greenlet spawn and two switches; most
        commands (pings, unsubscribes, subscribes to a channel the worker
        carries already) never wait.
        """
        if isinstance(command, (MultiSubscribe, ClientEvent, Signin)):
            return False  # several channels, or Redis: a task waits for them
        if (
            self.pusher is not None
            and isinstance(command, Subscribe)
            and is_special_pusher_channel(command.channel)
        ):
            return False  # a signature to check against the app, Redis to ask
        if not isinstance(command, Subscribe):
            self._execute(command)  # pings and unsubscribes never wait
            return True
        if not self.identity.allows(command.channel):
            self.conn.send(self.protocol.subscribe_refused(command, "channel not allowed", self.socket_id))
            return True
        if self.history is not None:
            return False  # it reads the channel's history: a task does
        refusal = self._owner.try_subscribe(self, command.channel)
        if refusal is None:
            return False  # the broker has to confirm the channel first: a task waits for it
        if refusal:
            self.conn.send(self.protocol.subscribe_refused(command, refusal, self.socket_id))
        else:
            self.conn.send(self.protocol.subscribed(command, self.socket_id))
        return True

    def _subscribe(self, command: Subscribe) -> None:
        if not self.identity.allows(command.channel):
            self.conn.send(self.protocol.subscribe_refused(command, "channel not allowed", self.socket_id))
            return
        if self.history is not None:
            self._owner.subscribe_numbered(self, command)
            return
        refusal = self._owner.subscribe(self, command.channel)
        if refusal:
            self.conn.send(self.protocol.subscribe_refused(command, refusal, self.socket_id))
        else:
            self.conn.send(self.protocol.subscribed(command, self.socket_id))

    def _multi_subscribe(self, command: MultiSubscribe) -> None:
        """Every channel or none: checked first, then subscribed one by one, undone if one fails."""
        refusal = self._multi_refusal(command.channels)
        done: list[str] = []
        for channel in command.channels if not refusal else ():
            refusal = self._owner.subscribe(self, channel)
            if refusal == "already subscribed":
                refusal = ""  # wanted, and so it is
            elif refusal:
                refusal = f"{channel}: {refusal}"
                break
            else:
                done.append(channel)
        if refusal:
            for channel in done:
                self._owner.unsubscribe(self, channel)
            self.conn.send(self.protocol.multi_subscribe_refused(command, refusal, self.socket_id))
        else:
            self.conn.send(self.protocol.multi_subscribed(command, self.socket_id))

    def _multi_refusal(self, channels: tuple[str, ...]) -> str:
        for channel in channels:
            if not self.identity.allows(channel):
                return f"{channel}: channel not allowed"
        return ""

    def _unsubscribe(self, command: Unsubscribe) -> None:
        if self._owner.unsubscribe(self, command.channel):
            if self.pusher is not None and self._owner.pusher is not None:
                self._owner.pusher.unsubscribed(self, command.channel)
            self.conn.send(self.protocol.unsubscribed(command, self.socket_id))
        else:
            self.conn.send(self.protocol.unsubscribe_refused(command, "not subscribed", self.socket_id))
