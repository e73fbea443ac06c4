"""Peer 3: nchan, the nginx pub/sub module (C), Debian's libnginx-mod-nchan.

nginx with as many worker processes as gusher has slave workers, its memory
store (shared memory between the workers, no Redis), WebSocket subscribers at
`/sub/<channel>[,<channel>…]` (one connection may multiplex several channels,
split on `,`) and the HTTP publisher at `/pub/<channel>`: a POST whose body is
the message, which nchan sends to each subscriber as a WebSocket text frame,
so the bench's `B|<seq>|<sent_ns>|…` data arrives as it was posted.

`push` is one POST on a kept-alive connection; `publish` pipelines one POST per
message on one connection and reads every answer (the counterpart of gusher's
pipelined PUBLISH). The pure parts (the config, the requests, the answer
counter) are tested in bench/tests/test_nchan.py.
"""

from __future__ import annotations

import os
import resource
import select
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench.baseline import data_string
from bench.procs import ServerProcess
from gusher.embedded import free_port, wait_for_port

MODULE_CANDIDATES = (
    "/usr/lib/nginx/modules/ngx_nchan_module.so",  # Debian / Ubuntu
    "/usr/lib64/nginx/modules/ngx_nchan_module.so",
    "/usr/share/nginx/modules/ngx_nchan_module.so",
)
SLACK_FDS = 500  # descriptors a worker keeps for its listener, IPC pipes, logs, the publisher


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def module_path() -> str | None:
    """The nchan module's .so (BENCH_NCHAN_MODULE overrides the usual places)."""
    for path in (os.environ.get("BENCH_NCHAN_MODULE", ""), *MODULE_CANDIDATES):
        if path and Path(path).is_file():
            return path
    return None


def installed() -> bool:
    return nginx_binary() is not None and module_path() is not None


def versions() -> dict[str, str]:
    """nginx's and the nchan package's versions (for the report's header)."""
    found: dict[str, str] = {}
    binary = nginx_binary()
    if binary:
        answer = subprocess.run([binary, "-v"], capture_output=True, text=True)
        found["nginx"] = (answer.stderr or answer.stdout).strip().rpartition("/")[2]
    if shutil.which("dpkg-query"):
        answer = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "libnginx-mod-nchan"], capture_output=True, text=True
        )
        if answer.returncode == 0 and answer.stdout:
            found["nchan (libnginx-mod-nchan)"] = answer.stdout.strip()
    return found


def fd_limit() -> int:
    """Descriptors one worker may hold: this process's own limit, as every other server gets."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def config(directory: str, module: str, port: int, workers: int, nofile: int, user: str = "") -> str:
    """nginx.conf for nchan: everything it writes inside `directory`, in the foreground.

    `reuseport` gives each worker its own listening socket, so the kernel spreads
    connections evenly and no worker passes its descriptor limit (50,000 clients
    on 4 workers under a 20,000 limit). `nchan_subscriber_first_message newest`:
    a subscriber gets what is published after it subscribed, like gusher's.
    """
    d = directory.rstrip("/")
    lines = [
        f"load_module {module};",
        "daemon off;",
        "master_process on;",
        f"worker_processes {workers};",
        f"worker_rlimit_nofile {nofile};",
        f"pid {d}/nginx.pid;",
        f"error_log {d}/error.log warn;",
        *([f"user {user};"] if user else []),
        "events {",
        f"    worker_connections {max(1024, nofile - SLACK_FDS)};",
        "}",
        "http {",
        "    access_log off;",
        f"    client_body_temp_path {d}/client_body;",
        f"    proxy_temp_path {d}/proxy;",
        f"    fastcgi_temp_path {d}/fastcgi;",
        f"    uwsgi_temp_path {d}/uwsgi;",
        f"    scgi_temp_path {d}/scgi;",
        "    keepalive_requests 100000000;  # the publisher pipelines one POST per message",
        "    keepalive_timeout 600s;",
        "    nchan_shared_memory_size 256m;",
        "    nchan_message_buffer_length 10;",
        "    nchan_message_timeout 60s;",
        "    server {",
        f"        listen 127.0.0.1:{port} reuseport backlog=4096;",
        "        location ~ ^/sub/(.+)$ {",
        "            nchan_subscriber websocket;",
        '            nchan_channel_id "$1";',
        '            nchan_channel_id_split_delimiter ",";',
        "            nchan_subscriber_first_message newest;",
        "        }",
        "        location ~ ^/pub/(.+)$ {",
        "            nchan_publisher http;",
        '            nchan_channel_id "$1";',
        "        }",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


def publish_request(channel: str, body: bytes) -> bytes:
    """One HTTP/1.1 POST of `body` to the channel's publisher location, kept alive."""
    return (
        f"POST /pub/{urllib.parse.quote(channel, safe='')} HTTP/1.1\r\nHost: nchan\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class ResponseCounter:
    """Complete HTTP/1.1 answers in a byte stream fed in any split; their statuses.

    nchan's publisher answers with a Content-Length body (the channel's info);
    chunked bodies are read too, and 1xx/204/304 answers have none.
    """

    def __init__(self) -> None:
        self.buf = b""
        self.statuses: list[int] = []

    def feed(self, data: bytes) -> int:
        """Add bytes; return how many answers are complete so far."""
        self.buf += data
        pos = 0
        while True:
            end = self._one(pos)
            if not end:
                break
            pos = end
        if pos:
            self.buf = self.buf[pos:]
        return len(self.statuses)

    def _one(self, pos: int) -> int:
        """The end of the answer starting at `pos`, once complete (its status noted); else 0."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            return 0
        head = buf[pos:end].decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP answer: {head[0][:60]!r}")
        status = int(parts[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if status < 200 or status in (204, 304):
            stop = start
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            stop = self._chunked_end(start)
            if not stop:
                return 0
        else:
            stop = start + int(headers.get("content-length", "0"))
            if len(buf) < stop:
                return 0
        self.statuses.append(status)
        return stop

    def _chunked_end(self, at: int) -> int:
        """The end of a chunked body starting at `at` (its trailers included), 0 while incomplete."""
        buf = self.buf
        while True:
            line_end = buf.find(b"\r\n", at)
            if line_end < 0:
                return 0
            size = int(buf[at:line_end].split(b";")[0], 16)
            if size == 0:
                # the last chunk, then trailer lines, then an empty line
                while True:
                    next_end = buf.find(b"\r\n", line_end + 2)
                    if next_end < 0:
                        return 0
                    if next_end == line_end + 2:
                        return next_end + 2
                    line_end = next_end
            at = line_end + 2 + size + 2
            if len(buf) < at:
                return 0


class NchanSystem:
    """nginx + nchan, memory store, WebSocket subscribers, HTTP publisher; started on a free port."""

    name = "nchan"

    def __init__(self, infra: Any, workers: int) -> None:
        self.infra = infra
        self.workers = workers
        self.port = free_port()
        self.adapter = {"kind": "nchan"}
        self.server: ServerProcess | None = None
        self.directory = ""
        self._sock: socket.socket | None = None

    def start(self) -> NchanSystem:
        binary, module = nginx_binary(), module_path()
        if binary is None or module is None:
            raise RuntimeError("nginx or the nchan module is missing (run bench/setup.sh)")
        self.directory = tempfile.mkdtemp(prefix="bench-nchan-")
        conf = Path(self.directory) / "nginx.conf"
        # As root, nginx's workers would become `nobody`; keep them this user's, as every server is.
        user = _user_name() if os.geteuid() == 0 else ""
        conf.write_text(config(self.directory, module, self.port, self.workers, fd_limit(), user))
        self.server = ServerProcess(
            "nchan", [binary, "-p", self.directory, "-e", f"{self.directory}/error.log", "-c", str(conf)]
        )
        deadline = time.monotonic() + 30
        while len(self.worker_pids()) < self.workers:
            if not self.server.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        wait_for_port("127.0.0.1", self.port, timeout=10)
        return self

    def log_tail(self) -> str:
        text = self.server.log_tail() if self.server else ""
        try:
            text += "\n" + "\n".join(Path(self.directory, "error.log").read_text().splitlines()[-30:])
        except OSError:
            pass
        return text

    def worker_pids(self) -> list[int]:
        """nginx's worker processes (they hold the connections; the master only forks them)."""
        return self.server.children() if self.server else []

    def _connection(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock.setblocking(False)  # _pipeline writes and reads as each side is ready
        return self._sock

    def _post(self, requests: list[bytes], timeout: float = 60.0) -> list[int]:
        """Send `requests` pipelined on the kept connection and read every answer; reopens once."""
        for attempt in range(2):
            try:
                return _pipeline(self._connection(), requests, timeout)
            except (OSError, ValueError):
                self._close()
                if attempt:
                    raise
        return []

    def push(self, channel: str, seq: int, size: int) -> int:
        """One message through nchan's HTTP publisher: POST /pub/<channel>, the data as the body."""
        sent_ns = time.time_ns()
        statuses = self._post([publish_request(channel, data_string(seq, sent_ns, size).encode())])
        if statuses[0] not in (201, 202):
            raise RuntimeError(f"nchan publish answered {statuses[0]}")
        return sent_ns

    def publish(self, channels: list[str], seq: int, count: int, size: int, sent_ns: int) -> None:
        """`count` messages to each channel: one POST each, pipelined on one connection."""
        requests = [
            publish_request(channel, data_string(seq + i, sent_ns, size).encode())
            for channel in channels
            for i in range(count)
        ]
        bad = [s for s in self._post(requests) if s not in (201, 202)]
        if bad:
            raise RuntimeError(f"nchan publish answered {bad[0]} ({len(bad)} of {len(requests)})")

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        self._close()
        if self.server is not None:
            self.server.stop()
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _pipeline(sock: socket.socket, requests: list[bytes], timeout: float) -> list[int]:
    """Write while reading, so neither side's buffers fill up and stall the other."""
    data = memoryview(b"".join(requests))
    counter = ResponseCounter()
    sent = 0
    deadline = time.monotonic() + timeout
    while counter.feed(b"") < len(requests):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"nchan answered {len(counter.statuses)} of {len(requests)} publishes")
        readable, writable, _ = select.select([sock], [sock] if sent < len(data) else [], [], left)
        if writable:
            try:
                sent += sock.send(data[sent : sent + 262144])
            except BlockingIOError:
                pass
        if readable:
            try:
                chunk = sock.recv(262144)
            except BlockingIOError:
                continue
            if not chunk:
                raise ConnectionError("nchan closed the publisher connection")
            counter.feed(chunk)
    return counter.statuses


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
