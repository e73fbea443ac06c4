"""The nchan peer: its nginx.conf, publisher requests and answers, adapter — and one live push."""

from __future__ import annotations

import multiprocessing
import re
import socket
import time

import pytest

from bench import adapters, loadgen, wsframes
from bench.baseline import data_string
from bench.peers import nchan

ANSWER = (
    b"HTTP/1.1 201 Created\r\nServer: nginx/1.22.1\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 21\r\nConnection: keep-alive\r\n\r\nqueued messages: 1\r\n!"
)
CHUNKED = (
    b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\nT: 1\r\n\r\n"
)
EMPTY = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


def test_config_is_self_contained_and_within_the_descriptor_limit() -> None:
    """Foreground, its own paths, the module loaded, workers and descriptors as asked, both locations."""
    text = nchan.config("/tmp/x/", "/m/ngx_nchan_module.so", 4321, 4, 20_000, user="root")
    assert text.startswith("load_module /m/ngx_nchan_module.so;")
    for line in (
        "daemon off;",
        "worker_processes 4;",
        "worker_rlimit_nofile 20000;",
        "worker_connections 19500;",
        "pid /tmp/x/nginx.pid;",
        "error_log /tmp/x/error.log warn;",
        "client_body_temp_path /tmp/x/client_body;",
        "user root;",
        "listen 127.0.0.1:4321 reuseport backlog=4096;",
        "nchan_subscriber websocket;",
        "nchan_publisher http;",
        'nchan_channel_id_split_delimiter ",";',
    ):
        assert line in text, line
    assert "redis" not in text  # the memory store
    assert re.search(r"location ~ \^/sub/\(\.\+\)\$ \{\s+nchan_subscriber websocket;", text)
    assert re.search(r"location ~ \^/pub/\(\.\+\)\$ \{\s+nchan_publisher http;", text)
    assert "user " not in nchan.config("/tmp/x", "/m.so", 1, 2, 20_000)
    # 50,000 clients on 4 workers (systems.workers_for): 12,500 each, under a worker's connections.
    assert 50_000 / 4 < 19_500


def test_publish_request_posts_the_data_as_the_body() -> None:
    body = data_string(7, 123, 20).encode()
    request = nchan.publish_request("u1", body)
    head, _, rest = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /pub/u1 HTTP/1.1\r\n")
    assert b"Content-Length: 20" in head.split(b"\r\n")
    assert rest == body == b"B|7|123|" + b"x" * 12


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_answers_are_counted_in_any_split(step: int) -> None:
    """Content-Length, chunked (with a trailer) and bodiless answers, fed a few bytes at a time."""
    stream = ANSWER + CHUNKED + EMPTY + ANSWER
    counter = nchan.ResponseCounter()
    counts = [counter.feed(stream[i : i + step]) for i in range(0, len(stream), step)]
    assert counter.statuses == [201, 202, 204, 201]
    assert counts == sorted(counts) and counter.buf == b""
    with pytest.raises(ValueError):
        nchan.ResponseCounter().feed(b"garbage\r\n\r\n")


def test_adapter_names_the_channels_in_the_url_and_needs_no_acks() -> None:
    adapter = adapters.make_adapter({"kind": "nchan"})
    assert adapter.path(3, ["bench"]) == "/sub/bench"
    assert adapter.path(3, ["u3", "s3"]) == "/sub/u3,s3"  # multiplexed: split on "," by the config
    assert adapter.opening(["bench"]) == []
    assert adapter.on_text(b"anything", ["bench"]) == (adapters.OTHER, [])
    assert not adapters.needs_acks(adapter)


def test_the_generator_reads_the_marker_of_a_raw_body_frame() -> None:
    """nchan sends the POSTed body as the frame: seq and latency come from its start."""
    parent, child = multiprocessing.Pipe()
    gen = loadgen.LoadGen(child)
    try:
        gen.adapter = adapters.NchanAdapter()
        conn = loadgen.Conn(0, ["bench"])
        conn.state = loadgen.READY
        frame = wsframes.FrameParser().feed(b"\x81\x14" + data_string(42, 1_000, 20).encode())
        gen._on_frames(conn, frame, 5_000)
        assert list(gen.seqs) == [42] and list(gen.lats) == [4_000]
    finally:
        parent.close()
        child.close()


@pytest.mark.skipif(not nchan.installed(), reason="nginx / libnginx-mod-nchan not installed")
def test_a_push_and_a_pipelined_publish_reach_a_websocket_subscriber() -> None:
    system = nchan.NchanSystem(None, 2).start()
    try:
        assert len(system.worker_pids()) == 2
        sock = socket.create_connection(("127.0.0.1", system.port), timeout=5)
        sock.sendall(wsframes.handshake_request("127.0.0.1", system.port, "/sub/a,b"))
        buf = b""
        while not (used := wsframes.parse_handshake(buf)):
            chunk = sock.recv(4096)
            assert chunk, "nchan closed the subscriber"
            buf += chunk
        parser = wsframes.FrameParser()
        frames = parser.feed(buf[used:])
        time.sleep(0.2)  # the subscription reaches the channels' owner workers
        system.push("a", 1, 30)
        system.publish(["a", "b", "nobody"], 10, 2, 30, time.time_ns())
        while len(frames) < 5:
            chunk = sock.recv(65536)
            assert chunk, "nchan closed the subscriber"
            frames += parser.feed(chunk)
        seqs = sorted(int(payload.split(b"|")[1]) for _, payload in frames)
        assert seqs == [1, 10, 10, 11, 11] and {op for op, _ in frames} == {wsframes.OP_TEXT}
        sock.close()
    finally:
        system.stop()
    assert not system.server.alive()
