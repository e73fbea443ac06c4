"""Key naming rules (pure)."""

from __future__ import annotations

import pytest

from gusher.errors import InvalidName
from gusher.keys import check_app_key, check_name, pubsub_channel, split_pubsub_channel, user_channel


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
