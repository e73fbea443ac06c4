"""App records in Redis (the hash `{app_key}`), and the slave's cache of any `AppStore`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import gevent.event

from gusher.broker.base import AppStore
from gusher.broker.client import Client, translate_errors
from gusher.core.apps import AppConfig, parse_app
from gusher.errors import BackendUnavailable, UnknownApp
from gusher.keys import INTERNAL_PREFIX, check_app_key


class RedisAppStore:
    """`gusher.broker.base.AppStore` on one Redis server."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def load(self, app_key: str) -> AppConfig:
        """The app's whole record, read in one HGETALL.

        Raises:
            InvalidName: the key cannot name an app (empty, `@`, too long).
            UnknownApp: the hash has no `url` field.
            BackendUnavailable: Redis cannot be reached.
        """
        check_app_key(app_key)
        with translate_errors():
            raw = self._client.hgetall(app_key)
        return parse_app(app_key, raw)

    def scan(self, limit: int = 10000) -> list[AppConfig]:
        """Apps found by SCAN (hashes with a `url`), at most `limit` keys looked at.

        For the start-up log and the admin listing; gusher's own `gusher:` keys
        are skipped.
        """
        found = []
        with translate_errors():
            for seen, key in enumerate(self._client.scan_iter(count=500, _type="HASH")):
                if seen >= limit:
                    break
                name = key.decode("utf-8", "replace")
                if name.startswith(INTERNAL_PREFIX) or "@" in name:
                    continue
                try:
                    found.append(parse_app(name, self._client.hgetall(key)))
                except UnknownApp:
                    continue
        return sorted(found, key=lambda app: app.key)

    def save(self, app_key: str, fields: Mapping[str, str]) -> None:
        """HSET the given fields of the app's hash."""
        check_app_key(app_key)
        with translate_errors():
            self._client.hset(app_key, mapping=dict[Any, Any](fields))

    def forget(self, app_key: str, fields: Iterable[str] = ()) -> bool:
        """HDEL the given fields, or DEL the whole hash when none is given."""
        check_app_key(app_key)
        names = list(fields)
        with translate_errors():
            removed = self._client.hdel(app_key, *names) if names else self._client.delete(app_key)
        return bool(removed)


class AppCache:
    """Apps recently read, reused by a slave worker's handshakes.

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

    def __init__(self, store: AppStore, ttl: float, max_apps: int = 4096) -> None:
        self.store = store
        self.ttl = ttl
        self.max_apps = max_apps
        self._apps: dict[str, tuple[float, AppConfig]] = {}
        self._loading: dict[str, gevent.event.AsyncResult] = {}

    def load(self, app_key: str) -> AppConfig:
        """`store.load`, answered from the cache while the record is fresh."""
        if self.ttl <= 0:
            return self.store.load(app_key)
        now = time.monotonic()
        cached = self._apps.get(app_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        loading = self._loading.get(app_key)
        if loading is not None:
            return cast(AppConfig, loading.get())  # raises what the read raised
        loading = self._loading[app_key] = gevent.event.AsyncResult()
        try:
            app = self.store.load(app_key)
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
