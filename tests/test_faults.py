"""Faults injected into real processes: Redis restarts, dead workers, slow and dead clients, floods."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
import redis as redis_lib
import requests
import websocket

from gusher import __version__
from gusher.embedded import EmbeddedRedis, free_port
from tests.support import ROOT, Client, GunicornProcess, Webhook, allow, new_app_key, push, wait_until


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, on a fixed port, so it can be stopped and started again."""
    server = EmbeddedRedis().start()
    yield server
    server.stop()


def make_app(server: EmbeddedRedis, webhook: Webhook) -> str:
    key = new_app_key("fault")
    redis_lib.Redis(host=server.host, port=server.port).hset(key, "url", webhook.url)
    return key


def stat_total(redis_addr: str, slave: GunicornProcess, name: str) -> int:
    """Sum of one heartbeat counter over the workers of `slave`."""
    host, port = redis_addr.split(":")
    client = redis_lib.Redis(host=host, port=int(port))
    for key in client.scan_iter("gusher:slave:*"):
        reports = [orjson.loads(raw) for raw in client.hgetall(key).values()]
        if reports and reports[0]["local_listen"] == f"127.0.0.1:{slave.port}":
            return sum(r.get(name, 0) for r in reports)
    return 0


def test_redis_restart_is_survived(own_redis: EmbeddedRedis, webhook: Webhook) -> None:
    """Redis down: pushes get 503; back up: the same clients hear pushes again within 2 s."""
    app_key = make_app(own_redis, webhook)
    master = GunicornProcess("master", own_redis.addr, workers=1).start()
    slave = GunicornProcess("slave", own_redis.addr, workers=2).start()
    try:
        group = [Client(slave.ws_url, app_key, allow("u", "c")) for _ in range(6)]
        for client in group:
            assert client.subscribe("c")["event"] == "gusher.subscribe_succeeded"
        own_redis.stop()
        refused = push(master.url, app_key, "c", "e", "lost")
        assert refused.status_code == 503 and refused.json()["error"]
        own_redis.start()
        back = time.monotonic()
        publisher = redis_lib.Redis(host=own_redis.host, port=own_redis.port)
        publisher.hset(app_key, "url", webhook.url)  # this test server keeps nothing across restarts
        message = json.dumps({"channel": "c", "event": "e", "data": "again"})
        first_heard = {}
        while len(first_heard) < len(group) and time.monotonic() - back < 5:
            publisher.publish(f"{app_key}@c", message)
            for index, client in enumerate(group):
                if index in first_heard:
                    continue
                try:
                    if client.recv_json(timeout=0.05)["data"] == "again":
                        first_heard[index] = time.monotonic() - back
                except websocket.WebSocketTimeoutException:
                    pass
        assert len(first_heard) == len(group), "some clients never heard pushes again"
        assert max(first_heard.values()) < 2.0, first_heard
        wait_until(lambda: push(master.url, app_key, "c", "e", "ok").status_code == 200, 5)
    finally:
        slave.stop()
        master.stop()


def test_roles_start_without_redis_and_become_ready(webhook: Webhook) -> None:
    """Redis unreachable at start: both roles run, answer 503 on /healthz, then 200 once it appears."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    master = GunicornProcess("master", addr, workers=1).start(wait_ready=False)
    slave = GunicornProcess("slave", addr, workers=1).start(wait_ready=False)
    server = EmbeddedRedis(port=port)
    try:
        assert requests.get(master.url + "/healthz", timeout=10).status_code == 503
        assert requests.get(slave.url + "/healthz", timeout=10).status_code == 503
        server.start()
        master.wait_ready(10)
        slave.wait_ready(10)
    finally:
        slave.stop()
        master.stop()
        server.stop()


def test_killed_worker_leaves_the_other_worker_serving(redis_server, master, app_key) -> None:
    """SIGKILL one worker: its clients are cut, the other worker's clients keep receiving."""
    slave = GunicornProcess("slave", redis_server.addr, workers=2).start()
    try:
        group = [Client(slave.ws_url, app_key, allow("u", "k")) for _ in range(16)]
        for client in group:
            client.subscribe("k")
        os.kill(slave.worker_pids()[0], signal.SIGKILL)
        time.sleep(0.3)
        push(master.url, app_key, "k", "e", "after-kill")
        alive = dead = 0
        for client in group:
            try:
                assert client.recv_json(timeout=3)["data"] == "after-kill"
                alive += 1
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                dead += 1
        assert alive > 0 and alive + dead == len(group)
        # gunicorn replaced the worker: new clients are served again
        wait_until(lambda: len(slave.worker_pids()) == 2, 10)
        slave.wait_ready()
    finally:
        slave.stop()


def test_slow_consumer_is_cut_off_without_slowing_others(redis_server, webhook) -> None:
    """A client that stops reading is closed past the output bound; others get everything."""
    app_key = make_app(redis_server, webhook)
    slave = GunicornProcess("slave", redis_server.addr, workers=1, max_pending_bytes=262144).start()
    try:
        stuck = Client(
            slave.ws_url, app_key, allow("u", "flood"), sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
        )
        stuck.subscribe("flood")
        reader = Client(slave.ws_url, app_key, allow("u", "flood"))
        reader.subscribe("flood")
        publisher = redis_lib.Redis(host=redis_server.host, port=redis_server.port)
        payload = json.dumps({"channel": "flood", "event": "big", "data": "x" * 65000})
        received: list[dict] = []

        def listen() -> None:
            while (message := reader.recv_json(10))["event"] != "done":
                received.append(message)

        listener = threading.Thread(target=listen)
        listener.start()
        started = time.monotonic()
        # How much the kernel takes for the stuck client before output is left pending varies
        # from run to run (4 to 20 MB on loopback here; a fixed 13 MB was not always enough):
        # push until the slave has cut it off, at most 800 pushes (52 MB).
        published = 0
        for _ in range(16):
            for _ in range(50):
                publisher.publish(f"{app_key}@flood", payload)
                time.sleep(0.005)  # ~13 MB/s: a reading client keeps up, the stuck one cannot
            published += 50
            if stat_total(redis_server.addr, slave, "slow_consumer_drops") >= 1:
                break
        publisher.publish(f"{app_key}@flood", json.dumps({"channel": "flood", "event": "done", "data": ""}))
        listener.join(30)
        assert len(received) == published
        assert all(m["event"] == "big" for m in received)
        assert time.monotonic() - started < 20
        wait_until(lambda: stat_total(redis_server.addr, slave, "slow_consumer_drops") >= 1, 5)
        # Cut off, it may still read what was being written and the close frame; a client that
        # never reads again is released after the close timeout (5 s).
        wait_until(lambda: stat_total(redis_server.addr, slave, "connections") == 1, 10)
    finally:
        slave.stop()


def _raw_handshake(port: int, app_key: str, auth: str) -> socket.socket:
    """A client that upgrades and then never reads or answers anything (a dead peer)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"GET /ws/{app_key}?auth={auth} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    return sock


def test_dead_peers_are_dropped_and_live_ones_kept(redis_server, webhook) -> None:
    """With pings every 1 s and a 1 s timeout, a silent peer is closed; a ponging client stays."""
    app_key = make_app(redis_server, webhook)
    slave = GunicornProcess("slave", redis_server.addr, workers=1, ping_interval=1, ping_timeout=1).start()
    try:
        silent = _raw_handshake(slave.port, app_key, allow("u", "c"))
        live = Client(slave.ws_url, app_key, allow("u", "c"))
        live.ws.settimeout(3)
        pings = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # websocket-client answers each Ping with a Pong
            opcode, _ = live.ws.recv_data_frame(True)
            pings += opcode == websocket.ABNF.OPCODE_PING
        assert pings >= 2
        assert live.subscribe("c")["event"] == "gusher.subscribe_succeeded"
        silent.settimeout(2)
        received = b""
        while True:
            chunk = silent.recv(4096)
            if not chunk:
                break
            received += chunk
        assert received.startswith(b"\x89\x00")  # the server's Ping, never answered
        wait_until(lambda: stat_total(redis_server.addr, slave, "ping_timeouts") >= 1, 5)
        wait_until(lambda: stat_total(redis_server.addr, slave, "connections") == 1, 5)
    finally:
        slave.stop()


def test_command_flood_is_cut_off(slave, app_key, clients) -> None:
    """A client sending commands faster than the rate limit is closed with 1008; its neighbours are fine."""
    neighbour = Client(slave.ws_url, app_key, allow("u", "c"))
    clients.append(neighbour)
    flooder = Client(slave.ws_url, app_key, allow("u", "c"))
    clients.append(flooder)
    command = json.dumps({"event": "gusher.ping", "data": {"id": 1}})
    try:
        for _ in range(1000):
            flooder.ws.send(command)
    except (websocket.WebSocketConnectionClosedException, OSError):
        pass
    while True:
        frame = flooder.ws.recv_frame()
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            break
    assert int.from_bytes(frame.data[:2], "big") == 1008
    assert b"rate limit" in frame.data
    assert neighbour.subscribe("c")["event"] == "gusher.subscribe_succeeded"


def test_full_worker_refuses_with_503(redis_server, webhook) -> None:
    """Over GUSHER_MAX_CONNECTIONS_PER_WORKER, a new client gets 503 before any webhook call."""
    app_key = make_app(redis_server, webhook)
    slave = GunicornProcess("slave", redis_server.addr, workers=1, max_connections_per_worker=2).start()
    try:
        held = [Client(slave.ws_url, app_key, allow("u", "c")) for _ in range(2)]
        calls = len(webhook.requests)
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            Client(slave.ws_url, app_key, allow("u", "c"))
        assert refused.value.status_code == 503
        assert len(webhook.requests) == calls
        held[0].close()
        wait_until(lambda: _can_connect(slave, app_key), 5)
    finally:
        slave.stop()


def _can_connect(slave: GunicornProcess, app_key: str) -> bool:
    try:
        Client(slave.ws_url, app_key, allow("u", "c")).close()
        return True
    except websocket.WebSocketBadStatusException:
        return False


def _handshake_status(port: int, app_key: str, auth: str) -> int:
    """The HTTP status a raw WebSocket handshake gets; the socket stays open (held) on 101."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(
        f"GET /ws/{app_key}?auth={auth} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    status = int(sock.recv(4096).split(b" ", 2)[1])
    _held.append(sock)
    return status


_held: list[socket.socket] = []


def test_concurrent_handshakes_never_exceed_the_connection_limit(redis_server) -> None:
    """Issue 17 #3: a slot is reserved per handshake in flight, so a slow webhook cannot let a storm
    past GUSHER_MAX_CONNECTIONS_PER_WORKER; slots of finished handshakes are free again."""
    slow = Webhook(delay=0.5)
    app_key = make_app(redis_server, slow)
    slave = GunicornProcess("slave", redis_server.addr, workers=1, max_connections_per_worker=5).start()
    try:
        statuses: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: statuses.append(_handshake_status(slave.port, app_key, allow("u", "c")))
            )
            for _ in range(30)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert sorted(statuses) == [101] * 5 + [503] * 25
        assert requests.get(slave.url + "/healthz", timeout=5).json()["connections"] == 5
        for sock in _held:
            sock.close()
        _held.clear()
        wait_until(lambda: requests.get(slave.url + "/healthz", timeout=5).json()["connections"] == 0, 10)
        again = [_handshake_status(slave.port, app_key, allow("u", "c")) for _ in range(6)]
        assert again == [101] * 5 + [503]
    finally:
        for sock in _held:
            sock.close()
        _held.clear()
        slave.stop()
        slow.shutdown()


def test_log_lines_are_timestamped_and_repeats_held_back() -> None:
    """Issue 17 #13: thirty 503s while Redis is down write one timestamped warning, not thirty bare
    lines; the start-up log says where the role listens and which Redis it uses."""
    addr = f"127.0.0.1:{free_port()}"  # nobody listens there
    master = GunicornProcess("master", addr, workers=1).start(wait_ready=False)
    try:
        for _ in range(30):
            response = requests.post(f"{master.url}/api/push/app/c/e", params={"data": "x"}, timeout=10)
            assert response.status_code == 503
        log = master.log()
        warnings = [line for line in log.splitlines() if "BackendUnavailable" in line]
        assert len(warnings) == 1
        assert re.match(
            r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[WARNING\] gusher\.app: ", warnings[0]
        )
        assert (
            f"gusher {__version__} master listening on http://127.0.0.1:{master.port} with 1 workers; "
            f"Redis redis://{addr}/0" in log
        )
    finally:
        master.stop()
    # Issue 15: every line, gunicorn's included, has time, pid, level and logger.
    line = re.compile(r"\[[^]]+\] \[\d+\] \[[A-Z]+\] [\w.]+: ")
    assert all(line.match(text) for text in master.log().splitlines() if text.strip()), master.log()


def test_json_logs_have_one_object_per_line() -> None:
    """Issue 15: GUSHER_LOG_FORMAT=json writes every line, gunicorn's too, as one JSON object."""
    master = GunicornProcess("master", f"127.0.0.1:{free_port()}", workers=1, log_format="json")
    master.start(wait_ready=False)
    requests.post(f"{master.url}/api/push/app/c/e", params={"data": "x"}, timeout=10)
    master.stop()
    lines = [json.loads(text) for text in master.log().splitlines() if text.strip()]
    assert {"gunicorn.error", "gusher.app"} <= {line["logger"] for line in lines}
    assert all({"time", "level", "logger", "pid", "message"} <= set(line) for line in lines)


def _exits_refusing(process: GunicornProcess, timeout: float = 20) -> str:
    """Start a server that should refuse to run; return its log once it has exited non-zero."""
    log = open(process.log_path, "ab")
    child = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", f"wsgi_{process.role}:app"],
        cwd=ROOT,
        env=process.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    assert child.wait(timeout) != 0
    return process.log()


def test_a_taken_port_is_refused_with_a_clear_error(redis_server) -> None:
    """Issue 15: a port something listens on already stops the server at once, naming the port
    (the workers used to crash-loop on `Connection in use` forever)."""
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        log = _exits_refusing(GunicornProcess("slave", redis_server.addr, workers=1, port=port))
        assert f"127.0.0.1:{port} is already in use" in log and "Traceback" not in log
    finally:
        holder.close()


def test_a_second_server_never_shares_a_port(redis_server, webhook) -> None:
    """Issue 15: with reuse_port, a second instance used to bind the same port silently and take
    some of the clients; it is refused, and the first one keeps every request."""
    first = GunicornProcess("master", redis_server.addr, workers=1).start()
    try:
        log = _exits_refusing(GunicornProcess("master", "127.0.0.1:1", workers=1, port=first.port))
        assert f"127.0.0.1:{first.port} is already in use" in log
        statuses = {requests.get(first.url + "/healthz", timeout=5).status_code for _ in range(20)}
        assert statuses == {200}  # the second one (pointed at a dead Redis) would answer 503
    finally:
        first.stop()
