"""One load-generator process: many raw non-blocking WebSockets on one epoll.

Started by `bench.clients.ClientPool` (several of these, each below the
20,000-descriptor limit and each with its own 127.0.0.x source address so that
no (source, destination) pair runs out of its ~28k ports). It takes commands
on a pipe and keeps serving its sockets (answering pings) in between.

Latency is measured with kernel receive timestamps (SO_TIMESTAMPNS): the time
the server's bytes reached this socket, not the time this process got round to
reading them. So a busy or niced generator does not inflate latencies, and the
generator runs at a lower priority (nice) to leave the CPU to the server.
"""

from __future__ import annotations

import errno
import heapq
import os
import random
import select
import socket
import struct
import time
from array import array
from collections import deque
from typing import Any

from bench import wsframes
from bench.adapters import ACK, REFUSED, make_adapter, needs_acks

SO_TIMESTAMPNS = 35  # Linux <asm-generic/socket.h>; SCM_TIMESTAMPNS has the same value
IP_BIND_ADDRESS_NO_PORT = 24  # pick the source port at connect(): 28k per destination, not per address
_ANC_SIZE = socket.CMSG_SPACE(16)
_LINGER_RST = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT left behind
_IN, _OUT, _ERR = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR | select.EPOLLHUP

CONNECTING, UPGRADING, OPENING, READY, CLOSED = range(5)


class Conn:
    """One client socket and where it is in its life."""

    __slots__ = (
        "acks",
        "attempts",
        "buf",
        "channels",
        "fd",
        "index",
        "out",
        "parser",
        "resume",
        "sock",
        "started",
        "state",
    )

    def __init__(self, index: int, channels: list[str]) -> None:
        self.index = index
        self.channels = channels
        self.state = CONNECTING
        self.buf = b""
        self.parser = wsframes.FrameParser()
        self.acks = 0
        self.out = b""
        self.started = 0.0
        self.attempts = 0
        self.resume: Any = None  # a GusherResume when the connect spec asks for `"resume"` (bench.storm)
        self.sock: socket.socket | None = None
        self.fd = -1


class ConnectJob:
    """A batch of connections to open with at most `concurrency` in flight."""

    def __init__(self, spec: dict) -> None:
        self.host, self.port = spec["host"], spec["port"]
        self.adapter = make_adapter(spec["adapter"])
        self.queue: deque[Conn] = deque(Conn(i, chs) for i, chs in spec["items"])
        self.concurrency = spec.get("concurrency", 200)
        self.deadline = time.monotonic() + spec.get("timeout", 60.0)
        self.max_attempts = spec.get("attempts", 3)
        self.source = spec.get("source", "127.0.0.1")
        self.in_flight = 0
        self.ready = 0
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.connect_ms = array("d")
        self.started = time.monotonic()
        self.finished = 0.0
        if spec.get("resume"):
            from bench.adapters import GusherResume

            for conn in self.queue:
                conn.resume = GusherResume(conn.channels)

    # Hooks a StormJob overrides; a plain batch retries at once, ends when drained, ignores closes.

    def retries(self, retry: bool) -> bool:
        return retry

    def requeue(self, conn: Conn, reason: str) -> None:
        self.queue.append(conn)

    def tick(self, now: float) -> None:
        pass

    def complete(self) -> bool:
        return True

    def on_closed(self, conn: Conn, reason: str) -> None:
        pass

    def on_ready(self, conn: Conn) -> None:
        pass

    def report(self) -> dict:
        return {
            "ready": self.ready,
            "failed": self.failed,
            "errors": self.errors,
            "elapsed": self.finished - self.started,
            "connect_ms": self.connect_ms.tobytes(),
        }


def backoff(streak: int, base: float, cap: float, u: float) -> float:
    """Seconds to wait before a reconnect — pure. `streak` 0 (right after the close): none;
    then `base` doubling up to `cap`, times a jitter of 0.5 to 1.5 (`u` uniform in [0, 1))."""
    if streak <= 0:
        return 0.0
    return min(cap, base * 2 ** (streak - 1)) * (0.5 + u)


class StormJob(ConnectJob):
    """Reconnect-on-close (bench.storm): every READY connection that the server closes
    reconnects at once and subscribes again (with `since` when it tracks its history);
    every failed attempt is retried after `backoff`, until the deadline. Ends when all
    the armed connections are back (or the deadline passed); every failure is counted
    by its reason in `refusals`, and each close and each return is timed."""

    def __init__(self, spec: dict, conns: list[Conn]) -> None:
        super().__init__({**spec, "items": []})
        self.total = len(conns)
        self.max_attempts = spec.get("attempts", 1_000_000)
        self.base, self.cap = spec.get("backoff", (0.05, 0.5))
        self.spread = spec.get("spread", 0.0)  # > 0: the first reconnect waits uniform [0, spread) s
        self.rand = random.Random(spec.get("seed", os.getpid()))
        self.streak: dict[int, int] = {}
        self.delayed: list[tuple[float, int, Conn]] = []
        self.lost: set[int] = set()
        self.back: set[int] = set()
        self.closed_at, self.back_at = array("d"), array("d")
        self.refusals: dict[str, int] = {}

    def retries(self, retry: bool) -> bool:
        return True

    def _later(self, conn: Conn, delay: float) -> None:
        heapq.heappush(self.delayed, (time.monotonic() + delay, id(conn), conn))

    def requeue(self, conn: Conn, reason: str) -> None:
        self.refusals[reason[:80]] = self.refusals.get(reason[:80], 0) + 1
        streak = self.streak[conn.index] = self.streak.get(conn.index, 0) + 1
        self._later(conn, backoff(streak, self.base, self.cap, self.rand.random()))

    def tick(self, now: float) -> None:
        while self.delayed and self.delayed[0][0] <= now:
            self.queue.append(heapq.heappop(self.delayed)[2])
        if now > self.deadline and self.delayed:
            self.failed += len(self.delayed)
            self.delayed.clear()

    def complete(self) -> bool:
        if self.delayed:
            return False
        return (len(self.back) >= self.total and not self.lost) or time.monotonic() > self.deadline

    def on_closed(self, conn: Conn, reason: str) -> None:
        self.closed_at.append(time.monotonic())
        self.lost.add(conn.index)
        self.back.discard(conn.index)
        self.streak[conn.index] = 0
        if self.spread > 0:
            self._later(conn, self.rand.uniform(0, self.spread))
        else:
            self.queue.append(conn)

    def on_ready(self, conn: Conn) -> None:
        if conn.index in self.lost:
            self.lost.discard(conn.index)
            self.back.add(conn.index)
            self.back_at.append(time.monotonic())

    def report(self) -> dict:
        return {
            **super().report(),
            "armed": self.total,
            "back": len(self.back),
            "lost": len(self.lost),
            "refusals": self.refusals,
            "closed_at": self.closed_at.tobytes(),
            "back_at": self.back_at.tobytes(),
        }


class LoadGen:
    """The event loop of one generator process."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.epoll = select.epoll()
        self.epoll.register(pipe.fileno(), _IN)
        self.conns: dict[int, Conn] = {}
        self.job: ConnectJob | None = None
        self.adapter: Any = None
        self.seqs = array("q")
        self.lats = array("q")
        self.recvs = array("q")
        self.other = 0
        self.closed_by_server = 0
        self.running = True

    # -- loop ------------------------------------------------------------------

    def run(self) -> None:
        while self.running:
            for fd, mask in self.epoll.poll(0.05, 1024):
                conn = self.conns.get(fd)
                if conn is not None:
                    self._on_event(conn, mask)
                elif fd == self.pipe.fileno():
                    self._on_command()
            if self.job is not None:
                self._advance_job()

    def _on_command(self) -> None:
        try:
            command, arg = self.pipe.recv()
        except EOFError:
            self.running = False
            return
        reply = getattr(self, "cmd_" + command)(arg)
        if reply is not None:
            self.pipe.send(reply)

    # -- commands --------------------------------------------------------------

    def cmd_connect(self, spec: dict) -> None:
        self.job = ConnectJob(spec)
        self.adapter = self.job.adapter
        return None  # the reply is sent when the job ends

    def cmd_storm(self, spec: dict) -> dict:
        """Arm reconnect-on-close for every READY connection (see `StormJob`); its report
        follows as a second message when the storm is over."""
        conns = [c for c in self.conns.values() if c.state == READY]
        self.job = StormJob(spec, conns)
        self.adapter = self.job.adapter
        return {"armed": len(conns)}

    def cmd_resume(self, last: dict) -> dict:
        """What the open connections missed or got twice, the channels' last offsets being `last`."""
        out = dict.fromkeys(("clients", "whole", "missing", "duplicate", "clients_missing"), 0)
        out.update(clients_duplicate=0, recovered=0, not_recovered=0, unplaced=0, untracked=0)
        for conn in self.conns.values():
            if conn.state != READY or conn.resume is None:
                out["untracked"] += 1
                continue
            missing, duplicate = conn.resume.finish(last)
            out["clients"] += 1
            out["whole"] += not missing and not duplicate
            out["missing"] += missing
            out["duplicate"] += duplicate
            out["clients_missing"] += bool(missing)
            out["clients_duplicate"] += bool(duplicate)
            out["recovered"] += conn.resume.recovered
            out["not_recovered"] += conn.resume.not_recovered
            out["unplaced"] += conn.resume.unplaced
        return out

    def cmd_count(self, _: Any) -> dict:
        return {"messages": len(self.seqs), "open": self._open_count(), "closed": self.closed_by_server}

    def cmd_reset(self, _: Any) -> dict:
        self.seqs, self.lats, self.recvs = array("q"), array("q"), array("q")
        return {"ok": True}

    def cmd_collect(self, _: Any) -> dict:
        reply = {
            "seqs": self.seqs.tobytes(),
            "lats": self.lats.tobytes(),
            "recvs": self.recvs.tobytes(),
            "open": self._open_count(),
            "closed": self.closed_by_server,
        }
        self.cmd_reset(None)
        return reply

    def cmd_close(self, _: Any) -> dict:
        for conn in list(self.conns.values()):
            self._drop(conn)
        return {"ok": True}

    def cmd_exit(self, _: Any) -> dict:
        self.cmd_close(None)
        self.running = False
        return {"ok": True}

    def _open_count(self) -> int:
        return sum(1 for c in self.conns.values() if c.state == READY)

    # -- connecting ------------------------------------------------------------

    def _advance_job(self) -> None:
        job = self.job
        assert job is not None
        now = time.monotonic()
        if now > job.deadline:
            for conn in [c for c in self.conns.values() if c.state < READY]:
                self._fail(conn, "timeout", retry=False)
            job.failed += len(job.queue)
            job.queue.clear()
        job.tick(now)
        while job.queue and job.in_flight < job.concurrency:
            self._start(job.queue.popleft())
        if not job.queue and job.in_flight == 0 and job.complete():
            job.finished = time.monotonic()
            self.pipe.send(job.report())
            self.job = None

    def _start(self, conn: Conn) -> None:
        job = self.job
        assert job is not None
        conn.attempts += 1
        conn.state, conn.buf, conn.acks, conn.out = CONNECTING, b"", 0, b""
        conn.parser = wsframes.FrameParser()
        conn.started = time.monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((job.source, 0))
        err = sock.connect_ex((job.host, job.port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            conn.sock = None
            self._count_failure(conn, os.strerror(err), retry=True, in_flight=False)
            return
        conn.sock, conn.fd = sock, sock.fileno()
        self.conns[conn.fd] = conn
        job.in_flight += 1
        self.epoll.register(conn.fd, _OUT | _IN | _ERR)

    def _fail(self, conn: Conn, reason: str, retry: bool) -> None:
        """An in-flight connection failed: drop it, then retry or count it."""
        self._drop(conn)
        self._count_failure(conn, reason, retry)

    def _count_failure(self, conn: Conn, reason: str, retry: bool, in_flight: bool = True) -> None:
        job = self.job
        if job is None:
            return
        if in_flight:
            job.in_flight -= 1
        if job.retries(retry) and conn.attempts < job.max_attempts and time.monotonic() < job.deadline:
            job.requeue(conn, reason)
        else:
            job.failed += 1
            job.errors[reason[:80]] = job.errors.get(reason[:80], 0) + 1

    def _drop(self, conn: Conn) -> None:
        sock = conn.sock
        if sock is None:
            return
        self.conns.pop(conn.fd, None)
        try:
            self.epoll.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        sock.close()
        conn.sock = None
        conn.state = CLOSED

    def _became_ready(self, conn: Conn) -> None:
        conn.state = READY
        job = self.job
        if job is not None:
            job.in_flight -= 1
            job.ready += 1
            job.connect_ms.append((time.monotonic() - conn.started) * 1000)
            job.on_ready(conn)

    # -- events ----------------------------------------------------------------

    def _on_event(self, conn: Conn, mask: int) -> None:
        if conn.state == CONNECTING:
            self._on_connected(conn, mask)
            return
        if mask & _OUT and conn.out:
            self._flush(conn)
        if mask & (_IN | _ERR):
            self._on_readable(conn)

    def _on_connected(self, conn: Conn, mask: int) -> None:
        assert conn.sock is not None and self.job is not None
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(conn, os.strerror(err), retry=True)
            return
        conn.state = UPGRADING
        path = self.adapter.path(conn.index, conn.channels)
        self.epoll.modify(conn.fd, _IN | _ERR)
        self._send(conn, wsframes.handshake_request(self.job.host, self.job.port, path))

    def _send(self, conn: Conn, data: bytes) -> None:
        if conn.sock is None:
            return
        if conn.out:
            conn.out += data
            return
        try:
            sent = conn.sock.send(data)  # type: ignore[union-attr]
        except BlockingIOError:
            sent = 0
        except OSError:
            self._lost(conn, "send failed")
            return
        if sent < len(data):
            conn.out = data[sent:]
            self.epoll.modify(conn.fd, _IN | _OUT | _ERR)

    def _flush(self, conn: Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)  # type: ignore[union-attr]
        except BlockingIOError:
            return
        except OSError:
            self._lost(conn, "send failed")
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self.epoll.modify(conn.fd, _IN | _ERR)

    def _on_readable(self, conn: Conn) -> None:
        try:
            data, anc, _, _ = conn.sock.recvmsg(262144, _ANC_SIZE)  # type: ignore[union-attr]
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(conn, f"recv: {exc.strerror}")
            return
        if not data:
            self._lost(conn, "closed by server")
            return
        if anc:
            sec, nsec = struct.unpack_from("qq", anc[0][2])
            stamp = sec * 1_000_000_000 + nsec
        else:
            stamp = time.time_ns()
        if conn.state == READY:
            self._on_frames(conn, conn.parser.feed(data), stamp)
        elif conn.state == UPGRADING:
            self._on_upgrade_bytes(conn, data, stamp)
        else:
            self._on_frames(conn, conn.parser.feed(data), stamp)

    def _on_upgrade_bytes(self, conn: Conn, data: bytes, stamp: int) -> None:
        conn.buf += data
        try:
            used = wsframes.parse_handshake(conn.buf)
        except wsframes.HandshakeError as exc:
            self._fail(conn, str(exc), retry=b" 503 " in conn.buf[:40])
            return
        if not used:
            return
        rest, conn.buf = conn.buf[used:], b""
        conn.state = OPENING
        opening = self.adapter.opening if conn.resume is None else conn.resume.opening
        for text in opening(conn.channels):
            self._send(conn, wsframes.encode_client_frame(text))
        if not needs_acks(self.adapter) or not conn.channels:
            self._became_ready(conn)
        if rest:
            self._on_frames(conn, conn.parser.feed(rest), stamp)

    def _on_frames(self, conn: Conn, frames: list[tuple[int, bytes]], stamp: int) -> None:
        for opcode, payload in frames:
            if opcode == wsframes.OP_TEXT:
                marker = payload.find(b"B|")
                if marker >= 0:
                    _, seq, sent, _ = payload[marker:].split(b"|", 3)
                    self.seqs.append(int(seq))
                    self.lats.append(stamp - int(sent))
                    self.recvs.append(stamp)
                    if conn.resume is not None:
                        conn.resume.on_message(payload)
                    continue
                self._on_control_text(conn, payload)
                if conn.state == CLOSED:
                    return
            elif opcode == wsframes.OP_PING:
                self._send(conn, wsframes.encode_client_frame(payload, wsframes.OP_PONG))
            elif opcode == wsframes.OP_CLOSE:
                self._lost(conn, "close frame " + repr(payload[:60]))
                return

    def _on_control_text(self, conn: Conn, payload: bytes) -> None:
        kind, replies = self.adapter.on_text(payload, conn.channels)
        for reply in replies:
            self._send(conn, wsframes.encode_client_frame(reply))
        if kind == ACK and conn.state == OPENING:
            if conn.resume is not None:
                conn.resume.on_subscribed(payload)
            conn.acks += 1
            if conn.acks >= len(conn.channels):
                self._became_ready(conn)
        elif kind == REFUSED and conn.state == OPENING:
            self._fail(conn, "refused: " + payload[:60].decode("utf-8", "replace"), retry=False)
        else:
            self.other += 1

    def _lost(self, conn: Conn, reason: str) -> None:
        if conn.state == READY:
            self.closed_by_server += 1
            self._drop(conn)
            if self.job is not None:
                self.job.on_closed(conn, reason)
        elif self.job is not None and conn.state != CLOSED:
            self._fail(conn, reason, retry=True)
        else:
            self._drop(conn)


def main(pipe: Any, nice: int = 5) -> None:
    """Entry point of a generator process (spawned by `ClientPool`)."""
    if nice:
        os.nice(nice)
    LoadGen(pipe).run()
