"""Nothing lost inside a worker: history channels caught up after a pub/sub gap (issue 12 item 3).

Redis pub/sub keeps nothing: what is published while a worker's pub/sub
connection is down, or dropped on the way, never reaches it. For numbered
channels (apps with history) the worker notices and reads the missing
messages back from history:

- after a reconnect (`on_ready` again for a key it already had), from the
  last offset it received or the latest a subscribe read;
- on a gap in the live stream (a batch starting past the next offset).

While a key is being caught up its live messages wait in a buffer; then the
history's and the buffer's are merged by offset (`gusher.core.history.merge`)
and fanned out as one batch, so subscribers get every message once, in
order. A numbering that went backwards is a new epoch: delivered as it is.
Raw `PUBLISH`es (unnumbered) are never held back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import gevent.lock

from gusher.broker.base import HistoryStore
from gusher.core.history import HistoryPolicy, merge
from gusher.core.metrics import Metrics
from gusher.core.publication import Publication
from gusher.edge.settling import SETTLE_SECONDS, newer
from gusher.errors import BackendUnavailable

log = logging.getLogger(__name__)

# History reads one worker runs at once for catch-ups (a reconnect finds every key behind).
_CONCURRENT_READS = 16


class Continuity:
    """Per numbered key: the last offset received, the app's policy, and catch-ups in progress."""

    def __init__(
        self,
        history: HistoryStore | None,
        metrics: Metrics,
        max_messages: int,
        deliver: Callable[[str, list[Publication], bool], object],
    ) -> None:
        self._history = history
        self._metrics = metrics
        self._max_messages = max_messages
        self._deliver = deliver
        self._offsets: dict[str, int] = {}  # the latest offset received live, per key
        self._read_tops: dict[str, int] = {}  # the latest offset a subscribe's read saw, per key
        self._policies: dict[str, HistoryPolicy] = {}  # keys with a history subscriber here
        self._epochs: dict[str, str] = {}  # the numbering those offsets belong to
        self._repairing: dict[str, list[Publication]] = {}
        self._late: dict[str, list[int]] = {}  # key → [position, top] after a catch-up (`newer`)
        self._reads = gevent.lock.BoundedSemaphore(_CONCURRENT_READS)

    def live_offset(self, key: str) -> int:
        """The latest offset this worker received on `key` (0: none yet)."""
        return self._offsets.get(key, 0)

    def follow(self, key: str, policy: HistoryPolicy, top: int, epoch: str) -> None:
        """A history subscriber read `key` up to `top`: the key is caught up after gaps from now on."""
        self._policies[key] = policy
        if epoch != self._epochs.get(key):
            self._epochs[key] = epoch
            self._read_tops[key] = top
        elif top > self._read_tops.get(key, 0):
            self._read_tops[key] = top

    def forget(self, key: str) -> None:
        """No local subscriber has `key` any more."""
        self._offsets.pop(key, None)
        self._read_tops.pop(key, None)
        self._policies.pop(key, None)
        self._epochs.pop(key, None)
        self._late.pop(key, None)

    def on_ready(self, key: str) -> None:
        """The broker carries `key` (again): what was published while it did not is read back."""
        since = max(self._offsets.get(key, 0), self._read_tops.get(key, 0))
        if since and key in self._policies and key not in self._repairing:
            self._start(key, since, [])

    def on_live(self, key: str, publications: list[Publication]) -> list[Publication] | None:
        """What of a live batch to deliver now; None when it waits for a catch-up."""
        buffer = self._repairing.get(key)
        if buffer is not None:
            buffer.extend(publications)
            return None
        late = self._late.get(key)
        if late is not None:  # after a catch-up: its messages' own pub/sub copies may still come
            publications, late[0], settled = newer(late[0], late[1], publications)
            if settled:
                del self._late[key]
        known = last = self._offsets.get(key, 0)
        for publication in publications:
            offset = publication.offset
            if not offset:
                continue
            if last and offset > last + 1 and key in self._policies:
                log.info("offset gap on %r: %d after %d; catching up from history", key[:200], offset, last)
                self._start(key, known, list(publications))
                return None
            last = offset  # the next one, or a numbering that started again (a new epoch)
        if last:
            self._offsets[key] = last
        return publications

    def _start(self, key: str, since: int, buffer: list[Publication]) -> None:
        self._repairing[key] = buffer
        gevent.spawn(self._catch_up, key, since)

    def _catch_up(self, key: str, since: int) -> None:
        policy = self._policies.get(key)
        kept, renumbered = None, False
        if policy is not None and self._history is not None:
            with self._reads:
                try:
                    kept = self._history.read(key, since, self._max_messages, policy)
                    if kept.epoch != self._epochs.get(key, kept.epoch) or kept.offset < since:
                        # A new numbering (Redis lost it, or the meta expired): all of it is new here.
                        log.info(
                            "%r is numbered anew (epoch %s); delivering it from the start",
                            key[:200],
                            kept.epoch,
                        )
                        since = 0
                        kept = self._history.read(key, 0, self._max_messages, policy)
                        renumbered = True
                    self._epochs[key] = kept.epoch
                except BackendUnavailable as exc:
                    log.warning("could not catch %r up from history: %s", key[:200], exc)
                    kept = None
        buffer = self._repairing.pop(key, [])
        if kept is not None and kept.offset >= since:
            out = merge(kept.publications, buffer, since)
            self._metrics.history_catchups += 1
            behind = kept.offset - since
            if behind > len(kept.publications):
                log.warning(
                    "%r: %d messages missed, %d still kept", key[:200], behind, len(kept.publications)
                )
            log.info("caught %r up from history after offset %d", key[:200], since)
        else:
            out = buffer  # a new numbering (or no history to read): deliver what came, as it came
        numbered = [p.offset for p in out if p.offset]
        if numbered:
            self._offsets[key] = numbered[-1]
            if kept is not None:
                # The read counted messages whose pub/sub copies may arrive after it, as for a
                # resuming connection (`gusher.edge.settling`): skip them until the stream passes.
                state = self._late[key] = [numbered[-1], kept.offset]
                gevent.spawn_later(SETTLE_SECONDS, self._settled, key, state)
        if out:
            self._deliver(key, out, renumbered)

    def _settled(self, key: str, state: list[int]) -> None:
        if self._late.get(key) is state:
            del self._late[key]
