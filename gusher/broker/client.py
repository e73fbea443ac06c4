"""The one place where redis-py clients are built and where its errors become ours."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from gusher.config import Settings
from gusher.errors import BackendUnavailable


def command_client(settings: Settings, name: str = "gusher") -> redis.Redis:
    """A pooled client for commands (not pub/sub); connects lazily.

    Timeouts are bounded so that an unreachable Redis fails a request within
    seconds (503) instead of hanging it. The pool holds at most
    `redis_max_connections` and greenlets wait their turn: each command holds
    a connection for a fraction of a millisecond, and an unbounded pool grew
    to one connection per concurrent request (a reconnect storm opened ~100
    per worker, each keeping hiredis's 64 KB read buffer for good). Connections
    are named (`CLIENT LIST`) after the role.
    """
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=5.0,  # waiting for a free connection: then 503, like a Redis timeout
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
        client_name=name,
    )
    return redis.Redis(connection_pool=pool)


def pubsub_pool(redis_url: str) -> redis.ConnectionPool:
    """Connections for a subscriber: no read timeout (an idle channel is silent), RESP2.

    RESP2 because redis-py 8 defaults to RESP3, where pub/sub messages come
    as push frames that a hand-driven connection does not read (FACTS).
    """
    return redis.ConnectionPool.from_url(
        redis_url,
        socket_connect_timeout=2.0,
        socket_timeout=None,
        socket_keepalive=True,
        protocol=2,
    )


# What a lost or unreachable server raises, for loops that reconnect.
NETWORK_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn redis-py errors into `BackendUnavailable` where they enter."""
    try:
        yield
    except redis.RedisError as exc:
        raise BackendUnavailable(f"redis unavailable: {exc.__class__.__name__}") from exc
