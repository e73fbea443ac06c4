"""A named greenlet that does one thing every interval, and never dies silently."""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

log = logging.getLogger(__name__)


class Periodic:
    """Calls `action` every `interval` seconds in a greenlet of its own.

    A failing call (Redis down, a bug) is logged with the loop's name and the
    loop goes on: the next call is the retry.
    """

    def __init__(self, name: str, interval: float, action: Callable[[], None]) -> None:
        self.name = name
        self.interval = interval
        self.action = action
        self.greenlet: gevent.Greenlet | None = None

    @property
    def running(self) -> bool:
        """Whether the loop's greenlet is alive."""
        return self.greenlet is not None and not self.greenlet.dead

    def start(self) -> None:
        """Spawn the loop (idempotent)."""
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """End the loop."""
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None

    def _run(self) -> None:
        while True:
            try:
                self.action()
            except Exception as exc:  # say so each time, keep going
                log.warning("%s failed: %s", self.name, exc)
            gevent.sleep(self.interval)
