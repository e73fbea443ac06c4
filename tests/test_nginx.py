"""gusher behind a real nginx (Debian's), with the repository's deploy/nginx.conf."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import requests
import websocket

from tests.nginx import Nginx, needs_nginx
from tests.support import Client, GunicornProcess, allow, push, wait_until

pytestmark = needs_nginx


@pytest.fixture
def deployment(redis_server, master) -> Iterator[tuple[Nginx, list[GunicornProcess]]]:
    slaves = [
        GunicornProcess("slave", redis_server.addr, workers=1, ping_interval=1).start() for _ in range(2)
    ]
    proxy = Nginx([s.port for s in slaves], master.port, read_timeout=3)
    yield proxy, slaves
    proxy.stop()
    for slave in slaves:
        slave.stop()


def test_websockets_and_pushes_through_nginx(deployment, master, app_key) -> None:
    """Connect, subscribe and receive through nginx; the API is proxied too."""
    proxy, _ = deployment
    client = Client(f"ws://127.0.0.1:{proxy.port}", app_key, allow("u", "c"))
    assert client.subscribe("c")["event"] == "gusher.subscribe_succeeded"
    response = requests.post(
        f"http://127.0.0.1:{proxy.port}/api/push/{app_key}/c/e", params={"data": "via-nginx"}, timeout=5
    )
    assert response.status_code == 200
    assert client.recv_json()["data"] == "via-nginx"
    client.close()


def test_the_console_through_a_proxy_on_the_same_host_is_not_a_loopback_visit(deployment, master) -> None:
    """Without an admin token the console answers direct loopback visits only: nginx on the same
    host connects from 127.0.0.1, and its X-Forwarded-For makes the visit a remote one (403)."""
    proxy, _ = deployment
    assert requests.get(f"{master.url}/ui/api/cluster", timeout=5).status_code == 200
    response = requests.get(f"http://127.0.0.1:{proxy.port}/ui/api/cluster", timeout=5)
    assert response.status_code == 403 and "loopback only" in response.json()["error"]


def test_idle_connections_outlive_nginx_read_timeout(deployment, master, app_key) -> None:
    """nginx closes upstream connections silent for 3 s; gusher's 1 s pings keep an idle client alive."""
    proxy, _ = deployment
    client = Client(f"ws://127.0.0.1:{proxy.port}", app_key, allow("u", "c"))
    client.subscribe("c")
    client.ws.settimeout(8)
    deadline = time.monotonic() + 7  # twice nginx's read timeout, without sending anything ourselves
    while time.monotonic() < deadline:
        client.ws.recv_data_frame(True)  # server pings; websocket-client answers them
    push(master.url, app_key, "c", "e", "still-here")
    assert client.recv_json(timeout=5)["data"] == "still-here"
    client.close()


def test_stopped_slave_clients_reconnect_to_the_other(deployment, master, app_key) -> None:
    """Stopping one slave closes its clients with 1001; reconnecting through nginx lands on the other."""
    proxy, slaves = deployment
    url = f"ws://127.0.0.1:{proxy.port}"
    group = [Client(url, app_key, allow("u", "c")) for _ in range(6)]
    for client in group:
        client.subscribe("c")
    slaves[0].stop(signal.SIGTERM)
    moved = 0
    for index, client in enumerate(group):
        try:
            code, reason = client.recv_close(timeout=0.5)
        except websocket.WebSocketTimeoutException:
            continue  # on the surviving slave: stays connected
        assert code == 1001 and reason
        moved += 1
        group[index] = wait_until(lambda: _try_connect(url, app_key), 10)
        assert group[index].subscribe("c")["event"] == "gusher.subscribe_succeeded"
    assert moved > 0  # least_conn spread the six clients over both slaves
    push(master.url, app_key, "c", "e", "after-failover")
    for client in group:
        assert client.recv_json(timeout=5)["data"] == "after-failover"
        client.close()


def _try_connect(url: str, app_key: str) -> Client | None:
    try:
        return Client(url, app_key, allow("u", "c"))
    except (websocket.WebSocketException, OSError):
        return None


def test_pusher_clients_and_sdks_through_nginx(deployment, master, redis_client) -> None:
    """The Pusher WebSocket route and Pusher's HTTP API are proxied too (deploy/nginx.conf)."""
    import json

    import pusher

    from tests.pusher_support import PusherSocket, pusher_app

    proxy, _ = deployment
    key = pusher_app(redis_client)
    client = PusherSocket(proxy, key)
    assert client.subscribe("news")["event"] == "pusher_internal:subscription_succeeded"
    sdk = pusher.Pusher(
        app_id="4242", key=key, secret="app-secret", host="127.0.0.1", port=proxy.port, ssl=False
    )
    sdk.trigger("news", "created", {"via": "nginx"})
    assert json.loads(client.recv()["data"]) == {"via": "nginx"}
    assert sdk.terminate_user_connections("nobody") == {}
    client.close()
