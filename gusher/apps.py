"""App records in Redis: the hash `{app_key}` whose `url` field is the webhook.

Also the single place where a redis-py client is built and where redis-py's
errors become `BackendUnavailable`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import redis

from gusher.config import Settings
from gusher.errors import BackendUnavailable, UnknownApp
from gusher.keys import APP_URL_FIELD, check_app_key


def connect_redis(settings: Settings) -> redis.Redis:
    """A pooled client for commands (not pub/sub); connects lazily.

    Timeouts are bounded so that an unreachable Redis fails a request within
    seconds (503) instead of hanging it.
    """
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
        max_connections=256,
    )


@contextmanager
def backend() -> Iterator[None]:
    """Translate redis-py errors into `BackendUnavailable` where they enter."""
    try:
        yield
    except redis.RedisError as exc:
        raise BackendUnavailable(f"redis unavailable: {exc.__class__.__name__}") from exc


def webhook_url(client: redis.Redis, app_key: str) -> str:
    """The app's webhook URL.

    Raises:
        InvalidName: the key cannot name an app (empty, `@`, too long).
        UnknownApp: the hash has no `url` field.
        BackendUnavailable: Redis cannot be reached.
    """
    check_app_key(app_key)
    with backend():
        url = client.hget(app_key, APP_URL_FIELD)
    if not url:
        raise UnknownApp(f"unknown app_key {app_key[:100]!r}")
    return url.decode("utf-8", "replace")


def check_app(client: redis.Redis, app_key: str) -> None:
    """Raise unless `app_key` names an existing app (see `webhook_url`)."""
    check_app_key(app_key)
    with backend():
        exists = client.hexists(app_key, APP_URL_FIELD)
    if not exists:
        raise UnknownApp(f"unknown app_key {app_key[:100]!r}")
