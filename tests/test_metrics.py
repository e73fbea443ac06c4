"""One worker's counters and gauges, read in one snapshot (pure)."""

from __future__ import annotations

import pytest

from gusher.core.metrics import COUNTERS, Metrics


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
    assert set(first) == {"connections", *COUNTERS}


def test_a_gauge_cannot_shadow_a_counter() -> None:
    """A name means one thing in a snapshot."""
    with pytest.raises(ValueError):
        Metrics().add_gauge("deliveries", lambda: 0)
