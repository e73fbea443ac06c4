"""One WebSocket after the handshake: non-blocking reads and writes, no greenlet, no protocol.

An idle connection is a socket, an event-loop read watcher, this object and
its session (about 1 KB in all, issue 4): gevent's loop calls it
(`__call__`) when bytes arrive, and a frame reader exists only while a frame
is half-read. Writes go straight to the kernel with a non-blocking `send`.
Only what the kernel does not take is queued (bounded by `max_pending_bytes`;
a client that lets it overflow is cut off, never waited for) and flushed by a
write watcher, coalesced into one `send`. Exactly one writer touches the
socket: this object (FACTS: two gevent writers on one socket raise, and
simple-websocket's `send` drops the tail of short writes — here nothing is
ever dropped silently).

The connection answers WebSocket Pings and Close frames itself; complete
data messages go to its handler (the session), which owns the protocol.
Closing follows RFC 6455 §7: send a Close frame, let it drain, half-close,
and release the socket when the client's Close or EOF arrives (or the
keep-alive sweep gives up after the close timeout).
"""

from __future__ import annotations

import _socket
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any, Protocol

from gusher.core.metrics import Metrics
from gusher.errors import ProtocolError
from gusher.wire import frames

log = logging.getLogger(__name__)

OPEN, CLOSING, CLOSED = 0, 1, 2
_READ_CHUNK = 65536
_EV_READ, _EV_WRITE = 1, 2

Message = frames.TextMessage | frames.BinaryMessage
# The C socket, never gevent's cooperative one: `send` must raise
# BlockingIOError when the kernel is full, not wait.
RawSocket = _socket.socket


class ConnectionHandler(Protocol):
    """What a connection tells its owner (the session); called from the event loop, never blocking."""

    def on_message(self, message: Message) -> None:
        """A complete text or binary message arrived."""

    def on_closing(self) -> None:
        """The connection stopped being open: deliver nothing more to it."""

    def on_released(self) -> None:
        """The socket is gone."""

    def on_backlog_full(self) -> None:
        """More output is pending than `max_pending_bytes`: the client does not keep up."""


class SocketContext:
    """What every connection of a worker shares: the event loop, the socket bounds, the counters."""

    __slots__ = ("loop", "max_message_size", "max_pending_bytes", "metrics")

    def __init__(self, loop: Any, max_message_size: int, max_pending_bytes: int, metrics: Metrics) -> None:
        self.loop = loop
        self.max_message_size = max_message_size
        self.max_pending_bytes = max_pending_bytes
        self.metrics = metrics


class Connection:
    """A client's WebSocket; its handler is told about messages and the end."""

    __slots__ = (
        "_context",
        "_outbox",
        "_outbox_size",
        "_read_watcher",
        "_reader",
        "_sock",
        "_write_watcher",
        "awaiting_pong",
        "closing_since",
        "handler",
        "last_heard",
        "state",
    )

    def __init__(self, context: SocketContext, sock: RawSocket, handler: ConnectionHandler) -> None:
        self.handler = handler
        self.state = OPEN
        self.last_heard = time.monotonic()
        self.closing_since = 0.0
        self.awaiting_pong = False
        self._context = context
        self._sock = sock
        self._reader: frames.FrameReader | None = None  # made by the first read
        self._outbox: list[bytes] | None = None
        self._outbox_size = 0
        self._write_watcher: Any = None
        self._read_watcher = context.loop.io(sock.fileno(), _EV_READ)
        # The watcher calls the connection itself (`__call__`): a bound method
        # would be one more object, ~64 bytes, held by every idle connection.
        self._read_watcher.start(self)

    def __repr__(self) -> str:
        # The descriptor names a live connection uniquely within its worker (and in `ss -p`).
        fd = self._sock.fileno() if self.state != CLOSED else -1
        return f"<Connection fd={fd} {self.handler!r}>"

    @property
    def is_open(self) -> bool:
        """Whether messages may still be written (no Close sent or received yet)."""
        return self.state == OPEN

    # -- writing ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue `data` (complete frames) for the client; never blocks.

        The hot path of every reply: one non-blocking `send` syscall when
        nothing is queued, an append otherwise.
        """
        if self.state != OPEN or not data:
            return  # b"": a reply the protocol does not send (Pusher acknowledges no unsubscribe)
        self._write(data)

    @property
    def pending_bytes(self) -> int:
        """Output queued for the client, not yet taken by the kernel."""
        return self._outbox_size

    @staticmethod
    def send_to_all(connections: Iterable[Connection], data: bytes) -> None:
        """`send(data)` to each connection: the fan-out's inner loop, inlined.

        A method call per subscriber costs as much as the rest of Python's
        share of a fan-out, so the common case (open, nothing queued, the
        kernel takes everything) is written out here; the rest goes through
        `send`.
        """
        size = len(data)
        for conn in connections:
            if conn._outbox is None and conn.state == OPEN:
                try:
                    sent = conn._sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    conn.release()
                    continue
                if sent != size:
                    conn._enqueue(data[sent:])
            else:
                conn.send(data)

    def _send_now(self, data: bytes) -> int | None:
        """One non-blocking `send`: bytes the kernel took, None if the peer is gone."""
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self.release()
            return None

    def _write(self, data: bytes) -> None:
        if self._outbox is not None:
            self._enqueue(data)
            return
        sent = self._send_now(data)
        if sent is not None and sent < len(data):
            self._enqueue(data[sent:])

    def _enqueue(self, data: bytes) -> None:
        if self._outbox is None:
            self._outbox = []
            self._write_watcher = self._context.loop.io(self._sock.fileno(), _EV_WRITE)
            self._write_watcher.start(self._on_writable)
        self._outbox.append(data)
        self._outbox_size += len(data)
        if self._outbox_size > self._context.max_pending_bytes and self.state == OPEN:
            log.info("cutting %r off: over %d bytes of output pending", self, self._outbox_size)
            self.handler.on_backlog_full()
            if self.state == OPEN:
                self.cut_off(frames.CLOSE_POLICY_VIOLATION, "too slow: output buffer full")

    def _on_writable(self) -> None:
        outbox = self._outbox
        if not outbox:
            return
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        sent = self._send_now(data)
        if sent is None:
            return
        if sent < len(data):
            rest = data[sent:]
            self._outbox = [rest]
            self._outbox_size = len(rest)
            return
        self._outbox = None
        self._outbox_size = 0
        self._write_watcher.stop()
        self._write_watcher.close()
        self._write_watcher = None
        if self.state == CLOSING:
            self._half_close()

    # -- reading ---------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(_READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self.release()
            return
        if not data:
            self.release()
            return
        self.last_heard = time.monotonic()
        self.awaiting_pong = False
        if self.state != OPEN:
            return  # after our Close, the client's bytes are ignored until its Close/EOF
        reader = self._reader
        if reader is None:
            reader = frames.FrameReader(self._context.max_message_size)
        try:
            events = reader.feed(data)
        except ProtocolError as exc:
            self._context.metrics.protocol_errors += 1
            log.info("closing %r: %s", self, exc.reason)
            self.close(exc.close_code, exc.reason)
            return
        # Kept only while it holds part of a frame or message: an idle
        # connection (pings and pongs are whole frames) holds no reader.
        self._reader = reader if reader.is_midway else None
        for event in events:
            try:
                self._handle(event)
            except Exception:  # a bug in one command must not cost the worker
                log.exception("handling %s from %r failed", type(event).__name__, self)
                self.close(frames.CLOSE_INTERNAL_ERROR, "internal error")
            if self.state != OPEN:
                break

    __call__ = _on_readable

    def _handle(self, event: frames.Event) -> None:
        if isinstance(event, (frames.TextMessage, frames.BinaryMessage)):
            self.handler.on_message(event)
        elif isinstance(event, frames.Ping):
            self.send(frames.encode_pong(event.payload))
        elif isinstance(event, frames.Close):
            # The client started the closing handshake: answer with its code and finish.
            self.close(frames.CLOSE_NORMAL if event.code == 1005 else event.code, "")
        # Pong: last_heard is already updated by the read itself.

    # -- closing ---------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with `code` and `reason` (idempotent)."""
        if self.state != OPEN:
            return
        self.state = CLOSING
        self.closing_since = time.monotonic()
        self.handler.on_closing()
        self._write(frames.encode_close(code, reason))
        if self.state == CLOSING and self._outbox is None:
            self._half_close()

    def cut_off(self, code: int, reason: str) -> None:
        """Close a client that does not keep up: drop the output it has not started to receive.

        The chunk being written is finished (every outbox chunk ends at a
        frame boundary), so the client reads whole frames and then the Close
        frame with `code`; the rest of the backlog is freed at once. A client
        that never reads again is released after the close timeout.
        """
        if self.state != OPEN:
            return
        if self._outbox:
            del self._outbox[1:]
            self._outbox_size = len(self._outbox[0])
        self.close(code, reason)

    def abort(self, code: int, reason: str) -> None:
        """Close at once: one try at a Close frame, then drop the socket."""
        if self.state == CLOSED:
            return
        if self.state == OPEN:
            try:
                self._sock.send(frames.encode_close(code, reason))
            except OSError:
                pass  # the buffer is full or the peer is gone: dropping is the point
        self.release()

    def _half_close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.release()

    def release(self) -> None:
        """Free the socket and watchers; the connection is gone."""
        if self.state == CLOSED:
            return
        was_open = self.state == OPEN
        self.state = CLOSED
        self._read_watcher.stop()
        self._read_watcher.close()
        if self._write_watcher is not None:
            self._write_watcher.stop()
            self._write_watcher.close()
            self._write_watcher = None
        self._outbox = None
        try:
            self._sock.close()
        except OSError:
            pass  # already closed by the kernel side; nothing left to free
        if was_open:
            self.handler.on_closing()
        self.handler.on_released()
