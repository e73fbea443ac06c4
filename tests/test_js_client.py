"""The JavaScript client (clients/js/): served by both roles, typed, and what it tells the application.

The losing-nothing proofs (a slave SIGKILLed under pushes, in Chromium and in Node) are in
tests/test_nothing_lost.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import redis as redis_lib
import requests

from tests.browser import needs_chromium
from tests.support import ROOT, GunicornProcess, Webhook, allow, new_app_key, push, wait_until

CLIENT = ROOT / "clients" / "js"
NPX = shutil.which("npx")


@pytest.mark.parametrize("role", ["slave", "master"])
def test_both_roles_serve_the_client_module_to_any_origin(request, role: str) -> None:
    server: GunicornProcess = request.getfixturevalue(role)
    response = requests.get(f"{server.url}/gusher.js", timeout=5)
    assert response.status_code == 200
    assert response.content == (CLIENT / "gusher.js").read_bytes()
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.skipif(NPX is None and not os.environ.get("GUSHER_CI"), reason="node is not installed")
def test_the_types_compile_against_the_readme_examples() -> None:
    """`npm run check`: types-check.ts (the README's examples) against gusher.d.ts, strict."""
    if not (CLIENT / "node_modules" / "typescript").exists():
        assert not os.environ.get("GUSHER_CI"), "`make test` runs `npm ci` in clients/js"
        pytest.skip("clients/js has no node_modules (`make test` installs them when npm is there)")
    run = subprocess.run(
        [NPX or "npx", "--no-install", "tsc", "-p", "tsconfig.json"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_package_is_ready_to_publish() -> None:
    import json

    package = json.loads((CLIENT / "package.json").read_text())
    assert package["type"] == "module" and package["types"] == "gusher.d.ts"
    assert set(package["files"]) == {"gusher.js", "gusher.d.ts", "README.md"}
    assert "dependencies" not in package, "no runtime dependency"
    for name in package["files"]:
        assert (CLIENT / name).exists()


@needs_chromium
def test_a_resume_that_cannot_be_whole_tells_the_application(
    browser, master, slave, redis_client: redis_lib.Redis, webhook: Webhook
) -> None:
    """Away while more was pushed than the app keeps: `unrecovered` fires, then live messages flow."""
    app_key = new_app_key("js")
    redis_client.hset(app_key, mapping={"url": webhook.url, "history_size": "3", "history_ttl": "600"})
    page = browser.new_page()
    page.goto(f"{slave.url}/gusher.js")
    page.evaluate(
        """async ([app, auth]) => {
            const { Gusher } = await import("/gusher.js");
            window.received = []; window.events = []; window.states = [];
            window.client = new Gusher(location.origin, { app, auth, minReconnectDelay: 100 });
            client.on("state", ({ current }) => window.states.push(current));
            const sub = client.subscribe("c");
            sub.on("message", (m) => window.received.push(m.offset));
            sub.on("subscribed", (r) => window.events.push(["subscribed", r.recovered ?? null]));
            sub.on("unrecovered", (u) => window.events.push(["unrecovered", u.offset, u.now.offset]));
            await new Promise((resolve) => sub.on("subscribed", resolve));
        }""",
        [app_key, allow("u", "c")],
    )
    for n in range(2):
        push(master.url, app_key, "c", "e", str(n))
    wait_until(lambda: page.evaluate("window.received.length") == 2, 10)
    page.evaluate("client.close()")
    for n in range(10):  # history keeps 3: 3..12 missed, only 10..12 kept
        push(master.url, app_key, "c", "e", str(n))
    page.evaluate("client.connect()")
    wait_until(lambda: ["unrecovered", 2, 12] in page.evaluate("window.events"), 10)
    assert ["subscribed", False] in page.evaluate("window.events")
    push(master.url, app_key, "c", "e", "live")
    wait_until(lambda: page.evaluate("window.received").count(13) == 1, 10)
    assert page.evaluate("window.received") == [1, 2, 13]
    # (listening began after the constructor had started connecting)
    assert page.evaluate("window.states") == ["connected", "closed", "connecting", "connected"]
    page.close()


class FreezableProxy:
    """A TCP proxy to a slave that can go silent without closing anything: a dead peer's look."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.frozen = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source, sink) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            while self.frozen.is_set():  # hold everything: neither side hears a thing
                time.sleep(0.05)
            try:
                sink.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.server.close()


@needs_chromium
def test_a_dead_connection_is_noticed_by_ping_and_replaced(browser, master, slave, app_key) -> None:
    """The network goes silent (no close, no RST): gusher.ping gets no pong, the client gives the
    connection up, reconnects and resubscribes, and receives again."""
    proxy = FreezableProxy(slave.port)
    try:
        page = browser.new_page()
        page.goto(f"{slave.url}/gusher.js")
        page.evaluate(
            """async ([url, app, auth]) => {
                const { Gusher } = await import("/gusher.js");
                window.received = []; window.states = [];
                window.client = new Gusher(url, {
                    app, auth, pingInterval: 400, pingTimeout: 400, minReconnectDelay: 100,
                });
                client.on("state", ({ current }) => window.states.push(current));
                const sub = client.subscribe("c");
                sub.on("message", (m) => window.received.push(m.data));
                await new Promise((resolve) => sub.on("subscribed", resolve));
            }""",
            [f"ws://127.0.0.1:{proxy.port}", app_key, allow("u", "c")],
        )
        proxy.frozen.set()
        wait_until(lambda: "disconnected" in page.evaluate("window.states"), 10)
        proxy.frozen.clear()
        wait_until(
            lambda: page.evaluate("window.states").count("connected") >= 1 and proxy.connections >= 2, 10
        )
        wait_until(lambda: page.evaluate("client.state") == "connected", 10)
        time.sleep(0.3)  # the resubscribe's reply
        push(master.url, app_key, "c", "e", "after")
        wait_until(lambda: "after" in page.evaluate("window.received"), 10)
        page.close()
    finally:
        proxy.close()
