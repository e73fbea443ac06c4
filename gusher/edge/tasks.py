"""A bounded pool of greenlets for work that may block (commands that do Redis I/O).

The event loop's read callbacks cannot block (a blocking gevent call there
raises `BlockingSwitchOutError`), so whatever a client's command has to wait
for (its subscription taking effect, later a history read or a presence
write) runs here. Tasks wait in one FIFO queue; at most `size` greenlets run
them, spawned when work arrives and ended when the queue is empty, so an idle
worker holds none. `schedule` never blocks, so the event loop can call it.

gevent's own `Pool` spawns a greenlet per task and blocks the caller when
full, which the event loop cannot afford; this one queues instead.

A task that only waits for an event (no CPU, no connection held) lends its
slot meanwhile (`waiting`), so a Redis outage that parks a thousand
subscribes does not hold back the commands of everyone else.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gevent

log = logging.getLogger(__name__)


class TaskPool:
    """Runs queued callables in at most `size` greenlets at once, in the order scheduled."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a task pool needs at least one greenlet")
        self.size = size
        self._queue: deque[Callable[[], None]] = deque()
        self._active = 0  # greenlets running a task or looking for one (not lending their slot)
        self.greenlets = 0  # alive, lending or not

    def schedule(self, task: Callable[[], None]) -> None:
        """Run `task` soon; never blocks."""
        self._queue.append(task)
        if self._active < self.size:
            self._spawn()

    @property
    def queued(self) -> int:
        """Tasks waiting for a greenlet."""
        return len(self._queue)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a wait that does no work: lend this task's slot to the queue meanwhile."""
        self._active -= 1
        if self._queue and self._active < self.size:
            self._spawn()
        try:
            yield
        finally:
            self._active += 1

    def _spawn(self) -> None:
        self._active += 1
        self.greenlets += 1
        gevent.spawn(self._work)

    def _work(self) -> None:
        try:
            # Over the bound (after lending a slot and getting it back): leave the queue to the others.
            while self._queue and self._active <= self.size:
                task = self._queue.popleft()
                try:
                    task()
                except Exception:  # the task's own guard failed: keep the pool
                    log.exception("task %r failed", task)
        finally:
            self._active -= 1
            self.greenlets -= 1
