"""How far a request body may be read: a deadline, and a size bound whatever its framing.

Both roles wrap their WSGI app in `BoundedBodies`. Without it a body that
never arrived held a master connection (and its greenlet) forever:
`Content-Length: 5` and no body got no answer after 180 s, and 60 such
sockets made a one-worker master time out every other push. A chunked body
skipped the size bound that `Content-Length` gets, and a 10 MB one was
truncated into "not valid JSON" (issue 17). Headers are bounded by gunicorn:
each request's headers must arrive within its keep-alive time
(`gusher.worker`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gevent

from gusher.core.metrics import Metrics
from gusher.errors import PayloadTooLarge, RequestTimeout

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _BoundedInput:
    """`wsgi.input` that raises `RequestTimeout` past the deadline and `PayloadTooLarge` past `limit`."""

    def __init__(self, stream: Any, deadline: float, limit: int, metrics: Metrics) -> None:
        self._stream = stream
        self._deadline = deadline
        self._limit = limit
        self._metrics = metrics
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all when negative), within the request's deadline and bound."""
        return self._bounded(self._stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        """One line, within the request's deadline and bound."""
        return self._bounded(self._stream.readline, size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        """Every line left."""
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _bounded(self, read: Callable[[int], bytes], size: int) -> bytes:
        left = self._deadline - time.monotonic()
        expired = RequestTimeout("request body did not arrive in time")
        try:
            if left <= 0:
                raise expired
            with gevent.Timeout(left, expired):
                data = read(size)
        except RequestTimeout:
            self._metrics.slow_requests += 1
            log.info("cut a request whose body did not arrive in time (%d bytes read)", self._read)
            raise
        self._read += len(data)
        if self._read > self._limit:
            raise PayloadTooLarge(f"request body over {self._limit} bytes")
        return data


class BoundedBodies:
    """WSGI middleware: every request's body must arrive within `timeout` seconds and `limit` bytes."""

    def __init__(self, app: WSGIApp, timeout: float, limit: int, metrics: Metrics) -> None:
        self.app = app
        self.timeout = timeout
        self.limit = limit
        self.metrics = metrics

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        deadline = time.monotonic() + self.timeout
        environ["wsgi.input"] = _BoundedInput(environ["wsgi.input"], deadline, self.limit, self.metrics)
        return self.app(environ, start_response)
