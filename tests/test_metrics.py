"""One worker's counters and gauges, read in one snapshot (pure)."""

from __future__ import annotations

import pytest

from gusher.core.metrics import BUCKETS, COUNTERS, HISTOGRAMS, Metrics


def test_a_snapshot_reads_gauges_now_and_every_counter() -> None:
    """Gauges come from their owners at read time; counters are what was added."""
    metrics = Metrics()
    live = [1, 2]
    metrics.add_gauge("connections", lambda: len(live))
    metrics.deliveries += 5
    first = metrics.snapshot()
    live.append(3)
    assert first["connections"] == 2 and metrics.snapshot()["connections"] == 3
    assert first["deliveries"] == 5
    assert set(first) == {"connections", *COUNTERS, *HISTOGRAMS}


def test_a_gauge_cannot_shadow_a_counter() -> None:
    """A name means one thing in a snapshot."""
    with pytest.raises(ValueError):
        Metrics().add_gauge("deliveries", lambda: 0)


def test_durations_fall_into_their_buckets() -> None:
    """A histogram counts each duration in the first bucket whose bound is not below it; past the
    last bound, in +Inf; and keeps their sum."""
    metrics = Metrics()
    for seconds in (0.0005, 0.001, 0.3, 60.0):
        metrics.observe("push_seconds", seconds)
    counts = metrics.snapshot()["push_seconds"]
    assert counts[0] == 2 and counts[BUCKETS.index(0.5)] == 1 and counts[len(BUCKETS)] == 1
    assert counts[-1] == 0.0005 + 0.001 + 0.3 + 60.0
