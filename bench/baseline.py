"""The limit baseline: the kernel's share of a fan-out, with nothing else around it.

W processes (as many as gusher has slave workers) share one port through
SO_REUSEPORT. Each accepts WebSocket upgrades with a canned 101 and then only
does what no server can avoid: on a `send` command it writes one pre-built
frame to each of its sockets with one non-blocking `send` apiece — for a
burst, one `send` per frame per socket ("one send per delivery", the baseline
issue 4's throughput target is stated against; a server that coalesces a
burst into one write per socket can beat it). Plain HTTP requests get a
canned 200, the floor for the push-API scenario. Every gusher figure is
reported as a ratio to what this process achieves with the same client.
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import select
import socket
import time
from typing import Any

from bench import procs, wsframes

_CTX = multiprocessing.get_context("spawn")
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
_HTTP_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 52\r\n\r\n"
    b'{"channel": "bench", "event": "e", "data": "limit!"}'
)


def message(seq: int, sent_ns: int, size: int, channel: str = "bench") -> bytes:
    """The JSON every system delivers, padded so the data is about `size` bytes."""
    head = f"B|{seq}|{sent_ns}|"
    pad = "x" * max(0, size - len(head))
    return f'{{"channel":"{channel}","event":"e","data":"{head}{pad}"}}'.encode()


def data_string(seq: int, sent_ns: int, size: int) -> str:
    """Only the data part of `message`, for systems that wrap it themselves."""
    head = f"B|{seq}|{sent_ns}|"
    return head + "x" * max(0, size - len(head))


class _Server:
    """One baseline process: an epoll loop over its listener, its sockets and its pipe."""

    def __init__(self, port: int, pipe: Any) -> None:
        self.pipe = pipe
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(4096)
        self.listener.setblocking(False)
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)
        self.epoll.register(pipe.fileno(), select.EPOLLIN)
        self.socks: dict[int, socket.socket] = {}
        self.heads: dict[int, bytes] = {}  # fd → bytes of a request head still arriving
        self.upgraded: dict[int, socket.socket] = {}
        self.pending: dict[int, bytes] = {}
        self.running = True

    def run(self) -> None:
        while self.running:
            for fd, mask in self.epoll.poll(0.1, 1024):
                if fd == self.listener.fileno():
                    self._accept()
                elif fd == self.pipe.fileno():
                    self._command()
                elif mask & select.EPOLLOUT and fd in self.pending:
                    self._flush(fd)
                else:
                    self._read(fd)

    def _accept(self) -> None:
        for _ in range(256):
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks[sock.fileno()] = sock
            self.heads[sock.fileno()] = b""
            self.epoll.register(sock.fileno(), select.EPOLLIN)

    def _read(self, fd: int) -> None:
        sock = self.socks.get(fd)
        if sock is None:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(fd)
            return
        if fd not in self.heads:
            return  # client frames (pongs) after the upgrade: nothing to do
        buf = self.heads[fd] + data
        while b"\r\n\r\n" in buf:
            head, _, buf = buf.partition(b"\r\n\r\n")
            if b"\nupgrade: websocket" in head.lower():
                self._upgrade(sock, head)
                del self.heads[fd]
                return
            sock.send(_HTTP_OK)  # the push-API floor: parse nothing, answer at once
        self.heads[fd] = buf

    def _upgrade(self, sock: socket.socket, head: bytes) -> None:
        key = b""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"sec-websocket-key:"):
                key = line.split(b":", 1)[1].strip()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        sock.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.upgraded[sock.fileno()] = sock

    def _close(self, fd: int) -> None:
        sock = self.socks.pop(fd)
        self.heads.pop(fd, None)
        self.pending.pop(fd, None)
        self.upgraded.pop(fd, None)
        self.epoll.unregister(fd)
        sock.close()

    def _command(self) -> None:
        """Run every command waiting on the pipe; queued publishes are written as one batch."""
        published: list[dict] = []
        while self.running and self.pipe.poll(0):
            try:
                command, arg = self.pipe.recv()
            except EOFError:
                self.running = False
                break
            if command == "publish":  # no reply: like a PUBLISH into Redis
                published.append(arg)
            elif command == "send":
                self.pipe.send(self._send(**arg))
            elif command == "count":
                self.pipe.send(len(self.upgraded))
            elif command == "exit":
                self.running = False
                self.pipe.send(True)
        if published:
            frames = [
                wsframes.encode_server_frame(message(p["seq"] + i, p["sent_ns"], p["size"]))
                for p in published
                for i in range(p["count"])
            ]
            self._write(frames)  # one send per delivery

    def _send(self, seq: int, count: int, size: int, sent_ns: int, coalesce: bool = True) -> dict:
        """Write `count` frames to every upgraded socket and say how long it took."""
        frames = [wsframes.encode_server_frame(message(seq + i, sent_ns, size)) for i in range(count)]
        return self._write([b"".join(frames)] if coalesce else frames)

    def _write(self, batches: list[bytes]) -> dict:
        """One non-blocking `send` of each batch to each socket: the measured kernel work."""
        socks = list(self.upgraded.values())
        start = time.perf_counter_ns()
        short = 0
        for data in batches:
            for sock in socks:
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    continue
                if sent < len(data):
                    short += 1
                    self._enqueue(sock.fileno(), data[sent:])
        return {"write_ns": time.perf_counter_ns() - start, "sockets": len(socks), "short": short}

    def _enqueue(self, fd: int, rest: bytes) -> None:
        if fd in self.pending:
            self.pending[fd] += rest
            return
        self.pending[fd] = rest
        self.epoll.modify(fd, select.EPOLLIN | select.EPOLLOUT)

    def _flush(self, fd: int) -> None:
        data = self.pending[fd]
        try:
            sent = self.socks[fd].send(data)
        except BlockingIOError:
            return
        except OSError:
            self._close(fd)
            return
        if sent < len(data):
            self.pending[fd] = data[sent:]
            return
        del self.pending[fd]
        self.epoll.modify(fd, select.EPOLLIN)


def _serve(port: int, pipe: Any) -> None:
    _Server(port, pipe).run()


class LimitServer:
    """W baseline processes on one port, commanded together by the runner."""

    def __init__(self, port: int, workers: int) -> None:
        self.port = port
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for _ in range(workers):
            parent, child = _CTX.Pipe()
            proc = _CTX.Process(target=_serve, args=(port, child), daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def send(self, seq: int, count: int = 1, size: int = 100, coalesce: bool = True) -> dict:
        """Stamp the time, make every process write, return the slowest write time (ns)."""
        sent_ns = time.time_ns()
        for pipe in self.pipes:
            pipe.send(
                ("send", {"seq": seq, "count": count, "size": size, "sent_ns": sent_ns, "coalesce": coalesce})
            )
        replies = [
            pipe.recv() if pipe.poll(60) else {"write_ns": 0, "sockets": 0, "short": 0} for pipe in self.pipes
        ]
        return {
            "sent_ns": sent_ns,
            "write_ns": max(r["write_ns"] for r in replies),
            "sockets": sum(r["sockets"] for r in replies),
            "short": sum(r["short"] for r in replies),
        }

    def publish(self, seq: int, count: int, size: int, sent_ns: int) -> None:
        """Queue `count` frames for every socket without waiting; a process that is
        still writing joins everything queued meanwhile into its next write, as
        gusher's hub joins a batch from Redis."""
        for pipe in self.pipes:
            pipe.send(("publish", {"seq": seq, "count": count, "size": size, "sent_ns": sent_ns}))

    def connections(self) -> int:
        for pipe in self.pipes:
            pipe.send(("count", None))
        return sum(pipe.recv() if pipe.poll(10) else 0 for pipe in self.pipes)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        procs.stop_workers(self.pipes, self.procs)
        self.pipes, self.procs = [], []
