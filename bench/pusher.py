"""`python -m bench.pusher`: fan-out to Pusher-protocol clients beside gusher-protocol ones (issue 13).

One gusher master and slave (2 workers) hold two client sets at once, N
connections each on channel `bench` of an app of its own: one set speaks
gusher's protocol at `/ws/{key}`, the other Pusher protocol 7 at
`/app/{key}`. A limit baseline holds a third set of N for the whole run: the
load generator and the kernel alone, with no server around them.

Each round connects both sets afresh (so the way the slave's workers split
them changes from round to round; the split is reported), then sends
`--pushes` steps of one push through the master to each set in turn, each
push waiting for its N deliveries, and `--bursts` steps of 20 messages
PUBLISHed into Redis to each set in turn: the limit first, then the two
protocols, which of them first alternating. The two sets' pushes of a step
are a fraction of a second apart, so both see the same machine, whose speed
drifts by tens of percent within a minute (`scenarios.Reference`); while one
set is pushed to, the other sits idle on the same slave.

Each figure is the median over rounds; `*_ratio` is the median over rounds of
(pusher ÷ gusher) in that round; `paired_push_p99_ratio` the median over
steps of (the Pusher push's p99 ÷ the gusher push's p99 of the same step),
`paired_deliveries_per_s_ratio` the same for the bursts' deliveries/s;
`within_1_1x` whether the p50 and p99 ratios are ≤ 1.1 and the deliveries/s
ratio ≥ 1 ÷ 1.1 (issue 13's target).
`--profile DIR` then samples the slave's workers with py-spy while only one
set is pushed to, and reports where the samples fall. Prints one JSON object
as its last line.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from bench import sampler, scenarios
from bench.clients import ClientPool
from bench.measure import log
from bench.procs import Reaper
from bench.scenarios import Plan, percentile
from bench.systems import GusherSystem, Infra

SETS = ("limit", "gusher", "pusher")
FIGURES = ("fanout_p50_ms", "fanout_p99_ms", "fanout_push_p99_ms", "deliveries_per_s")
SOURCE_BASE = {"limit": 10, "gusher": 20, "pusher": 30}  # 127.0.1.x per pool, told apart per worker


class SideBySide:
    """The three client sets, their systems, and the figures gathered round by round."""

    def __init__(self, infra: Infra, slave: GusherSystem, n: int, plan: Plan) -> None:
        self.n, self.plan = n, plan
        self.slave = slave
        self.infra = infra
        self.pools = {
            name: ClientPool(ClientPool.processes_for(n), source_base=SOURCE_BASE[name]) for name in SETS
        }
        self.systems: dict[str, Any] = {
            "gusher": slave.add_app("gusher", "g"),
            "pusher": slave.add_app("pusher", "p"),
        }
        self.live = {"limit": 0, "gusher": 0, "pusher": 0}
        self.rounds: list[dict[str, Any]] = []
        self.seq = 1_000_000

    def start(self) -> None:
        """The limit baseline and its N clients, connected for the whole run."""
        reference = scenarios.start_reference(
            self.infra, self.pools["limit"], self.n, self.slave.workers, self.plan
        )
        self.systems["limit"] = reference.system
        self.live["limit"] = reference.n
        log(f"limit: {reference.n} connected")

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.stop()
        for system in self.systems.values():
            system.stop()

    def connect(self, order: tuple[str, ...]) -> dict[str, Any]:
        """Open both protocol sets; their connect rates and how the workers split them."""
        figures: dict[str, Any] = {}
        for name in order:
            result = scenarios.connect(
                self.systems[name], self.pools[name], self.n, scenarios.shared_channel_of, self.plan
            )
            self.live[name] = result.ready
            figures[f"connected_{name}"] = result.ready
            figures[f"connect_per_s_{name}"] = round(result.rate)
            if result.errors:
                figures[f"connect_errors_{name}"] = result.errors
        time.sleep(self.plan.settle_seconds)
        figures.update(self.split())
        return figures

    def split(self) -> dict[str, list[int]]:
        """Each set's connections per slave worker, counted from the workers' own sockets."""
        ours = {
            self.pools[name].source_address(p): name
            for name in ("gusher", "pusher")
            for p in range(len(self.pools[name].pipes))
        }
        split: dict[str, list[int]] = {f"split_{name}": [] for name in ("gusher", "pusher")}
        for pid in sorted(self.slave.worker_pids()):
            counts = Counter(
                ours.get(c.raddr.ip) for c in psutil.Process(pid).net_connections("tcp4") if c.raddr
            )
            for name in ("gusher", "pusher"):
                split[f"split_{name}"].append(counts[name])
        return split

    def round(self, k: int) -> dict[str, Any]:
        """One round: both sets connected, pushes then bursts to each set in turn, both closed."""
        protocols = ("gusher", "pusher") if k % 2 == 0 else ("pusher", "gusher")
        figures: dict[str, Any] = {"round": k, **self.connect(protocols)}
        lats, push_p99s = self.pushes(k)
        rates = self.bursts(k)
        for name in SETS:
            figures.update(_set_figures(name, lats[name], push_p99s[name], rates[name], self.live[name]))
        for name in protocols:
            self.pools[name].close_all()
        time.sleep(self.plan.settle_seconds)
        shown = ", ".join(f"{key}={v}" for key, v in figures.items() if key.startswith(("fanout_p", "split")))
        log(f"round {k}: {shown}")
        self.rounds.append(figures)
        return figures

    def pushes(self, k: int) -> tuple[dict[str, array], dict[str, list[float]]]:
        """`--pushes` steps of one push to each set; every delivery's latency and each push's p99."""
        lats: dict[str, array] = {name: array("q") for name in SETS}
        push_p99s: dict[str, list[float]] = {name: [] for name in SETS}
        for step in range(self.plan.latency_pushes):
            for name in _order(step + k):
                samples, _ = scenarios.one_push(
                    self.systems[name], self.pools[name], self.live[name], self.seq, self.plan
                )
                self.seq += 1
                lats[name].extend(samples.lats)
                push_p99s[name].append(percentile(samples.lats, 99) / 1e6)
                time.sleep(0.02)
        return lats, push_p99s

    def bursts(self, k: int) -> dict[str, list[float]]:
        """`--bursts` steps of one burst of 20 to each set; each burst's deliveries/s."""
        rates: dict[str, list[float]] = {name: [] for name in SETS}
        one_burst = Plan(bursts=1, burst_size=self.plan.burst_size, size=self.plan.size)
        for step in range(self.plan.bursts):
            for name in _order(step + k):
                burst = scenarios.fanout_bursts(
                    self.systems[name], self.pools[name], self.live[name], one_burst, self.seq
                )
                self.seq += self.plan.burst_size
                rates[name].append(burst["deliveries_per_s"])
        return rates

    def summary(self) -> dict[str, Any]:
        """The run's figures (`figures_of`)."""
        return figures_of(self.rounds, self.n, self.plan)

    def profile(self, directory: Path, seconds: float) -> dict[str, Any]:
        """py-spy on the slave's workers while only one protocol set is pushed to, each in turn."""
        directory.mkdir(parents=True, exist_ok=True)
        self.connect(("gusher", "pusher"))
        out: dict[str, Any] = {}
        for name in ("gusher", "pusher"):
            pids = self.slave.worker_pids()
            files = [directory / f"{name}-{pid}.txt" for pid in pids]
            spies = [sampler.record(pid, path) for pid, path in zip(pids, files, strict=True)]
            time.sleep(1.0)  # py-spy attaches
            self.load(name, seconds)
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            for spy in spies:
                spy.wait(timeout=30)
            out[name] = sampler.summarize([path for path in files if path.exists()])
        for name in ("gusher", "pusher"):
            self.pools[name].close_all()
        return out

    def load(self, name: str, seconds: float) -> None:
        """A push and a burst to one set, again and again, for `seconds`."""
        system, pool, live = self.systems[name], self.pools[name], self.live[name]
        one_burst = Plan(bursts=1, burst_size=self.plan.burst_size, size=self.plan.size)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            scenarios.one_push(system, pool, live, self.seq, self.plan)
            scenarios.fanout_bursts(system, pool, live, one_burst, self.seq + 1)
            self.seq += 1 + self.plan.burst_size


def figures_of(rounds: list[dict[str, Any]], n: int, plan: Plan) -> dict[str, Any]:
    """Medians over rounds of each figure, of each round's pusher ÷ gusher, and over paired steps."""
    out: dict[str, Any] = {
        "n": n,
        "rounds": len(rounds),
        "pushes_per_round": plan.latency_pushes,
        "bursts_per_round": plan.bursts,
    }
    for figure in FIGURES:
        out.update(_medians(rounds, figure))
    for name in SETS:
        out[f"fanout_delivery_pct_{name}"] = _median(r[f"fanout_delivery_pct_{name}"] for r in rounds)
    # gusher's connects include the auth webhook; public Pusher channels need none.
    for name in ("gusher", "pusher"):
        out[f"connect_per_s_{name}"] = _median(r[f"connect_per_s_{name}"] for r in rounds)
    # The most one slave worker held of one set, in any round (50 = an even split).
    shares = [100 * max(r[k]) / max(1, sum(r[k])) for r in rounds for k in r if k.startswith("split_")]
    out["worst_split_pct"] = round(max(shares, default=0.0), 1)
    # Step by step: the Pusher push (burst) beside the gusher one of the same step.
    out["paired_push_p99_ratio"] = _median(_pairs(rounds, "push_p99s"))
    out["paired_deliveries_per_s_ratio"] = _median(_pairs(rounds, "burst_rates"))
    # Within 1.1x: latency at most 1.1 times gusher's, deliveries/s at least gusher's ÷ 1.1.
    out["within_1_1x"] = bool(
        out["fanout_p50_ms_ratio"] <= 1.1
        and out["fanout_p99_ms_ratio"] <= 1.1
        and out["deliveries_per_s_ratio"] >= 1 / 1.1
    )
    out["per_round"] = rounds
    return out


def _pairs(rounds: list[dict[str, Any]], key: str) -> list[float]:
    """pusher ÷ gusher of each step, from the rounds' per-step lists."""
    return [
        pusher / gusher
        for r in rounds
        for gusher, pusher in zip(r[f"{key}_gusher"], r[f"{key}_pusher"], strict=True)
        if gusher
    ]


def _medians(rounds: list[dict[str, Any]], figure: str) -> dict[str, float]:
    """A figure's median over rounds for each set, and of each round's ratios (÷ gusher, ÷ the limit)."""
    out = {f"{figure}_{name}": _median(r[f"{figure}_{name}"] for r in rounds) for name in SETS}
    out[f"{figure}_ratio"] = _median(
        r[f"{figure}_pusher"] / r[f"{figure}_gusher"] for r in rounds if r[f"{figure}_gusher"]
    )
    for name in ("gusher", "pusher"):  # ÷ the load generator and kernel alone
        out[f"{figure}_per_limit_{name}"] = _median(
            r[f"{figure}_{name}"] / r[f"{figure}_limit"] for r in rounds if r[f"{figure}_limit"]
        )
    return out


def _set_figures(
    name: str, lats: array, push_p99s: list[float], rates: list[float], live: int
) -> dict[str, Any]:
    """One set's figures of one round, keyed `<figure>_<set>`."""
    figures = {
        "fanout_p50_ms": round(percentile(lats, 50) / 1e6, 3),
        "fanout_p99_ms": round(percentile(lats, 99) / 1e6, 3),
        "fanout_push_p99_ms": round(statistics.median(push_p99s), 3),
        "fanout_delivery_pct": round(100.0 * len(lats) / max(1, live * len(push_p99s)), 3),
        "deliveries_per_s": round(statistics.median(rates)),
        "burst_rates": [round(rate) for rate in rates],
        "push_p99s": [round(p99, 1) for p99 in push_p99s],
    }
    return {f"{key}_{name}": value for key, value in figures.items()}


def _order(k: int) -> tuple[str, ...]:
    """The limit first, then the two protocols, which goes first alternating.

    Each protocol follows the limit's fan-out as often as the other's: the
    one right after the limit's 200,000 single sends of a burst starts on a
    busier box (with a fixed rotation, gusher followed it twice as often).
    """
    return ("limit", "gusher", "pusher") if k % 2 == 0 else ("limit", "pusher", "gusher")


def _median(values: Any) -> float:
    values = list(values)
    return round(statistics.median(values), 3) if values else 0.0


def measure(
    n: int = 10_000,
    rounds: int = 6,
    plan: Plan | None = None,
    profile: Path | None = None,
    profile_seconds: float = 15.0,
) -> dict[str, Any]:
    """Every round on one master and slave, then the profile if asked for (the full run's defaults)."""
    plan = plan or Plan(latency_pushes=10, bursts=6, settle_seconds=1.0)
    infra = Infra()
    Reaper.add(infra.stop)
    slave = GusherSystem(infra, 2).start()
    bench = SideBySide(infra, slave, n, plan)
    try:
        bench.start()
        for k in range(rounds):
            bench.round(k)
        result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **bench.summary()}
        if profile is not None:
            result["profile"] = bench.profile(profile, profile_seconds)
        return result
    finally:
        bench.stop()
        slave.stop()
        infra.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="N=2000, 2 rounds of 5 pushes and 2 bursts")
    parser.add_argument("-n", type=int, default=10_000, help="connections in each set")
    parser.add_argument("--rounds", type=int, default=6, help="rounds, both sets reconnected in each")
    parser.add_argument("--pushes", type=int, default=10, help="push steps per round")
    parser.add_argument("--bursts", type=int, default=6, help="burst steps per round (20 messages each)")
    parser.add_argument("--profile", type=Path, help="then py-spy the workers per protocol into this folder")
    parser.add_argument("--profile-seconds", type=float, default=15.0, help="seconds of load per protocol")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.rounds, args.pushes, args.bursts = 2000, 2, 5, 2
    if args.profile is not None and not sampler.PY_SPY.exists():
        parser.error(f"{sampler.PY_SPY} is missing: .venv/bin/pip install py-spy")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = Plan(latency_pushes=args.pushes, bursts=args.bursts, settle_seconds=1.0)
    started = time.monotonic()
    try:
        result = measure(args.n, args.rounds, plan, args.profile, args.profile_seconds)
        Reaper.run()  # tear down first, so the JSON is the very last line
        log(f"pusher bench took {time.monotonic() - started:.1f} s")
        print(json.dumps(result), flush=True)
        return 0
    finally:
        Reaper.run()


if __name__ == "__main__":
    sys.exit(main())
