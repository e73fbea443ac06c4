"""The pure parts of `bench.shards` and `bench.redisload`: RESP, counting, spreading, figures, wrk."""

from __future__ import annotations

import json

import pytest

from bench import redisload, shards_figures
from gusher.keys import key_slot


def test_resp_encodes_a_command() -> None:
    """A command is an array of bulk strings, whatever the argument types."""
    assert redisload.resp("SPUBLISH", "a@b", b"xy") == b"*3\r\n$8\r\nSPUBLISH\r\n$3\r\na@b\r\n$2\r\nxy\r\n"
    assert redisload.resp("PING", 7) == b"*2\r\n$4\r\nPING\r\n$1\r\n7\r\n"


@pytest.mark.parametrize("step", [1, 2, 3, 5, 8, 13, 1000])
def test_occurrences_count_across_chunk_edges(step: int) -> None:
    """A pattern split over two chunks counts once, however the stream is cut."""
    stream = b"".join(
        redisload.resp(kind, "rl@c1", redisload.PAYLOAD) for kind in ("smessage", "message", "x", "message")
    )
    counter = redisload.Occurrences(b"message\r\n")
    total = sum(counter.feed(stream[i : i + step]) for i in range(0, len(stream), step))
    assert total == 3


def test_spread_groups_channels_by_owner() -> None:
    """Every channel lands with the node owning its slot, in the order given."""
    channels = [f"rl@c{i}" for i in range(100)]
    groups = redisload.spread(channels, lambda c: key_slot(c) * 3 // 16384)
    assert sorted(c for g in groups.values() for c in g) == sorted(channels)
    for node, chans in groups.items():
        assert all(key_slot(c) * 3 // 16384 == node for c in chans)
        assert chans == [c for c in channels if c in set(chans)]


def test_pipelines_cut_commands_into_batches() -> None:
    """Pipelines hold `per_batch` commands each, the last the rest, and `batch_sizes` says so."""
    channels = [f"c{i}" for i in range(7)]
    batches = redisload.pipelines("PUBLISH", channels, 3, b"p")
    assert [b.count(b"*3\r\n") for b in batches] == redisload.batch_sizes(7, 3) == [3, 3, 1]
    assert b"".join(batches) == b"".join(redisload.resp("PUBLISH", c, b"p") for c in channels)


def _snapshot(t: float, cpu: dict[str, float], counts: dict[str, int], busy: float) -> dict:
    return {"t": t, "cpu": cpu, "counts": counts, "box_busy": busy, "box_total": 0.0}


def test_window_figures() -> None:
    """Rates per second, CPU % per group, Redis nodes summed, CPU per message, the rest of the box."""
    cpu0 = {"valkey:1": 1.0, "valkey:2": 1.0, "subscriber": 0.0}
    cpu1 = {"valkey:1": 2.0, "valkey:2": 1.5, "subscriber": 0.2}
    before = _snapshot(10.0, cpu0, {"delivered": 0}, 50.0)
    after = _snapshot(12.0, cpu1, {"delivered": 200_000}, 54.0)
    f = shards_figures.window_figures(before, after)
    assert f["delivered_per_s"] == 100_000
    assert f["redis_cpu_pct"] == pytest.approx(75.0)
    assert f["redis_node_cpu_pct_max"] == pytest.approx(50.0)
    assert f["cpu_pct_subscriber"] == pytest.approx(10.0)
    assert f["box_cpu_pct"] == pytest.approx(200.0)
    assert f["others_cpu_pct"] == pytest.approx(115.0)
    assert f["cpu_us_per_msg_redis"] == pytest.approx(7.5)
    assert f["cpu_us_per_msg_subscriber"] == pytest.approx(1.0)


def test_summarize_takes_medians_and_ratios_within_rounds() -> None:
    """Medians per mode; the ratio is the median of each round's cluster ÷ one node, not of the medians."""
    rounds = [
        {"one_node": {"rate": 100.0}, "cluster": {"rate": 150.0}, "sink_one_node": {"rate": 9.0}},
        {"one_node": {"rate": 50.0}, "cluster": {"rate": 100.0}, "sink_one_node": {"rate": 7.0}},
        {"one_node": {"rate": 200.0}, "cluster": {"rate": 220.0}, "sink_one_node": {"rate": 8.0}},
    ]
    row = shards_figures.summarize(rounds)["rate"]
    assert row["one_node"] == 100.0 and row["cluster"] == 150.0 and row["sink_one_node"] == 8.0
    assert row["cluster÷one_node"] == 1.5  # rounds gave 1.5, 2.0, 1.1
    assert "sink_cluster÷sink_one_node" not in row


def test_ceilings_from_cpu_per_message() -> None:
    """One node tops out at a core; the cluster at the box's cores less the generator's share."""
    summary = {
        "cpu_us_per_msg_redis": {"one_node": 1.0, "cluster": 1.25},
        "cpu_us_per_msg_publishers": {"one_node": 0.25, "cluster": 0.25},
        "cpu_us_per_msg_subscriber": {"one_node": 0.25, "cluster": 0.25},
    }
    c = shards_figures.ceilings(summary, cores=2)
    assert c["one_node_bound_msgs_per_s"] == pytest.approx(1e6)  # one core, not 2 / 1.5 µs
    assert c["cluster_bound_msgs_per_s"] == pytest.approx(2e6 / 1.75)
    assert c["bound_ratio"] == pytest.approx(2 / 1.75)
    assert c["with_a_core_per_node_ratio"] == pytest.approx(3 * 0.8)
    assert shards_figures.ceilings({}, cores=2) == {}


def test_batch_bodies_name_every_channel_once_with_the_marker() -> None:
    """Bodies of `batch` events cover the channels in order; each data has the clients' marker."""
    channels = [f"c{i}" for i in range(250)]
    bodies = shards_figures.batch_bodies(channels, 100, sent_ns=123)
    events = [e for body in bodies for e in json.loads(body)["batch"]]
    assert [len(json.loads(b)["batch"]) for b in bodies] == [100, 100, 50]
    assert [e["channel"] for e in events] == channels
    assert events[7]["data"].startswith("B|7|123|") and len(events[7]["data"]) == 100


def test_wrk_script_rotates_prebuilt_requests() -> None:
    """The script builds one request per body in `init` and hands them out in turn."""
    script = shards_figures.wrk_script("/api/apps/a/batch_events", ['{"batch":[]}', '{"x":1}'])
    assert '[==[{"batch":[]}]==]' in script and '[==[{"x":1}]==]' in script
    assert 'wrk.format("POST", "/api/apps/a/batch_events"' in script
    assert "i = i % #requests + 1" in script
