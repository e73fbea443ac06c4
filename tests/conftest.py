"""Fixtures: a real Redis-compatible server on a free port, real gunicorn roles, a real webhook.

Session-wide processes are shared by the tests that only need a working
cluster; every such test makes its own app key, so tests never see each
other's messages. Tests that break things (kill a worker, stop Redis) start
their own processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib

from gusher.embedded import EmbeddedRedis
from tests import browser as browsers
from tests.inprocess import Worker
from tests.support import Client, GunicornProcess, Webhook, new_app_key


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_client(redis_server: EmbeddedRedis) -> redis_lib.Redis:
    return redis_lib.Redis(host=redis_server.host, port=redis_server.port)


@pytest.fixture(scope="session")
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.shutdown()


def assert_no_unhandled_errors(process: GunicornProcess) -> None:
    """Bad input must never surface as an unhandled exception in a server's log."""
    log = process.log()
    assert "Traceback" not in log, f"{process.role} logged an unhandled exception:\n{log[-4000:]}"


@pytest.fixture(scope="session")
def master(redis_server: EmbeddedRedis) -> Iterator[GunicornProcess]:
    process = GunicornProcess("master", redis_server.addr).start()
    yield process
    process.stop()
    assert_no_unhandled_errors(process)


@pytest.fixture(scope="session")
def slave(redis_server: EmbeddedRedis) -> Iterator[GunicornProcess]:
    process = GunicornProcess("slave", redis_server.addr, workers=2, webhook_timeout=1).start()
    yield process
    process.stop()
    assert_no_unhandled_errors(process)


@pytest.fixture
def app_key(redis_client: redis_lib.Redis, webhook: Webhook) -> str:
    """A fresh app whose webhook is the test webhook."""
    key = new_app_key()
    redis_client.hset(key, "url", webhook.url)
    return key


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    """Collects clients a test opens and closes them afterwards."""
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


@pytest.fixture
def worker() -> Iterator[Worker]:
    """An in-process slave worker: a real hub, a fake broker that confirms at once, no Redis."""
    made = Worker()
    yield made
    made.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium (tests/browser.py), one for the whole run."""
    yield from browsers.launch()
