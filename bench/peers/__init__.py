"""The peers gusher is compared with, as systems the scenarios can drive.

Each runs as many server processes as gusher has slave workers. The first two
speak Socket.IO v4 to the same load generator (`SocketIOAdapter`) and use the
run's Redis:

- `pysio`: Flask-SocketIO / python-socketio under gunicorn with gevent workers
  and a Redis message queue (pysio_app.py).
- `nodesio`: Node.js Socket.IO in a cluster with the Redis adapter, pushed to
  with @socket.io/redis-emitter (node/).
- `nchan`: nginx with the nchan module (C), its memory store, WebSocket
  subscribers, pushed to by HTTP POST to its publisher location (nchan.py);
  it needs no Redis and speaks no Socket.IO.

`push` uses each peer's documented emitter (nchan: one POST); `publish` sends
the same Redis messages that emitter would, in one pipeline (python) or one
command line (node), to match gusher's pipelined PUBLISH (nchan: its POSTs
pipelined on one connection).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.baseline import data_string
from bench.procs import ROOT, Reaper, ServerProcess
from gusher.embedded import free_port, wait_for_port

NODE_DIR = Path(__file__).resolve().parent / "node"
ROOM_EVENT = "e"


def available() -> dict[str, Any]:
    """The peers whose software bench/setup.sh installed."""
    found: dict[str, Any] = {}
    if importlib.util.find_spec("flask_socketio") is not None:
        found["pysio"] = PySocketIOSystem
    if shutil.which("node") and (NODE_DIR / "node_modules" / "socket.io").is_dir():
        found["nodesio"] = NodeSocketIOSystem
    from bench.peers import nchan

    if nchan.installed():
        found["nchan"] = nchan.NchanSystem
    return found


def node_versions() -> dict[str, str]:
    """Versions of node and of the npm packages the Node peer uses."""
    versions: dict[str, str] = {}
    if shutil.which("node"):
        versions["node"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True
        ).stdout.strip()
    for package in ("socket.io", "@socket.io/redis-adapter", "@socket.io/redis-emitter", "redis"):
        manifest = NODE_DIR / "node_modules" / package / "package.json"
        if manifest.exists():
            versions["npm " + package] = json.loads(manifest.read_text())["version"]
    return versions


def _wait_http(process: ServerProcess, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            wait_for_port("127.0.0.1", port, timeout=0.5)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{process.name} not listening:\n{process.log_tail()}") from None


class PySocketIOSystem:
    """Flask-SocketIO under gunicorn (gevent workers), Redis message queue."""

    name = "pysio"
    channel = "flask-socketio"  # Flask-SocketIO's default message-queue channel

    def __init__(self, infra: Any, workers: int) -> None:
        self.infra = infra
        self.workers = workers
        self.port = free_port()
        self.adapter = {"kind": "socketio"}
        self.server: ServerProcess | None = None
        self._emitter: Any = None
        self._host_id = uuid.uuid4().hex

    def start(self) -> PySocketIOSystem:
        env = {
            "BENCH_REDIS_URL": f"redis://{self.infra.redis_addr}/0",
            "BENCH_PORT": str(self.port),
            "BENCH_WORKERS": str(self.workers),
            "PYTHONPATH": str(ROOT),
        }
        args = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "bench/peers/pysio_gunicorn.py"),
            "bench.peers.pysio_app:app",
        ]
        self.server = ServerProcess("pysio", args, env)
        _wait_http(self.server, self.port)
        time.sleep(1.0)  # every worker subscribes to the queue after it has booted
        return self

    def worker_pids(self) -> list[int]:
        return self.server.children() if self.server else []

    def push(self, channel: str, seq: int, size: int) -> int:
        """Through Flask-SocketIO's documented external emitter."""
        if self._emitter is None:
            from flask_socketio import SocketIO

            self._emitter = SocketIO(message_queue=f"redis://{self.infra.redis_addr}/0")
        sent_ns = time.time_ns()
        self._emitter.emit(ROOM_EVENT, data_string(seq, sent_ns, size), to=channel)
        return sent_ns

    def publish(self, channels: list[str], seq: int, count: int, size: int, sent_ns: int) -> None:
        """The emitter's own messages (python-socketio PubSubManager.emit), pipelined."""
        pipe = self.infra.redis.pipeline(transaction=False)
        for channel in channels:
            for i in range(count):
                pipe.publish(
                    self.channel,
                    json.dumps(
                        {
                            "method": "emit",
                            "event": ROOM_EVENT,
                            "data": [data_string(seq + i, sent_ns, size)],
                            "binary": False,
                            "namespace": "/",
                            "room": channel,
                            "skip_sid": None,
                            "callback": None,
                            "host_id": self._host_id,
                        }
                    ),
                )
        pipe.execute()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


class NodeSocketIOSystem:
    """Node.js Socket.IO cluster with the Redis adapter; pushes via the Redis emitter."""

    name = "nodesio"

    def __init__(self, infra: Any, workers: int) -> None:
        self.infra = infra
        self.workers = workers
        self.port = free_port()
        self.adapter = {"kind": "socketio"}
        self.server: ServerProcess | None = None
        self.emitter: subprocess.Popen[str] | None = None

    def start(self) -> NodeSocketIOSystem:
        url = f"redis://{self.infra.redis_addr}"
        self.server = ServerProcess(
            "nodesio", ["node", "server.js", str(self.port), url, str(self.workers)], cwd=NODE_DIR
        )
        _wait_http(self.server, self.port)
        self.emitter = subprocess.Popen(
            ["node", "emitter.js", url],
            cwd=NODE_DIR,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        Reaper.add(self._stop_emitter)
        time.sleep(1.0)  # let every worker's adapter subscribe
        return self

    def worker_pids(self) -> list[int]:
        return self.server.children() if self.server else []

    def _emit(self, rooms: list[str], seq: int, count: int, size: int, sent_ns: int) -> None:
        assert self.emitter is not None and self.emitter.stdin and self.emitter.stdout
        self.emitter.stdin.write(
            json.dumps({"rooms": rooms, "seq": seq, "count": count, "size": size, "sent_ns": str(sent_ns)})
            + "\n"
        )
        self.emitter.stdin.flush()
        if self.emitter.stdout.readline().strip() != "ok":
            raise RuntimeError("the Socket.IO emitter failed")

    def push(self, channel: str, seq: int, size: int) -> int:
        sent_ns = time.time_ns()
        self._emit([channel], seq, 1, size, sent_ns)
        return sent_ns

    def publish(self, channels: list[str], seq: int, count: int, size: int, sent_ns: int) -> None:
        self._emit(channels, seq, count, size, sent_ns)

    def _stop_emitter(self) -> None:
        emitter, self.emitter = self.emitter, None
        if emitter is not None and emitter.poll() is None:
            emitter.kill()
            emitter.wait(5)

    def stop(self) -> None:
        self._stop_emitter()
        if self.server is not None:
            self.server.stop()
