"""Who in this worker is subscribed to what — pure.

The registry maps each Redis pub/sub channel (`app@channel`) to the local
connections subscribed to it, and each connection to its channels. It decides
when the worker must SUBSCRIBE (first local subscriber) or UNSUBSCRIBE (last
one gone) in Redis, so one Redis subscription serves any number of local
clients. Subscribers of a channel are handed out as a cached tuple: a fan-out
iterates it without copying, and may yield mid-way while the registry changes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from gusher.keys import is_internal
from gusher.patterns import ChannelRules

Conn = TypeVar("Conn", bound=Hashable)


class Registry(Generic[Conn]):
    """Channel ↔ connection bookkeeping for one worker."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Conn]] = {}
        self._snapshots: dict[str, tuple[Conn, ...]] = {}
        # A tuple per connection, not a set: most clients hold one or two
        # channels, and a 1-tuple takes 48 bytes where a set takes 216.
        self._channels_of: dict[Conn, tuple[str, ...]] = {}

    def subscribe(self, key: str, conn: Conn) -> bool:
        """Add `conn` to `key`; True if it is the first local subscriber."""
        members = self._subscribers.get(key)
        first = members is None
        if members is None:
            members = self._subscribers[key] = set()
        members.add(conn)
        self._snapshots.pop(key, None)
        mine = self._channels_of.get(conn, ())
        if key not in mine:
            self._channels_of[conn] = (*mine, key)
        return first

    def unsubscribe(self, key: str, conn: Conn) -> bool:
        """Remove `conn` from `key`; True if no local subscriber is left."""
        members = self._subscribers.get(key)
        if members is None or conn not in members:
            return False
        members.discard(conn)
        self._snapshots.pop(key, None)
        rest = tuple(k for k in self._channels_of.get(conn, ()) if k != key)
        if rest:
            self._channels_of[conn] = rest
        else:
            self._channels_of.pop(conn, None)
        if members:
            return False
        del self._subscribers[key]
        return True

    def detach(self, conn: Conn) -> list[str]:
        """Drop every subscription of `conn`; return the keys left without subscribers."""
        emptied = []
        for key in self._channels_of.get(conn, ()):
            if self.unsubscribe(key, conn):
                emptied.append(key)
        return emptied

    def is_subscribed(self, key: str, conn: Conn) -> bool:
        """Whether `conn` receives `key`."""
        return key in self._channels_of.get(conn, ())

    def subscription_count(self, conn: Conn) -> int:
        """How many client channels `conn` is subscribed to.

        gusher's own keys (a connection's user channel, `gusher:user:…`) are
        not the client's doing and do not count against its limit.
        """
        mine = self._channels_of.get(conn, ())
        return sum(1 for key in mine if not is_internal(key))

    def subscribers(self, key: str) -> tuple[Conn, ...]:
        """The local subscribers of `key`, as a tuple that later changes never mutate."""
        snapshot = self._snapshots.get(key)
        if snapshot is None:
            snapshot = tuple(self._subscribers.get(key, ()))
            if snapshot:
                self._snapshots[key] = snapshot
        return snapshot

    def has_subscribers(self, key: str) -> bool:
        """Whether any local connection wants `key`."""
        return key in self._subscribers

    def channels(self) -> Iterable[str]:
        """Every key with at least one local subscriber."""
        return self._subscribers.keys()


def is_allowed(allowed: Iterable[str] | ChannelRules, channel: str) -> bool:
    """Whether the allowed list (webhook or JWT) lets a client subscribe to `channel`.

    `allowed` is best an `Identity.rules`, compiled once per connection; a
    plain list is compiled here (exact names and `*` globs, see `gusher.patterns`).
    """
    rules = allowed if isinstance(allowed, ChannelRules) else ChannelRules(allowed)
    return rules.allows(channel)
