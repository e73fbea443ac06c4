"""Raw-socket Redis load for `bench.shards`: publishers, subscribers and a sink, each a process.

- A **publisher** holds one connection per target node and keeps two
  pre-built pipelines of `PUBLISH` (one server) or `SPUBLISH` (a cluster: each
  node gets only the channels its slots own) in flight on each, sending the
  next as soon as the replies of the oldest are in. The pipelines are built
  once, so the process does little more than `sendall` and count CRLFs.
- A **subscriber** holds, for each of `workers` stand-ins for gusher's slave
  workers, one connection per node with `SUBSCRIBE` or `SSUBSCRIBE` for its
  share of the channels, and counts the messages the nodes deliver
  (occurrences of `message\\r\\n` in the stream: `$7 message` and `$8 smessage`).
- A **sink** answers every command with `:0` without looking at it: what a
  publisher does against nothing, its own ceiling.

Each process counts into a shared integer the runner reads; none of them
parses RESP beyond counting, so on the box they take a few percent of a core
per 100k messages/s and the figure measured is the nodes'.
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

_CTX = multiprocessing.get_context("spawn")
READ_SIZE = 1 << 20
PAYLOAD = b"x" * 100  # the 100 bytes of data every bench message carries
IN_FLIGHT = 2  # pipelines in flight per publisher connection: a node never waits for its client


def resp(*args: bytes | str | int) -> bytes:
    """One command in RESP (an array of bulk strings) — pure."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Occurrences:
    """Counts a pattern in a byte stream fed in chunks, matches across chunk edges included — pure."""

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self._tail = b""  # the last len(pattern) - 1 bytes: too short to hold a whole match

    def feed(self, chunk: bytes) -> int:
        data = self._tail + chunk
        keep = len(self.pattern) - 1
        self._tail = data[-keep:] if keep else b""
        return data.count(self.pattern)


def spread(channels: Iterable[str], owner: Callable[[str], int]) -> dict[int, list[str]]:
    """Channels grouped by the node `owner` names for each (node index → its channels, in order) — pure."""
    groups: dict[int, list[str]] = {}
    for channel in channels:
        groups.setdefault(owner(channel), []).append(channel)
    return groups


def pipelines(command: str, channels: list[str], per_batch: int, payload: bytes = PAYLOAD) -> list[bytes]:
    """`command channel payload` for every channel, cut into pipelines of `per_batch` commands — pure.

    The last pipeline may be shorter; `len(batch_sizes(...))` tells each one's size.
    """
    return [
        b"".join(resp(command, channel, payload) for channel in channels[start : start + per_batch])
        for start in range(0, len(channels), per_batch)
    ]


def batch_sizes(count: int, per_batch: int) -> list[int]:
    """How many commands each of `pipelines(...)`'s pipelines holds — pure."""
    return [min(per_batch, count - start) for start in range(0, count, per_batch)]


@dataclass
class Target:
    """One node a publisher writes to: its address and its pre-built pipelines."""

    host: str
    port: int
    batches: list[bytes]
    sizes: list[int]


@dataclass
class Subscription:
    """One subscriber connection: a node, `SUBSCRIBE` or `SSUBSCRIBE`, and its channels."""

    host: str
    port: int
    command: str
    channels: list[str]


class LoadProcess:
    """A child process with a shared counter and `ready`/`stop` events, for the runner."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.counter = _CTX.Value("q", 0, lock=False)
        self.errors = _CTX.Value("q", 0, lock=False)
        self.ready = _CTX.Event()
        self._stop = _CTX.Event()
        self.process = _CTX.Process(
            target=target, args=(*args, self.counter, self.errors, self.ready, self._stop), daemon=True
        )
        self.process.start()

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    @property
    def count(self) -> int:
        return int(self.counter.value)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the process is set up; raise at once if it died instead."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if not self.process.is_alive():
                raise RuntimeError(f"load process {self.pid} exited with {self.process.exitcode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"load process {self.pid} not ready within {timeout} s")

    def stop(self) -> None:
        self._stop.set()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def publish_main(targets: list[Target], counter: Any, errors: Any, ready: Any, stop: Any) -> None:
    """A publisher process: `IN_FLIGHT` pipelines per node, the next sent when the oldest is answered."""
    socks = [_connect(t.host, t.port) for t in targets]
    replies = [Occurrences(b"\r\n") for _ in targets]  # every reply (`:N`, `-ERR …`) is one line
    errs = [Occurrences(b"-") for _ in targets]  # integer replies hold no '-'; errors start with one
    outstanding: list[deque[int]] = [deque() for _ in targets]
    credit = [0] * len(targets)
    turn = [0] * len(targets)

    def send_next(i: int) -> None:
        target = targets[i]
        k = turn[i] % len(target.batches)
        turn[i] += 1
        socks[i].sendall(target.batches[k])
        outstanding[i].append(target.sizes[k])

    ready.set()
    while not stop.is_set():
        for i in range(len(targets)):
            while len(outstanding[i]) < IN_FLIGHT:
                send_next(i)
            need = outstanding[i].popleft()
            while credit[i] < need:
                data = socks[i].recv(READ_SIZE)
                if not data:
                    raise ConnectionError(f"{targets[i].host}:{targets[i].port} closed the connection")
                credit[i] += replies[i].feed(data)
                errors.value += errs[i].feed(data)
            credit[i] -= need
            counter.value += need
    for sock in socks:
        sock.close()


def subscribe_main(subs: list[Subscription], counter: Any, errors: Any, ready: Any, stop: Any) -> None:
    """A subscriber process: every connection subscribed and confirmed, then count what arrives."""
    selector = selectors.DefaultSelector()
    counters: dict[int, Occurrences] = {}
    for sub in subs:
        sock = _connect(sub.host, sub.port)
        # One channel per command: SSUBSCRIBE over two slots is refused (CROSSSLOT).
        sock.sendall(b"".join(resp(sub.command, channel) for channel in sub.channels))
        confirmed, seen = 0, Occurrences(b"subscribe\r\n")
        while confirmed < len(sub.channels):
            data = sock.recv(READ_SIZE)
            if not data:
                raise ConnectionError(f"{sub.host}:{sub.port} closed while subscribing")
            confirmed += seen.feed(data)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        counters[sock.fileno()] = Occurrences(b"message\r\n")
    ready.set()
    while not stop.is_set():
        for key, _ in selector.select(0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(READ_SIZE)
            except BlockingIOError:
                continue
            if not data:  # a node dropped us (its output-buffer limit): counted, never silent
                errors.value += 1
                selector.unregister(sock)
                continue
            counter.value += counters[sock.fileno()].feed(data)


def sink_main(port: int, counter: Any, errors: Any, ready: Any, stop: Any) -> None:
    """A sink: accepts on `port`, answers each command (`*3` headers counted) with `:0`."""
    listener = socket.create_server(("127.0.0.1", port), backlog=64)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    counters: dict[int, Occurrences] = {}
    ready.set()
    while not stop.is_set():
        for key, _ in selector.select(0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ)
                counters[conn.fileno()] = Occurrences(b"*3\r\n")
                continue
            try:
                data = sock.recv(READ_SIZE)
            except OSError:  # a publisher stopped with replies unread: its connection is reset
                data = b""
            if not data:
                selector.unregister(sock)
                counters.pop(sock.fileno(), None)
                sock.close()
                continue
            commands = counters[sock.fileno()].feed(data)
            sock.setblocking(True)  # the replies are a few KB: the kernel takes them at once
            sock.sendall(b":0\r\n" * commands)
            sock.setblocking(False)
            counter.value += commands


def pids_of(processes: Iterable[LoadProcess]) -> list[int]:
    return [p.pid for p in processes]
