"""`python -m bench.history`: what numbered history costs (issue 12 item 7), side by side in one run.

- Push API: wrk against the seed push route of two apps on the same master,
  one without history and one with it (`history_size` 100, `history_ttl`
  300), in alternating rounds; requests/s and p99 of each, and their ratio.
- Fan-out: one push at a time to N subscribers through the master (numbered
  for the history app), push→receive p99 for each app, alternating.
- Redis memory per kept message: `used_memory` before and after filling 100
  channels with 100 messages each (100-byte data).

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.parse
from typing import Any

import requests

from bench import pushapi, scenarios
from bench.clients import ClientPool
from bench.measure import log, run_system
from bench.procs import Reaper
from bench.scenarios import Plan
from bench.systems import GusherSystem, Infra

POLICY = (100, 300)


def push_api(rounds: int, seconds: float) -> dict[str, Any]:
    """Alternating wrk rounds against one master, history off then on."""
    infra = Infra()
    Reaper.add(infra.stop)
    system = GusherSystem(infra, 1).start()
    try:
        keys = {"off": system.app_key, "on": system.app_key + "h"}
        history = {"history_size": POLICY[0], "history_ttl": POLICY[1]}
        infra.redis.hset(keys["on"], mapping={"url": infra.webhook_url, **history})
        figures: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for _ in range(rounds):
            for mode in ("off", "on"):
                url = f"http://127.0.0.1:{system.master_port}/api/push/{keys[mode]}/api/e?data=hello"
                figures[mode].append(pushapi.run_wrk(url, seconds=seconds))
        rps = {m: statistics.median(f["api_requests_per_s"] for f in figures[m]) for m in figures}
        p99 = {m: statistics.median(f.get("api_p99_ms", 0.0) for f in figures[m]) for m in figures}
        errors = sum(f["api_errors"] for m in figures for f in figures[m])
        memory = kept_message_bytes(infra, system, keys["on"])
        return {
            "api_rps_history_off": round(rps["off"]),
            "api_rps_history_on": round(rps["on"]),
            "api_rps_ratio": round(rps["on"] / rps["off"], 3) if rps["off"] else None,
            "api_p99_ms_history_off": round(p99["off"], 2),
            "api_p99_ms_history_on": round(p99["on"], 2),
            "api_errors": errors,
            **memory,
        }
    finally:
        system.stop()
        infra.stop()


def kept_message_bytes(infra: Infra, system: GusherSystem, app_key: str) -> dict[str, Any]:
    """Redis memory per kept message: 100 channels of 100 messages, 100-byte data each."""
    session = requests.Session()
    data = urllib.parse.quote("x" * 100)
    before = int(infra.redis.info("memory")["used_memory"])
    channels, per_channel = 100, 100
    base = f"http://127.0.0.1:{system.master_port}/api/push/{app_key}"
    for _ in range(per_channel):
        for c in range(channels):
            session.post(f"{base}/mem{c}/e?data={data}", timeout=10)
    after = int(infra.redis.info("memory")["used_memory"])
    kept = channels * per_channel
    return {"redis_bytes_per_kept_message": round((after - before) / kept), "kept_messages": kept}


def fanout(n: int) -> dict[str, Any]:
    """Push→receive latency to N subscribers, history off and on, each against the limit reference."""
    plan = Plan(latency_pushes=15, bursts=5, idle_seconds=1.0, settle_seconds=0.5)
    infra = Infra()
    Reaper.add(infra.stop)
    out: dict[str, Any] = {}
    with ClientPool(ClientPool.processes_for(n)) as pool, ClientPool(ClientPool.processes_for(n)) as ref_pool:
        reference = scenarios.start_reference(infra, ref_pool, n, 2, plan)
        try:
            for label, factory in (
                ("off", lambda infra_, workers: GusherSystem(infra_, workers)),
                ("on", lambda infra_, workers: GusherSystem(infra_, workers, history=POLICY)),
                ("off2", lambda infra_, workers: GusherSystem(infra_, workers)),
                ("on2", lambda infra_, workers: GusherSystem(infra_, workers, history=POLICY)),
            ):
                result = run_system(factory, infra, pool, n, plan, reference)
                out[f"fanout_p99_ms_{label}"] = round(result.get("fanout_p99_ms", 0.0), 3)
                out[f"fanout_ratio_{label}"] = round(result.get("paired_fanout_ratio") or 0.0, 3)
                out[f"deliveries_per_s_{label}"] = round(result.get("deliveries_per_s", 0.0))
                if "error" in result:
                    out.setdefault("errors", []).append(result["error"])
        finally:
            reference.system.stop()
    return out


def measure(rounds: int, seconds: float, n: int) -> dict[str, Any]:
    """Every figure of this module, each part with servers of its own."""
    result: dict[str, Any] = {}
    if pushapi.available():
        result.update(push_api(rounds, seconds))
    else:
        log("wrk is not installed (bench/setup.sh installs it): push API figures skipped")
    Reaper.run()
    result.update(fanout(n))
    Reaper.run()
    result["n"] = n
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=5000, help="subscribers of the fan-out scenario")
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds per mode")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk round")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        result = measure(args.rounds, args.seconds, args.n)
        log(f"history bench took {time.monotonic() - started:.1f} s")
        print(json.dumps(result), flush=True)
        return 0 if "errors" not in result else 1
    finally:
        Reaper.run()


if __name__ == "__main__":
    sys.exit(main())
