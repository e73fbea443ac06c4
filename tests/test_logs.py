"""gusher's log lines: gunicorn's shape, and one line per kind per window (pure)."""

from __future__ import annotations

import logging

from gusher.logs import RepeatFilter


def record(message: str, *args: object, name: str = "gusher.app") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, None)


def test_repeats_are_held_back_and_counted() -> None:
    """Issue 17 #13: a thousand 503s write one line per window, and the next line says how many were held."""
    now = [0.0]
    repeat = RepeatFilter(window=10, clock=lambda: now[0])
    assert repeat.filter(record("%s: %s", "BackendUnavailable", "redis unavailable"))
    assert not any(repeat.filter(record("%s: %s", "BackendUnavailable", f"try {i}")) for i in range(999))
    now[0] = 10.5
    later = record("%s: %s", "BackendUnavailable", "redis unavailable")
    assert repeat.filter(later)
    assert "999 more like it in the last 10 s" in later.getMessage()


def test_kinds_are_told_apart() -> None:
    """Another template, logger or string first argument is another kind, let through at once."""
    repeat = RepeatFilter(window=10, clock=lambda: 0.0)
    assert repeat.filter(record("%s: %s", "BackendUnavailable", "x"))
    assert repeat.filter(record("%s: %s", "RequestTimeout", "x"))
    assert repeat.filter(record("%s failed: %s", "heartbeat", "x"))
    assert repeat.filter(record("%s: %s", "BackendUnavailable", "x", name="gusher.edge.routes"))
