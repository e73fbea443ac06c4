"""The harness end to end: a tiny quick run starts everything, measures, and cleans up."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil

from bench.procs import ROOT

KEYS = (
    "connections",
    "mem_kb_per_conn",
    "fanout_p99_ms",
    "limit_fanout_ms",
    "deliveries_per_s",
    "limit_deliveries_per_s",
)


def _leftovers(since: float) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["create_time"] >= since and (
            "bench.webhook" in cmdline
            or "gusher-valkey" in cmdline
            or "wsgi_slave:app" in cmdline
            or "bench.loadgen" in cmdline
        ):
            found.append(cmdline)
    return found


def test_quick_run_prints_json_last_and_leaves_nothing() -> None:
    """`bench.run --quick` on 200 connections ends with the JSON line and stops every process."""
    started = time.time() - 1
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "-n", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    last = result.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    assert result.returncode == 0, result.stderr[-3000:]
    for key in KEYS:
        assert isinstance(figures[key], (int, float)), key
    assert figures["connections"] == 200
    assert figures["fanout_delivery_pct"] == 100.0
    time.sleep(0.5)
    assert _leftovers(started) == []
