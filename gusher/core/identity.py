"""Who a client is and which channels it may subscribe to — pure.

An identity comes from the app's webhook answer or from a JWT's claims
(`identity_from` validates both the same way); its allowed-channel list is
compiled once into `ChannelRules` and shared by every identity allowed the
same list.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from gusher.core.patterns import USER_ID, ChannelRules
from gusher.errors import AuthError
from gusher.keys import MAX_NAME_LENGTH

MAX_ALLOWED_CHANNELS = 10000


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a client is and which channels it may subscribe to.

    `channels` is the list as given (exact names, `*` globs, `{user_id}`
    placeholders); `rules` is it compiled once, for every subscribe to use.
    """

    user_id: str
    channels: tuple[str, ...]
    rules: ChannelRules = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        channels, rules = _allowance(self.channels, self.user_id)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "rules", rules)

    def allows(self, channel: str) -> bool:
        """Whether this client may subscribe to `channel`."""
        return self.rules.allows(channel)


_ALLOWANCES_KEPT = 1024
# Longer lists are compiled per identity and never kept: the memo must not
# hold on to megabytes of channel names after their connections are gone.
_SHARED_LIST_MAX = 64
_allowances: dict[tuple[tuple[str, ...], str], tuple[tuple[str, ...], ChannelRules]] = {}


def _allowance(channels: tuple[str, ...], user_id: str) -> tuple[tuple[str, ...], ChannelRules]:
    """`channels` and their compiled rules, shared by every identity allowed the same.

    A webhook usually answers many users with one list (the app's channels,
    with `{user_id}` where they differ), so the tuple and its rules (~160
    bytes per connection, issue 4) are kept once per distinct list, and
    compiled once. A list with the placeholder compiles differently per
    user, so its user is part of the key. The memo keeps the newest
    `_ALLOWANCES_KEPT` lists of at most `_SHARED_LIST_MAX` names; identities
    hold their own references.
    """
    if len(channels) > _SHARED_LIST_MAX:
        return channels, ChannelRules(channels, user_id)
    key = (channels, user_id if any(USER_ID in c for c in channels) else "")
    shared = _allowances.get(key)
    if shared is None:
        shared = (channels, ChannelRules(channels, user_id))
        if len(_allowances) >= _ALLOWANCES_KEPT:
            del _allowances[next(iter(_allowances))]  # the oldest
        _allowances[key] = shared
    return shared


def identity_from(answer: object, source: str, error: type[AuthError]) -> Identity:
    """Validate `{"user_id", "channels": [str, ...]}` from a webhook or a JWT.

    Args:
        answer: the decoded JSON answer or claims.
        source: how reasons name it ("webhook answer", "token").
        error: the error class to raise.
    """
    if not isinstance(answer, dict):
        raise error(f"{source} is not a JSON object")
    channels = answer.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise error(f"{source} has no 'channels' list of strings")
    usable = [c for c in channels if c and len(c) <= MAX_NAME_LENGTH]
    if not usable:
        raise error(f"{source} allowed no channels")
    if len(usable) > MAX_ALLOWED_CHANNELS:
        raise error(f"{source} allowed more than {MAX_ALLOWED_CHANNELS} channels")
    user_id = answer.get("user_id", "")
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
        raise error(f"{source}'s 'user_id' is not a string")
    # In order, once each; interned, so connections allowed the same channels
    # (every user of an app, often) share the names instead of a copy each.
    return Identity(str(user_id), tuple(dict.fromkeys(map(sys.intern, usable))))
