"""The systems under test, behind one small interface the scenarios drive.

A system starts its servers, says how a client connects (`port`, `adapter`),
which processes hold the connections (`worker_pids`, for RSS and CPU) and how
to make it deliver: `push` goes through the system's API path (gusher: HTTP
POST to the master), `publish` is the fastest path into the system (gusher:
PUBLISH straight into Redis, as the SPEC allows backends to do). Every message
carries `sent_ns`, the wall-clock time it was meant to leave, in its data.
"""

from __future__ import annotations

import http.client
import math
import sys
import time
import urllib.parse
from typing import Any

import redis

from bench.baseline import LimitServer, data_string, message
from bench.procs import ROOT, Reaper, ServerProcess, compile_tree
from gusher.embedded import EmbeddedRedis, free_port, wait_for_port

MAX_CONN_PER_WORKER = 12_500  # leaves slack under gusher's default cap of 15,000

# PUBLISH each (channel, message) pair of ARGV: Redis does the publishing, the bench's
# Python only packs one command per chunk (a pipeline of N PUBLISH cost the bench
# ~6 µs a message on this box, a third of the CPU of the worker it fed).
PUBLISH_SCRIPT = """
local half = #ARGV / 2
for i = 1, half do redis.call('PUBLISH', ARGV[i], ARGV[half + i]) end
return half
"""
PUBLISH_CHUNK = 500  # messages per script call: the slave starts reading after the first


def workers_for(n: int) -> int:
    """Server processes for `n` connections: at least 2 (one per core), ≤ 12.5k each."""
    return max(2, math.ceil(n / MAX_CONN_PER_WORKER))


class Infra:
    """What every system shares in a run: one Redis and one fast webhook."""

    def __init__(self) -> None:
        self.redis_server = EmbeddedRedis(extra_args=("--maxclients", "50000")).start()
        Reaper.add(self.redis_server.stop)
        self.redis = redis.Redis(host=self.redis_server.host, port=self.redis_server.port)
        self.webhook_port = free_port()
        self.webhook = ServerProcess(
            "webhook", [sys.executable, "-m", "bench.webhook", str(self.webhook_port)]
        )
        wait_for_port("127.0.0.1", self.webhook_port)

    @property
    def redis_addr(self) -> str:
        return self.redis_server.addr

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/auth"

    def stop(self) -> None:
        self.webhook.stop()
        self.redis_server.stop()


class GusherSystem:
    """gusher master + slave (gunicorn, gevent workers) on the shared Redis."""

    name = "gusher"

    def __init__(
        self,
        infra: Infra,
        workers: int,
        history: tuple[int, int] | None = None,
        protocol: str = "gusher",
    ) -> None:
        self.infra = infra
        self.workers = workers
        # (history_size, history_ttl): the app keeps history, so every push is numbered and kept.
        self.history = history
        if history:
            self.name = "gusher+history"
        # "pusher": the clients speak Pusher protocol 7 at /app/{key} (the app's `pusher` field set).
        self.protocol = protocol
        if protocol != "gusher":
            self.name = f"gusher+{protocol}"
        self.app_key = f"bench{time.time_ns() % 10**9}"
        self.port = free_port()
        self.master_port = free_port()
        self.adapter = {"kind": protocol, "app_key": self.app_key}
        if protocol == "jwt":
            self.adapter["jwt_key"] = JWT_KEY
        self.slave: ServerProcess | None = None
        self.master: ServerProcess | None = None
        self._http: http.client.HTTPConnection | None = None

    def _gunicorn(self, role: str, env: dict[str, str]) -> ServerProcess:
        base = {
            "GUSHER_ROLE": role,
            "GUSHER_ENV_FILE": "/nonexistent/.env",
            "REDIS_ADDR": self.infra.redis_addr,
            "GUSHER_LOG_LEVEL": "warning",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        compile_tree(ROOT)
        args = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), f"wsgi_{role}:app"]
        return ServerProcess(f"gusher-{role}", args, {**base, **env})

    def start(self) -> GusherSystem:
        self.infra.redis.hset(self.app_key, mapping=app_fields(self.infra, self.protocol))
        if self.history:
            size, ttl = self.history
            self.infra.redis.hset(self.app_key, mapping={"history_size": size, "history_ttl": ttl})
        self.master = self._gunicorn(
            "master", {"MASTER_API_LISTEN": f"127.0.0.1:{self.master_port}", "GUSHER_MASTER_WORKERS": "2"}
        )
        self.slave = self._gunicorn(
            "slave", {"API_LISTEN": f"127.0.0.1:{self.port}", "GUSHER_SLAVE_WORKERS": str(self.workers)}
        )
        _wait_healthy(self.master, self.master_port, 1)
        _wait_healthy(self.slave, self.port, self.workers)
        return self

    def worker_pids(self) -> list[int]:
        return self.slave.children() if self.slave else []

    def push(self, channel: str, seq: int, size: int, app_key: str = "") -> int:
        """One message through the master's HTTP API (seed: POST /api/push/...), to `app_key` or ours."""
        sent_ns = time.time_ns()
        query = urllib.parse.urlencode({"data": data_string(seq, sent_ns, size)})
        for _ in range(2):  # a keep-alive connection the master closed is reopened once
            try:
                if self._http is None:
                    self._http = http.client.HTTPConnection("127.0.0.1", self.master_port, timeout=10)
                self._http.request("POST", f"/api/push/{app_key or self.app_key}/{channel}/e?{query}")
                response = self._http.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"push answered {response.status}")
                return sent_ns
            except (http.client.HTTPException, OSError):
                self._http = None
        raise RuntimeError("push failed twice")

    def publish(
        self, channels: list[str], seq: int, count: int, size: int, sent_ns: int, app_key: str = ""
    ) -> None:
        """`count` messages to each channel of `app_key` (or ours), straight into Redis.

        One pipeline of `PUBLISH_SCRIPT` calls of `PUBLISH_CHUNK` messages each,
        in order: the same PUBLISHes a backend makes, at a fraction of the
        publisher's CPU, so the figures are the slave's (`publisher_alone`).
        """
        prefix = app_key or self.app_key
        targets = [channel for channel in channels for _ in range(count)]
        names = [f"{prefix}@{channel}" for channel in targets]
        bodies = [message(seq + i % count, sent_ns, size, channel) for i, channel in enumerate(targets)]
        pipe = self.infra.redis.pipeline(transaction=False)
        for start in range(0, len(names), PUBLISH_CHUNK):
            end = start + PUBLISH_CHUNK
            pipe.eval(PUBLISH_SCRIPT, 0, *names[start:end], *bodies[start:end])
        pipe.execute()

    def add_app(self, protocol: str, suffix: str) -> GusherApp:
        """Another app on these running servers, its clients speaking `protocol` (see `GusherApp`)."""
        return GusherApp(self, protocol, self.app_key + suffix)

    def push_api_url(self) -> str:
        return f"http://127.0.0.1:{self.master_port}/api/push/{self.app_key}/api/e?data=hello"

    def batch_api_url(self) -> str:
        return f"http://127.0.0.1:{self.master_port}/api/apps/{self.app_key}/batch_events"

    def stop(self) -> None:
        for process in (self.slave, self.master):
            if process is not None:
                process.stop()
        self.infra.redis.delete(self.app_key)


# The HS256 key of the bench's JWT app (protocol "jwt": clients connect with a token, no webhook).
JWT_KEY = "bench-jwt-key-of-at-least-32-bytes!"


def app_fields(infra: Infra, protocol: str) -> dict[Any, str]:
    """The Redis hash of a bench app: the webhook, `pusher` = 1 for Pusher clients, `jwt_key`
    for clients that connect with a JWT."""
    fields: dict[Any, str] = {"url": infra.webhook_url}
    if protocol == "pusher":
        fields["pusher"] = "1"
    if protocol == "jwt":
        fields["jwt_key"] = JWT_KEY
    return fields


class GusherApp:
    """One more app on a started `GusherSystem`: its own key and clients of one protocol.

    A system for the scenarios (port, adapter, push, publish, worker_pids),
    sharing the servers with its siblings, so two apps whose clients speak
    different protocols are measured on the same slave at the same time.
    `stop` removes only the app's record; the servers stay the system's.
    """

    def __init__(self, system: GusherSystem, protocol: str, app_key: str) -> None:
        self.system = system
        self.name = f"gusher+{protocol}"
        self.protocol = protocol
        self.app_key = app_key
        self.port = system.port
        self.adapter = {"kind": protocol, "app_key": app_key}
        system.infra.redis.hset(app_key, mapping=app_fields(system.infra, protocol))

    def worker_pids(self) -> list[int]:
        return self.system.worker_pids()

    def push(self, channel: str, seq: int, size: int) -> int:
        return self.system.push(channel, seq, size, app_key=self.app_key)

    def publish(self, channels: list[str], seq: int, count: int, size: int, sent_ns: int) -> None:
        self.system.publish(channels, seq, count, size, sent_ns, app_key=self.app_key)

    def stop(self) -> None:
        self.system.infra.redis.delete(self.app_key)


class LimitSystem:
    """The limit baseline (bench.baseline) with as many processes as gusher has workers."""

    name = "limit"
    has_publisher = False  # its processes write what they are told: no publisher to measure alone

    def __init__(self, infra: Infra, workers: int) -> None:
        self.workers = workers
        self.port = free_port()
        self.adapter = {"kind": "bare"}
        self.server: LimitServer | None = None
        self.last_write_ns = 0

    def start(self) -> LimitSystem:
        self.server = LimitServer(self.port, self.workers)
        Reaper.add(self.server.stop)
        wait_for_port("127.0.0.1", self.port)
        return self

    def worker_pids(self) -> list[int]:
        return self.server.pids() if self.server else []

    def push(self, channel: str, seq: int, size: int) -> int:
        assert self.server is not None
        reply = self.server.send(seq, 1, size)
        self.last_write_ns = reply["write_ns"]
        return int(reply["sent_ns"])

    def publish(self, channels: list[str], seq: int, count: int, size: int, sent_ns: int) -> None:
        """Every socket gets `count` frames, one `send` each: the same deliveries as gusher's."""
        assert self.server is not None
        self.server.publish(seq, count, size, sent_ns)

    def push_api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/push/limit/api/e?data=hello"

    def batch_api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/apps/limit/batch_events"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def _wait_healthy(process: ServerProcess, port: int, workers: int, timeout: float = 30.0) -> None:
    """Wait until `workers` distinct worker pids answered /healthz with 200."""
    deadline = time.monotonic() + timeout
    seen: set[Any] = set()
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if response.status == 200:
                seen.add(body)  # the slave's answer names its pid and count
                if len({_pid_of(b) for b in seen}) >= workers:
                    return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{process.name} not ready after {timeout} s:\n{process.log_tail()}")


def _pid_of(body: bytes) -> Any:
    import json

    try:
        return json.loads(body).get("pid", 0)
    except ValueError:
        return 0
