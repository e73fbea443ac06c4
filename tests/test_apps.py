"""App records: parsed from their Redis hash (pure), and cached for handshakes (real Redis)."""

from __future__ import annotations

import time

import pytest

from gusher.api import security
from gusher.broker.apps import AppCache, RedisAppStore
from gusher.config import Settings
from gusher.core.apps import parse_app
from gusher.errors import UnknownApp


def test_secrets_are_decoded_losslessly() -> None:
    """Two binary secrets differing only in invalid UTF-8 bytes stay different (no U+FFFD collapse)."""
    a = parse_app("a", {b"url": b"http://x", b"secret": b"\xff\xfe\xfd\xfc", b"jwt_key": b"\x80\x81"})
    b = parse_app("b", {b"url": b"http://x", b"secret": b"\xfc\xfd\xfe\xff"})
    assert a.secret != b.secret
    assert a.secret.encode("utf-8", "surrogateescape") == b"\xff\xfe\xfd\xfc"
    assert a.jwt_key.encode("utf-8", "surrogateescape") == b"\x80\x81"


def test_a_blank_secret_field_fails_closed() -> None:
    """`HSET app secret ""` (an unset variable) secures the app rather than silently leaving it open."""
    app = parse_app("a", {b"url": b"http://x", b"secret": b"  "})
    assert app.is_secured and app.secret == ""
    assert not parse_app("open", {b"url": b"http://x"}).is_secured


def test_start_up_log_names_open_and_blank_secret_apps() -> None:
    """The start-up lines name the open apps and, separately, the apps locked by an empty secret."""
    apps = [
        parse_app("open", {b"url": b"u"}),
        parse_app("blank", {b"url": b"u", b"secret": b""}),
        parse_app("shut", {b"url": b"u", b"secret": b"s3cret"}),
    ]
    lines = security.describe_open_apps(apps, Settings(admin_token="t"))
    assert any("no secret" in line and "open" in line and "blank" not in line for line in lines)
    assert any("empty secret" in line and "blank" in line for line in lines)
    assert not any("s3cret" in line or "shut" in line for line in lines)


def test_app_cache_reuses_a_record_for_its_ttl_only(redis_client) -> None:
    """Handshakes reuse an app's record for the TTL, then read Redis again (real server)."""

    key = f"cache-app-{time.time_ns()}"
    redis_client.hset(key, "url", "http://first")
    cache = AppCache(RedisAppStore(redis_client), ttl=0.3)
    assert cache.load(key).url == "http://first"
    redis_client.hset(key, "url", "http://second")
    assert cache.load(key).url == "http://first"
    time.sleep(0.35)
    assert cache.load(key).url == "http://second"
    assert AppCache(RedisAppStore(redis_client), ttl=0).load(key).url == "http://second"


def test_app_cache_never_remembers_an_unknown_app(redis_client) -> None:
    """An app created right after a failed lookup is usable at once."""

    key = f"cache-late-{time.time_ns()}"
    cache = AppCache(RedisAppStore(redis_client), ttl=60)
    with pytest.raises(UnknownApp):
        cache.load(key)
    redis_client.hset(key, "url", "http://now")
    assert cache.load(key).url == "http://now"


def test_app_cache_is_bounded(redis_client) -> None:
    """However many apps are looked up, the cache holds at most `max_apps`."""

    cache = AppCache(RedisAppStore(redis_client), ttl=60, max_apps=3)
    stamp = time.time_ns()
    for i in range(10):
        redis_client.hset(f"cache-many-{stamp}-{i}", "url", "http://x")
        cache.load(f"cache-many-{stamp}-{i}")
        assert len(cache._apps) <= 3
