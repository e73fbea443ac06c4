"""Numbered history, pure: what a resume may claim (SPEC's cases), and the merge of a replay with the
live messages buffered meanwhile (Hypothesis: any interleaving gives each offset once, in order)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gusher.core.apps import history_policy
from gusher.core.history import ChannelHistory, HistoryPolicy, Since, is_recoverable, merge
from gusher.core.publication import Publication
from tests.inprocess import numbered as numbered_on


def numbered(offset: int) -> Publication:
    return numbered_on("c", offset)


def raw(text: str) -> Publication:
    parsed = Publication.parse(text.encode())
    assert parsed is not None
    return parsed


def kept(epoch: str, top: int, first: int, last: int) -> ChannelHistory:
    return ChannelHistory(epoch, top, tuple(numbered(n) for n in range(first, last + 1)))


def test_a_numbered_payload_is_the_seed_message_with_one_more_field() -> None:
    publication = numbered(7)
    assert json.loads(publication.payload) == {"channel": "c", "event": "e", "data": 7, "offset": 7}
    assert list(json.loads(publication.payload)) == ["channel", "event", "data", "offset"]
    assert publication.offset == 7
    for payload in (
        b'{"channel":"c","event":"e","data":1,"offset":true}',
        b'{"channel":"c","event":"e","data":1}',
    ):
        assert Publication.parse(payload).offset == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "since, recovered",
    [
        (Since(5, "E"), True),  # SPEC: with 6..10 kept, since 5 recovers
        (Since(4, "E"), False),  # and since 4 does not (5 is no longer kept)
        (Since(10, "E"), True),  # nothing missed
        (Since(11, "E"), False),  # ahead of the channel: the numbering went back
        (Since(5, "other"), False),  # another epoch
        (Since(0, "E"), False),
    ],
)
def test_recovery_is_all_or_nothing(since: Since, recovered: bool) -> None:
    history = kept("E", 10, max(6, since.offset + 1), 10) if since.offset < 10 else kept("E", 10, 11, 10)
    assert is_recoverable(since, history, max_messages=300) is recovered


def test_more_missed_than_the_bound_is_not_recovered() -> None:
    assert is_recoverable(Since(0, "E"), kept("E", 5, 1, 5), max_messages=5)
    assert not is_recoverable(Since(0, "E"), kept("E", 6, 1, 5), max_messages=5)


def test_a_hole_in_what_was_read_is_not_recovered() -> None:
    history = ChannelHistory("E", 5, tuple(numbered(n) for n in (3, 5)))
    assert not is_recoverable(Since(2, "E"), history, 300)


@given(
    since=st.integers(0, 30),
    read_at=st.integers(0, 30),
    extra=st.integers(0, 30),
    buffer_from=st.integers(0, 60),
    raws=st.lists(st.integers(0, 60), max_size=5),
)
def test_any_interleaving_of_replay_and_live_gives_each_offset_once_in_order(
    since: int, read_at: int, extra: int, buffer_from: int, raws: list[int]
) -> None:
    """Buffering starts before the history read: the buffer holds every live message from some point
    at or before the read's top onwards (duplicates of the replay included), then what came after."""
    top = max(since, read_at)
    final = top + extra
    start = min(buffer_from, top) + 1  # buffering began before the read: no later than top + 1
    buffered = [numbered(n) for n in range(start, final + 1)]
    for position in sorted(raws, reverse=True):  # raw PUBLISHes arrive unnumbered, anywhere
        buffered.insert(min(position, len(buffered)), raw(f"raw-{position}"))
    replayed = [numbered(n) for n in range(since + 1, top + 1)]
    out = merge(replayed, buffered, since)
    offsets = [p.offset for p in out if p.offset]
    assert offsets == list(range(since + 1, final + 1))
    assert [p.payload for p in out if not p.offset] == [p.payload for p in buffered if not p.offset]


def test_without_since_only_messages_after_the_stated_offset_follow() -> None:
    """A plain subscribe states the latest offset; buffered copies up to it are dropped."""
    out = merge([], [numbered(n) for n in (4, 5, 6, 7)], after=5)
    assert [p.offset for p in out] == [6, 7]


@pytest.mark.parametrize(
    "size, ttl, policy",
    [
        ("10", "60", HistoryPolicy(10, 60)),
        ("10", "", None),
        ("", "60", None),
        ("0", "60", None),
        ("10", "-1", None),
        ("ten", "60", None),
        ("²", "60", None),  # a digit to str.isdigit, not to int()
        ("99999999", "60", HistoryPolicy(100_000, 60)),
    ],
)
def test_an_app_keeps_history_only_with_both_fields_whole_and_positive(size, ttl, policy) -> None:
    assert history_policy(size, ttl) == policy
