"""Channel and origin patterns: `*` globs and the `{user_id}` placeholder — pure.

An allowed-channel list (from the webhook or a JWT) may hold exact names,
glob patterns where `*` matches any run of characters (`news.*`, `*`), and the
placeholder `{user_id}`, replaced by the client's own user id (`private.{user_id}`).

No regular expression is ever built from the pattern: `*` is the only
wildcard, every other character (`.`, `?`, `[`, `\\`, `(` …) is literal, and
the user id is substituted after the pattern is split at its stars, so a user
id holding `*` stays literal too. Matching is the classic greedy segment
search, linear-time in practice and never exponential (a regex like
`.*a.*a.*a…` can backtrack catastrophically on a 200-character channel).
"""

from __future__ import annotations

from collections.abc import Iterable

USER_ID = "{user_id}"
WILDCARD = "*"


def _segments(pattern: str, user_id: str) -> list[str] | None:
    """The literal pieces between stars, placeholder filled; None if it can match nothing."""
    if USER_ID in pattern and not user_id:
        return None  # an anonymous client must not get `private.` for `private.{user_id}`
    return [piece.replace(USER_ID, user_id) for piece in pattern.split(WILDCARD)]


def glob_match(segments: list[str], text: str) -> bool:
    """Whether `text` matches the star-separated `segments` (at least two) of a glob."""
    first, last = segments[0], segments[-1]
    if len(text) < len(first) + len(last) or not text.startswith(first) or not text.endswith(last):
        return False
    position, end = len(first), len(text) - len(last)
    for segment in segments[1:-1]:
        found = text.find(segment, position, end)
        if found < 0:
            return False
        position = found + len(segment)
    return True


def matches(pattern: str, text: str) -> bool:
    """Whether `text` matches `pattern`, `*` its only wildcard (no placeholder: a push's pattern)."""
    segments = pattern.split(WILDCARD)
    return text == pattern if len(segments) == 1 else glob_match(segments, text)


class ChannelRules:
    """A compiled allowed-list: a set for exact names, segment lists for globs."""

    __slots__ = ("_exact", "_globs")

    def __init__(self, allowed: Iterable[str], user_id: str = "") -> None:
        exact: set[str] = set()
        globs: list[list[str]] = []
        for entry in allowed:
            segments = _segments(entry, user_id)
            if segments is None:
                continue
            if len(segments) == 1:
                exact.add(segments[0])
            else:
                globs.append(segments)
        # Many rules are live at once (one per distinct allow-list, one per
        # user where `{user_id}` is used): a short tuple (`in` is a C loop) is
        # as fast as a hash lookup for a few names and far smaller (a 1-tuple
        # is 48 bytes, a frozenset 216).
        self._exact: frozenset[str] | tuple[str, ...] = frozenset(exact) if len(exact) > 8 else tuple(exact)
        self._globs = tuple(globs)

    def allows(self, name: str) -> bool:
        """Whether `name` is in the list or matches one of its patterns."""
        if name in self._exact:
            return True
        return any(glob_match(segments, name) for segments in self._globs)

    @property
    def is_empty(self) -> bool:
        """True when nothing at all can match."""
        return not self._exact and not self._globs


def is_allowed(allowed: Iterable[str] | ChannelRules, channel: str) -> bool:
    """Whether the allowed list (webhook or JWT) lets a client subscribe to `channel`.

    `allowed` is best an `Identity.rules`, compiled once per connection; a
    plain list is compiled here (exact names and `*` globs).
    """
    rules = allowed if isinstance(allowed, ChannelRules) else ChannelRules(allowed)
    return rules.allows(channel)
