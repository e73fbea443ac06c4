"""`python -m bench.storm [-n 20000] [--quick]`: a reconnect storm after a slave restart (issue 16).

N clients (gusher protocol, webhook auth through the bench's fast webhook,
here counting its calls in flight; the slave's default
GUSHER_WEBHOOK_CONCURRENCY) connect and subscribe through the load
generators. The slave (2 workers) is stopped with SIGTERM, each worker closing
its clients with 1001, and started again on the same port; every client
reconnects as soon as its connection closes, retrying with a short jittered
backoff (`loadgen.backoff`) while the port refuses or the slave refuses it,
then handshakes and subscribes again (`loadgen.StormJob`). Measured:

- `all_back_s`: from the new slave's port accepting until all N are
  subscribed again (also from the restart's spawn); the curve of subscribed
  clients every 0.5 s, with the slave workers' CPU over each interval;
- refusals by kind (port closed, reset, HTTP 503/401, close codes, ...);
- the webhook's peak calls in flight (received in one turn of its event loop,
  not yet answered) beside the bound, workers x min(concurrency, per app);
- CPU of the slave's workers, its arbiter, the generators, the webhook, Redis.

Runs: `gusher` (no history), `gusher+history` (the app keeps history; pushes
go on through the master at `--rate` per second during the storm, clients
resubscribe with `since` = their last offset and epoch, and each client's
offsets are then checked: missing and duplicates, `recovered` counted) and
`limit` (the limit baseline restarted the same way: the generators' own
ceiling for this storm). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import http.client
import json
import socket
import statistics
import sys
import threading
import time
from array import array
from typing import Any

from bench import webhook as fast_webhook
from bench.clients import ClientPool
from bench.measure import log
from bench.procs import Reaper, ServerProcess, cpu_seconds
from bench.systems import GusherSystem, Infra, LimitSystem, _wait_healthy
from gusher.embedded import free_port, wait_for_port

CURVE_EVERY = 0.5  # seconds between two points of the curve
BACKOFF = (0.05, 0.5)  # first retry after 50 ms (jitter 0.5-1.5x), doubling up to 0.5 s
WEBHOOK_CONCURRENCY, WEBHOOK_PER_APP = 64, 32  # gusher's defaults (gusher/config.py)


# -- pure parts -------------------------------------------------------------------


def refusal_kind(reason: str) -> str:
    """One failed attempt's reason as the generator wrote it, as a kind — pure."""
    if reason.startswith("close frame "):
        try:
            payload = ast.literal_eval(reason[len("close frame ") :])
        except (ValueError, SyntaxError):
            return "close frame"
        if isinstance(payload, bytes) and len(payload) >= 2:
            return f"close {int.from_bytes(payload[:2], 'big')}"
        return "close frame"
    if reason.startswith("HTTP/"):
        parts = reason.split()
        return f"HTTP {parts[1]}" if len(parts) > 1 else "HTTP"
    if reason.startswith("refused: "):
        return "subscribe_error"
    lowered = reason.lower()
    for needle, kind in (
        ("connection refused", "connection refused"),
        ("reset by peer", "connection reset"),
        ("timed out", "connect timed out"),
        ("closed by server", "closed before ready"),
        ("broken pipe", "broken pipe"),
        ("timeout", "deadline"),
    ):
        if needle in lowered:
            return kind
    return reason[:40]


def refusals_by_kind(reasons: dict[str, int]) -> dict[str, int]:
    """Merge reasons into kinds, most frequent first — pure."""
    kinds: dict[str, int] = {}
    for reason, count in reasons.items():
        kind = refusal_kind(reason)
        kinds[kind] = kinds.get(kind, 0) + count
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def time_to_all(back_at: list[float], n: int, since: float) -> float | None:
    """Seconds from `since` until the n-th client was back, None if fewer came back — pure."""
    if n <= 0 or len(back_at) < n:
        return None
    return round(sorted(back_at)[n - 1] - since, 3)


def quantile_times(back_at: list[float], n: int, since: float, shares: tuple[float, ...]) -> dict[str, Any]:
    """When each share of the n clients was back, seconds after `since` — pure."""
    ordered = sorted(back_at)
    out: dict[str, Any] = {}
    for share in shares:
        k = max(1, round(share * n))
        out[f"{round(share * 100)}%"] = round(ordered[k - 1] - since, 3) if len(ordered) >= k else None
    return out


def curve_from(back_at: list[float], since: float, every: float, until: float) -> list[tuple[float, int]]:
    """(t, clients back by t) every `every` seconds from `since` to `until` — pure."""
    ordered = sorted(back_at)
    points, i, t = [], 0, 0.0
    while True:
        while i < len(ordered) and ordered[i] <= since + t:
            i += 1
        points.append((round(t, 2), i))
        if since + t >= until:
            return points
        t += every


KERNEL_COUNTERS = ("ListenOverflows", "ListenDrops", "SyncookiesSent", "TCPSynRetrans", "TCPTimeouts")


def netstat_counters(text: str, names: tuple[str, ...] = KERNEL_COUNTERS) -> dict[str, int]:
    """The `TcpExt` counters `names` from /proc/net/netstat's text (header line, values line) — pure."""
    lines = text.splitlines()
    out: dict[str, int] = {}
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:") and values.startswith("TcpExt:"):
            pairs = dict(zip(head.split()[1:], values.split()[1:], strict=False))
            out.update({name: int(pairs[name]) for name in names if name in pairs})
    return out


def _kernel() -> dict[str, int]:
    try:
        with open("/proc/net/netstat") as f:
            return netstat_counters(f.read())
    except OSError:
        return {}


def webhook_bound(workers: int, concurrency: int, per_app: int) -> int:
    """Webhook calls one app's handshakes may have in flight over all workers — pure."""
    return workers * max(1, min(concurrency, per_app))


def recovery_verdict(resume: dict[str, int], n: int) -> bool:
    """Every one of the n clients got every message exactly once — pure."""
    return resume.get("clients") == n and resume.get("whole") == n


# -- the counting webhook ----------------------------------------------------------


class _CountingProtocol(asyncio.Protocol):
    """bench.webhook's answers, deferred to the next turn of the loop, counting calls in flight.

    Calls received in one turn are all in flight together; `GET /stats` answers
    the peak and totals, `GET /reset` zeroes the peak. With `delay` > 0 each
    answer waits that long (a slower webhook, to see the bound hold under it).
    """

    state = {"in_flight": 0, "peak": 0, "calls": 0}
    delay = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        loop = asyncio.get_running_loop()
        state = self.state
        while (request := fast_webhook.next_request(self.buf)) is not None:
            head, body, self.buf = request
            if head.startswith(b"GET /stats"):
                self._write(json.dumps(state).encode())
                continue
            if head.startswith(b"GET /reset"):
                state["peak"], state["calls"] = state["in_flight"], 0
                self._write(b"{}")
                continue
            state["in_flight"] += 1
            state["calls"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            answer = fast_webhook.answer(body)
            if self.delay > 0:
                loop.call_later(self.delay, self._answer, answer)
            else:
                loop.call_soon(self._answer, answer)

    def _answer(self, answer: bytes) -> None:
        self.state["in_flight"] -= 1
        if not self.transport.is_closing():
            self.transport.write(answer)  # type: ignore[attr-defined]

    def _write(self, payload: bytes) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        self.transport.write(head.encode() + payload)  # type: ignore[attr-defined]


async def _serve_webhook(port: int, delay: float) -> None:
    _CountingProtocol.delay = delay
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_CountingProtocol, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


class CountingWebhook:
    """The counting webhook in a process of its own (`python -m bench.storm --serve-webhook PORT`)."""

    def __init__(self, delay_ms: float) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "bench.storm", "--serve-webhook", str(self.port), "--webhook-ms"]
        self.process = ServerProcess("storm-webhook", [*args, str(delay_ms)])
        wait_for_port("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/auth"

    def _get(self, path: str) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read() or b"{}")
        finally:
            conn.close()

    def stats(self) -> dict:
        return self._get("/stats")

    def reset(self) -> None:
        self._get("/reset")

    def stop(self) -> None:
        self.process.stop()


# -- the restartable targets ---------------------------------------------------------


class StormGusher(GusherSystem):
    """gusher master + slave whose app calls the counting webhook; the slave restarts in place."""

    def __init__(self, infra: Infra, workers: int, webhook_url: str, history: tuple[int, int] | None) -> None:
        super().__init__(infra, workers, history=history)
        self.webhook_url = webhook_url

    def start(self) -> StormGusher:
        fields: dict[str, Any] = {"url": self.webhook_url}
        if self.history:
            fields.update(history_size=self.history[0], history_ttl=self.history[1])
        self.infra.redis.hset(self.app_key, mapping=fields)
        self.master = self._gunicorn(
            "master", {"MASTER_API_LISTEN": f"127.0.0.1:{self.master_port}", "GUSHER_MASTER_WORKERS": "2"}
        )
        self.slave = self._spawn_slave()
        _wait_healthy(self.master, self.master_port, 1)
        _wait_healthy(self.slave, self.port, self.workers)
        return self

    def _spawn_slave(self) -> ServerProcess:
        env = {"API_LISTEN": f"127.0.0.1:{self.port}", "GUSHER_SLAVE_WORKERS": str(self.workers)}
        return self._gunicorn("slave", env)

    def server_pids(self) -> list[int]:
        """The slave's arbiter and workers."""
        return [self.slave.pid, *self.slave.children()] if self.slave else []

    def halt(self) -> None:
        assert self.slave is not None
        self.slave.stop(timeout=30)

    def respawn(self) -> None:
        self.slave = self._spawn_slave()

    def last_offset(self, channel: str) -> int | None:
        """The channel's latest offset, from the master's history route."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.master_port, timeout=10)
            conn.request("GET", f"/api/apps/{self.app_key}/channels/{channel}/history?since=0&limit=1")
            response = conn.getresponse()
            body = response.read()
            conn.close()
            return int(json.loads(body)["offset"]) if response.status == 200 else None
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            return None


class StormLimit(LimitSystem):
    """The limit baseline, stopped and started again on its port the same way."""

    def server_pids(self) -> list[int]:
        return self.worker_pids()

    def halt(self) -> None:
        self.stop()

    def respawn(self) -> None:
        from bench.baseline import LimitServer

        self.server = LimitServer(self.port, self.workers)
        Reaper.add(self.server.stop)


# -- the generators during a storm ------------------------------------------------------


class Storm:
    """The generator pool's pipes during a storm: counts asked, the storm reports kept aside."""

    def __init__(self, pool: ClientPool) -> None:
        self.pool = pool
        self.reports: dict[int, dict] = {}

    def arm(self, port: int, adapter: dict, timeout: float, spread: float = 0.0) -> int:
        for p, pipe in enumerate(self.pool.pipes):
            spec = {
                "host": "127.0.0.1",
                "port": port,
                "adapter": adapter,
                "concurrency": 1_000_000,  # every client at once
                "timeout": timeout,
                "source": self.pool.source_address(p),
                "backoff": BACKOFF,
                "spread": spread,
                "seed": p,
            }
            pipe.send(("storm", spec))
        return sum(self._reply(p, "armed")["armed"] for p in range(len(self.pool.pipes)))

    def _reply(self, p: int, key: str, timeout: float = 30.0) -> dict:
        pipe, deadline = self.pool.pipes[p], time.monotonic() + timeout
        while True:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"load generator {p} did not answer ({key})")
            reply = pipe.recv()
            if "back_at" in reply and key != "back_at":
                self.reports[p] = reply
                continue
            if key in reply:
                return reply

    def ready(self) -> int:
        """Connections READY (subscribed) now, all generators."""
        for pipe in self.pool.pipes:
            pipe.send(("count", None))
        return sum(self._reply(p, "open")["open"] for p in range(len(self.pool.pipes)))

    def done(self) -> bool:
        for p, pipe in enumerate(self.pool.pipes):
            if p not in self.reports and pipe.poll(0):
                reply = pipe.recv()
                if "back_at" in reply:
                    self.reports[p] = reply
        return len(self.reports) == len(self.pool.pipes)

    def wait_reports(self, timeout: float) -> list[dict]:
        for p in range(len(self.pool.pipes)):
            if p not in self.reports:
                self.reports[p] = self._reply(p, "back_at", timeout)
        return [self.reports[p] for p in sorted(self.reports)]

    def resume(self, last: dict[str, int]) -> dict[str, int]:
        for pipe in self.pool.pipes:
            pipe.send(("resume", last))
        total: dict[str, int] = {}
        for p in range(len(self.pool.pipes)):
            for key, value in self._reply(p, "whole", 120).items():
                total[key] = total.get(key, 0) + value
        return total


class Pusher(threading.Thread):
    """Pushes through the master at `rate` per second, channels in turn, until stopped."""

    def __init__(self, system: StormGusher, channels: list[str], rate: float) -> None:
        super().__init__(daemon=True)
        self.system, self.channels, self.rate = system, channels, rate
        self.sent = dict.fromkeys(channels, 0)
        self.failed = 0
        self.halt = threading.Event()

    def run(self) -> None:
        seq, start = 0, time.monotonic()
        while not self.halt.is_set():
            channel = self.channels[seq % len(self.channels)]
            try:
                self.system.push(channel, seq, 100)
                self.sent[channel] += 1
            except RuntimeError:
                self.failed += 1
            seq += 1
            self.halt.wait(max(0.0, start + seq / self.rate - time.monotonic()))


def _port_accepting(port: int, timeout: float) -> float:
    """Wait until 127.0.0.1:port accepts a connection; return that moment (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return time.monotonic()
        except OSError:
            time.sleep(0.005)
    raise TimeoutError(f"port {port} not accepting after {timeout} s")


def _cpu(pids: list[int]) -> float:
    return cpu_seconds(pids)


def run_storm(
    target: Any,
    infra: Infra,
    pool: ClientPool,
    n: int,
    channels: list[str],
    webhook: CountingWebhook | None,
    rate: float,
    timeout: float,
    spread: float = 0.0,
) -> dict[str, Any]:
    """Connect n clients to the started `target`, restart it, measure until all are back."""
    name = target.name
    resume = isinstance(target, StormGusher) and bool(target.history)
    spec_adapter = target.adapter
    # Connect (retries as every scenario's), each client on channel i % C; history clients track offsets.
    result = _connect(pool, target, n, channels, resume)
    log(f"{name} N={n}: {result['ready']} connected and subscribed, {result['failed']} failed")
    if result["ready"] < n:
        raise RuntimeError(f"{name}: only {result['ready']} of {n} connected: {result['errors']}")
    storm = Storm(pool)
    armed = storm.arm(target.port, spec_adapter, timeout, spread)
    pusher = None
    if resume and rate > 0:
        pusher = Pusher(target, channels, rate)
        pusher.start()
        time.sleep(2.0)  # messages flowing before the restart
    if webhook is not None:
        webhook.reset()
    generators = pool.pids()
    gen0 = _cpu(generators)
    backends = [infra.redis_server.process.pid]  # type: ignore[union-attr]
    if webhook is not None:
        backends.append(webhook.process.pid)
    back0 = [_cpu([pid]) for pid in backends]
    kernel0 = _kernel()
    t_stop = time.monotonic()
    target.halt()  # SIGTERM: gusher's workers close their clients with 1001
    t_stopped = time.monotonic()
    target.respawn()
    t_spawn = time.monotonic()
    t_accept = _port_accepting(target.port, 60)
    log(
        f"{name}: stopped in {t_stopped - t_stop:.2f} s, "
        f"new port accepting {t_accept - t_spawn:.2f} s after spawn"
    )
    points: list[dict[str, Any]] = []
    cpu_seen: dict[int, float] = {}
    last_t, last_cpu = t_accept, 0.0
    deadline = t_accept + timeout
    while time.monotonic() < deadline:
        time.sleep(max(0.0, last_t + CURVE_EVERY - time.monotonic()))
        now = time.monotonic()
        ready = storm.ready()
        pids = target.server_pids()
        for pid in pids:
            cpu_seen[pid] = _cpu([pid]) or cpu_seen.get(pid, 0.0)
        cpu_now = sum(cpu_seen.values())
        points.append(
            {
                "t": round(now - t_accept, 2),
                "subscribed": ready,
                "server_cpu_pct": round(100 * (cpu_now - last_cpu) / max(1e-9, now - last_t)),
            }
        )
        last_t, last_cpu = now, cpu_now
        if ready >= armed or storm.done():
            break
    reports = storm.wait_reports(max(5.0, deadline - time.monotonic() + 10))
    t_end = time.monotonic()
    kernel1 = _kernel()
    server_pids = target.server_pids()
    for pid in server_pids:
        cpu_seen[pid] = _cpu([pid]) or cpu_seen.get(pid, 0.0)
    back_at: array = array("d")
    closed_at: array = array("d")
    connect_ms: array = array("d")
    reasons: dict[str, int] = {}
    for r in reports:
        back_at.frombytes(r["back_at"])
        closed_at.frombytes(r["closed_at"])
        connect_ms.frombytes(r["connect_ms"])
        for reason, count in r["refusals"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    backs = list(back_at)
    last_back = max(backs) if backs else t_end
    out: dict[str, Any] = {
        "system": name,
        "n": n,
        "spread_s": spread,
        "armed": armed,
        "back": sum(r["back"] for r in reports),
        "failed": sum(r["failed"] for r in reports),
        "closed": len(closed_at),
        "stop_s": round(t_stopped - t_stop, 2),
        "closes_spread_s": round(max(closed_at) - min(closed_at), 2) if closed_at else None,
        "port_accepting_after_spawn_s": round(t_accept - t_spawn, 3),
        "all_back_s": time_to_all(backs, n, t_accept),
        "all_back_from_spawn_s": time_to_all(backs, n, t_spawn),
        "all_back_from_sigterm_s": time_to_all(backs, n, t_stop),
        "back_by": quantile_times(backs, n, t_accept, (0.5, 0.9, 0.99, 1.0)),
        "curve": curve_from(backs, t_accept, CURVE_EVERY, last_back),
        "polled": points,
        "refusals": refusals_by_kind(reasons),
        "refusals_raw": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:12]),
        "attempts_per_client": round((sum(reasons.values()) + len(backs)) / max(1, n), 2),
        "successful_attempt_ms_p50": round(statistics.median(connect_ms), 1) if connect_ms else None,
        "successful_attempt_ms_p99": round(sorted(connect_ms)[int(0.99 * (len(connect_ms) - 1))], 1)
        if connect_ms
        else None,
        "server_cpu_s": round(sum(cpu_seen.values()), 2),
        "server_cpu_pct_of_one_core": round(100 * sum(cpu_seen.values()) / max(1e-9, last_back - t_spawn)),
        "server_workers": len(server_pids) - (1 if isinstance(target, StormGusher) else 0),
        "generator_cpu_s": round(_cpu(generators) - gen0, 2),
        "redis_cpu_s": round(_cpu(backends[:1]) - back0[0], 2),
        # The whole box's TCP counters over the storm: full accept queues drop SYNs (or the
        # handshake's last ACK), and those clients wait for the kernel's SYN retransmits (1, 3, 7 s).
        "kernel": {name: kernel1[name] - kernel0.get(name, 0) for name in kernel1},
    }
    if webhook is not None:
        stats = webhook.stats()
        out["webhook_cpu_s"] = round(_cpu(backends[1:]) - back0[1], 2)
        out["webhook_calls"] = stats["calls"]
        out["webhook_peak_in_flight"] = stats["peak"]
        out["webhook_bound"] = webhook_bound(target.workers, WEBHOOK_CONCURRENCY, WEBHOOK_PER_APP)
        out["webhook_bound_held"] = stats["peak"] <= out["webhook_bound"]
    if pusher is not None:
        time.sleep(2.0)  # pushes go on after everyone is back
        pusher.halt.set()
        pusher.join(30)
        time.sleep(2.0)  # the last deliveries land
        last = {}
        for channel in channels:
            offset = target.last_offset(channel)
            last[channel] = offset if offset is not None else pusher.sent[channel]
        check = storm.resume(last)
        out["history"] = {
            "rate_per_s": rate,
            "channels": len(channels),
            "pushed": sum(pusher.sent.values()),
            "push_failed": pusher.failed,
            "last_offsets_from": "history route" if target.last_offset(channels[0]) is not None else "pushes",
            **check,
            "nothing_lost": recovery_verdict(check, n),
        }
    return out


def _connect(pool: ClientPool, target: Any, n: int, channels: list[str], resume: bool) -> dict[str, Any]:
    """ClientPool.connect's batch, with the history clients' `"resume"` tracking switched on."""
    k = len(pool.pipes)
    for p, pipe in enumerate(pool.pipes):
        items = [(i, [channels[i % len(channels)]]) for i in range(p, n, k)]
        spec = {
            "host": "127.0.0.1",
            "port": target.port,
            "adapter": target.adapter,
            "items": items,
            "concurrency": max(1, 400 // k),
            "timeout": max(60.0, n / 100),
            "source": pool.source_address(p),
            "resume": resume,
        }
        pipe.send(("connect", spec))
    replies = []
    for pipe in pool.pipes:
        if not pipe.poll(max(90.0, n / 100 + 30)):
            raise TimeoutError("load generator did not finish connecting")
        replies.append(pipe.recv())
    errors: dict[str, int] = {}
    for r in replies:
        for reason, count in r["errors"].items():
            errors[reason] = errors.get(reason, 0) + count
    return {
        "ready": sum(r["ready"] for r in replies),
        "failed": sum(r["failed"] for r in replies),
        "errors": errors,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n
    channels = [f"storm-{i}" for i in range(args.channels)]
    infra = Infra()
    Reaper.add(infra.stop)
    webhook = CountingWebhook(args.webhook_ms)
    Reaper.add(webhook.stop)
    results: dict[str, Any] = {"n": n, "workers": args.workers, "backoff_s": BACKOFF}
    kinds = [k.strip() for k in args.systems.split(",") if k.strip()]
    for kind in kinds:
        with ClientPool(ClientPool.processes_for(n)) as pool:
            if kind == "limit":
                target: Any = StormLimit(infra, args.workers)
                hook = None
            else:
                history = (args.history_size, args.history_ttl) if kind == "gusher+history" else None
                target = StormGusher(infra, args.workers, webhook.url, history)
                hook = webhook
            target.start()
            try:
                figures = run_storm(
                    target, infra, pool, n, channels, hook, args.rate, args.timeout, args.spread
                )
            finally:
                pool.close_all()
                target.stop()
        log(
            f"{kind}: all {figures['back']}/{n} back in {figures['all_back_s']} s after the port accepted "
            f"(refusals {figures['refusals']})"
        )
        results[kind] = figures
        time.sleep(1.0)
    if "gusher" in results and "limit" in results and results["limit"]["all_back_s"]:
        results["gusher_vs_limit"] = round(
            results["gusher"]["all_back_s"] / results["limit"]["all_back_s"], 2
        )
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The storm's options; `parse_args([])` is the full run's storm (bench.full)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=20_000, help="clients (default 20,000)")
    parser.add_argument("--quick", action="store_true", help="N=2,000 unless -n is given")
    parser.add_argument("--workers", type=int, default=2, help="slave workers (and limit processes)")
    parser.add_argument("--systems", default="gusher,gusher+history,limit")
    parser.add_argument("--channels", type=int, default=20, help="client i subscribes storm-(i %% C)")
    parser.add_argument(
        "--rate", type=float, default=10.0, help="history run: pushes per second (all channels)"
    )
    parser.add_argument("--history-size", type=int, default=1000)
    parser.add_argument("--history-ttl", type=int, default=600)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the storm may take")
    parser.add_argument(
        "--spread", type=float, default=0.0, help="clients wait uniform [0, S) s before their first reconnect"
    )
    parser.add_argument("--webhook-ms", type=float, default=0.0, help="delay of each webhook answer")
    parser.add_argument("--serve-webhook", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_webhook:
        asyncio.run(_serve_webhook(args.serve_webhook, args.webhook_ms / 1000))
        return 0
    if args.quick and "-n" not in (argv if argv is not None else sys.argv[1:]):
        args.n = 2_000
    try:
        result = run(args)
    finally:
        Reaper.run()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
