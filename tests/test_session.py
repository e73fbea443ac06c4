"""One client's session, in-process: commands in order, waits that block nobody, its limits.

A real hub with a fake broker subscriber (`tests.inprocess`) and a kernel
socket pair per client; no Redis, no gunicorn.
"""

from __future__ import annotations

from collections.abc import Iterator

import gevent
import pytest

from gusher.config import Settings
from gusher.wire import frames
from tests.inprocess import FakeSubscriber, Worker


@pytest.fixture
def worker() -> Iterator[Worker]:
    made = Worker(subscriber=FakeSubscriber(auto_confirm=False))
    yield made
    made.close()


@pytest.fixture
def make_worker() -> Iterator:
    """Workers with the given settings and a broker that confirms only when told to."""
    made: list[Worker] = []

    def make(**settings: object) -> Worker:
        made.append(Worker(Settings(**settings), FakeSubscriber(auto_confirm=False)))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for worker in made:
        worker.close()


def subscribe(channel: str, request_id: str = "1") -> dict:
    return {"event": "gusher.subscribe", "data": {"id": request_id, "channel": channel}}


def test_replies_keep_the_order_of_commands_while_a_subscribe_waits(worker: Worker) -> None:
    """Ping and a bad message sent behind a waiting subscribe are answered after it, in order."""
    _, peer = worker.connect()
    peer.send(subscribe("news", "a"))
    peer.send({"event": "gusher.ping", "data": {"id": "p"}})
    peer.send(b"not json")
    peer.send(subscribe("sport", "b"))
    assert peer.messages() == []  # everything waits for the broker's confirmation of app@news
    worker.subscriber.confirm("app@news")
    replies = peer.messages()
    assert [(r["event"], r["data"].get("id")) for r in replies] == [
        ("gusher.subscribe_succeeded", "a"),
        ("gusher.pong", "p"),
        ("gusher.error", None),
    ]
    worker.subscriber.confirm("app@sport")
    assert peer.messages()[0]["event"] == "gusher.subscribe_succeeded"


def test_a_waiting_subscribe_holds_back_no_other_client() -> None:
    """With one pool greenlet, a subscribe waiting for the broker lends it: another client's
    subscribe, which must wait too, runs and is answered while the first still waits."""
    worker = Worker(Settings(command_concurrency=1), FakeSubscriber(auto_confirm=False))
    try:
        _, waiting = worker.connect(user="w")
        _, other = worker.connect(user="o")
        waiting.send(subscribe("news"))
        gevent.sleep(0.02)
        other.send(subscribe("sport"))
        gevent.sleep(0.02)
        worker.subscriber.confirm("app@sport")
        assert other.messages()[0]["event"] == "gusher.subscribe_succeeded"
        assert waiting.messages() == []
        worker.subscriber.confirm("app@news")
        assert waiting.messages()[0]["event"] == "gusher.subscribe_succeeded"
    finally:
        worker.close()


def test_commands_that_need_no_wait_run_without_a_task(worker: Worker) -> None:
    """Pings, unsubscribes and subscribes to a channel the worker carries already are answered
    in the event loop: no pool greenlet is spawned for them."""
    spawned = []
    real = worker.pool.schedule
    worker.pool.schedule = lambda task: (spawned.append(task), real(task))  # type: ignore[method-assign]
    _, first = worker.connect(user="a")
    _, second = worker.connect(user="b")
    first.send(subscribe("news"))
    gevent.sleep(0.02)
    worker.subscriber.confirm("app@news")
    assert first.messages()[0]["event"] == "gusher.subscribe_succeeded"
    assert len(spawned) == 1  # the first subscribe had to wait for the broker
    second.send(subscribe("news"))
    second.send({"event": "gusher.ping", "data": {"id": 1}})
    second.send({"event": "gusher.unsubscribe", "data": {"id": "1", "channel": "news"}})
    events = [m["event"] for m in second.messages()]
    assert events == ["gusher.subscribe_succeeded", "gusher.pong", "gusher.unsubscribe_succeeded"]
    assert len(spawned) == 1


def test_a_subscribe_the_broker_never_confirms_fails_and_is_released() -> None:
    """After `subscribe_timeout` the client hears why, and the worker gives the key up."""
    worker = Worker(Settings(subscribe_timeout=0.1), FakeSubscriber(auto_confirm=False))
    try:
        _, peer = worker.connect()
        peer.send(subscribe("news"))
        (reply,) = peer.messages(wait=0.3)
        assert reply["event"] == "gusher.subscribe_error"
        assert reply["data"]["reason"] == "redis unavailable, try again"
        assert "app@news" not in worker.subscriber.wanted
    finally:
        worker.close()


def test_a_client_gone_while_its_subscribe_waits_is_never_registered(worker: Worker) -> None:
    """A connection closed during the wait is not subscribed afterwards, and the key is released."""
    session, peer = worker.connect()
    peer.send(subscribe("news"))
    gevent.sleep(0.02)
    session.conn.release()
    worker.subscriber.confirm("app@news")
    gevent.sleep(0.02)
    assert worker.hub.subscriber_users("app@news") == (0, [])
    assert "app@news" not in worker.subscriber.wanted


@pytest.mark.parametrize(
    ("commands", "reason"),
    [
        ([subscribe("secret")], "channel not allowed"),
        ([subscribe("news"), subscribe("news")], "already subscribed"),
        ([{"event": "gusher.unsubscribe", "data": {"id": "1", "channel": "news"}}], "not subscribed"),
    ],
)
def test_refusals_say_why(commands: list, reason: str) -> None:
    """Each refusal is the protocol's error reply with its reason; the connection stays."""
    worker = Worker()
    try:
        session, peer = worker.connect(channels=("news",))
        for command in commands:
            peer.send(command)
        replies = peer.messages()
        assert replies[-1]["data"]["reason"] == reason
        assert session.is_open
    finally:
        worker.close()


def test_the_subscription_limit_holds() -> None:
    """`max_subscriptions_per_connection` subscribes succeed; the next is refused with the limit."""
    worker = Worker(Settings(max_subscriptions_per_connection=2))
    try:
        _, peer = worker.connect()
        for name in ("a", "b", "c"):
            peer.send(subscribe(name))
        replies = peer.messages()
        assert [r["event"] for r in replies] == ["gusher.subscribe_succeeded"] * 2 + [
            "gusher.subscribe_error"
        ]
        assert replies[-1]["data"]["reason"] == "subscription limit of 2 reached"
    finally:
        worker.close()


def test_a_command_flood_is_closed_with_1008_and_counted() -> None:
    """Over the burst, the client is closed (policy violation) and `rate_limited` counts it."""
    worker = Worker(Settings(max_command_burst=3, max_commands_per_second=0.001))
    try:
        _, peer = worker.connect()
        for i in range(5):
            peer.send({"event": "gusher.ping", "data": {"id": i}})
        got = peer.frames()
        assert [op for op, _ in got] == [frames.OP_TEXT] * 3 + [frames.OP_CLOSE]
        assert got[-1][1][:2] == (1008).to_bytes(2, "big") and b"rate limit" in got[-1][1]
        assert worker.metrics.rate_limited == 1
    finally:
        worker.close()


def test_too_many_queued_commands_close_the_connection(make_worker) -> None:
    """Commands queued behind a waiting subscribe are bounded; past the bound: 1008, nothing else run."""
    worker = make_worker(max_command_burst=20, max_commands_per_second=1e6)  # refills between reads
    _, peer = worker.connect()
    peer.send(subscribe("news"))
    for chunk in range(worker.hub.max_queued_commands // 10 + 2):
        for i in range(10):
            peer.send({"event": "gusher.ping", "data": {"id": chunk * 10 + i}})
        gevent.sleep(0.001)
    got = peer.frames(wait=0.1)
    assert [op for op, _ in got] == [frames.OP_CLOSE] and b"too many commands" in got[0][1]


def test_a_flood_behind_a_waiting_subscribe_closes_after_the_answers(make_worker) -> None:
    """Commands accepted before the rate limit tripped are answered, then the close; later ones never run."""
    worker = make_worker(max_command_burst=3, max_commands_per_second=0.001)
    _, peer = worker.connect()
    peer.send(subscribe("news"))
    for i in range(4):
        peer.send({"event": "gusher.ping", "data": {"id": i}})
    assert peer.frames() == []
    worker.subscriber.confirm("app@news")
    got = peer.frames()
    assert [op for op, _ in got] == [frames.OP_TEXT] * 3 + [frames.OP_CLOSE]
    assert b"rate limit" in got[-1][1] and worker.metrics.rate_limited == 1


def test_binary_messages_get_an_error_event(worker: Worker) -> None:
    """gusher's protocol is JSON text: a binary message is answered with gusher.error."""
    session, peer = worker.connect()
    peer.send(b"\x00\x01", opcode=frames.OP_BINARY)
    (reply,) = peer.messages()
    assert reply["event"] == "gusher.error" and "binary" in reply["data"]["reason"]
    assert session.is_open
