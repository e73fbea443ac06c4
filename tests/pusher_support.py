"""The Pusher side of the compatibility tests: a real app backend and real pusher-js clients.

- `AuthBackend` is what a Pusher app's backend is: an HTTP server whose
  channel and user authorization endpoints sign with the real `pusher` SDK
  from PyPI (`authenticate`, `authenticate_user`), so signatures are the
  SDK's, not ours. `?user=alice` names the user it answers for; `?deny=1`
  answers 403.
- `PusherJS` runs tests/pusher/driver.mjs: real pusher-js 8 clients in Node,
  driven line by line, every event they see reported back.
- `pusher_app` makes a gusher app with the Pusher fields set.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pusher
import pytest
import redis as redis_lib
import requests
import websocket

from gusher.core import signing
from tests.support import ROOT, GunicornProcess, new_app_key

# The app's end-to-end encryption key (private-encrypted- channels): the SDK derives each
# channel's shared secret from it; gusher never sees it.
ENCRYPTION_KEY = base64.b64encode(b"k" * 32).decode()
DRIVER = ROOT / "tests" / "pusher" / "driver.mjs"
NODE = shutil.which("node")
MODULES = ROOT / "tests" / "pusher" / "node_modules"


def needs_pusher_js() -> None:
    """Skip without Node or tests/pusher/node_modules, unless in CI (where it is a failure)."""
    if NODE is not None and (MODULES / "pusher-js").exists():
        return
    assert not os.environ.get("GUSHER_CI"), "CI must run the pusher-js tests (`make test` runs npm ci)"
    pytest.skip("node or tests/pusher/node_modules missing (`make test` installs them when npm is there)")


def signed_push(master_url: str, key: str, channel: str, event: str, data: str) -> None:
    """A push through gusher's seed route, signed with the app's secret (as `pusher_app` sets it)."""
    url = f"{master_url}/api/push/{key}/{channel}/{event}?" + urllib.parse.urlencode({"data": data})
    headers = signing.signed_headers("app-secret", "POST", url, b"", time.time(), "")
    response = requests.post(url, headers=headers, timeout=5)
    assert response.status_code == 200, response.text


def pusher_app(
    redis_client: redis_lib.Redis, secret: str = "app-secret", app_id: str = "4242", **fields: str
) -> str:
    """A new app that Pusher clients may use (`pusher` = 1) with its secret and Pusher app id."""
    key = new_app_key("pusher")
    redis_client.hset(
        key,
        mapping={"url": "http://127.0.0.1:9/unused", "pusher": "1", "secret": secret, "app_id": app_id}
        | fields,
    )
    return key


class _AuthHandler(BaseHTTPRequestHandler):
    server: AuthBackend

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        self.server.requests.append((url.path, form))
        if query.get("deny"):
            self._answer(403, {"error": "denied"})
            return
        client = self.server.client(query.get("key", ""))
        user = query.get("user", "anonymous")
        if url.path == "/user-auth":
            body = client.authenticate_user(form["socket_id"], {"id": user, "name": user.title()})
        else:
            channel = form["channel_name"]
            custom = None
            if channel.startswith("presence-"):
                custom = {"user_id": user, "user_info": {"name": user.title()}}
            body = client.authenticate(channel, form["socket_id"], custom)
            # pusher-http-python 3.3 returns an encrypted channel's `shared_secret` as bytes
            # (base64): a backend has to decode it before it can answer JSON.
            body = {k: v.decode() if isinstance(v, bytes) else v for k, v in body.items()}
        self._answer(200, body)

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(data)

    def do_OPTIONS(self) -> None:  # a browser's CORS preflight
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class AuthBackend(ThreadingHTTPServer):
    """An app backend's `/auth` and `/user-auth`, signing with the PyPI `pusher` SDK."""

    daemon_threads = True

    def __init__(self, secret: str = "app-secret", app_id: str = "4242") -> None:
        super().__init__(("127.0.0.1", 0), _AuthHandler)
        self.secret, self.app_id = secret, app_id
        self.requests: list[tuple[str, dict[str, str]]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def client(self, key: str) -> pusher.Pusher:
        return pusher.Pusher(
            app_id=self.app_id, key=key, secret=self.secret, encryption_master_key_base64=ENCRYPTION_KEY
        )

    def auth_url(self, key: str, **params: str) -> str:
        query = urllib.parse.urlencode({"key": key, **params})
        return f"http://127.0.0.1:{self.server_address[1]}/auth?{query}"

    def user_auth_url(self, key: str, **params: str) -> str:
        query = urllib.parse.urlencode({"key": key, **params})
        return f"http://127.0.0.1:{self.server_address[1]}/user-auth?{query}"


class PusherJS:
    """pusher-js 8 clients in one Node process (tests/pusher/driver.mjs)."""

    def __init__(self) -> None:
        needs_pusher_js()
        self.process = subprocess.Popen(
            [NODE or "node", str(DRIVER)],
            cwd=DRIVER.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.expect(type="ready", timeout=20)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self._lines.put(json.loads(line))
            except json.JSONDecodeError:
                self._lines.put({"type": "garbage", "line": line})

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def connect(self, client_id: str, key: str, port: int, **options: Any) -> str:
        """Connect a client and wait until it is connected; its socket id."""
        self.send(op="connect", id=client_id, key=key, port=port, **options)
        return str(self.expect(id=client_id, type="state", state="connected")["socket_id"])

    def expect(self, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first reported line (seen before or arriving within `timeout`) with these fields."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for index in range(checked, len(self.seen)):
                line = self.seen[index]
                if all(line.get(k) == v for k, v in match.items()):
                    del self.seen[index]
                    return line
            checked = len(self.seen)
            left = deadline - time.monotonic()
            if left <= 0:
                stderr = ""
                if self.process.poll() is not None and self.process.stderr is not None:
                    stderr = self.process.stderr.read()
                raise AssertionError(f"pusher-js never reported {match}; it reported {self.seen}\n{stderr}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line.get("type") != "driver_error", line
            self.seen.append(line)

    def expect_none(self, seconds: float = 0.7, **match: Any) -> None:
        """Nothing with these fields is reported within `seconds`."""
        try:
            line = self.expect(timeout=seconds, **match)
        except AssertionError:
            return
        raise AssertionError(f"pusher-js reported {line}, which must not happen")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send(op="exit")
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


class PusherSocket:
    """A raw Pusher-protocol client (websocket-client): every frame the server sends is seen."""

    def __init__(
        self,
        server: GunicornProcess,
        key: str,
        query: str = "protocol=7&client=js&version=8.6.0",
        **options: Any,
    ) -> None:
        self.ws = websocket.create_connection(f"{server.ws_url}/app/{key}?{query}", timeout=5, **options)
        self.sdk = pusher.Pusher(app_id="4242", key=key, secret="app-secret")  # the app's backend
        self.first = self.recv()
        self.socket_id = (
            json.loads(self.first["data"])["socket_id"] if self.first["event"].endswith("established") else ""
        )

    def send(self, event: str, data: Any = None, **fields: Any) -> None:
        self.ws.send(json.dumps({"event": event, "data": {} if data is None else data, **fields}))

    def recv(self, timeout: float = 5.0, pings: bool = False) -> dict[str, Any]:
        self.ws.settimeout(timeout)
        while True:
            message = json.loads(self.ws.recv())
            if pings or message["event"] != "pusher:ping":
                return message

    def subscribe(self, channel: str, auth: str = "", channel_data: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"channel": channel, "auth": auth}
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send("pusher:subscribe", data)
        return self.recv()

    def join(self, channel: str, user_id: Any, info: Any = None) -> dict[str, Any]:
        """Subscribe to a presence channel with the SDK's signature."""
        signed = self.sdk.authenticate(channel, self.socket_id, {"user_id": user_id, "user_info": info})
        return self.subscribe(channel, signed["auth"], signed["channel_data"])

    def expect_close(self, timeout: float = 5.0) -> tuple[int, str]:
        self.ws.settimeout(timeout)
        while True:
            frame = self.ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode()

    def expect_silence(self, seconds: float = 0.5) -> None:
        try:
            message = self.recv(timeout=seconds)
        except websocket.WebSocketTimeoutException:
            return
        raise AssertionError(f"expected nothing, got {message}")

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass
