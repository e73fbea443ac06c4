"""Request bodies are read within a deadline and a size bound, whatever their framing.

In-process against the WSGI middleware (a stream that stalls), and end to end
against a real master (a socket that never sends its body, chunked bodies).
"""

from __future__ import annotations

import socket
from typing import Any

import gevent
import pytest
import requests

from gusher.core.metrics import Metrics
from gusher.errors import PayloadTooLarge, RequestTimeout
from gusher.limits import BoundedBodies
from tests.support import GunicornProcess


class _Stalling:
    """A body stream whose second read never returns."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 1:
            gevent.sleep(60)
        return b"x" * 10


def _read_all(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    while environ["wsgi.input"].read(10):
        pass
    return [b""]


def test_a_stalled_body_is_cut_at_the_deadline_and_counted() -> None:
    """Issue 17 #2: the read past the deadline raises RequestTimeout (408); slow_requests counts it."""
    metrics = Metrics()
    app = BoundedBodies(_read_all, timeout=0.05, limit=1000, metrics=metrics)
    with pytest.raises(RequestTimeout):
        app({"wsgi.input": _Stalling()}, lambda *a: None)
    assert metrics.slow_requests == 1


def test_a_body_past_the_bound_is_refused_however_it_is_framed() -> None:
    """Issue 17 #7: the bound counts bytes as they are read, with or without Content-Length."""

    class Endless:
        def read(self, size: int = -1) -> bytes:
            return b"x" * 100

    app = BoundedBodies(_read_all, timeout=5, limit=1000, metrics=Metrics())
    with pytest.raises(PayloadTooLarge):
        app({"wsgi.input": Endless()}, lambda *a: None)


@pytest.fixture(scope="module")
def quick_master(redis_server) -> Any:
    process = GunicornProcess("master", redis_server.addr, workers=1, request_timeout=1).start()
    yield process
    process.stop()


def _raw(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send `request` as it is; return all the server answers until it closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer
    finally:
        sock.close()


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "application/json"])
def test_a_body_that_never_arrives_gets_408_and_the_connection_closed(
    quick_master, app_key, content_type
) -> None:
    """Issue 17 #2: `Content-Length: 5` and no body is answered 408 (JSON) and closed, not held
    forever; pushes from others go through meanwhile."""
    request = (
        f"POST /api/push/{app_key}/a/e HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        "Content-Length: 5\r\n\r\n"
    ).encode()
    stalled = [socket.create_connection(("127.0.0.1", quick_master.port)) for _ in range(60)]
    try:
        for sock in stalled:
            sock.sendall(request)
        ok = requests.post(f"{quick_master.url}/api/push/{app_key}/a/e", params={"data": "x"}, timeout=5)
        assert ok.status_code == 200
        answer = _raw(quick_master.port, request)  # returns once the server closes
        assert answer.startswith(b"HTTP/1.1 408") and b'"error"' in answer
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize("size", [1_050_000, 10_000_000])
def test_a_chunked_body_over_the_bound_is_413(quick_master, app_key, size: int) -> None:
    """Issue 17 #7: a chunked JSON push over GUSHER_MAX_PUSH_BYTES is 413, as with Content-Length."""
    body = b'{"data": "' + b"x" * (size - 12) + b'"}'

    def chunks():
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    response = requests.post(
        f"{quick_master.url}/api/push/{app_key}/a/e",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413 and "error" in response.json()
