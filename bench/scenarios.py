"""The scenarios of issue 3, each a function of (system, client pool, N) → figures.

A system is anything from `bench.systems` (gusher, the limit baseline, a
peer). Every loop is bounded by a count and a deadline; nothing here asserts
on timing — a scenario that cannot complete reports what it saw (delivery %).
"""

from __future__ import annotations

import math
import statistics
import time
from array import array
from dataclasses import dataclass
from typing import Any

from bench.clients import ClientPool, ConnectResult, Samples
from bench.procs import cpu_percent, cpu_seconds, rss_bytes

SHARED = "bench"


@dataclass
class Plan:
    """How much of each scenario to run (quick mode shrinks it)."""

    size: int = 100  # bytes of message data
    latency_pushes: int = 20
    bursts: int = 5
    burst_size: int = 20
    idle_seconds: float = 2.0
    settle_seconds: float = 1.0
    sustained_seconds: float = 2.0
    sustained_rates: tuple[int, ...] = ()  # messages/s steps; empty = skip
    many_channels: bool = False
    concurrency: int = 400


def percentile(values: Any, q: float) -> float:
    """The q-th percentile (0–100) by nearest rank; 0 for no values."""
    if not len(values):
        return 0.0
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))  # nearest rank, 1-based
    return float(ordered[min(len(ordered), max(1, rank)) - 1])


def latency_figures(lats_ns: Any, prefix: str) -> dict[str, float]:
    """p50 / p99 / max of latencies in ns, as milliseconds."""
    return {
        f"{prefix}_p50_ms": percentile(lats_ns, 50) / 1e6,
        f"{prefix}_p99_ms": percentile(lats_ns, 99) / 1e6,
        f"{prefix}_max_ms": (max(lats_ns) / 1e6) if len(lats_ns) else 0.0,
    }


def connect(system: Any, pool: ClientPool, n: int, channels_of: Any, plan: Plan) -> ConnectResult:
    """Open `n` connections; the connect rate includes the webhook (gusher)."""
    return pool.connect(
        "127.0.0.1",
        system.port,
        system.adapter,
        channels_of,
        n,
        concurrency=plan.concurrency,
        timeout=max(30.0, n / 200),
    )


def idle(system: Any, pool: ClientPool, n: int, rss0: int, plan: Plan) -> dict[str, float]:
    """Memory held per connection and CPU burnt while N connections sit idle."""
    time.sleep(plan.settle_seconds)
    pids = system.worker_pids()
    rss = rss_bytes(pids)
    cpu = cpu_percent(pids, plan.idle_seconds)
    return {
        "rss_mb": rss / 2**20,
        "rss0_mb": rss0 / 2**20,
        "mem_kb_per_conn": (rss - rss0) / 1024 / max(n, 1),
        "abs_kb_per_conn": rss / 1024 / max(n, 1),
        "idle_cpu_pct": cpu,
        "server_processes": len(pids),
    }


@dataclass
class Reference:
    """A limit baseline with its own N clients, kept running beside the system under test.

    On a shared 2-core box the machine's speed drifts by tens of percent
    within a minute, so a system measured after the limit can look faster or
    slower than it is. With a reference, every push of the system is paired
    with one of the limit's a few ms before it, and the ratio is taken pair
    by pair: both sides of each ratio saw the same machine.
    """

    system: Any
    pool: ClientPool
    n: int


def start_reference(infra: Any, pool: ClientPool, n: int, workers: int, plan: Plan) -> Reference:
    """Start a limit baseline and connect `n` of `pool`'s clients to it."""
    from bench.systems import LimitSystem

    system = LimitSystem(infra, workers).start()
    result = connect(system, pool, n, shared_channel_of, plan)
    return Reference(system, pool, result.ready)


def one_push(system: Any, pool: ClientPool, n: int, seq: int, plan: Plan) -> tuple[Samples, float]:
    """Push one message to N subscribers; its deliveries and the limit's write time (ms, else 0)."""
    pool.reset()
    system.push(SHARED, seq, plan.size)
    pool.wait_for(n, timeout=5.0 + n / 5000, quiet=2.0)
    return pool.collect(), getattr(system, "last_write_ns", 0) / 1e6


def fanout_latency(
    system: Any,
    pool: ClientPool,
    n: int,
    plan: Plan,
    seq0: int = 1_000_000,
    reference: Reference | None = None,
) -> dict[str, float]:
    """One push at a time through the system's API to N subscribers of one channel.

    Besides p50/p99/max over all deliveries of all pushes, reports the median
    over pushes of each push's own p99 (`fanout_push_p99_ms`: one push to N
    subscribers, as issue 4 states its target), and with a `reference`, the
    paired figures (`paired_*`, see `Reference`).
    """
    writes, push_p99s, ref_writes, ref_p99s, ratios = [], [], [], [], []
    seqs, lats, ref_lats = array("q"), array("q"), array("q")
    for k in range(plan.latency_pushes):
        if reference is not None:
            ref_samples, ref_write = one_push(reference.system, reference.pool, reference.n, seq0 + k, plan)
            ref_writes.append(ref_write)
            ref_p99s.append(percentile(ref_samples.lats, 99) / 1e6)
            ref_lats.extend(ref_samples.lats)
            time.sleep(0.02)
        samples, write = one_push(system, pool, n, seq0 + k, plan)
        seqs.extend(samples.seqs)
        lats.extend(samples.lats)
        writes.append(write)
        push_p99 = percentile(samples.lats, 99) / 1e6
        push_p99s.append(push_p99)
        if reference is not None and ref_writes[-1] > 0:
            ratios.append(push_p99 / ref_writes[-1])
        time.sleep(0.02)
    figures = latency_figures(lats, "fanout")
    figures["fanout_delivery_pct"] = 100.0 * len(lats) / max(1, n * plan.latency_pushes)
    figures["fanout_last_ms"] = _median_of_last(seqs, lats) / 1e6
    figures["fanout_push_p99_ms"] = statistics.median(push_p99s) if push_p99s else 0.0
    if any(writes):
        figures["write_ms"] = statistics.median(writes)
    if ref_writes:
        figures["paired_limit_write_ms"] = statistics.median(ref_writes)
        figures["paired_limit_push_p99_ms"] = statistics.median(ref_p99s)
        figures["paired_limit_p99_ms"] = percentile(ref_lats, 99) / 1e6  # pooled, like fanout_p99_ms
    if ratios:
        figures["paired_fanout_ratio"] = statistics.median(ratios)
    return figures


def _median_of_last(seqs: Any, lats: Any) -> float:
    """Median over messages of the latency of each message's last delivery (ns)."""
    last: dict[int, int] = {}
    for seq, lat in zip(seqs, lats, strict=True):
        if lat > last.get(seq, -1):
            last[seq] = lat
    return statistics.median(last.values()) if last else 0.0


def _deliveries_per_s(samples: Samples, sent_ns: int) -> float:
    if not len(samples.recvs):
        return 0.0
    span = (max(samples.recvs) - sent_ns) / 1e9
    return len(samples.recvs) / span if span > 0 else 0.0


def fanout_bursts(
    system: Any, pool: ClientPool, n: int, plan: Plan, seq0: int = 2_000_000
) -> dict[str, float]:
    """Bursts of `burst_size` messages published at once to N subscribers of one channel."""
    rates, lats, delivered = [], array("q"), 0
    for b in range(plan.bursts):
        pool.reset()
        sent_ns = time.time_ns()
        system.publish([SHARED], seq0 + b * plan.burst_size, plan.burst_size, plan.size, sent_ns)
        expected = n * plan.burst_size
        pool.wait_for(expected, timeout=10.0 + expected / 20_000, quiet=2.0)
        samples = pool.collect()
        rates.append(_deliveries_per_s(samples, sent_ns))
        lats.extend(samples.lats)
        delivered += len(samples.lats)
        time.sleep(0.1)
    figures = {
        "deliveries_per_s": statistics.median(rates) if rates else 0.0,
        "burst_delivery_pct": 100.0 * delivered / max(1, n * plan.burst_size * plan.bursts),
    }
    figures.update(latency_figures(lats, "burst"))
    return figures


def sustained(
    system: Any,
    pool: ClientPool,
    n: int,
    plan: Plan,
    seq0: int = 3_000_000,
    max_p99_ms: float = 250.0,
    min_delivery_pct: float = 99.9,
) -> dict[str, Any]:
    """Publish at rising steady rates until latency or loss breaks; the best rate that held."""
    steps, best = [], 0.0
    seq = seq0
    for rate in plan.sustained_rates:
        count = max(1, int(rate * plan.sustained_seconds))
        pool.reset()
        start = time.time_ns()
        for i in range(count):  # paced against the schedule, so lateness shows as latency
            due = start + int(i * 1e9 / rate)
            delay = (due - time.time_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            system.publish([SHARED], seq + i, 1, plan.size, due)
        seq += count
        pool.wait_for(count * n, timeout=min(30.0, 5.0 + count * n / 50_000), quiet=2.0)
        samples = pool.collect()
        delivery = 100.0 * len(samples.lats) / (count * n)
        p99 = percentile(samples.lats, 99) / 1e6
        held = delivery >= min_delivery_pct and p99 <= max_p99_ms
        steps.append(
            {
                "rate": rate,
                "deliveries_per_s": rate * n * delivery / 100,
                "p99_ms": p99,
                "delivery_pct": delivery,
                "held": held,
            }
        )
        if not held:
            break
        best = rate * n
        time.sleep(0.2)
    return {"sustained_deliveries_per_s": best, "sustained_steps": steps}


def many_channels(
    system: Any, pool: ClientPool, n: int, plan: Plan, seq0: int = 4_000_000
) -> dict[str, float]:
    """Each connection in its own channel plus one of 4 shared ones: one message per channel."""
    figures: dict[str, float] = {"own_publisher_alone_per_s": publisher_alone(system, n, plan, seq0 + 5)}
    for label, channels, count in (
        ("own", [f"u{i}" for i in range(n)], n),
        ("shared4", [f"s{k}" for k in range(4)], n),
    ):
        pool.reset()
        cpu0 = cpu_seconds(system.worker_pids())
        sent_ns = time.time_ns()
        system.publish(channels, seq0, 1, plan.size, sent_ns)
        pool.wait_for(count, timeout=10.0 + count / 10_000, quiet=2.0)
        samples = pool.collect()
        figures[f"{label}_deliveries_per_s"] = _deliveries_per_s(samples, sent_ns)
        # The server's CPU per delivery (all its processes, the quiet wait included):
        # with the box's two cores shared by all, this is what bounds the rate.
        cpu = cpu_seconds(system.worker_pids()) - cpu0
        delivered = len(samples.lats)
        figures[f"{label}_cpu_us_per_delivery"] = 1e6 * cpu / delivered if delivered else 0.0
        figures[f"{label}_delivery_pct"] = 100.0 * delivered / max(1, count)
        figures.update(latency_figures(samples.lats, label))
        seq0 += 10
        time.sleep(0.1)
    return figures


def publisher_alone(system: Any, n: int, plan: Plan, seq: int) -> float:
    """Messages/s of the scenario's own publisher with nobody subscribed: its ceiling.

    The own-channels figure is N messages from one publisher; a delivery rate
    near this one is the publisher's, not the server's. 0 for a system with no
    publisher of its own (the limit).
    """
    if not getattr(system, "has_publisher", True):
        return 0.0
    channels = [f"nobody{i}" for i in range(n)]
    started = time.perf_counter()
    system.publish(channels, seq, 1, plan.size, time.time_ns())
    return n / (time.perf_counter() - started)


def many_channels_of(i: int) -> list[str]:
    return [f"u{i}", f"s{i % 4}"]


def shared_channel_of(i: int) -> list[str]:
    return [SHARED]
