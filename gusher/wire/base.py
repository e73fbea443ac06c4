"""What every client protocol is: bytes in → commands, a Publication → bytes out.

A protocol is one stateless object, shared by all connections that speak it
(per-connection state lives in the edge's session). It turns a client's text
message into one of the protocol-neutral commands below, and every reply,
publication and keep-alive into complete WebSocket frames, so the edge only
moves bytes. The hub encodes each publication once per protocol that has
subscribers on its channel and writes those same bytes to all of them.

Adding a protocol (e.g. Pusher's): subclass `ClientProtocol`, map its
messages onto these commands (add a command where none fits), and give it a
route in `gusher.edge.routes`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Union

from gusher.core.history import Since
from gusher.core.publication import Publication


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Start receiving `channel`; `id` is the client's request id, echoed in the reply.

    `since` (a history channel): resume after that offset of that epoch.
    `auth` and `channel_data` (Pusher): the app's signature of a private or
    presence channel, and a presence member's JSON `{user_id, user_info}`.
    """

    id: Any
    channel: str
    since: Since | None = None
    auth: str = ""
    channel_data: str | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a history channel stood when a subscription took effect, told in its reply.

    `recovered` is None when the subscribe did not ask to resume.
    """

    offset: int
    epoch: str
    recovered: bool | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop receiving `channel`."""

    id: Any
    channel: str


@dataclass(frozen=True, slots=True)
class MultiSubscribe:
    """Start receiving every channel of `channels`, all or none."""

    id: Any
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    """An application-level ping, answered with a pong."""

    id: Any


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """A client's own event (Pusher's `client-*`) for the other subscribers of `channel`."""

    channel: str
    event: str
    data: Any


@dataclass(frozen=True, slots=True)
class Signin:
    """Pusher's user sign-in: `user_data` (JSON with an `id`) signed by the app's backend."""

    auth: str
    user_data: str


Command = Union[Subscribe, MultiSubscribe, Unsubscribe, Ping, ClientEvent, Signin]  # noqa: UP007 - runtime alias


class Disconnect(enum.Enum):
    """Why the server ends a connection; each protocol has its own close code for each."""

    SHUTDOWN = "server shutting down"
    RATE_LIMITED = "command rate limit exceeded"
    TOO_MANY_COMMANDS = "too many commands in flight"
    SLOW_CONSUMER = "too slow: output buffer full"
    PING_TIMEOUT = "ping timeout"
    TERMINATED = "connections terminated by the app"


class ClientProtocol(ABC):
    """One client protocol, sans-I/O. Every method returns complete frames.

    `socket_id` names the connection (`{worker}.{number}`, digits only, as
    Pusher's); a protocol puts it where its clients expect it.
    """

    name: str

    @abstractmethod
    def parse(self, text: bytes, socket_id: str) -> Command:
        """Turn one text message (valid UTF-8) into a command.

        Raises:
            gusher.errors.CommandError: the message is not a usable command;
                its `reply` (complete frames) says why.
        """

    @abstractmethod
    def greeting(self, socket_id: str) -> bytes:
        """Frames sent when a connection opens (b"" when the protocol sends none)."""

    @abstractmethod
    def publication(self, publication: Publication) -> bytes:
        """The frame carrying `publication` to a subscriber."""

    @abstractmethod
    def subscribed(self, command: Subscribe, socket_id: str, position: Position | None = None) -> bytes:
        """The reply to a subscribe that took effect (with the channel's position, for history)."""

    @abstractmethod
    def subscribe_refused(self, command: Subscribe, reason: str, socket_id: str) -> bytes:
        """The reply to a subscribe that did not."""

    @abstractmethod
    def multi_subscribed(self, command: MultiSubscribe, socket_id: str) -> bytes:
        """The reply to a multi-subscribe that took effect for every channel."""

    @abstractmethod
    def multi_subscribe_refused(self, command: MultiSubscribe, reason: str, socket_id: str) -> bytes:
        """The reply to a multi-subscribe that took effect for none."""

    @abstractmethod
    def unsubscribed(self, command: Unsubscribe, socket_id: str) -> bytes:
        """The reply to an unsubscribe that took effect."""

    @abstractmethod
    def unsubscribe_refused(self, command: Unsubscribe, reason: str, socket_id: str) -> bytes:
        """The reply to an unsubscribe that did not."""

    @abstractmethod
    def pong(self, command: Ping, socket_id: str) -> bytes:
        """The reply to an application-level ping."""

    @abstractmethod
    def binary_refused(self, socket_id: str) -> bytes:
        """The reply to a binary message."""

    @abstractmethod
    def keepalive(self) -> bytes:
        """What the server sends to a quiet client to learn whether it is still there."""

    @abstractmethod
    def close_reason(self, why: Disconnect) -> tuple[int, str]:
        """The close code and reason this protocol's clients expect for `why`."""
