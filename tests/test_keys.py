"""Key naming rules (pure)."""

from __future__ import annotations

import pytest

from gusher.errors import InvalidName
from gusher.keys import (
    check_app_key,
    check_name,
    cluster_history_keys,
    colocated,
    history_keys,
    key_slot,
    members_keys,
    pubsub_channel,
    slot_tag,
    split_pubsub_channel,
    user_channel,
)


@pytest.mark.parametrize("bad", ["", "a@b", "x" * 201, "gusher:slaves", "a\nb"])
def test_bad_app_keys_are_refused(bad: str) -> None:
    """Empty, '@', over-long, gusher-prefixed or control-character keys cannot name an app."""
    with pytest.raises(InvalidName):
        check_app_key(bad)


@pytest.mark.parametrize("bad", ["", "c" * 201, "a\x00b", "tab\there"])
def test_bad_channel_names_are_refused(bad: str) -> None:
    """Channel and event names must be non-empty, bounded, without control characters."""
    with pytest.raises(InvalidName):
        check_name("channel", bad)


def test_pubsub_channel_roundtrip() -> None:
    """`{app}@{channel}` splits back at the first '@' (channels may hold '@')."""
    assert pubsub_channel("app", "c@d") == "app@c@d"
    assert split_pubsub_channel("app@c@d") == ("app", "c@d")


def test_user_channels_of_different_apps_never_coincide() -> None:
    """App keys may hold ':', so user `b:c` of app `a` and user `c` of app `a:b` need distinct keys."""
    assert user_channel("a", "b:c") != user_channel("a:b", "c")
    assert user_channel("app", "u") == "gusher:user:app@u"


@pytest.mark.parametrize(
    "channel", ["news", "presence-room", "a{b", "a}b", "room{1}", "x{}y", "{}", "é", "a{b}c}"]
)
def test_colocated_keys_hash_like_their_channel(channel: str) -> None:
    """A `colocated` key is in its channel's cluster slot (redis-py's count), braces or not."""
    from redis.crc import key_slot as redis_slot

    key = pubsub_channel("app", channel)
    assert key_slot(key) == redis_slot(key.encode())
    assert {redis_slot(name.encode()) for name in [*members_keys(key), *cluster_history_keys(key)]} == {
        key_slot(key)
    }


@pytest.mark.parametrize("channel", ["news", "presence-room", "a{b", "é"])
def test_colocated_keys_keep_their_names_where_no_brace_closes(channel: str) -> None:
    """Without a `}` a key is `prefix{pubsub}`, as presence keys were named before clusters."""
    key = pubsub_channel("app", channel)
    assert members_keys(key)[0] == "gusher:members:{" + key + "}"
    assert history_keys(key) == (
        "gusher:history:" + key,
        "gusher:history-meta:" + key,
    )  # one server: untagged


def test_colocated_keys_of_different_channels_differ() -> None:
    """Two channels of one slot get one tag but never one key: the channel's name follows the tag."""
    a = "app@a}x"
    b = next(f"app@b}}{n}" for n in range(100000) if key_slot(f"app@b}}{n}") == key_slot(a))
    assert colocated("p:", a) != colocated("p:", b)
    assert colocated("p:", a).startswith("p:{" + slot_tag(key_slot(a)) + "}")
