"""Presence snapshots and their merge (pure), and a real write/read round trip in Redis."""

from __future__ import annotations

import time
from types import SimpleNamespace

import orjson

from gusher import presence
from gusher.auth import Identity
from gusher.connection import CLOSING, OPEN
from gusher.keys import user_channel
from gusher.registry import Registry


class FakeConn:
    """What `snapshot` reads of a connection (hashable by identity, like the real one)."""

    def __init__(self, app: str, user: str, state: int = OPEN) -> None:
        self.app_key, self.identity, self.state = app, Identity(user, ("c",)), state


def fake_hub() -> SimpleNamespace:
    conn = FakeConn

    a1, a2, anon, b1, gone = (
        conn("a", "u1"),
        conn("a", "u2"),
        conn("a", ""),
        conn("b", "u1"),
        conn("a", "x", CLOSING),
    )
    registry: Registry = Registry()
    for c in (a1, a2, anon):
        registry.subscribe("a@lobby", c)
    registry.subscribe(user_channel("a", "u1"), a1)  # gusher's own key: never a channel
    registry.subscribe("b@lobby", b1)
    return SimpleNamespace(connections={a1, a2, anon, b1, gone}, registry=registry)


def test_snapshot_per_app() -> None:
    """Channels with counts and named users, users with connection counts; closing/internal left out."""
    snap = presence.snapshot(fake_hub())
    assert snap["a"] == {"channels": {"lobby": [3, ["u1", "u2"]]}, "users": {"u1": 1, "u2": 1}}
    assert snap["b"] == {"channels": {"lobby": [1, ["u1"]]}, "users": {"u1": 1}}


def test_merge_sums_live_workers_and_reports_expired_ones() -> None:
    """Workers' snapshots add up; an expired or unreadable one is ignored and reported for pruning."""
    now = time.time()
    fields = {
        b"w1": orjson.dumps({"expires_at": now + 3, "channels": {"c": [2, ["u1"]]}, "users": {"u1": 2}}),
        b"w2": orjson.dumps({"expires_at": now + 3, "channels": {"c": [1, ["u2"]]}, "users": {"u2": 1}}),
        b"dead": orjson.dumps(
            {"expires_at": now - 1, "channels": {"c": [9, ["ghost"]]}, "users": {"ghost": 9}}
        ),
        b"junk": b"not json",
    }
    merged, dead = presence.merge(fields, now)
    assert merged.channels == {"c": (3, {"u1", "u2"})}
    assert merged.users == {"u1": 2, "u2": 1}
    assert sorted(dead) == [b"dead", b"junk"]


def test_write_read_and_leave(redis_client) -> None:
    """write() stores a worker's snapshot with expiry; apps it left are dropped next time."""
    snap = {
        "p-app1": {"channels": {"c": [1, ["u"]]}, "users": {"u": 1}},
        "p-app2": {"channels": {}, "users": {"v": 1}},
    }
    written = presence.write(redis_client, "worker-1", snap, time.time(), 3.0)
    assert presence.read(redis_client, "p-app1").users == {"u": 1}
    assert 0 < redis_client.ttl("gusher:presence:p-app1") <= 4
    presence.write(redis_client, "worker-1", {"p-app1": snap["p-app1"]}, time.time(), 3.0, written)
    assert presence.read(redis_client, "p-app2").users == {}


def test_merge_treats_malformed_reports_as_dead() -> None:
    """A report of the wrong shape is pruned like a dead worker, never an error for the listing."""
    now = time.time()
    good = {"expires_at": now + 3, "channels": {"c": [1, ["u"]]}, "users": {"u": 1}}
    fields = {
        b"good": orjson.dumps(good),
        b"list": orjson.dumps([1, 2]),
        b"no-users": orjson.dumps({"expires_at": now + 3, "channels": {}}),
        b"bad-channel": orjson.dumps({**good, "channels": {"c": "x"}}),
        b"bad-count": orjson.dumps({**good, "users": {"u": "many"}}),
        b"bad-channels": orjson.dumps({**good, "channels": [1]}),
    }
    merged, dead = presence.merge(fields, now)
    assert merged.users == {"u": 1} and merged.channels == {"c": (1, {"u"})}
    assert sorted(dead) == [b"bad-channel", b"bad-channels", b"bad-count", b"list", b"no-users"]
