"""The harness end to end: a tiny quick run starts everything, measures, and cleans up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil

from bench.procs import ROOT, ServerProcess

KEYS = (
    "connections",
    "mem_kb_per_conn",
    "fanout_p99_ms",
    "fanout_push_p99_ms",
    "limit_fanout_ms",
    "fanout_ratio",
    "limit_paired_ratio",
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


def test_servers_share_the_runners_session() -> None:
    """A server gets its own process group (to be stopped whole) but not its own session.

    Linux's scheduler autogroups share the CPU between sessions first: a server
    in a session of its own got half the box against the load generator while
    the limit baseline shared the runner's, and gusher's fan-out took a third
    longer than the same code in the runner's session.
    """
    server = ServerProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.getpgid(server.pid) == server.pid
        assert os.getsid(server.pid) == os.getsid(0)
    finally:
        server.stop()
    assert not server.alive()
