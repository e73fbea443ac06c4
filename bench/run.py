"""`python -m bench.run [--quick]`: start everything, run the scenarios, report, tear down.

Quick mode (`make bench-quick`, under a minute) runs gusher and the limit
baseline at one N and prints, as its last line, one JSON object with the
headline figures. Full mode (`make bench`) runs every system (gusher, limit,
and the peers that `bench/setup.sh` installed) at every N, saves the raw
figures in bench/results/, and rewrites BENCHMARKS.md and bench/plots/*.png.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from bench import scenarios
from bench.clients import ClientPool
from bench.measure import connect_only, log, run_system
from bench.procs import Reaper
from bench.scenarios import Plan
from bench.systems import GusherSystem, Infra, LimitSystem, workers_for


def quick(n: int) -> dict[str, Any]:
    """gusher and the limit baseline at one N; returns the headline JSON."""
    plan = Plan(latency_pushes=15, bursts=5, idle_seconds=1.0, settle_seconds=0.5)
    infra = Infra()
    Reaper.add(infra.stop)
    with ClientPool(ClientPool.processes_for(n)) as pool, ClientPool(ClientPool.processes_for(n)) as ref_pool:
        reference = scenarios.start_reference(infra, ref_pool, n, workers_for(n), plan)
        try:
            limit = run_system(LimitSystem, infra, pool, n, plan, reference)
            gusher = run_system(GusherSystem, infra, pool, n, plan, reference)
            jwt = connect_only(GusherSystem(infra, workers_for(n), protocol="jwt"), pool, n, plan)
        finally:
            reference.system.stop()
    return headline(gusher, limit, jwt)


def headline(
    gusher: dict[str, Any], limit: dict[str, Any], jwt: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The quick-mode JSON: gusher's figures beside the baseline's, and their ratios;
    `connect_per_s_jwt` is gusher's connect rate with JWT clients (no webhook call)."""
    out = {
        "connections": gusher.get("connected", 0),
        "mem_kb_per_conn": round(gusher.get("mem_kb_per_conn", 0.0), 2),
        "abs_kb_per_conn": round(gusher.get("abs_kb_per_conn", 0.0), 2),
        "idle_cpu_pct": round(gusher.get("idle_cpu_pct", 0.0), 2),
        "fanout_p50_ms": round(gusher.get("fanout_p50_ms", 0.0), 3),
        "fanout_p99_ms": round(gusher.get("fanout_p99_ms", 0.0), 3),
        # Issue 4's figure: one push to N subscribers, its p99 (median over the pushes).
        "fanout_push_p99_ms": round(gusher.get("fanout_push_p99_ms", 0.0), 3),
        "fanout_delivery_pct": round(gusher.get("fanout_delivery_pct", 0.0), 3),
        # Issue 3: the baseline's time to write one frame to the same sockets,
        # measured in alternation with gusher's pushes (scenarios.Reference).
        "limit_fanout_ms": round(gusher.get("paired_limit_write_ms", limit.get("write_ms", 0.0)), 3),
        # The baseline's own push→receive p99 (its command pipe included), for reference.
        "limit_push_p99_ms": round(limit.get("fanout_p99_ms", 0.0), 3),
        "deliveries_per_s": round(gusher.get("deliveries_per_s", 0.0)),
        "limit_deliveries_per_s": round(limit.get("deliveries_per_s", 0.0)),
        "connect_per_s": round(gusher.get("connect_per_s", 0.0)),
        "connect_per_s_jwt": round((jwt or {}).get("connect_per_s", 0.0)),
        "limit_connect_per_s": round(limit.get("connect_per_s", 0.0)),
    }
    # Median over pairs of (gusher's push p99 ÷ the limit's write time just before it).
    paired = gusher.get("paired_fanout_ratio")
    out["fanout_ratio"] = round(paired, 2) if paired else None
    # The same, from the pooled p99 over all pushes (dominated by the noisiest push).
    out["fanout_ratio_pooled"] = (
        round(out["fanout_p99_ms"] / out["limit_fanout_ms"], 2) if out["limit_fanout_ms"] else None
    )
    # Pooled p99 over all pushes, gusher's ÷ the paired limit's (push→receive both).
    ref_pooled = gusher.get("paired_limit_p99_ms")
    out["pooled_p99_ratio"] = round(out["fanout_p99_ms"] / ref_pooled, 2) if ref_pooled else None
    # The limit measured against its own twin: the ratio that noise alone gives.
    out["limit_paired_ratio"] = round(limit.get("paired_fanout_ratio", 0.0), 2) or None
    out["throughput_ratio"] = (
        round(out["deliveries_per_s"] / out["limit_deliveries_per_s"], 3)
        if out["limit_deliveries_per_s"]
        else None
    )
    errors = [r["error"] for r in (gusher, limit, jwt or {}) if "error" in r]
    if errors:
        out["errors"] = errors
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="gusher + limit at one N, JSON last line")
    parser.add_argument("-n", type=int, default=5000, help="connections in quick mode")
    parser.add_argument("--sizes", default="1000,10000,50000", help="N values of the full run")
    parser.add_argument(
        "--systems", default="limit,gusher,pysio,nodesio,nchan", help="systems of the full run"
    )
    args = parser.parse_args(argv)
    # SIGTERM (timeout, Ctrl-C from make) must still run the teardown in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    try:
        if args.quick:
            result = quick(args.n)
            Reaper.run()  # tear down first, so the JSON is the very last line
            log(f"quick run took {time.monotonic() - started:.1f} s")
            print(json.dumps(result), flush=True)
            return 0 if "errors" not in result else 1
        from bench import full

        return full.run([int(s) for s in args.sizes.split(",")], args.systems.split(","))
    finally:
        Reaper.run()


if __name__ == "__main__":
    sys.exit(main())
