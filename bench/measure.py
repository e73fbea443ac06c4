"""Measure one system at one N: start it, run the scenarios, always stop it.

Used by quick mode (`bench.run`) and the full run (`bench.full`).
"""

from __future__ import annotations

import sys
import time
import traceback
from typing import Any

from bench import scenarios
from bench.clients import ClientPool
from bench.procs import ROOT, cpu_seconds, rss_bytes
from bench.scenarios import Plan
from bench.systems import Infra, workers_for

RESULTS = ROOT / "bench" / "results"


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def measure(
    system: Any,
    pool: ClientPool,
    n: int,
    plan: Plan,
    webhook_pid: int = 0,
    reference: scenarios.Reference | None = None,
) -> dict[str, Any]:
    """Every connection-level scenario against one started system at one N."""
    figures: dict[str, Any] = {"system": system.name, "n": n}
    rss0 = rss_bytes(system.worker_pids())
    cpu0 = cpu_seconds(system.worker_pids())
    webhook0 = cpu_seconds([webhook_pid])
    result = scenarios.connect(system, pool, n, scenarios.shared_channel_of, plan)
    # Server CPU per new connection shows where a low connect rate comes from.
    figures["connect_cpu_ms_per_conn"] = (
        1000 * (cpu_seconds(system.worker_pids()) - cpu0) / max(1, result.ready)
    )
    figures["webhook_cpu_ms_per_conn"] = 1000 * (cpu_seconds([webhook_pid]) - webhook0) / max(1, result.ready)
    figures.update(
        connected=result.ready,
        connect_failed=result.failed,
        connect_per_s=result.rate,
        connect_p99_ms=scenarios.percentile(result.connect_ms, 99),
        connect_errors=result.errors,
    )
    log(
        f"{system.name} N={n}: {result.ready} connected ({result.rate:.0f}/s), {result.failed} failed {result.errors}"
    )
    if result.ready == 0:
        return figures
    live = result.ready
    figures.update(scenarios.idle(system, pool, live, rss0, plan))
    figures.update(scenarios.fanout_latency(system, pool, live, plan, reference=reference))
    figures.update(scenarios.fanout_bursts(system, pool, live, plan))
    if plan.sustained_rates:
        figures.update(scenarios.sustained(system, pool, live, plan))
    pool.close_all()
    if plan.many_channels:
        time.sleep(plan.settle_seconds)
        result = scenarios.connect(system, pool, n, scenarios.many_channels_of, plan)
        figures["many_connected"] = result.ready
        if result.ready:
            figures.update(scenarios.many_channels(system, pool, result.ready, plan))
        pool.close_all()
    log(
        f"{system.name} N={n}: "
        + ", ".join(f"{k}={v:.4g}" for k, v in figures.items() if isinstance(v, float))
    )
    return figures


def run_system(
    factory: Any,
    infra: Infra,
    pool: ClientPool,
    n: int,
    plan: Plan,
    reference: scenarios.Reference | None = None,
) -> dict[str, Any]:
    """Start a fresh system for this N, measure it, always stop it."""
    system = factory(infra, workers_for(n))
    try:
        system.start()
        return measure(system, pool, n, plan, infra.webhook.pid, reference)
    except Exception as exc:
        log(f"{getattr(system, 'name', factory)} N={n} failed: {exc!r}\n{traceback.format_exc()}")
        return {"system": getattr(system, "name", str(factory)), "n": n, "error": repr(exc)}
    finally:
        try:
            pool.close_all()
        except Exception:
            pass
        system.stop()


def connect_only(system: Any, pool: ClientPool, n: int, plan: Plan) -> dict[str, Any]:
    """Start `system`, connect N clients, stop it: the connect figures alone."""
    try:
        system.start()
        result = scenarios.connect(system, pool, n, scenarios.shared_channel_of, plan)
        log(f"{system.name} N={n}: {result.ready} connected ({result.rate:.0f}/s), {result.failed} failed")
        return {"connect_per_s": result.rate, "connected": result.ready}
    except Exception as exc:
        log(f"{system.name} N={n} failed: {exc!r}")
        return {"error": repr(exc)}
    finally:
        pool.close_all()
        system.stop()
