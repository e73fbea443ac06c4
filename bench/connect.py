"""`python -m bench.connect`: the connect rate alone, of one or more source trees, side by side.

Quick mode's `connect_per_s` (webhook clients) and `connect_per_s_jwt` (JWT
clients, no webhook call) come from `scenarios.connect` on a fresh slave;
this runs just that, for each tree given with `--tree` in turn, round after
round, so that a change is measured beside the code before it on the same
(noisy) machine:

    git worktree add /tmp/base HEAD~1
    python -m bench.connect --tree /tmp/base --tree . --rounds 3

Each round also connects the same N to the limit baseline (`limit`): the
load generator's own ceiling, so a figure near it is the generator's, not
the server's. The last line is one JSON object: every round's figures and
the medians. `--profile DIR` runs py-spy on the slave's workers during each
connect (`bench.sampler`) and prints where their samples fell.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench import sampler, scenarios
from bench.clients import ClientPool
from bench.measure import log
from bench.procs import Reaper, ServerProcess, compile_tree, cpu_seconds
from bench.scenarios import Plan
from bench.systems import GusherSystem, Infra, LimitSystem, _wait_healthy, app_fields

# What a connect runs in a slave worker, for the profile's inclusive shares.
CONNECT_PATH = (
    "authenticate (gusher/edge/routes.py)",
    "Authenticator.authenticate (gusher/edge/webhook.py)",
    "verify (gusher/core/tokens.py)",
    "websocket_route (flask_sock/__init__.py)",
    "handshake (simple_websocket/ws.py)",
    "Hub.attach (gusher/edge/hub.py)",
    "Hub.follow_user (gusher/edge/hub.py)",
    "Session.on_message (gusher/edge/session.py)",
    "full_dispatch_request (flask/app.py)",
    "wsgi_app (flask/app.py)",
    "handle_request (gunicorn/workers/ggevent.py)",
    "handle (gunicorn/workers/base_async.py)",
)


KEYS = (
    "connect_per_s",
    "cpu_ms_per_conn",
    "generator_cpu_ms_per_conn",
    "redis_cpu_ms_per_conn",
    "webhook_cpu_ms_per_conn",
    "box_busy_pct",
)


class TreeSlave(GusherSystem):
    """A gusher slave alone (connecting needs no master), run from the source tree `root`."""

    def __init__(self, infra: Infra, workers: int, root: Path, protocol: str) -> None:
        super().__init__(infra, workers, protocol=protocol)
        self.root = root
        self.name = f"{root.name}:{protocol}"

    def start(self) -> TreeSlave:
        self.infra.redis.hset(self.app_key, mapping=app_fields(self.infra, self.protocol))
        env = {
            "GUSHER_ROLE": "slave",
            "GUSHER_ENV_FILE": "/nonexistent/.env",
            "REDIS_ADDR": self.infra.redis_addr,
            "GUSHER_LOG_LEVEL": "warning",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(self.root),  # the tree's gusher, not the installed one
            "API_LISTEN": f"127.0.0.1:{self.port}",
            "GUSHER_SLAVE_WORKERS": str(self.workers),
        }
        compile_tree(self.root)
        args = [sys.executable, "-m", "gunicorn", "-c", str(self.root / "gunicorn.conf.py"), "wsgi_slave:app"]
        self.slave = ServerProcess("gusher-slave", args, env, cwd=self.root)
        _wait_healthy(self.slave, self.port, self.workers)
        return self


def connect_once(
    system: Any, pool: ClientPool, n: int, plan: Plan, profile: Path | None, infra: Infra
) -> dict[str, Any]:
    """Start `system`, connect `n` clients (each subscribes one shared channel), stop it."""
    system.start()
    recorders = []
    try:
        pids = system.worker_pids()
        if profile is not None and isinstance(system, TreeSlave):
            recorders = [
                (sampler.record(pid, profile / f"{system.name}-{pid}-{time.time_ns()}.txt")) for pid in pids
            ]
            time.sleep(0.5)  # py-spy attaches
        generators = [proc.pid for proc in pool.procs]
        backends = [infra.redis_server.process.pid, infra.webhook.pid]  # type: ignore[union-attr]
        cpu0, generator0, box0 = cpu_seconds(pids), cpu_seconds(generators), psutil.cpu_times()
        redis0, webhook0 = (cpu_seconds([pid]) for pid in backends)
        result = scenarios.connect(system, pool, n, scenarios.shared_channel_of, plan)
        cpu, generator = cpu_seconds(pids) - cpu0, cpu_seconds(generators) - generator0
        redis, webhook = cpu_seconds(backends[:1]) - redis0, cpu_seconds(backends[1:]) - webhook0
        box1 = psutil.cpu_times()
        idle = (box1.idle + box1.iowait) - (box0.idle + box0.iowait)
    finally:
        for recorder in recorders:
            recorder.send_signal(2)
            recorder.wait(timeout=30)
        pool.close_all()
        system.stop()
    log(
        f"{system.name} N={n}: {result.ready} connected ({result.rate:.0f}/s), "
        f"{result.failed} failed {result.errors}"
    )
    return {
        "connect_per_s": round(result.rate),
        "connected": result.ready,
        "failed": result.failed,
        "cpu_ms_per_conn": round(1000 * cpu / max(1, result.ready), 3),
        # The load generator's share, and how busy the whole box was (of all its cores).
        "generator_cpu_ms_per_conn": round(1000 * generator / max(1, result.ready), 3),
        "redis_cpu_ms_per_conn": round(1000 * redis / max(1, result.ready), 3),
        "webhook_cpu_ms_per_conn": round(1000 * webhook / max(1, result.ready), 3),
        "box_busy_pct": round(100 * (1 - idle / max(1e-9, sum(box1) - sum(box0))), 1),
        "p99_ms": round(scenarios.percentile(result.connect_ms, 99), 1),
    }


def run(trees: list[Path], rounds: int, n: int, workers: int, profile: Path | None) -> dict[str, Any]:
    """Every tree's webhook and JWT connects and the limit's, alternating, `rounds` times."""
    plan = Plan()
    infra = Infra()
    Reaper.add(infra.stop)
    figures: dict[str, list[dict[str, Any]]] = {}
    with ClientPool(ClientPool.processes_for(n)) as pool:
        for _ in range(rounds):
            figures.setdefault("limit", []).append(
                connect_once(LimitSystem(infra, workers), pool, n, plan, None, infra)
            )
            for tree in trees:
                for protocol in ("gusher", "jwt"):
                    name = f"{tree.name}:{'webhook' if protocol == 'gusher' else 'jwt'}"
                    slave = TreeSlave(infra, workers, tree, protocol)
                    figures.setdefault(name, []).append(connect_once(slave, pool, n, plan, profile, infra))
                    time.sleep(0.5)
    medians = {
        name: {key: statistics.median(r[key] for r in runs) for key in KEYS} for name, runs in figures.items()
    }
    out: dict[str, Any] = {"n": n, "workers": workers, "rounds": figures, "median": medians}
    if profile is not None:
        for tree in trees:
            for kind in ("gusher", "jwt"):
                files = sorted(profile.glob(f"{tree.name}:{kind}-*.txt"))
                if files:
                    out[f"profile {tree.name}:{kind}"] = sampler.summarize(files, CONNECT_PATH, top=25)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tree", action="append", type=Path, help="a gusher source tree (repeatable; default .)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=5000, help="connections per measurement (quick mode's N)")
    parser.add_argument("--workers", type=int, default=2, help="slave workers (and limit processes)")
    parser.add_argument("--profile", type=Path, help="py-spy the slave workers into this directory")
    args = parser.parse_args(argv)
    trees = [tree.resolve() for tree in (args.tree or [Path(".")])]
    if len({tree.name for tree in trees}) != len(trees):
        parser.error("the trees' directory names must differ (they label the figures)")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    try:
        result = run(trees, args.rounds, args.n, args.workers, args.profile)
    finally:
        Reaper.run()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
