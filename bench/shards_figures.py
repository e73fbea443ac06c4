"""The pure parts of `bench.shards`: a window's figures, the summary over rounds, wrk's bodies and script."""

from __future__ import annotations

import json
import statistics
from typing import Any

from bench.baseline import data_string

REDIS_GROUP = "valkey:"  # CPU groups named valkey:<port> are Redis nodes
PAIRS = (("one_node", "cluster"), ("sink_one_node", "sink_cluster"))  # (base, other) → other ÷ base


def window_figures(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Rates and CPU between two `shards.sample` snapshots.

    `<count>_per_s` for every counter; `cpu_pct` per process group (% of one
    core); `redis_cpu_pct` all nodes together and `redis_node_cpu_pct_max`
    the busiest; `cpu_pct_<group>` for the rest; `box_cpu_pct` the whole
    box's busy time (other users included), `others_cpu_pct` what of it no
    measured group used; `cpu_us_per_msg_<group>` CPU time per message
    delivered (or published, when nothing counts deliveries).
    """
    seconds = after["t"] - before["t"]
    figures: dict[str, Any] = {"seconds": round(seconds, 3)}
    for name, value in after["counts"].items():
        figures[f"{name}_per_s"] = (value - before["counts"][name]) / seconds
    cpu = {name: 100.0 * (value - before["cpu"][name]) / seconds for name, value in after["cpu"].items()}
    figures["cpu_pct"] = cpu
    nodes = [pct for name, pct in cpu.items() if name.startswith(REDIS_GROUP)]
    if nodes:
        figures["redis_cpu_pct"] = sum(nodes)
        figures["redis_node_cpu_pct_max"] = max(nodes)
    for name, pct in cpu.items():
        if not name.startswith(REDIS_GROUP):
            figures[f"cpu_pct_{name}"] = pct
    figures["box_cpu_pct"] = 100.0 * (after["box_busy"] - before["box_busy"]) / seconds
    figures["others_cpu_pct"] = figures["box_cpu_pct"] - sum(cpu.values())
    messages = figures.get("delivered_per_s") or figures.get("published_per_s") or 0.0
    if messages:
        per_msg = {"redis": figures.get("redis_cpu_pct", 0.0)}
        per_msg |= {name: pct for name, pct in cpu.items() if not name.startswith(REDIS_GROUP)}
        for name, pct in per_msg.items():
            if pct:
                figures[f"cpu_us_per_msg_{name}"] = pct / 100.0 / messages * 1e6
    return figures


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    """Each numeric figure's median over rounds per mode, and the ratios of `PAIRS`.

    A ratio is the median over rounds of (other ÷ base) within the round:
    both sides of each ratio were measured seconds apart.
    """
    summary: dict[str, dict[str, float | None]] = {}
    modes = list(dict.fromkeys(mode for figures in rounds for mode in figures))
    keys = list(
        dict.fromkeys(
            key
            for figures in rounds
            for mode in modes
            for key, value in figures.get(mode, {}).items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        )
    )
    for key in keys:
        row: dict[str, float | None] = {}
        for mode in modes:
            values = [f[mode][key] for f in rounds if key in f.get(mode, {})]
            if values:
                row[mode] = statistics.median(values)
        for base, other in PAIRS:
            ratios = [
                f[other][key] / f[base][key]
                for f in rounds
                if f.get(base, {}).get(key) and key in f.get(other, {})
            ]
            if ratios:
                row[f"{other}÷{base}"] = statistics.median(ratios)
        summary[key] = row
    return summary


def batch_bodies(channels: list[str], batch: int, sent_ns: int, size: int = 100) -> list[str]:
    """`batch_events` bodies of `batch` events that together name every channel once, in order.

    Each event's data carries the bench's `B|seq|sent_ns|` marker (the
    clients count only marked messages), padded to `size` bytes.
    """
    bodies = []
    for start in range(0, len(channels), batch):
        events = [
            {"channel": channel, "event": "e", "data": data_string(start + i, sent_ns, size)}
            for i, channel in enumerate(channels[start : start + batch])
        ]
        bodies.append(json.dumps({"batch": events}, separators=(",", ":")))
    return bodies


def wrk_script(path: str, bodies: list[str]) -> str:
    """A wrk Lua script: POST `path` with each body in turn (requests built once, in `init`)."""
    quoted = ",\n".join(f"[==[{body}]==]" for body in bodies)
    return (
        f"local bodies = {{\n{quoted}\n}}\n"
        "local requests, i = {}, 0\n"
        "function init(args)\n"
        "  for k, body in ipairs(bodies) do\n"
        f'    requests[k] = wrk.format("POST", "{path}", {{["Content-Type"] = "application/json"}}, body)\n'
        "  end\n"
        "end\n"
        "function request()\n"
        "  i = i % #requests + 1\n"
        "  return requests[i]\n"
        "end\n"
    )


def ceilings(summary: dict[str, dict[str, Any]], cores: int, shards: int = 3) -> dict[str, float]:
    """What the measured CPU per message allows, when CPU is the only limit — pure.

    From the Redis layer's medians: `cpu_us_per_msg_redis` (all nodes), and
    the generator's (publishers + subscriber) per mode. One node is one
    thread, so it tops out at one core; a cluster's nodes at `shards` cores.
    On a box of `cores`, Redis and the generator share them. The bound is
    the lower of the two; `*_ratio` is cluster ÷ one node of each bound.
    `with_a_core_per_node_ratio`: the cluster on its own `shards` cores,
    beside one node on one, the generator elsewhere.
    """

    def us(key: str, mode: str) -> float:
        return float(summary.get(key, {}).get(mode) or 0.0)

    out: dict[str, float] = {}
    for mode, redis_cores in (("one_node", 1), ("cluster", shards)):
        redis_us = us("cpu_us_per_msg_redis", mode)
        generator_us = us("cpu_us_per_msg_publishers", mode) + us("cpu_us_per_msg_subscriber", mode)
        if not redis_us:
            return {}
        out[f"{mode}_redis_msgs_per_core_s"] = 1e6 / redis_us
        out[f"{mode}_bound_msgs_per_s"] = min(
            redis_cores * 1e6 / redis_us, cores * 1e6 / (redis_us + generator_us)
        )
    out["bound_ratio"] = out["cluster_bound_msgs_per_s"] / out["one_node_bound_msgs_per_s"]
    out["with_a_core_per_node_ratio"] = (
        shards * out["cluster_redis_msgs_per_core_s"] / out["one_node_redis_msgs_per_core_s"]
    )
    return out
