"""Numbered history and recovery — pure: what a resume may claim, and the order of what follows.

An app keeps history when its hash has `history_size` and `history_ttl`
(SPEC "History and recovery"). Each message of such a channel gets the next
`offset` (1, 2, …) under the channel's `epoch`, in one Redis script that also
keeps it and publishes it (`gusher.broker.history`). A client that saw offset
N resumes with `since: {offset: N, epoch: E}`; the slave then answers, all or
nothing:

- recovered: every message after N, in order, then the live ones — no gap,
  no duplicate, even while pushes keep coming during the history read (live
  messages are buffered from before the read, then merged by offset);
- not recovered (another epoch, a message after N no longer kept, or more
  missing than the slave's bound): nothing replayed, live messages follow,
  and the client reloads its state.

`is_recoverable` decides; `merge` orders what the client gets after the reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gusher.core.publication import Publication


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of each channel an app keeps: the last `size` messages, none older than `ttl` seconds."""

    size: int
    ttl: int


@dataclass(frozen=True, slots=True)
class Since:
    """Where a client resumes: the last offset it saw, under that epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    """What the broker read of one channel: its epoch, latest offset and the kept messages asked for.

    `publications` are those with an offset above the `since` of the read,
    oldest first, at most the read's limit, and only those still kept (younger
    than the app's `history_ttl`).
    """

    epoch: str
    offset: int
    publications: tuple[Publication, ...] = ()


def is_recoverable(since: Since, history: ChannelHistory, max_messages: int) -> bool:
    """Whether `history` (read with `since.offset` and a limit of `max_messages`) holds every missed message.

    Recoverable means: the same epoch, and every message from `since.offset + 1`
    to the latest still kept, at most `max_messages` of them (with offsets 6..10
    kept, since 5 recovers and since 4 does not).
    """
    if since.epoch != history.epoch or since.offset > history.offset:
        return False
    missed = history.offset - since.offset
    if missed == 0:
        return True
    if missed > max_messages or len(history.publications) != missed:
        return False
    offsets = [p.offset for p in history.publications]
    return offsets == list(range(since.offset + 1, history.offset + 1))


def merge(replayed: Iterable[Publication], buffered: Iterable[Publication], after: int) -> list[Publication]:
    """What follows a subscribe reply: the replay, then the live messages buffered meanwhile.

    Numbered messages come once each, in offset order, only above `after` (the
    offset the reply stated); a buffered copy of a replayed message is dropped.
    Unnumbered ones (a raw `PUBLISH`) are never kept by history: they follow in
    the order they arrived.
    """
    out: list[Publication] = []
    last = after
    for publication in sorted((p for p in replayed if p.offset > after), key=lambda p: p.offset):
        if publication.offset > last:
            out.append(publication)
            last = publication.offset
    for publication in buffered:
        if not publication.offset:
            out.append(publication)
        elif publication.offset > last:
            out.append(publication)
            last = publication.offset
    return out
