"""Channel patterns: `*` globs and `{user_id}`, matched literally otherwise (pure)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gusher.core.identity import Identity
from gusher.core.patterns import ChannelRules, is_allowed


@pytest.mark.parametrize(
    "pattern, user_id, channel, allowed",
    [
        ("news", "", "news", True),
        ("news", "", "news2", False),
        ("*", "", "anything at all", True),
        ("news.*", "", "news.sport", True),
        ("news.*", "", "news.sport.football", True),
        ("news.*", "", "news", False),
        ("news.*", "", "newsXsport", False),  # '.' is literal, not "any character"
        ("*.news", "", "a.news", True),
        ("a*b*c", "", "abc", True),
        ("a*b*c", "", "aXbYc", True),
        ("a*b*c", "", "aXcYb", False),
        ("a*a", "", "a", False),  # the two literal ends may not overlap
        ("a*a", "", "aa", True),
        ("news?", "", "newsX", False),  # no '?' wildcard
        ("news?", "", "news?", True),
        ("[ab]", "", "a", False),  # no character classes
        ("[ab]", "", "[ab]", True),
        ("a.+", "", "aaa", False),  # regex syntax is literal
        ("(x|y)", "", "x", False),
        ("\\*", "", "\\anything", True),  # backslash does not escape: literal \ then *
        ("private.{user_id}", "42", "private.42", True),
        ("private.{user_id}", "42", "private.43", False),
        ("private.{user_id}", "", "private.", False),  # anonymous clients get no personal channel
        ("private.{user_id}", "a*", "private.abc", False),  # a user id is never a pattern
        ("private.{user_id}", "a*", "private.a*", True),
        ("private.{user_id}.*", "7", "private.7.inbox", True),
        ("private.{user_id}.*", "7", "private.8.inbox", False),
        ("{user_id}", ".*", "x", False),
        ("News.*", "", "news.a", False),  # case matters
    ],
)
def test_pattern_matching(pattern: str, user_id: str, channel: str, allowed: bool) -> None:
    """Each allowed-list entry is exact, a `*` glob, or holds `{user_id}`; nothing else is special."""
    assert ChannelRules([pattern], user_id).allows(channel) is allowed
    assert Identity(user_id, (pattern,)).rules.allows(channel) is allowed


def test_is_allowed_accepts_lists_and_rules() -> None:
    """registry.is_allowed takes a plain list (compiled on the spot) or precompiled rules."""
    assert is_allowed(["news.*"], "news.x")
    assert is_allowed(ChannelRules(["a"]), "a")
    assert not is_allowed(frozenset({"a"}), "b")


def test_pathological_patterns_stay_fast() -> None:
    """Many stars against a long near-miss finish quickly (no backtracking blow-up)."""
    rules = ChannelRules(["*a" * 100 + "b"])
    started = time.perf_counter()
    assert not rules.allows("a" * 200)
    assert time.perf_counter() - started < 0.1


@given(st.text(max_size=30), st.text(max_size=30))
def test_literal_entries_match_only_themselves(entry: str, channel: str) -> None:
    """Property: an entry without `*` or `{user_id}` allows exactly itself."""
    if "*" in entry or "{user_id}" in entry:
        return
    assert ChannelRules([entry]).allows(channel) is (entry == channel)


@given(st.text(max_size=10), st.text(max_size=10), st.text(max_size=10))
def test_prefix_star_suffix_is_a_prefix_and_suffix_check(prefix: str, suffix: str, middle: str) -> None:
    """Property: `p*s` allows p + anything + s."""
    if "*" in prefix + suffix or "{user_id}" in prefix + suffix:
        return
    assert ChannelRules([prefix + "*" + suffix]).allows(prefix + middle + suffix)
