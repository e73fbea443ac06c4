"""Who in this worker is subscribed to what — pure.

The registry maps each Redis pub/sub channel (`app@channel`) to the local
connections subscribed to it, and each connection to its channels. It decides
when the worker must SUBSCRIBE (first local subscriber) or UNSUBSCRIBE (last
one gone) in Redis, so one Redis subscription serves any number of local
clients. Subscribers of a channel are handed out as a cached tuple: a fan-out
iterates it without copying, and may yield mid-way while the registry changes.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from gusher.keys import is_internal

Conn = TypeVar("Conn", bound=Hashable)

_NOBODY: Any = object()  # `_only.get` default: a Conn may be any hashable, even None


class Registry(Generic[Conn]):
    """Channel ↔ connection bookkeeping for one worker.

    Memory is most of what an idle connection costs, so the shapes are chosen
    for size (measured at 5k connections per worker, issue 4):
    - a key with one local subscriber (every user channel, most private
      channels) maps straight to it in `_only`: a dict entry, where a
      one-member set would take 216 bytes more;
    - two or more subscribers are a dict used as an ordered set: about 30
      bytes per member, where a set's sparser table costs 50 to 105;
    - a connection's keys are a tuple: most clients hold one or two, and a
      1-tuple takes 48 bytes where a set takes 216.
    """

    def __init__(self) -> None:
        self._only: dict[str, Conn] = {}
        self._subscribers: dict[str, dict[Conn, None]] = {}
        self._snapshots: dict[str, tuple[Conn, ...]] = {}
        self._channels_of: dict[Conn, tuple[str, ...]] = {}

    def subscribe(self, key: str, conn: Conn) -> bool:
        """Add `conn` to `key`; True if it is the first local subscriber."""
        first = False
        members = self._subscribers.get(key)
        if members is not None:
            members[conn] = None
            self._snapshots.pop(key, None)
        else:
            only = self._only.get(key, _NOBODY)
            if only is _NOBODY:
                self._only[key] = conn
                first = True
            elif only != conn:
                del self._only[key]
                self._subscribers[key] = {only: None, conn: None}
        mine = self._channels_of.get(conn, ())
        if key not in mine:
            self._channels_of[conn] = (*mine, key)
        return first

    def unsubscribe(self, key: str, conn: Conn) -> bool:
        """Remove `conn` from `key`; True if no local subscriber is left."""
        only = self._only.get(key, _NOBODY)
        if only is not _NOBODY:
            if only != conn:
                return False
            del self._only[key]
            emptied = True
        else:
            members = self._subscribers.get(key)
            if members is None or conn not in members:
                return False
            del members[conn]
            self._snapshots.pop(key, None)
            if len(members) == 1:
                del self._subscribers[key]
                self._only[key] = next(iter(members))
            emptied = False
        rest = tuple(k for k in self._channels_of.get(conn, ()) if k != key)
        if rest:
            self._channels_of[conn] = rest
        else:
            self._channels_of.pop(conn, None)
        return emptied

    def detach(self, conn: Conn) -> list[str]:
        """Drop every subscription of `conn`; return the keys left without subscribers."""
        emptied = []
        for key in self._channels_of.get(conn, ()):
            if self.unsubscribe(key, conn):
                emptied.append(key)
        return emptied

    def keys_of(self, conn: Conn) -> tuple[str, ...]:
        """Every key `conn` receives (its user channel included)."""
        return self._channels_of.get(conn, ())

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
        only = self._only.get(key, _NOBODY)
        if only is not _NOBODY:
            return (only,)
        snapshot = self._snapshots.get(key)
        if snapshot is None:
            members = self._subscribers.get(key)
            if not members:
                return ()
            snapshot = self._snapshots[key] = tuple(members)
        return snapshot

    def has_subscribers(self, key: str) -> bool:
        """Whether any local connection wants `key`."""
        return key in self._only or key in self._subscribers

    def channels(self) -> list[str]:
        """Every key with at least one local subscriber, as a new list (callers may yield)."""
        return [*self._only, *self._subscribers]
