"""Caught-up connections that skip late copies of their replay (issue 12): no duplicate.

A resume's history read can answer before Redis has handed this worker the
last messages it counted (they are published inside the same script), so a
copy of an offset the replay already held may still arrive after the
connection joins the fan-out. Until this worker has received the read's top
offset live (or for `SETTLE_SECONDS`, for messages published before it
subscribed, which never arrive), such a connection gets only what is newer
than it has. Once the live stream reaches the top, everything passes: a
numbering that started again included.

`newer` is pure; `start` arms the timer that ends a connection's settling.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import gevent

from gusher.core.publication import Publication

Conn = TypeVar("Conn", bound=Hashable)

SETTLE_SECONDS = 2.0


def newer(position: int, top: int, publications: list[Publication]) -> tuple[list[Publication], int, bool]:
    """What of a live batch a connection at `position` gets, its new position, and whether it settled."""
    settled, out = False, []
    for publication in publications:
        offset = publication.offset
        if settled or not offset or offset > position:
            out.append(publication)
            position = max(position, offset)
        settled = settled or offset >= top
    return out, position, settled


class Settling(Generic[Conn]):
    """Per key, the settling connections and their [position, top]."""

    def __init__(self, live_offset: Callable[[str], int]) -> None:
        self._live_offset = live_offset
        self._by_key: dict[str, dict[Conn, list[int]]] = {}

    def start(self, key: str, conn: Conn, position: int, top: int) -> None:
        """`conn` joined `key` at `position` after a read up to `top`; nothing to do if it is live already."""
        if self._live_offset(key) >= top:
            return  # everything up to `top` reached this worker already: nothing late can come
        state = self._by_key.setdefault(key, {})[conn] = [position, top]
        gevent.spawn_later(SETTLE_SECONDS, self._timed_out, key, conn, state)

    def of(self, key: str) -> dict[Conn, list[int]] | None:
        """The connections of `key` still settling (the fan-out leaves them to `deliver`)."""
        return self._by_key.get(key)

    def deliver(
        self, key: str, publications: list[Publication], send: Callable[[Conn, list[Publication]], bool]
    ) -> None:
        """`send` each settling connection what is newer than it has; False from `send`: it is gone."""
        settling = self._by_key.get(key)
        if not settling:
            return
        for conn, state in list(settling.items()):
            out, state[0], settled = newer(state[0], state[1], publications)
            if not send(conn, out) or settled:
                del settling[conn]
        if not settling:
            self._by_key.pop(key, None)

    def end(self, key: str) -> None:
        """Every connection of `key` stops settling (a new numbering: their offsets are the old one's)."""
        self._by_key.pop(key, None)

    def _timed_out(self, key: str, conn: Conn, state: list[int]) -> None:
        settling = self._by_key.get(key)
        if settling is not None and settling.get(conn) is state:  # not a later subscribe's
            del settling[conn]
            if not settling:
                del self._by_key[key]
