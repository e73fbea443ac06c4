"""Presence snapshots and their merge (pure), and a real write/read round trip in Redis."""

from __future__ import annotations

import time

import orjson

from gusher.broker.status import RedisStatus
from gusher.keys import user_channel
from gusher.ops import presence


class FakeSource:
    """What `snapshot` reads of a hub: open connections' users, and each key's subscribers."""

    def __init__(self) -> None:
        self.users = [("a", "u1"), ("a", "u2"), ("a", ""), ("b", "u1")]
        self.keys = {
            "a@lobby": ["u1", "u2", ""],
            user_channel("a", "u1"): ["u1"],  # gusher's own key: never a channel
            "b@lobby": ["u1"],
        }

    def online_users(self) -> list[tuple[str, str]]:
        return list(self.users)

    def subscribed_keys(self) -> list[str]:
        return list(self.keys)

    def subscriber_users(self, key: str) -> tuple[int, list[str]]:
        return len(self.keys[key]), self.keys[key]


def test_snapshot_per_app() -> None:
    """Channels with counts and named users, users with connection counts, every connection
    counted (anonymous ones too: an app's quota); internal keys left out."""
    snap = presence.snapshot(FakeSource())
    assert snap["a"] == {
        "channels": {"lobby": [3, ["u1", "u2"]]},
        "users": {"u1": 1, "u2": 1},
        "connections": 3,
    }
    assert snap["b"] == {"channels": {"lobby": [1, ["u1"]]}, "users": {"u1": 1}, "connections": 1}


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
    status = RedisStatus(redis_client)
    written = presence.write(status, "worker-1", snap, time.time(), 3.0)
    assert presence.read(status, "p-app1").users == {"u": 1}
    assert 0 < redis_client.ttl("gusher:presence:p-app1") <= 4
    presence.write(status, "worker-1", {"p-app1": snap["p-app1"]}, time.time(), 3.0, written)
    assert presence.read(status, "p-app2").users == {}


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
