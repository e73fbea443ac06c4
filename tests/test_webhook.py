"""The webhook client (`gusher.edge.webhook.Authenticator`) against small local HTTP servers."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from gusher.edge.webhook import Authenticator
from gusher.errors import WebhookError

ANSWER = b'{"user_id": "u", "channels": ["c"]}'


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers POSTs as the test's `mode` says; counts the TCP connections it was given."""

    protocol_version = "HTTP/1.1"
    mode = "length"
    connections: list[int] = []

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.mode == "status":
            self._answer(503, b"down")
            return
        if self.mode == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (ANSWER[:10], ANSWER[10:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self._answer(200, ANSWER)
        if self.mode == "drop-idle":
            self.close_connection = True  # closes without saying so, as an idle timeout does

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if self.mode == "close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    """Also tells how many connections it has closed."""

    closed = threading.Semaphore(0)

    def shutdown_request(self, request: object) -> None:
        super().shutdown_request(request)  # type: ignore[arg-type]
        self.closed.release()


@pytest.fixture
def server() -> Iterator[Server]:
    Handler.connections = []
    Server.closed = threading.Semaphore(0)
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url_of(server: Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/auth?x=1"


@pytest.mark.parametrize(
    ("mode", "connections"),
    [
        ("length", 1),  # kept alive: three calls, one connection
        ("chunked", 1),  # read to its last chunk, so kept too
        ("close", 3),  # `Connection: close` is obeyed
        ("drop-idle", 3),  # a connection the server closed while idle is not reused
    ],
)
def test_calls_reuse_a_connection_only_while_the_server_keeps_it(server, mode, connections) -> None:
    """Three calls in a row: each answered, on as many connections as the server allowed."""
    Handler.mode = mode
    authenticator = Authenticator(timeout=5, max_body=1000, concurrency=4)
    for _ in range(3):
        identity = authenticator.authenticate(url_of(server), "token")
        assert (identity.user_id, list(identity.channels)) == ("u", ["c"])
        if mode == "drop-idle":  # the next call starts once the server has closed this one
            assert server.closed.acquire(timeout=10)
    assert len(Handler.connections) == connections


def test_an_error_status_is_refused_and_its_connection_not_reused(server) -> None:
    """A non-2xx answer is a WebhookError; its unread body never reaches the next call."""
    Handler.mode = "status"
    authenticator = Authenticator(timeout=5, max_body=1000, concurrency=4)
    for _ in range(2):
        with pytest.raises(WebhookError, match="HTTP 503"):
            authenticator.authenticate(url_of(server), "token")
    assert len(Handler.connections) == 2


def test_an_answer_over_the_bound_is_refused(server) -> None:
    """A body longer than `max_body` is refused, and the connection is dropped with its rest."""
    Handler.mode = "length"
    authenticator = Authenticator(timeout=5, max_body=10, concurrency=4)
    with pytest.raises(WebhookError, match="over 10 bytes"):
        authenticator.authenticate(url_of(server), "token")
    Authenticator(timeout=5, max_body=1000, concurrency=4).authenticate(url_of(server), "token")
    assert len(Handler.connections) == 2


def test_an_unreachable_webhook_is_a_webhook_error() -> None:
    """Nothing listening: the connection error is translated where it enters."""
    from gusher.embedded import free_port

    with pytest.raises(WebhookError, match="unreachable"):
        Authenticator(timeout=5, max_body=1000, concurrency=4).authenticate(
            f"http://127.0.0.1:{free_port()}/auth", "token"
        )


@pytest.mark.parametrize("kind", ["gevent", "plain"])
@pytest.mark.parametrize(("peer", "open_"), [("quiet", True), ("closed", False), ("chatty", False)])
def test_an_idle_connection_is_reused_only_while_open_and_quiet(kind, peer, open_) -> None:
    """Open and quiet, closed, or unasked bytes: told by a peek under gevent (the slave), a poll otherwise."""
    import socket

    import gevent.socket

    from gusher.edge.webhook import _Connection

    ours, theirs = socket.socketpair()
    sock = gevent.socket.socket(fileno=ours.detach()) if kind == "gevent" else ours
    conn = _Connection(sock, "127.0.0.1")
    if peer == "closed":
        theirs.close()
    elif peer == "chatty":
        theirs.sendall(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    try:
        assert conn.still_open() is open_
    finally:
        conn.close()
        theirs.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/auth", "http:// or https://"),
        ("http:///auth", "no host"),
        ("http://h:99999/", "malformed"),
    ],
)
def test_unusable_webhook_urls_are_refused(url, reason) -> None:
    """A URL the client cannot call is a WebhookError naming why, before any connection."""
    with pytest.raises(WebhookError, match=reason):
        Authenticator(timeout=5, max_body=1000, concurrency=4).authenticate(url, "token")


def test_the_request_is_one_write_with_the_host_and_the_form(server) -> None:
    """The webhook sees Host (with the port), the form body and its length, as urllib3 sent them."""
    seen: list[dict[str, str]] = []
    original = Handler.do_POST

    def recording(self: Handler) -> None:
        seen.append(dict(self.headers))
        original(self)

    Handler.mode = "length"
    Handler.do_POST = recording  # type: ignore[method-assign]
    try:
        Authenticator(timeout=5, max_body=1000, concurrency=4).authenticate(url_of(server), "tok en", "app")
    finally:
        Handler.do_POST = original  # type: ignore[method-assign]
    headers = seen[0]
    assert headers["Host"] == f"127.0.0.1:{server.server_address[1]}"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Content-Length"] == str(len("auth=tok+en&app_key=app"))
