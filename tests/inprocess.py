"""Helpers for the in-process tests: a fake broker, socket-pair clients, server frames.

These drive the edge (hub, sessions, connections) inside the test process on
gevent's loop, with a real kernel socket pair per client and no Redis: the
`FakeSubscriber` implements `gusher.broker.base.Subscriber`, and the test
decides when a subscription takes effect and what gets published.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

import gevent
import gevent.socket

from gusher.broker.base import SubscriberHandler
from gusher.config import Settings
from gusher.core.history import ChannelHistory, HistoryPolicy
from gusher.core.identity import Identity
from gusher.core.metrics import Metrics
from gusher.core.publication import Publication
from gusher.edge.hub import Hub
from gusher.edge.session import Session
from gusher.edge.tasks import TaskPool
from gusher.wire import frames
from gusher.wire.base import ClientProtocol
from gusher.wire.gusher import GUSHER


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server frames into (opcode, payload); the bytes must hold whole frames."""
    out = []
    pos = 0
    while pos < len(data):
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        out.append((opcode, data[pos : pos + length]))
        pos += length
    assert pos == len(data), "a partial frame"
    return out


def client_frame(payload: bytes, opcode: int = frames.OP_TEXT, fin: bool = True) -> bytes:
    """A masked client frame (RFC 6455 §5.3)."""
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class FakeSubscriber:
    """A broker subscriber the test drives: it confirms keys and publishes when told to."""

    def __init__(self, auto_confirm: bool = True) -> None:
        self.auto_confirm = auto_confirm
        self.handler: SubscriberHandler | None = None
        self.wanted: set[str] = set()
        self.active: set[str] = set()
        self.want_calls: list[str] = []
        self.connected = True

    @property
    def subscription_count(self) -> int:
        return len(self.active)

    def want(self, key: str) -> bool:
        self.want_calls.append(key)
        self.wanted.add(key)
        if key in self.active:
            return True
        if self.auto_confirm:
            gevent.get_hub().loop.run_callback(self.confirm, key)
        return False

    def release(self, key: str) -> None:
        self.wanted.discard(key)
        self.active.discard(key)

    def start(self, handler: SubscriberHandler) -> None:
        self.handler = handler

    def stop(self) -> None:
        self.handler = None

    def live_greenlets(self) -> int:
        return 0

    def confirm(self, key: str) -> None:
        """The broker confirms `key` (if still wanted)."""
        if key in self.wanted and key not in self.active:
            self.active.add(key)
            assert self.handler is not None
            self.handler.on_ready(key)

    def publish(self, key: str, *payloads: bytes | dict[str, Any]) -> None:
        """Hand a batch to the hub, as if it came from Redis on `key`."""
        assert self.handler is not None
        batch = []
        for payload in payloads:
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            publication = Publication.parse(raw)
            assert publication is not None
            batch.append((key, publication))
        self.handler.on_publications(batch)


class FakeHistory:
    """A history store the test fills; `during_read` runs inside a read (pushes racing it)."""

    def __init__(self, epoch: str = "E") -> None:
        self.epoch = epoch
        self.kept: dict[str, list[Publication]] = {}
        self.during_read: Any = None
        self.reads: list[tuple[str, int, int]] = []

    def add(self, key: str, channel: str, *offsets: int) -> list[Publication]:
        added = [numbered(channel, offset) for offset in offsets]
        self.kept.setdefault(key, []).extend(added)
        return added

    def publish(self, items: Any, policy: HistoryPolicy) -> list[tuple[int, str]]:
        raise NotImplementedError("slaves never publish")

    def read(self, key: str, since: int, limit: int, policy: HistoryPolicy) -> ChannelHistory:
        self.reads.append((key, since, limit))
        kept = self.kept.get(key, [])
        top = kept[-1].offset if kept else 0
        if self.during_read is not None:
            self.during_read()
        after = [p for p in kept if p.offset > since][:limit]
        return ChannelHistory(self.epoch, top, tuple(after))


def numbered(channel: str, offset: int, event: str = "e") -> Publication:
    """A message as the master's history script publishes it: the common message and its offset."""
    parsed = Publication.parse(Publication.create(channel, event, offset).numbered_payload(offset))
    assert parsed is not None
    return parsed


class Peer:
    """The client end of a socket pair whose other end a hub owns."""

    def __init__(self, sock: gevent.socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def send(self, message: Any, opcode: int = frames.OP_TEXT) -> None:
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.sock.sendall(client_frame(payload, opcode))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frames(self, wait: float = 0.05) -> list[tuple[int, bytes]]:
        """Every whole frame that arrives within `wait` seconds (the loop runs meanwhile)."""
        gevent.sleep(wait)
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    chunk = self.sock.recv(1 << 20)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                self._buffer += chunk
        finally:
            self.sock.setblocking(True)
        whole = _whole_frames(self._buffer)
        data, self._buffer = self._buffer[:whole], self._buffer[whole:]
        return server_frames(data)

    def messages(self, wait: float = 0.05) -> list[Any]:
        """The JSON of every text frame that arrives within `wait` seconds."""
        return [json.loads(payload) for opcode, payload in self.frames(wait) if opcode == frames.OP_TEXT]

    def close(self) -> None:
        self.sock.close()


def _whole_frames(data: bytes) -> int:
    """How many leading bytes of `data` are whole server frames."""
    pos = 0
    while pos + 2 <= len(data):
        length, header = data[pos + 1] & 0x7F, 2
        if length == 126:
            if pos + 4 > len(data):
                break
            (length,) = struct.unpack_from("!H", data, pos + 2)
            header = 4
        elif length == 127:
            if pos + 10 > len(data):
                break
            (length,) = struct.unpack_from("!Q", data, pos + 2)
            header = 10
        if pos + header + length > len(data):
            break
        pos += header + length
    return pos


class Worker:
    """A hub with a fake subscriber and a task pool, as one slave worker has them."""

    def __init__(
        self,
        settings: Settings | None = None,
        subscriber: FakeSubscriber | None = None,
        history: FakeHistory | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.metrics = Metrics()
        self.subscriber = subscriber or FakeSubscriber()
        self.history = history or FakeHistory()
        self.pool = TaskPool(self.settings.command_concurrency)
        self.hub = Hub(self.settings, self.subscriber, self.metrics, self.pool, history=self.history)
        self.subscriber.start(self.hub)
        self.peers: list[Peer] = []

    def connect(
        self,
        user: str = "u",
        channels: tuple[str, ...] = ("*",),
        app_key: str = "app",
        protocol: ClientProtocol = GUSHER,
        history: HistoryPolicy | None = None,
    ) -> tuple[Session, Peer]:
        """A client of `app_key` allowed `channels`, attached to the hub (`history`: the app keeps it)."""
        ours, theirs = socket.socketpair()  # the test process is not monkey-patched: plain sockets
        ours.setblocking(False)
        session = self.hub.attach(ours, app_key, Identity(user, channels), protocol, history)
        self.hub.follow_user(session)
        peer = Peer(gevent.socket.socket(fileno=theirs.detach()))
        self.peers.append(peer)
        return session, peer

    def close(self) -> None:
        for session in list(self.hub.sessions.values()):
            session.conn.release()
        for peer in self.peers:
            peer.close()
