"""Real processes for the end-to-end tests: gunicorn roles, a webhook, WebSocket clients.

Nothing here is mocked: gunicorn runs `wsgi_master:app` / `wsgi_slave:app`
with the repository's `gunicorn.conf.py`, the webhook is a real HTTP server,
and clients use websocket-client, a library users' backends use too.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import websocket

from gusher.embedded import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
# The servers' logs of one process (a test session, a reliability script), removed when it
# exits: test runs used to leave hundreds of log files in /tmp.
LOG_DIR = tempfile.mkdtemp(prefix="gusher-tests-")
atexit.register(shutil.rmtree, LOG_DIR, True)


class GunicornProcess:
    """One gunicorn server of a role, on a free port, with its log kept.

    `host` is the address it listens on; `launcher` a command it is started under, such as
    `ip netns exec NAME` (tests/netns.py: a host of its own, listening on that host's IP).
    """

    def __init__(
        self,
        role: str,
        redis_addr: str,
        workers: int = 2,
        port: int | None = None,
        host: str = "127.0.0.1",
        launcher: tuple[str, ...] = (),
        **settings: Any,
    ) -> None:
        self.role = role
        self.host = host
        self.launcher = launcher
        self.port = port or free_port()
        self.workers = workers
        listen = f"{host}:{self.port}"
        self.env = {
            **os.environ,
            "GUSHER_ROLE": role,
            "GUSHER_ENV_FILE": "/nonexistent/.env",
            "REDIS_ADDR": redis_addr,
            "RETURN_SERVERINFO_INTERVAL": "1",
            "GUSHER_SLAVE_WORKERS": str(workers),
            "GUSHER_MASTER_WORKERS": str(workers),
            ("MASTER_API_LISTEN" if role == "master" else "API_LISTEN"): listen,
        }
        for name, value in settings.items():
            self.env["GUSHER_" + name.upper()] = str(value)
        self.log_path = Path(tempfile.mkstemp(prefix=f"{role}-", suffix=".log", dir=LOG_DIR)[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self, wait_ready: bool = True) -> GunicornProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                *self.launcher,
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                f"wsgi_{self.role}:app",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_port(self.host, self.port, 30)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until every worker answers /healthz with 200 (Redis connected)."""
        deadline = time.monotonic() + timeout
        ready_pids: set[int] = set()
        while True:
            try:
                response = requests.get(self.url + "/healthz", timeout=2)
                if response.status_code == 200:
                    ready_pids.add(response.json().get("pid", 0))
                    if self.role == "master" or len(ready_pids) >= self.workers:
                        return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.role} not ready; log:\n{self.log()}")
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        import psutil

        assert self.process is not None
        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _WebhookHandler(BaseHTTPRequestHandler):
    """Answers according to the `auth` token, so each test picks the webhook's behaviour.

    - `allow:<user>:<ch1>,<ch2>` → 200 {"user_id": user, "channels": [...]}
    - `slow:<seconds>` → waits, then allows channel `slow`
    - `status:<code>` → answers that status
    - `garbage` → 200 with a body that is not JSON
    - `empty` → 200 with an empty channel list
    - `huge` → 200 with a 5 MB body
    """

    server: Webhook  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        self.server.requests.append(
            {"path": self.path, "form": form, "headers": dict(self.headers), "peer": self.client_address}
        )
        with self.server.lock:
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        try:
            self._answer(form)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def _answer(self, form: dict[str, list[str]]) -> None:
        if self.server.delay:
            time.sleep(self.server.delay)
        auth = form.get("auth", [""])[0]
        kind, _, rest = auth.partition(":")
        status, body = 200, b""
        if kind == "allow":
            user, _, channels = rest.partition(":")
            body = json.dumps({"user_id": user, "channels": channels.split(",")}).encode()
        elif kind == "slow":
            time.sleep(float(rest))
            body = json.dumps({"user_id": "slow", "channels": ["slow"]}).encode()
        elif kind == "status":
            status, body = int(rest), b'{"error": "no"}'
        elif kind == "garbage":
            body = b"<html>not json</html>"
        elif kind == "empty":
            body = json.dumps({"user_id": "u", "channels": []}).encode()
        elif kind == "huge":
            body = b'{"user_id": "u", "channels": ["' + b"a" * 5_000_000 + b'"]}'
        else:
            status, body = 403, b'{"error": "unknown token"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        # A backend may set cookies; gusher must never replay them for other users.
        self.send_header("Set-Cookie", f"answered={urllib.parse.quote(auth[:40])}; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the slave gave up reading (huge bodies): expected

    def log_message(self, format: str, *args: object) -> None:
        pass


class Webhook(ThreadingHTTPServer):
    """A real HTTP webhook in a thread of the test process, on 127.0.0.1 or `host`."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, delay: float = 0.0, host: str = "127.0.0.1") -> None:
        super().__init__((host, free_port(host)), _WebhookHandler)
        self.host = host
        self.requests: list[dict[str, Any]] = []
        self.delay = delay  # seconds every answer waits, to make concurrency observable
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server_address[1]}/auth"


def new_app_key(prefix: str = "app") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def allow(user: str, *channels: str) -> str:
    """The auth token that makes the test webhook allow `channels`."""
    return f"allow:{user}:{','.join(channels)}"


class Client:
    """A WebSocket client speaking gusher's protocol (websocket-client underneath)."""

    def __init__(
        self, base_ws_url: str, app_key: str, auth: str | None, timeout: float = 5.0, **options: Any
    ) -> None:
        query = "" if auth is None else "?" + urllib.parse.urlencode({"auth": auth})
        # websocket-client validates UTF-8 in pure Python (a few MB/s) unless told not to;
        # without this, the test client, not gusher, is the bottleneck of every bulk test.
        options.setdefault("skip_utf8_validation", True)
        self.ws = websocket.create_connection(
            f"{base_ws_url}/ws/{app_key}{query}", timeout=timeout, **options
        )

    def send_json(self, message: Any) -> None:
        self.ws.send(json.dumps(message))

    def recv_json(self, timeout: float = 5.0) -> Any:
        self.ws.settimeout(timeout)
        return json.loads(self.ws.recv())

    def subscribe(self, channel: str, request_id: Any = "1") -> Any:
        self.send_json({"event": "gusher.subscribe", "data": {"id": request_id, "channel": channel}})
        return self.recv_json()

    def unsubscribe(self, channel: str, request_id: Any = "1") -> Any:
        self.send_json({"event": "gusher.unsubscribe", "data": {"id": request_id, "channel": channel}})
        return self.recv_json()

    def expect_silence(self, seconds: float = 0.5) -> None:
        """Assert that nothing arrives for `seconds`."""
        self.ws.settimeout(seconds)
        try:
            data = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return
        raise AssertionError(f"expected nothing, got {data!r}")

    def recv_close(self, timeout: float = 5.0) -> tuple[int, str]:
        """Read until the server's Close frame; return its code and reason."""
        self.ws.settimeout(timeout)
        while True:
            frame = self.ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else 1005
                return code, frame.data[2:].decode()

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


def push(
    master_url: str, app_key: str, channel: str, event: str, data: str, **kwargs: Any
) -> requests.Response:
    return requests.post(
        f"{master_url}/api/push/{app_key}/{channel}/{event}", params={"data": data}, timeout=5, **kwargs
    )


def push_until_heard(
    master_url: str, app_key: str, channel: str, client: Client, timeout: float, since: float | None = None
) -> float:
    """Push `after` again and again until `client` hears a message, which must be it; the seconds
    from `since` (default: now) until then. Fails once `timeout` seconds have passed since `since`.

    After a failover, pushes in the moment before the roles move are lost (no history): the
    first that goes through the new primary is the one heard.
    """
    started = time.monotonic() if since is None else since
    while True:
        assert time.monotonic() - started < timeout, f"no delivery within {timeout} s"
        try:
            url = f"{master_url}/api/push/{app_key}/{channel}/e"
            requests.post(url, params={"data": "after"}, timeout=0.5)
            heard = client.recv_json(timeout=0.1)["data"]
        except (requests.RequestException, websocket.WebSocketTimeoutException):
            continue
        assert heard == "after"
        return time.monotonic() - started


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


SOCKET_ID = re.compile(r"\d+\.\d+")


def without_socket_id(reply: dict) -> dict:
    """`reply` without its `socket_id`, which every gusher reply carries (`{worker}.{number}`)."""
    socket_id = reply.pop("socket_id")
    assert SOCKET_ID.fullmatch(socket_id), socket_id
    return reply


class Pushes:
    """Pushes `0`, `1`, … to one channel, one after another, from a thread, until stopped."""

    def __init__(self, master: GunicornProcess, app_key: str, channel: str) -> None:
        self.sent: list[str] = []  # the data of each push answered 200
        self.refused: list[str] = []  # the data of each push answered otherwise, or not at all
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(master.url, app_key, channel), daemon=True)
        self._thread.start()

    def _run(self, url: str, app_key: str, channel: str) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                if push(url, app_key, channel, "e", str(n)).status_code == 200:
                    self.sent.append(str(n))
                else:
                    self.refused.append(str(n))
            except requests.RequestException:
                self.refused.append(str(n))
            n += 1
            time.sleep(0.005)

    def wait_sent(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.sent) < count:
            assert time.monotonic() < deadline, f"only {len(self.sent)} of {count} pushes answered"
            time.sleep(0.01)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(10)
        return self.sent


def assert_every_acknowledged_push_once_in_order(client: Client, pushes: Pushes) -> None:
    """Every push answered 200 reached the client once, in order, numbered 1, 2, … without a gap.

    A push answered 503 may reach it too: a replica took its message but its confirmation did
    not come in time (it then arrives with the channel's next message, from history).
    """
    received = []
    while True:
        try:
            received.append(client.recv_json(timeout=1.0))
        except websocket.WebSocketTimeoutException:
            break
    data = [m["data"] for m in received]
    assert [int(d) for d in data] == sorted({int(d) for d in data}), "out of order, or twice"
    assert set(pushes.sent) <= set(data), f"lost: {sorted(set(pushes.sent) - set(data), key=int)}"
    assert set(data) <= set(pushes.sent) | set(pushes.refused)
    assert [m["offset"] for m in received] == list(range(1, len(received) + 1))
