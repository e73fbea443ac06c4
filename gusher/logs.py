"""How gusher's own log lines look, and how often a repeated one is written.

gunicorn formats its lines `[time] [pid] [LEVEL] message`; gusher's lines had
no handler of their own and went out bare through Python's last-resort
handler (warnings only, no time, no level: 312 untimestamped
`BackendUnavailable: …` lines in one probe, issue 17). `gunicorn_config`,
gunicorn's `logconfig_dict` (gunicorn.conf.py), gives every line, gunicorn's
and gusher's, the time, pid, level and logger, or makes each one JSON object
(`GUSHER_LOG_FORMAT=json`); gusher's lines pass a `RepeatFilter`, which lets
one line of each kind through per window and says how many it held back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

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


class JsonFormatter(logging.Formatter):
    """One JSON object per line (`GUSHER_LOG_FORMAT=json`), for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        """`{"time", "level", "logger", "pid", "message"[, "exception"]}`."""
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def gunicorn_config(level: str = "info", log_format: str = "text") -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its lines and gusher's alike, on stderr, in one format.

    Every line has the time, the level, the pid and the logger (gunicorn's own
    format has no logger); gusher's lines also go through a `RepeatFilter`.
    """
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if log_format == "json" else {"format": FORMAT, "datefmt": DATE_FORMAT}
    )

    def logger(*handlers: str) -> dict[str, Any]:
        return {"level": level.upper(), "handlers": list(handlers), "propagate": False}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "WARNING", "handlers": ["plain"]},
        "loggers": {
            "gunicorn.error": logger("plain"),
            # Never written (gusher.worker.GusherLogger): request lines carry clients' tokens.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "gusher": logger("held_back"),
        },
        "filters": {"repeats": {"()": RepeatFilter}},
        "handlers": {
            "plain": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"},
            "held_back": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "filters": ["repeats"],
                "stream": "ext://sys.stderr",
            },
        },
        "formatters": {"line": formatter},
    }
