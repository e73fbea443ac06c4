"""Publications and their Redis payload: built once by the master, parsed once per worker (pure)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gusher.core.publication import Publication

NAMES = st.text(min_size=1, max_size=30)
DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


def test_the_payload_is_the_seed_message_in_its_key_order() -> None:
    """`{"channel","event","data"}` in that order: what the seed publishes and its clients receive."""
    publication = Publication.create("c", "e", "d")
    assert publication.payload == b'{"channel":"c","event":"e","data":"d"}'
    assert publication.is_common


@given(NAMES, NAMES.filter(bool), DATA)
@settings(max_examples=300, deadline=None)
def test_a_created_publication_parses_back_to_itself(channel: str, event: str, data: object) -> None:
    """Property: what a master publishes, a worker reads back field for field, payload byte for byte."""
    created = Publication.create(channel, event, data)
    assert Publication.parse(created.payload) == created


def test_a_raw_publish_of_any_utf8_is_kept_whole() -> None:
    """A backend's PUBLISH of text or of JSON of another shape is delivered as it came."""
    for payload in (
        b"hello",
        "h\u00e9llo".encode(),
        b"[1, 2]",
        b'{"channel": "c"}',
        b'{"event": 5, "data": 1}',
    ):
        publication = Publication.parse(payload)
        assert publication is not None
        assert publication.payload == payload and not publication.is_common


def test_a_payload_that_is_not_utf8_is_refused() -> None:
    """Bytes no text frame may carry are never handed to a protocol."""
    assert Publication.parse(b"\xff\xfe not text") is None
    assert Publication.parse(b'{"channel":"c","event":"e","data":"\xff"}') is None


def test_a_common_message_published_by_hand_is_read_as_one() -> None:
    """A backend's `redis-cli PUBLISH app@news '{"channel", "event", "data"}'` is a common message."""
    payload = json.dumps({"channel": "news", "event": "created", "data": {"n": 1}}).encode()
    publication = Publication.parse(payload)
    assert publication == Publication("news", "created", {"n": 1}, payload)
