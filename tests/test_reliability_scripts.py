"""The soak and reconnect-storm scripts in their short modes (the long runs are in docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from tests.support import ROOT


def run_script(name: str, *args: str, timeout: float = 240) -> dict:
    """Run a script; it must pass and leave nothing in its temporary directory (issue 15)."""
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [sys.executable, str(ROOT / "reliability" / name), *args],
            cwd=ROOT,
            env=dict(os.environ, TMPDIR=scratch),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert result.returncode == 0, summary
        assert os.listdir(scratch) == []
    return summary


def test_soak_short_mode_loses_nothing() -> None:
    """20 s of churn, subscribes and 100 pushes/s: every expected delivery arrives, in order."""
    summary = run_script("soak.py", "--seconds", "20", "--clients", "80", "--max-growth", "30")
    assert summary["ok"] and summary["completeness"] == 1.0 and summary["broken_sessions"] == 0
    assert summary["expected_deliveries"] > 1000 and summary["connects"] > 80


def test_storm_short_mode_bounds_the_webhook() -> None:
    """400 clients reconnecting at once: all come back, and webhook calls stay within 2 workers x 4."""
    summary = run_script("storm.py", "--clients", "400", "--concurrency", "4", "--deadline", "40")
    assert summary["reconnected"] == summary["delivered_after"] == 400
    assert summary["webhook_max_in_flight"] <= 8
