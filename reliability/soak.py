"""Soak: churn, subscribes and steady pushes against master + slave; nothing may be lost.

Starts its own Redis-compatible server, webhook, master and slave (several
workers), then for `--seconds`:
- keeps `--clients` WebSocket clients connected, replacing `--churn` of them
  every second (close, reconnect, resubscribe);
- each client subscribes to 1–3 of `--channels` channels;
- a publisher pushes `--rate` messages per second through the master's HTTP
  API, each carrying its channel's sequence number.

Every client checks that, per channel, it received every message published
after its `subscribe_succeeded` and before it left, in order, once. The slave's
RSS is sampled every second; a steady climb over the second half fails the run.
The last line printed is a JSON summary; exit status 1 on any loss or growth.

    python reliability/soak.py --seconds 600            # the long run
    python reliability/soak.py --seconds 20 --clients 80  # CI's short mode
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import psutil  # noqa: E402
import redis as redis_lib  # noqa: E402
import requests  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gusher.embedded import EmbeddedRedis  # noqa: E402
from tests.support import Client, GunicornProcess, Webhook, allow  # noqa: E402

APP = "soak"


@dataclass
class Published:
    """What the publisher sent on one channel: seq → time the push returned 200."""

    done_at: dict[int, float] = field(default_factory=dict)
    started_at: dict[int, float] = field(default_factory=dict)
    next_seq: int = 0


@dataclass
class Session:
    """One client's stay on one channel."""

    channel: str
    subscribed_at: float
    received: list[int] = field(default_factory=list)
    left_at: float = 0.0


@dataclass
class Totals:
    sessions: list[Session] = field(default_factory=list)
    connects: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def run_client(slave: GunicornProcess, channels: list[str], totals: Totals, stop_at: float,
               mean_lifetime: float) -> None:
    """Connect, subscribe, read until its lifetime ends (that is the churn) or the run does."""
    mine = random.sample(channels, random.randint(1, 3))
    try:
        client = Client(slave.ws_url, APP, allow("soaker", *channels), timeout=10)
    except Exception as exc:
        totals.error(f"connect: {type(exc).__name__}")
        return
    totals.connects += 1
    sessions: dict[str, Session] = {}
    lifetime = time.monotonic() + random.uniform(0.5, 2 * mean_lifetime)
    try:
        for index, channel in enumerate(mine):
            client.send_json({"event": "gusher.subscribe", "data": {"id": index, "channel": channel}})
        client.ws.settimeout(0.5)
        while time.monotonic() < min(lifetime, stop_at):
            try:
                message = json.loads(client.ws.recv())
            except Exception as exc:
                if type(exc).__name__ == "WebSocketTimeoutException":
                    continue
                raise
            if message.get("event") == "gusher.subscribe_succeeded":
                channel = message["data"]["channel"]
                sessions[channel] = Session(channel, time.monotonic())
            elif "channel" in message and message["channel"] in sessions:
                sessions[message["channel"]].received.append(int(message["data"]))
            elif message.get("event", "").endswith("_error"):
                totals.error(message["event"])
    except Exception as exc:
        totals.error(f"read: {type(exc).__name__}")
    finally:
        now = time.monotonic()
        for session in sessions.values():
            session.left_at = now
            totals.sessions.append(session)
        client.close()


def publish(master: GunicornProcess, channels: list[str], rate: float, stop_at: float,
            published: dict[str, Published], totals: Totals) -> None:
    """Push `rate` messages per second, round robin over the channels."""
    session = requests.Session()
    interval = 1.0 / rate
    next_at = time.monotonic()
    index = 0
    while time.monotonic() < stop_at:
        channel = channels[index % len(channels)]
        index += 1
        record = published[channel]
        seq = record.next_seq
        record.next_seq += 1
        record.started_at[seq] = time.monotonic()
        try:
            response = session.post(f"{master.url}/api/push/{APP}/{channel}/tick", params={"data": str(seq)},
                                    timeout=5)
            if response.status_code == 200:
                record.done_at[seq] = time.monotonic()
            else:
                totals.error(f"push {response.status_code}")
        except requests.RequestException as exc:
            totals.error(f"push: {type(exc).__name__}")
        next_at += interval
        gevent.sleep(max(0.0, next_at - time.monotonic()))


def check(totals: Totals, published: dict[str, Published]) -> tuple[int, int, int]:
    """(messages expected, received, sessions with loss/disorder) over all sessions."""
    expected_total = received_total = broken = 0
    margin = 1.0  # a push that returned within 1 s of leaving may legitimately be missed
    for session in totals.sessions:
        record = published[session.channel]
        expected = [seq for seq, started in record.started_at.items()
                     if started > session.subscribed_at and seq in record.done_at
                     and record.done_at[seq] < session.left_at - margin]
        got = set(session.received)
        missing = [seq for seq in expected if seq not in got]
        in_order = session.received == sorted(set(session.received))
        expected_total += len(expected)
        received_total += len(expected) - len(missing)
        if missing or not in_order:
            broken += 1
    return expected_total, received_total, broken


def rss_growth_mb_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over the second half of the run, in MB per minute."""
    half = samples[len(samples) // 2:]
    if len(half) < 3:
        return 0.0
    xs = [t for t, _ in half]
    ys = [r / 1e6 for _, r in half]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs) or 1.0
    return 60 * sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var


def slave_rss(slave: GunicornProcess) -> int:
    assert slave.process is not None
    return sum(psutil.Process(pid).memory_info().rss for pid in slave.worker_pids())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--churn", type=float, default=10, help="clients replaced per second, on average")
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--rate", type=float, default=100, help="pushes per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-growth", type=float, default=2.0, help="allowed RSS slope, MB/min")
    args = parser.parse_args()

    server = EmbeddedRedis().start()
    webhook = Webhook()
    redis_lib.Redis(host=server.host, port=server.port).hset(APP, "url", webhook.url)
    master = GunicornProcess("master", server.addr, workers=1).start()
    slave = GunicornProcess("slave", server.addr, workers=args.workers).start()
    channels = [f"ch{i}" for i in range(args.channels)]
    published = {c: Published() for c in channels}
    totals = Totals()
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    stop_at = started + args.seconds
    mean_lifetime = args.clients / args.churn
    try:
        pool = [gevent.spawn(run_client, slave, channels, totals, stop_at, mean_lifetime) for _ in range(args.clients)]
        publisher = gevent.spawn(publish, master, channels, args.rate, stop_at, published, totals)
        while time.monotonic() < stop_at:
            gevent.sleep(1)
            samples.append((time.monotonic() - started, slave_rss(slave)))
            pool = [g for g in pool if not g.dead]
            missing = args.clients - len(pool)
            pool += [gevent.spawn(run_client, slave, channels, totals, stop_at, mean_lifetime) for _ in range(missing)]
        gevent.joinall(pool + [publisher], timeout=20)
    finally:
        slave.stop()
        master.stop()
        webhook.shutdown()
        server.stop()
    expected, received, broken = check(totals, published)
    growth = rss_growth_mb_per_min(samples)
    summary = {
        "seconds": args.seconds, "clients": args.clients, "connects": totals.connects,
        "sessions": len(totals.sessions), "pushes": sum(len(p.done_at) for p in published.values()),
        "expected_deliveries": expected, "delivered": received,
        "completeness": round(received / expected, 6) if expected else 1.0,
        "broken_sessions": broken, "errors": totals.errors,
        "rss_start_mb": round(samples[0][1] / 1e6, 1) if samples else 0,
        "rss_end_mb": round(samples[-1][1] / 1e6, 1) if samples else 0,
        "rss_growth_mb_per_min": round(growth, 3),
    }
    ok = broken == 0 and expected > 0 and growth <= args.max_growth and not totals.errors
    summary["ok"] = ok
    print(json.dumps(summary), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
