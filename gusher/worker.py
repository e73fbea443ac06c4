"""gusher's gunicorn worker and logger: JSON refusals, counted header stalls, a quiet Ctrl-C, no access log.

gunicorn refuses some requests itself, before any application code runs (a
request line over `limit_request_line`: 414, too many or too large headers:
431, a malformed request: 400) and wrote those answers as HTML, where
every gusher error is `{"error": reason}` (issue 17). Its keep-alive timer
bounds how long the headers of each request may take to arrive (a sender
that trickles them is cut): here that cut is also logged and counted
(`slow_requests`) when it hits a connection's first request, which is a
stalled sender rather than an idle keep-alive connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import gevent
import orjson
from gunicorn import glogging, util
from gunicorn.workers.ggevent import GeventWorker


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's error answer, as JSON (it replaces `gunicorn.util.write_error` in gusher's workers)."""
    body = orjson.dumps({"error": f"{reason}: {mesg}" if mesg else reason})
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class GusherLogger(glogging.Logger):
    """gunicorn's logger with its access log always off.

    Clients' `auth` tokens travel in WebSocket URLs, so no request line may be
    logged; gunicorn turns its access log on whenever a `logconfig_dict` is
    given (gusher gives one, `gusher.logs.gunicorn_config`), and then formats
    every request's line even when nothing prints it.
    """

    def _compute_access_log_enabled(self) -> bool:
        return False


class _HeadersStalled(Exception):
    """The keep-alive timer fired while a request's headers were awaited."""


@contextmanager
def _entry_points_read_once() -> Iterator[None]:
    """`importlib.metadata.entry_points` answered from one reading of the installed distributions.

    gevent's `patch_all` tells its plugins about each module it patches, and
    finds them by asking `entry_points` each time: 25 readings of every
    installed distribution's metadata, 0.14 s of a worker's 0.65 s boot
    (issue 16), which a slave's clients wait through after a restart. What is
    installed cannot change while the worker patches, so one reading serves.
    """
    original = metadata.entry_points
    everything = original()

    def entry_points(**params: Any) -> Any:
        return everything.select(**params)

    metadata.entry_points = entry_points  # type: ignore[assignment]
    try:
        yield
    finally:
        metadata.entry_points = original


class GusherWorker(GeventWorker):
    """`worker_class` of both roles (gunicorn.conf.py)."""

    def init_process(self) -> None:
        """Answer gunicorn's own refusals in JSON, then run as gevent's worker does."""
        util.write_error = write_json_error
        super().init_process()

    def patch(self) -> None:
        """gevent's monkey-patching, as gunicorn's, with its plugins looked up from one reading."""
        with _entry_points_read_once():
            super().patch()

    def handle_quit(self, sig: int, frame: Any) -> None:
        """Ctrl-C (SIGINT) or the arbiter's quick stop (SIGQUIT): stop as on SIGTERM.

        gunicorn's own handler calls `sys.exit` in a greenlet, which gevent
        reports as a `SystemExit` traceback per worker at every Ctrl-C, and
        drops WebSocket clients without a close frame. Clearing `alive` lets
        the worker close its clients with 1001 and end its loop; the arbiter
        still kills what is left after `graceful_timeout`.
        """
        self.alive = False

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """One client connection, in a greenlet of its own; counts the requests it served."""
        gevent.getcurrent().gusher_requests = 0
        super().handle(listener, client, addr)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        """One request of the connection."""
        gevent.getcurrent().gusher_requests += 1
        super().handle_request(listener_name, req, sock, addr)

    @contextmanager
    def timeout_ctx(self) -> Iterator[None]:  # type: ignore[override]
        """The keep-alive deadline for the next request's headers, as gunicorn's, counted when cut."""
        try:
            with gevent.Timeout(self.cfg.keepalive, _HeadersStalled):
                yield
        except _HeadersStalled:
            if not getattr(gevent.getcurrent(), "gusher_requests", 1):
                self._count_stall(self.wsgi)

    def _count_stall(self, app: Any) -> None:
        metrics = getattr(app, "extensions", {}).get("gusher.metrics")
        if metrics is not None:
            metrics.slow_requests += 1
        self.log.info("closed a connection whose first request's headers did not arrive in time")
