"""The full run: every system at every N, the push API, history, Pusher, shards, then the report.

Systems whose peer software bench/setup.sh did not install are skipped with
a note in the report, so `make bench` still measures gusher against the limit.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench import history, meta, pushapi, pusher, report, scenarios, shards, storm
from bench.clients import ClientPool
from bench.measure import RESULTS, connect_only, log, run_system
from bench.procs import Reaper
from bench.scenarios import Plan
from bench.systems import GusherSystem, Infra, LimitSystem, workers_for

# Steady publish rates are chosen per N so that the offered deliveries/s double each step.
DELIVERY_TARGETS = (25_000, 50_000, 100_000, 200_000, 400_000, 800_000, 1_600_000)


def factories() -> dict[str, Any]:
    """Every system the run can start, peers only when installed."""
    from bench import peers

    found: dict[str, Any] = {"limit": LimitSystem, "gusher": GusherSystem}
    found.update(peers.available())
    return found


def plan_for(n: int) -> Plan:
    rates = tuple(sorted({max(1, round(t / n)) for t in DELIVERY_TARGETS}))
    return Plan(
        latency_pushes=30,
        bursts=5,
        idle_seconds=3.0,
        settle_seconds=2.0,
        sustained_seconds=3.0,
        sustained_rates=rates,
        many_channels=True,
    )


def run(sizes: list[int], systems: list[str]) -> int:
    started = time.time()
    available = factories()
    skipped = [s for s in systems if s not in available]
    for name in skipped:
        log(f"skipping {name}: not installed (run bench/setup.sh)")
    infra = Infra()
    Reaper.add(infra.stop)
    results: dict[str, Any] = {
        "meta": meta.collect(),
        "runs": [],
        "api": [],
        "connect_jwt": [],
        "skipped": skipped,
    }
    for n in sizes:
        plan = plan_for(n)
        with (
            ClientPool(ClientPool.processes_for(n)) as pool,
            ClientPool(ClientPool.processes_for(n)) as ref_pool,
        ):
            # One limit baseline runs beside every system at this N (scenarios.Reference).
            reference = scenarios.start_reference(infra, ref_pool, n, workers_for(n), plan)
            try:
                for name in systems:
                    if name in available:
                        results["runs"].append(run_system(available[name], infra, pool, n, plan, reference))
                        _save(results)
                if "gusher" in systems:
                    # The same connect with JWT clients: no webhook call (issue 16's second connect figure).
                    jwt = GusherSystem(infra, workers_for(n), protocol="jwt")
                    results["connect_jwt"].append({"n": n, **connect_only(jwt, pool, n, plan)})
            finally:
                reference.system.stop()
    if pushapi.available():
        for name in ("limit", "gusher"):
            system = available[name](infra, 2)
            try:
                system.start()
                figures = pushapi.run_wrk(system.push_api_url(), seconds=5)
                batch = pushapi.run_wrk(
                    system.batch_api_url(), seconds=5, connections=32, body=pushapi.batch_body()
                )
                figures["batch_messages_per_s"] = batch["api_requests_per_s"] * pushapi.BATCH_EVENTS
                figures["batch_p99_ms"] = batch.get("api_p99_ms", 0.0)
                figures["batch_errors"] = batch["api_errors"]
                results["api"].append({"system": name, **figures})
                log(f"push API {name}: {figures}")
            finally:
                system.stop()
    if "gusher" in systems:
        # What numbered history costs, side by side (bench/history.py): its own Redis and servers.
        Reaper.run()
        results["history"] = history.measure(rounds=3, seconds=5, n=5000)
        log(f"history: {results['history']}")
        # Pusher-protocol clients beside gusher-protocol ones (bench/pusher.py), at N=10,000.
        Reaper.run()
        results["pusher"] = pusher.measure()
        log(f"pusher: within 1.1x {results['pusher']['within_1_1x']}")
        # One Redis beside a 3-primary cluster (bench/shards.py), with its own Redis nodes and servers.
        Reaper.run()
        results["shards"] = shards.measure(shards.parse_args([]))
        Reaper.run()
        log(f"shards: delivered/s {results['shards']['redis_layer']['summary']['delivered_per_s']}")
        # A slave restarted under 20,000 clients, with and without history, beside the limit.
        results["storm"] = storm.run(storm.parse_args([]))
        Reaper.run()
        log(f"storm: gusher all back in {results['storm'].get('gusher', {}).get('all_back_s')} s")
    results["meta"]["duration_s"] = round(time.time() - started)
    path = _save(results)
    report.write(results)
    log(f"results in {path}; BENCHMARKS.md and bench/plots/ rewritten")
    return 0


def _save(results: dict[str, Any]) -> str:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"full-{results['meta']['date'].replace(':', '').replace(' ', '-')}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=1, default=str))
    return str(path)
