"""How gusher's own log lines look, and how often a repeated one is written.

gunicorn formats its lines `[time] [pid] [LEVEL] message`; gusher's lines had
no handler of their own and went out bare through Python's last-resort
handler (warnings only, no time, no level: 312 untimestamped
`BackendUnavailable: …` lines in one probe, issue 17). `configure` gives the
`gusher` loggers gunicorn's shape plus the logger's name, and a
`RepeatFilter` that lets one line of each kind through per window and says
how many it held back.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"


class RepeatFilter(logging.Filter):
    """At most one record of a kind per `window` seconds; the next one says how many were held back.

    A kind is the logger, the level, the message template and its first
    argument when that is a string (an error's class name, a loop's name):
    a Redis outage answered 503 a thousand times writes one line per window.
    """

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._kinds: dict[tuple[object, ...], list[float]] = {}  # kind → [window start, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        """Let `record` through unless one of its kind passed less than `window` seconds ago."""
        first = record.args[0] if isinstance(record.args, tuple) and record.args else None
        kind = (record.name, record.levelno, record.msg, first if isinstance(first, str) else None)
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.window:
            seen[1] += 1
            return False
        if len(self._kinds) >= 1000:
            self._kinds.clear()  # a crude bound: a thousand kinds of lines in one window
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} ({int(seen[1])} more like it in the last {self.window:g} s)"
        self._kinds[kind] = [now, 0]
        return True


def configure(level: str = "info") -> None:
    """Write the `gusher` loggers' lines to stderr, timestamped, with repeats held back (idempotent)."""
    logger = logging.getLogger("gusher")
    if any(isinstance(f, RepeatFilter) for h in logger.handlers for f in h.filters):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    handler.addFilter(RepeatFilter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
