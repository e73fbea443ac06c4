"""Concurrent pushes of one worker share their Redis round trips (issue 16, push API).

A master worker serves many requests at once (gevent). Each push used to
send its own PUBLISH and wait for its own reply: one round trip, two
syscalls and redis-py's per-command work each (26 % of a push's CPU in a
profile). Here the requests in flight hand their commands to one flusher
greenlet, which sends everything waiting as one pipeline (not a
transaction: each command stands alone) and hands each reply back to its
request. Under light load a flush holds one command and costs what it did;
under load one round trip carries dozens.

Order is kept where it exists: commands are sent in the order they were
handed over, and a request waits for its reply before answering, so the
pushes of one client, sent one after another, stay in order. Concurrent
requests were never ordered.

Only under gevent's monkey-patching (gunicorn's gevent worker): elsewhere
(a sync or threaded worker, a script) the caller runs its command itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from gusher.broker.client import Client

# At most this many commands per pipeline; the rest wait for the next flush.
_MAX_BATCH = 256


# Patching is never undone: once seen, it is not looked up again (asked per push, it was ~0.8 %
# of a push's CPU).
_seen_patched = False


def _patched() -> bool:
    global _seen_patched
    if _seen_patched:
        return True
    try:
        from gevent import monkey

        _seen_patched = bool(monkey.is_module_patched("socket"))
    except Exception:
        return False
    return _seen_patched


class Coalescer:
    """Sends the commands handed to it from many greenlets in shared pipelines."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._waiting: list[tuple[Callable[[Any], Any], gevent.event.AsyncResult]] = []
        self._flusher: gevent.Greenlet | None = None

    @property
    def active(self) -> bool:
        """Whether calls are shared (gevent has patched the sockets)."""
        return _patched()

    def call(self, queue: Callable[[Any], Any]) -> Any:
        """`queue(pipeline)` adds one command to a pipeline; its reply is returned (or raised)."""
        result = gevent.event.AsyncResult()
        self._waiting.append((queue, result))
        if self._flusher is None:
            self._flusher = gevent.spawn(self._flush)
        return result.get()

    def _flush(self) -> None:
        try:
            while self._waiting:
                taken, self._waiting = self._waiting[:_MAX_BATCH], self._waiting[_MAX_BATCH:]
                pipe = self._client.pipeline(transaction=False)
                batch = []
                for queue, result in taken:
                    try:
                        queue(pipe)
                    except Exception as exc:  # a command that cannot even be queued is its caller's
                        result.set_exception(exc)
                        continue
                    batch.append((queue, result))
                if not batch:
                    continue
                try:
                    replies = pipe.execute(raise_on_error=False)
                except Exception as exc:  # the connection failed: every command of the batch did
                    for _, result in batch:
                        result.set_exception(exc)
                    continue
                for (_, result), reply in zip(batch, replies, strict=True):
                    if isinstance(reply, Exception):
                        result.set_exception(reply)
                    else:
                        result.set(reply)
        finally:
            self._flusher = None
