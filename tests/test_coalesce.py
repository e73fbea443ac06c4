"""Pushes in flight share their Redis round trips (gusher.broker.coalesce), against a real Redis."""

from __future__ import annotations

import gevent
import pytest
import redis as redis_lib

from gusher.broker.coalesce import Coalescer


class CountingClient(redis_lib.Redis):
    """A real client that counts the pipelines it makes."""

    pipelines = 0

    def pipeline(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        CountingClient.pipelines += 1
        return super().pipeline(*args, **kwargs)


@pytest.fixture
def client(redis_server) -> CountingClient:
    CountingClient.pipelines = 0
    return CountingClient(host=redis_server.host, port=redis_server.port)


def test_concurrent_calls_share_one_pipeline_and_each_gets_its_reply(client) -> None:
    coalescer = Coalescer(client)
    key = "coalesce:counter"
    client.delete(key)
    calls = [gevent.spawn(coalescer.call, lambda pipe: pipe.incr(key)) for _ in range(50)]
    gevent.joinall(calls, raise_error=True)
    assert sorted(c.value for c in calls) == list(range(1, 51)), "one reply each, in the order handed over"
    assert [c.value for c in calls] == list(range(1, 51))
    assert CountingClient.pipelines == 1


def test_one_failing_command_fails_its_caller_only(client) -> None:
    coalescer = Coalescer(client)
    client.set("coalesce:text", "not a number")
    good = gevent.spawn(coalescer.call, lambda pipe: pipe.incr("coalesce:other"))
    bad = gevent.spawn(coalescer.call, lambda pipe: pipe.incr("coalesce:text"))
    unqueueable = gevent.spawn(coalescer.call, lambda pipe: pipe.no_such_command())
    gevent.joinall([good, bad, unqueueable])
    assert good.successful() and isinstance(good.value, int)
    assert isinstance(bad.exception, redis_lib.ResponseError)
    assert isinstance(unqueueable.exception, AttributeError)


def test_a_lost_connection_fails_every_command_of_its_batch() -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    coalescer = Coalescer(dead)
    calls = [gevent.spawn(coalescer.call, lambda pipe: pipe.publish("c", "x")) for _ in range(3)]
    gevent.joinall(calls)
    assert all(isinstance(c.exception, redis_lib.ConnectionError) for c in calls)
    later = gevent.spawn(coalescer.call, lambda pipe: pipe.publish("c", "x"))  # a new flush
    later.join()
    assert isinstance(later.exception, redis_lib.ConnectionError)


def test_sharing_is_on_only_under_gevents_patching() -> None:
    """pytest's process is not monkey-patched: a call there must not depend on greenlets."""
    from gevent import monkey

    assert Coalescer(redis_lib.Redis()).active is bool(monkey.is_module_patched("socket"))
