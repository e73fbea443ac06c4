"""App records in Redis: the hash `{app_key}` whose `url` field is the webhook.

Also the single place where a redis-py client is built and where redis-py's
errors become `BackendUnavailable`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import gevent.event
import redis

from gusher.config import Settings
from gusher.errors import BackendUnavailable, UnknownApp
from gusher.keys import APP_URL_FIELD, INTERNAL_PREFIX, check_app_key
from gusher.patterns import ChannelRules


def connect_redis(settings: Settings, name: str = "gusher") -> redis.Redis:
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


@contextmanager
def backend() -> Iterator[None]:
    """Translate redis-py errors into `BackendUnavailable` where they enter."""
    try:
        yield
    except redis.RedisError as exc:
        raise BackendUnavailable(f"redis unavailable: {exc.__class__.__name__}") from exc


@dataclass(frozen=True)
class AppConfig:
    """An app's hash, read in one HGETALL.

    Attributes:
        url: the auth webhook (seed; the app exists iff it is set).
        secret: signs pushes to the master and webhook calls; empty = open app (seed).
        origins: WebSocket `Origin`s allowed (exact or `*` globs); empty = any.
        jwt_key: HS256 secret or RS256 PEM public key; set = clients use JWTs, no webhook.
        has_secret_field: the hash has a `secret` field, even a blank one.

    `secret` and `jwt_key` are decoded losslessly (`surrogateescape`): a binary
    secret keeps all of its bytes as HMAC key, where a lossy decode would turn
    every invalid byte into U+FFFD and leave almost nothing to guess.
    """

    key: str
    url: str
    secret: str = field(default="", repr=False)
    origins: tuple[str, ...] = ()
    jwt_key: str = field(default="", repr=False)
    has_secret_field: bool = False

    @property
    def is_secured(self) -> bool:
        """Whether API calls for this app must prove they know its secret.

        A `secret` field that is present but blank (`HSET app secret "$UNSET"`)
        secures the app too, and then nothing can prove it (fail closed): the
        operator meant to close the app, and an empty HMAC key is public.
        """
        return bool(self.secret) or self.has_secret_field

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a WebSocket handshake with this `Origin` header may proceed.

        Browsers always send `Origin` on WebSocket handshakes, and it is what a
        hijacking page cannot forge; a request without one is not a browser's
        (and a non-browser client could claim any origin anyway), so only a
        present, unlisted origin is refused.
        """
        if not self.origins or origin is None:
            return True
        return ChannelRules(self.origins).allows(origin.strip().lower().rstrip("/"))


def parse_app(app_key: str, fields: Mapping[Any, Any]) -> AppConfig:
    """Build an `AppConfig` from the raw hash — pure.

    `origins` is a list separated by commas or spaces; origins compare lower-case.

    Raises:
        UnknownApp: the hash has no `url` field.
    """

    def text(name: str, errors: str = "replace") -> str:
        return fields.get(name.encode(), b"").decode("utf-8", errors).strip()

    url = text(APP_URL_FIELD)
    if not url:
        raise UnknownApp(f"unknown app_key {app_key[:100]!r}")
    origins = tuple(o.lower().rstrip("/") for o in text("origins").replace(",", " ").split())
    return AppConfig(
        app_key,
        url,
        text("secret", "surrogateescape"),
        origins,
        text("jwt_key", "surrogateescape"),
        has_secret_field=b"secret" in fields,
    )


def load_app(client: redis.Redis, app_key: str) -> AppConfig:
    """The app's whole record, read in one round trip.

    Raises:
        InvalidName: the key cannot name an app (empty, `@`, too long).
        UnknownApp: the hash has no `url` field.
        BackendUnavailable: Redis cannot be reached.
    """
    check_app_key(app_key)
    with backend():
        raw = client.hgetall(app_key)
    return parse_app(app_key, raw)


class AppCache:
    """Apps recently read from Redis, reused by a slave worker's handshakes.

    Every handshake needs its app's record (webhook URL, origins, secret, JWT
    key). Reading it cost ~13 % of a handshake's CPU (a profile of 4,000
    connects), and a reconnect storm of N clients sent N identical HGETALLs
    to Redis. A record is reused for `ttl` seconds, so a change to an app
    reaches new connections within that time (`GUSHER_APP_CACHE_SECONDS`;
    0 reads Redis every time). Unknown apps are never cached: an app created
    a moment ago is usable at once.

    One read per app is in flight at a time: handshakes that miss while it
    runs wait for its answer. Without that, every expiry under a connect
    storm sent one HGETALL per handshake in flight, and the command pool grew
    to its maximum in every worker, each connection keeping its read buffers.
    """

    def __init__(self, ttl: float, max_apps: int = 4096) -> None:
        self.ttl = ttl
        self.max_apps = max_apps
        self._apps: dict[str, tuple[float, AppConfig]] = {}
        self._loading: dict[str, gevent.event.AsyncResult] = {}

    def load(self, client: redis.Redis, app_key: str) -> AppConfig:
        """`load_app`, answered from the cache while the record is fresh."""
        if self.ttl <= 0:
            return load_app(client, app_key)
        now = time.monotonic()
        cached = self._apps.get(app_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        loading = self._loading.get(app_key)
        if loading is not None:
            return cast(AppConfig, loading.get())  # raises what the read raised
        loading = self._loading[app_key] = gevent.event.AsyncResult()
        try:
            app = load_app(client, app_key)
        except Exception as exc:
            loading.set_exception(exc)
            raise
        except BaseException:  # the reader was killed: its waiters must not be
            loading.set_exception(BackendUnavailable("app lookup interrupted"))
            raise
        finally:
            del self._loading[app_key]
        if len(self._apps) >= self.max_apps:
            self._apps.clear()  # a crude bound, reached only by thousands of live apps
        self._apps[app_key] = (now + self.ttl, app)
        loading.set(app)
        return app


def scan_apps(client: redis.Redis, limit: int = 10000) -> list[AppConfig]:
    """Apps found by SCAN (hashes with a `url`), at most `limit` keys looked at.

    For the start-up log and the admin listing; gusher's own `gusher:` keys
    are skipped.
    """
    found = []
    with backend():
        for seen, key in enumerate(client.scan_iter(count=500, _type="HASH")):
            if seen >= limit:
                break
            name = key.decode("utf-8", "replace")
            if name.startswith(INTERNAL_PREFIX) or "@" in name:
                continue
            try:
                found.append(parse_app(name, client.hgetall(key)))
            except UnknownApp:
                continue
    return sorted(found, key=lambda app: app.key)
