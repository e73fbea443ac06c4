"""Reconnect storm: every client of a restarted slave comes back at once.

Starts Redis, a webhook that takes `--webhook-ms` per answer and counts how
many calls it serves at once, and a slave with `--workers` workers and
`GUSHER_WEBHOOK_CONCURRENCY=--concurrency`. `--clients` clients connect and
subscribe; the slave is stopped (SIGTERM: clients get 1001) and started again
on the same port, and every client reconnects immediately, retrying with a
short jittered backoff on a refusal. The run checks that

- every client is back and subscribed within `--deadline` seconds,
- the webhook never saw more than workers × concurrency calls at once,
- refusals were only the documented ones (connection refused while the slave
  restarts, 401 webhook timeout, 503 busy), and a push afterwards reaches all.

The last line printed is a JSON summary; exit status 1 when a check fails.

    python reliability/storm.py --clients 3000           # the long run
    python reliability/storm.py --clients 400 --deadline 30  # CI's short mode
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import redis as redis_lib  # noqa: E402
import websocket  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gusher.embedded import EmbeddedRedis  # noqa: E402
from tests.support import Client, GunicornProcess, Webhook, allow  # noqa: E402

APP = "storm"
DOCUMENTED = ("ConnectionRefusedError", "401", "503", "WebSocketConnectionClosedException",
              "ConnectionResetError", "BrokenPipeError")


def connect(slave_url: str, errors: dict[str, int], deadline: float) -> Client | None:
    """Connect and subscribe, retrying refusals until `deadline`."""
    backoff = 0.05
    while time.monotonic() < deadline:
        try:
            client = Client(slave_url, APP, allow("storm", "c"), timeout=30)
            reply = client.subscribe("c")
            if reply["event"] == "gusher.subscribe_succeeded":
                return client
            errors[reply["event"]] = errors.get(reply["event"], 0) + 1
            client.close()
        except websocket.WebSocketBadStatusException as exc:
            errors[str(exc.status_code)] = errors.get(str(exc.status_code), 0) + 1
        except (OSError, websocket.WebSocketException) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        gevent.sleep(backoff * random.uniform(0.5, 1.5))
        backoff = min(backoff * 2, 1.0)
    return None


def wait_closed(client: Client) -> None:
    try:
        client.recv_close(timeout=30)
    except Exception:  # reset instead of Close: the client still reconnects
        pass
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32, help="webhook calls in flight per worker")
    parser.add_argument("--webhook-ms", type=float, default=20)
    parser.add_argument("--deadline", type=float, default=60)
    args = parser.parse_args()

    server = EmbeddedRedis().start()
    webhook = Webhook(delay=args.webhook_ms / 1000)
    publisher = redis_lib.Redis(host=server.host, port=server.port)
    publisher.hset(APP, "url", webhook.url)
    settings = {"webhook_concurrency": args.concurrency, "webhook_timeout": 10}
    slave = GunicornProcess("slave", server.addr, workers=args.workers, **settings).start()
    summary: dict[str, object] = {"clients": args.clients, "workers": args.workers,
                                  "webhook_concurrency": args.concurrency, "webhook_ms": args.webhook_ms}
    errors_before: dict[str, int] = {}
    errors: dict[str, int] = {}
    try:
        jobs = [gevent.spawn(connect, slave.ws_url, errors_before, time.monotonic() + args.deadline)
                for _ in range(args.clients)]
        gevent.joinall(jobs)
        clients = [job.value for job in jobs if job.value is not None]
        summary["initially_connected"] = len(clients)
        webhook.max_in_flight = 0
        port = slave.port
        closing = [gevent.spawn(wait_closed, client) for client in clients]
        slave.stop(signal.SIGTERM)
        gevent.joinall(closing, timeout=30)
        started = time.monotonic()
        deadline = started + args.deadline
        jobs = [gevent.spawn(connect, f"ws://127.0.0.1:{port}", errors, deadline) for _ in clients]
        gevent.sleep(0.2)  # the storm is already knocking when the slave comes back
        slave = GunicornProcess("slave", server.addr, workers=args.workers, port=port, **settings)
        slave.start(wait_ready=False)
        gevent.joinall(jobs)
        back = [job.value for job in jobs if job.value is not None]
        summary["reconnected"] = len(back)
        summary["reconnect_seconds"] = round(time.monotonic() - started, 2)
        publisher.publish(f"{APP}@c", json.dumps({"channel": "c", "event": "e", "data": "after-storm"}))
        delivered = 0
        for client in back:
            try:
                delivered += client.recv_json(timeout=10)["data"] == "after-storm"
            except Exception:
                pass
            client.close()
        summary["delivered_after"] = delivered
    finally:
        slave.stop()
        webhook.shutdown()
        server.stop()
    bound = args.workers * args.concurrency
    summary.update(webhook_max_in_flight=webhook.max_in_flight, webhook_bound=bound, refusals=errors)
    undocumented = {k: v for k, v in errors.items() if k not in DOCUMENTED}
    ok = (summary.get("reconnected") == summary.get("initially_connected") == args.clients
          and summary.get("delivered_after") == args.clients
          and webhook.max_in_flight <= bound and not undocumented)
    summary["ok"] = ok
    print(json.dumps(summary), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
