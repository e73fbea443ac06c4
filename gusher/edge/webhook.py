"""Ask an app's webhook who a connecting client is and what it may hear.

The slave POSTs `auth=<token>` (form-encoded; ext: plus `app_key` and
`remote_addr`, signed with the app's secret when it has one) to the app's
webhook URL; the webhook answers `{"user_id": "...", "channels": ["a", "b"]}`. The call is
bounded in time (a gevent.Timeout over the whole exchange, since urllib3's
timeout is per socket operation), in body size, and in how many run at once per
worker, so that a slow or hostile webhook can delay only its own clients.

It speaks HTTP/1.1 with h11 over kept connections of its own (issue 16): the
connect path spent 31 % of its time in the webhook call, most of it in
requests' request preparation and response wrapping, then in urllib3's pool
manager and pools and http.client's email-based header parsing, which a form
POST with a bounded read on a kept connection needs none of (`_Connections`).
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import gevent
import gevent.lock
import h11
from urllib3.util.wait import wait_for_read

from gusher import __version__
from gusher.core import exactjson
from gusher.core.identity import Identity, identity_from
from gusher.core.metrics import Metrics
from gusher.core.signing import SIGNATURE_HEADER, sign
from gusher.errors import WebhookError

_READ_CHUNK = 65536
_USER_AGENT = f"gusher/{__version__}"  # so a backend's logs tell webhook calls apart


def parse_webhook_answer(body: bytes) -> Identity:
    """Validate the webhook's JSON answer — pure.

    Raises:
        WebhookError: the body is not `{"user_id", "channels": [str, ...]}` or
            the channel list is empty.
    """
    try:
        answer = exactjson.loads(body)
    except exactjson.JSONDecodeError:
        raise WebhookError("webhook answer is not JSON") from None
    return identity_from(answer, "webhook answer", WebhookError)


def webhook_request(auth: str, app_key: str, remote: str, secret: str) -> tuple[bytes, dict[str, str]]:
    """The form body and headers of a webhook call — pure.

    The seed sends only `auth`; `app_key` and `remote_addr` are added so one
    backend can serve several apps and log who connects. With a `secret`, the
    body is signed (`X-Gusher-Signature`), so the backend can tell that gusher
    is calling and not someone replaying tokens against it.
    """
    fields = {"auth": auth}
    if app_key:
        fields["app_key"] = app_key
    if remote:
        fields["remote_addr"] = remote
    body = urllib.parse.urlencode(fields).encode("ascii")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": _USER_AGENT,
        "Accept-Encoding": "identity",  # the answer is read as sent: no decompression
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return body, headers


class Authenticator:
    """Calls webhooks for one worker, with bounded time, size and concurrency.

    At most `concurrency` calls run at once in the worker, and at most
    `per_app` of them for one app: an app whose webhook hangs fills its own
    share and waits there, so the other apps' calls still find free slots
    (one shared bound let a few hundred handshakes to one hanging webhook
    delay every other app's clients by seconds, issue 17).
    """

    def __init__(
        self,
        timeout: float,
        max_body: int,
        concurrency: int,
        per_app: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.timeout = timeout
        self.metrics = metrics or Metrics()
        self.max_body = max_body
        self.per_app = max(1, min(concurrency, per_app if per_app is not None else concurrency))
        self._slots = gevent.lock.BoundedSemaphore(concurrency)
        # app key → [its semaphore, calls using it]; an app's entry lives while it has calls.
        self._app_slots: dict[str, list] = {}
        # Keep as many connections to a webhook as calls may run at once:
        # requests' default pool keeps 10 per host and closes the rest after
        # each call, so a reconnect storm opened a new TCP connection (and left
        # a TIME_WAIT socket) for most handshakes.
        #
        # Calls go over connections of our own (`_Connections`), not through a requests Session: a
        # Session's cookie jar would carry a cookie the webhook set while
        # answering one user into the calls made for every other user, and
        # merging its settings, searching the environment for proxies and
        # .netrc, and running its hooks cost ~20% of a connect's CPU. No
        # redirects and no retries: a webhook answers where it is asked.
        self._connections = _Connections(timeout, concurrency)

    def authenticate(
        self, url: str, auth: str, app_key: str = "", remote: str = "", secret: str = ""
    ) -> Identity:
        """Ask the webhook at `url` about `auth` (see `webhook_request` for the rest).

        Raises:
            WebhookError: timeout, connection failure, non-2xx status, a body
                over `max_body`, or an unusable answer.
        """
        body, headers = webhook_request(auth, app_key, remote, secret)
        started = time.monotonic()
        try:
            expired = WebhookError(f"webhook timed out after {self.timeout:g} s")
            timeout = gevent.Timeout(self.timeout, expired)
            with timeout, self._app_share(app_key), self._slots:
                answer = self._post(url, body, headers)
        except OSError as exc:  # ssl.SSLError and socket timeouts included
            raise WebhookError(f"webhook unreachable: {exc.__class__.__name__}") from exc
        finally:
            self.metrics.observe("webhook_seconds", time.monotonic() - started)
        return parse_webhook_answer(answer)

    @contextmanager
    def _app_share(self, app_key: str) -> Iterator[None]:
        """One of the `per_app` slots of `app_key` (taken before a slot of the worker's)."""
        entry = self._app_slots.get(app_key)
        if entry is None:
            entry = self._app_slots[app_key] = [gevent.lock.BoundedSemaphore(self.per_app), 0]
        entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._app_slots[app_key]

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> bytes:
        origin, target = self._connections.parse(url)
        conn = self._connections.take(origin)
        reusable = False
        try:
            status, answer = conn.post(target, headers, body, self.max_body)
            if not 200 <= status < 300:
                raise WebhookError(f"webhook answered HTTP {status}")
            reusable = conn.start_next_cycle()
            return answer
        except h11.ProtocolError as exc:
            raise WebhookError(f"webhook answered malformed HTTP ({exc})") from None
        finally:
            self._connections.give_back(origin, conn, reusable)


# (scheme, host, port): the connections that may be shared.
Origin = tuple[str, str, int]


class _Connection:
    """One keep-alive connection to a webhook: a socket and h11's client state machine.

    h11 (the sans-I/O HTTP/1.1 of python-hyper, which wsproto is built on)
    instead of http.client under urllib3: writing the request in one `send`
    and reading a small answer costs ~90 µs of CPU where urllib3's
    connection took ~160 µs (issue 16; the pool around it another ~80 µs).
    """

    __slots__ = ("host", "sock", "state")

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self.host = host  # the Host header's value
        self.state = h11.Connection(h11.CLIENT)

    def post(self, target: str, headers: dict[str, str], body: bytes, max_body: int) -> tuple[int, bytes]:
        """Send a POST, read its answer: (status, body), the body at most `max_body` bytes.

        Raises:
            WebhookError: the body is over `max_body` (the connection is then not reusable).
            h11.ProtocolError: malformed HTTP. OSError: the socket failed.
        """
        fields = [("Host", self.host), *headers.items(), ("Content-Length", str(len(body)))]
        state = self.state
        request = state.send(h11.Request(method="POST", target=target, headers=fields)) or b""
        self.sock.sendall(
            request + (state.send(h11.Data(data=body)) or b"") + (state.send(h11.EndOfMessage()) or b"")
        )
        status, parts, size = 0, [], 0
        while True:
            event = state.next_event()
            if event is h11.NEED_DATA:
                state.receive_data(self.sock.recv(_READ_CHUNK))
            elif isinstance(event, h11.Response):
                status = event.status_code
                if not 200 <= status < 300:
                    return status, b""  # its body is never read: the connection is not reused
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > max_body:
                    raise WebhookError(f"webhook answer is over {max_body} bytes")
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(parts)
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("connection closed before the answer ended")
            # h11.InformationalResponse (100 Continue): the answer follows.

    def start_next_cycle(self) -> bool:
        """Whether this connection may carry another request (both sides kept it alive)."""
        try:
            self.state.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        return True

    def still_open(self) -> bool:
        """Whether an idle connection is open and nothing unasked arrived on it.

        A plain socket is asked with one non-blocking peek at the real socket
        under gevent's (FACTS: `sock._sock`); a TLS one, or a socket without
        it, with a zero-timeout poll (as urllib3 checks its pooled connections).
        """
        raw = getattr(self.sock, "_sock", None)
        if raw is None or isinstance(self.sock, ssl.SSLSocket) or "SSL" in type(self.sock).__name__:
            return not wait_for_read(self.sock, timeout=0.0)
        try:
            raw.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True  # open and quiet
        except OSError:
            return False
        return False  # b"": the server closed it; bytes: it sent what nobody asked for

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass  # closing what the peer reset already frees it all the same


class _Connections:
    """Idle keep-alive connections to webhooks: at most `per_origin` each, of `_ORIGINS` origins.

    Connections are reused the way urllib3's pool reuses them, without the
    pool: PoolManager and HTTPConnectionPool (URL parsing, pool keys, a
    locked queue per host, timeout objects, their error wrapping) cost
    ~80 µs of a ~300 µs call's CPU (issue 16). A connection the server
    closed while idle is found before reuse (`still_open`).
    """

    _ORIGINS = 16  # urllib3 PoolManager's num_pools, as before
    _URLS = 1024  # parsed webhook URLs kept (one per app, usually a handful)

    def __init__(self, timeout: float, per_origin: int) -> None:
        self.timeout = timeout
        self.per_origin = per_origin
        self._idle: OrderedDict[Origin, list[_Connection]] = OrderedDict()
        self._parsed: dict[str, tuple[Origin, str]] = {}
        self._tls: ssl.SSLContext | None = None  # made at the first https webhook

    def parse(self, url: str) -> tuple[Origin, str]:
        """The origin and the request target of `url` (cached: each app's URL is asked again and again).

        Raises:
            WebhookError: not an http:// or https:// URL with a host.
        """
        parsed = self._parsed.get(url)
        if parsed is None:
            try:
                parts = urllib.parse.urlsplit(url)
                scheme, host = parts.scheme.lower(), parts.hostname
                port = parts.port or (443 if scheme == "https" else 80)
            except ValueError:
                raise WebhookError("webhook url is malformed") from None
            if scheme not in ("http", "https"):
                raise WebhookError("webhook url must be http:// or https://")
            if not host:
                raise WebhookError("webhook url has no host")
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            parsed = ((scheme, host, port), target)
            if len(self._parsed) >= self._URLS:
                self._parsed.clear()
            self._parsed[url] = parsed
        return parsed

    def take(self, origin: Origin) -> _Connection:
        """An idle connection to `origin` that is still open, or a new one."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.still_open():
                return conn
            conn.close()
        scheme, host, port = origin
        sock = socket.create_connection((host, port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as urllib3 does
            if scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                sock = self._tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        name = f"[{host}]" if ":" in host else host
        default = 443 if scheme == "https" else 80
        return _Connection(sock, name if port == default else f"{name}:{port}")

    def give_back(self, origin: Origin, conn: _Connection, reusable: bool) -> None:
        """Keep `conn` for the next call to `origin`, or close it."""
        idle = self._idle.get(origin)
        if idle is None and reusable:
            idle = self._idle[origin] = []
            while len(self._idle) > self._ORIGINS:
                for stale in self._idle.popitem(last=False)[1]:
                    stale.close()
        if reusable and idle is not None and len(idle) < self.per_origin:
            idle.append(conn)
            self._idle.move_to_end(origin)
        else:
            conn.close()
