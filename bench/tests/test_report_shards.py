"""BENCHMARKS.md's Redis Cluster section, rendered from a small fake `bench.shards` result."""

# The section uses ×, ÷ and – on purpose.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

from typing import Any

from bench import report, report_shards
from bench.shards_figures import ceilings, summarize

CORES, SHARDS = 4, 4  # not the box's 2 and 3: a figure typed into the renderer would show


def _redis_window(
    delivered: float, nodes: list[float], publishers: float, subscriber: float
) -> dict[str, Any]:
    redis = sum(nodes)
    return {
        "delivered_per_s": delivered,
        "published_per_s": delivered,
        "cpu_pct": {**{f"valkey:{7000 + i}": pct for i, pct in enumerate(nodes)}, "publishers": publishers},
        "redis_cpu_pct": redis,
        "redis_node_cpu_pct_max": max(nodes),
        "cpu_pct_publishers": publishers,
        "cpu_pct_subscriber": subscriber,
        "box_cpu_pct": 210.0,
        "others_cpu_pct": 11.5,
        "cpu_us_per_msg_redis": redis / 100 / delivered * 1e6,
        "cpu_us_per_msg_publishers": publishers / 100 / delivered * 1e6,
        "cpu_us_per_msg_subscriber": subscriber / 100 / delivered * 1e6,
        "delivered_pct": 99.5,
    }


def _gusher_window(delivered: float, master: float, slave: float, redis: float) -> dict[str, Any]:
    return {
        "delivered_per_s": delivered,
        "messages_per_s": delivered + 1000,
        "api_p50_ms": 42.5,
        "api_p99_ms": 321.0,
        "cpu_pct_master": master,
        "cpu_pct_slave": slave,
        "cpu_pct_clients": 12.5,
        "cpu_pct_wrk": 1.25,
        "redis_cpu_pct": redis,
        "redis_node_cpu_pct_max": redis,
        "others_cpu_pct": 33.5,
        "box_cpu_pct": 390.0,
        "cpu_us_per_msg_master": master / 100 / delivered * 1e6,
        "cpu_us_per_msg_slave": slave / 100 / delivered * 1e6,
        "cpu_us_per_msg_redis": redis / 100 / delivered * 1e6,
    }


def fake_result(profile: bool = False) -> dict[str, Any]:
    """Two identical rounds, so each median is the round's figure."""
    redis_round = {
        "one_node": _redis_window(1_234_567.0, [96.5], 20.5, 25.5),
        "cluster": _redis_window(2_469_134.0, [55.5] * SHARDS, 30.5, 40.5),
        "sink_one_node": {"published_per_s": 8_765_432.0},
        "sink_cluster": {"published_per_s": 9_876_543.0},
    }
    gusher_round = {
        "one_node": _gusher_window(45_678.0, 70.5, 50.5, 7.5),
        "cluster": _gusher_window(22_839.0, 80.5, 45.5, 3.5),
        "wrk_vs_limit": {"messages_per_s": 3_456_789.0},
        "clients_vs_limit": {"delivered_per_s": 345_678.0},
    }
    summary = summarize([redis_round, redis_round])
    e2e: dict[str, Any] = {
        "rounds": [gusher_round, gusher_round],
        "summary": summarize([gusher_round, gusher_round]),
        "redis_clients": {
            "one_node": {"7000": {"gusher-master:command": 31, "gusher-slave:command": 5, "-:pubsub": 2}},
            "cluster": {
                str(7000 + i): {"gusher-master:command": 31, "gusher-slave:command": 3 + i, "-:pubsub": 2}
                for i in range(SHARDS)
            },
        },
    }
    if profile:
        shares = ("push_batch (gusher/api/ext.py)", "RedisBroker.publish (gusher/broker/standalone.py)")
        e2e["master_profile"] = {
            "one_node": {"self_pct": {"send (x.py)": 20.0}, "inclusive_pct": dict.fromkeys(shares, 44.4)},
            "cluster": {
                "self_pct": {"send (x.py)": 26.0, "Strategy.route (redis/cluster.py)": 9.9},
                "inclusive_pct": dict.fromkeys(shares, 66.6),
            },
        }
    return {
        "meta": {"date": "2026-01-02 03:04:05 UTC", "machine": {"cores": CORES}, "duration_s": 200},
        "settings": {
            "quick": False,
            "seconds": 3.5,
            "warmup": 1.5,
            "channels": 7_000,
            "publishers": 3,
            "per_batch": 250,
            "n": 6_000,
            "wrk_connections": 24,
        },
        "redis_layer": {
            "rounds": [redis_round, redis_round],
            "summary": summary,
            "ceilings": ceilings(summary, CORES, SHARDS),
            "subscription_bytes_per_channel": {"one_node": 222.0, "cluster": 333.0},
            "channels_per_node": {"one_node": [7000], "cluster": [1751, 1749, 1750, 1750]},
        },
        "end_to_end": e2e,
    }


def test_the_tables_take_their_figures_from_the_result() -> None:
    """Each row of both tables shows the result's medians, ratios and ceilings, formatted."""
    result = fake_result()
    bounds = result["redis_layer"]["ceilings"]
    text = "\n".join(report_shards.section(result))
    assert text.startswith("## Redis Cluster: capacity by shards (issue 14)")
    assert "3 rounds" not in text and "2 rounds of 3.5 s after 1.5 s of warm-up" in text
    assert "the box has 400 %" in text
    assert "7,000 channels (1,751 / 1,749 / 1,750 / 1,750 per primary)" in text
    assert "| figure | one node | 4-shard cluster | cluster ÷ one node |" in text
    assert "| messages/s delivered (99.5 % of those published) | 1,234,567 | 2,469,134 | 2.00× |" in text
    assert "| Redis CPU, % of a core: all nodes (busiest node) | 96.5 (96.5) | 222 (55.5) | |" in text
    assert "| publishers / subscriber CPU, % of a core | 20.5 / 25.5 | 30.5 / 40.5 | |" in text
    assert "| generator alone: publishers against the sink, messages/s | 8,765,432 | 9,876,543 | |" in text
    one, cluster = f"{bounds['one_node_bound_msgs_per_s']:,.0f}", f"{bounds['cluster_bound_msgs_per_s']:,.0f}"
    assert f"| {one} (1 core) | {cluster} (4 cores, " in text
    assert f"| {bounds['bound_ratio']:.2f}× |" in text
    assert (
        f"| what CPU allows with a core per node | | | {bounds['with_a_core_per_node_ratio']:.2f}× |" in text
    )
    assert "| Redis memory per subscribed channel, bytes | 222 | 333 | |" in text
    assert (
        "| deliveries/s at the clients | 45,678 | 22,839 | 0.50× | 345,678 (clients fed by the limit) |"
        in text
    )
    assert "| 3,456,789 (wrk against a canned 200) |" in text
    assert "| batch_events p50 / p99, ms | 42.5 / 321 | 42.5 / 321 | | |" in text
    assert "| 70.5 / 50.5 / 7.50 (7.50) | 80.5 / 45.5 / 3.50 (3.50) |" in text
    assert "| master 31, slave 5 + 2 pub/sub | master 31, slave 3–6 + 2 pub/sub, on each |" in text
    assert (
        "Target, ≥ 2× at 4 shards on this box: not met (2.00× at the Redis layer, 0.50× end to end)" in text
    )


def test_the_prose_follows_the_figures() -> None:
    """The ceilings are written out from the result; without a profile the section says how to get one."""
    result = fake_result()
    text = "\n".join(report_shards.section(result))
    summary = result["redis_layer"]["summary"]
    us = summary["cpu_us_per_msg_redis"]
    assert f"4 × {us['one_node']:#.3g} ÷ {us['cluster']:#.3g} = " in text
    assert "min(4 cores ÷ " in text and "on 4 cores, 4 shards share the CPU with the generator" in text
    assert "The generator was not the limit: the same publishers sent 8.77–9.88 M messages/s" in text
    assert "Redis is not the limit: gusher's master and slave are." in text
    assert "`python -m bench.shards --quick --profile DIR`" in text and "py-spy on the master" not in text
    profiled = "\n".join(report_shards.section(fake_result(profile=True)))
    assert "`RedisBroker.publish` 66.6 % / 44.4 %" in profiled
    assert "took 9.9 % of the cluster's samples as its own (`route`)" in profiled
    assert "`send`'s own share grew most: 26.0 % against 20.0 %" in profiled
    without_wrk = {k: v for k, v in result.items() if k != "end_to_end"}
    assert "End to end: not measured (wrk missing" in "\n".join(report_shards.section(without_wrk))
    apart = "\n".join(report_shards.section(result, fake_result(profile=True)))
    assert (
        "(`python -m bench.shards --profile DIR`, a run of its own on 2026-01-02 03:04 UTC, N=6,000;" in apart
    )


def test_the_report_renders_full_runs_with_and_without_shards() -> None:
    """A full run's `shards` entry becomes the section; an older run without one renders without it."""
    meta = {
        "date": "d",
        "machine": {"cpu": "c", "cores": 2, "ram_gib": 1, "kernel": "k", "fd_limit": 1},
        "versions": {"python": "3"},
    }
    older = {"meta": meta, "runs": [], "api": []}
    assert "Redis Cluster" not in report.render(older, [])
    text = report.render({**older, "shards": fake_result()}, [])
    assert "## Redis Cluster: capacity by shards (issue 14)" in text
    assert text.index("## Redis Cluster") < text.index("## Reading these figures")
