"""gusher's client protocol (the seed's): commands parsed, replies and publications framed — pure."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gusher.core.publication import Publication
from gusher.errors import CommandError
from gusher.wire import frames
from gusher.wire.base import Disconnect, MultiSubscribe, Ping, Subscribe, Unsubscribe
from gusher.wire.gusher import GUSHER, parse_command
from tests.inprocess import server_frames


def text_of(frame: bytes) -> object:
    """The JSON of one text frame."""
    ((opcode, payload),) = server_frames(frame)
    assert opcode == frames.OP_TEXT
    return orjson.loads(payload)


def test_parse_subscribe() -> None:
    """A seed subscribe command parses into its id and channel; the replies echo both."""
    command = GUSHER.parse(b'{"event":"gusher.subscribe","data":{"id":"7","channel":"news"}}')
    assert command == Subscribe("7", "news")
    assert text_of(GUSHER.subscribed(command)) == {
        "event": "gusher.subscribe_succeeded",
        "data": {"id": "7", "channel": "news"},
    }
    assert text_of(GUSHER.subscribe_refused(command, "why")) == {
        "event": "gusher.subscribe_error",
        "data": {"id": "7", "channel": "news", "reason": "why"},
    }


def test_unsubscribe_and_ping_replies() -> None:
    """Unsubscribe replies echo id and channel; gusher.ping gets gusher.pong with its id."""
    command = GUSHER.parse(b'{"event":"gusher.unsubscribe","data":{"id":3,"channel":"c"}}')
    assert command == Unsubscribe(3, "c")
    assert text_of(GUSHER.unsubscribed(command)) == {
        "event": "gusher.unsubscribe_succeeded",
        "data": {"id": 3, "channel": "c"},
    }
    assert (
        text_of(GUSHER.unsubscribe_refused(command, "not subscribed"))["data"]["reason"] == "not subscribed"
    )
    ping = GUSHER.parse(b'{"event":"gusher.ping","data":{"id":"p"}}')
    assert ping == Ping("p")
    assert text_of(GUSHER.pong(ping)) == {"event": "gusher.pong", "data": {"id": "p"}}
    assert GUSHER.parse(b'{"event":"gusher.ping","data":5}') == Ping(None)


def test_missing_id_is_echoed_as_empty_string() -> None:
    """Seed clients may omit the id; the reply still carries one."""
    command = parse_command(b'{"event":"gusher.unsubscribe","data":{"channel":"c"}}')
    assert command.id == ""


def test_a_publication_is_sent_as_published() -> None:
    """Subscribers get the payload's exact bytes, common message or not (a raw PUBLISH)."""
    common = Publication.create("c", "e", "d")
    assert server_frames(GUSHER.publication(common)) == [
        (frames.OP_TEXT, b'{"channel":"c","event":"e","data":"d"}')
    ]
    raw = Publication.parse(b"plain text, not JSON")
    assert raw is not None
    assert server_frames(GUSHER.publication(raw)) == [(frames.OP_TEXT, b"plain text, not JSON")]


def test_keepalive_and_close_codes() -> None:
    """Keep-alive is a WebSocket Ping; shutdown closes 1001, every broken policy 1008."""
    assert server_frames(GUSHER.keepalive()) == [(frames.OP_PING, b"")]
    assert GUSHER.close_reason(Disconnect.SHUTDOWN) == (1001, "server shutting down")
    for why in Disconnect:
        if why is not Disconnect.SHUTDOWN:
            assert GUSHER.close_reason(why) == (1008, why.value)
    assert GUSHER.greeting() == b""
    assert text_of(GUSHER.binary_refused())["event"] == "gusher.error"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.one_of(
        st.binary(max_size=200),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "event": st.sampled_from(["gusher.subscribe", "gusher.unsubscribe", "gusher.ping", "x"]),
                "data": JSON_VALUES,
            }
        ).map(lambda v: json.dumps(v).encode()),
    )
)
@settings(max_examples=500, deadline=None)
def test_any_input_yields_a_command_or_a_valid_error_reply(text: bytes) -> None:
    """Property: every input parses or raises CommandError carrying one well-formed reply frame."""
    try:
        command = GUSHER.parse(text)
    except CommandError as exc:
        reply = text_of(exc.reply)
        assert reply["event"] in ("gusher.error", "gusher.subscribe_error", "gusher.unsubscribe_error")
        assert isinstance(reply["data"]["reason"], str) and reply["data"]["reason"]
        return
    if isinstance(command, Subscribe):
        text_of(GUSHER.subscribed(command))
    elif isinstance(command, Unsubscribe):
        text_of(GUSHER.unsubscribed(command))
    else:
        assert isinstance(command, Ping)
        text_of(GUSHER.pong(command))


@pytest.mark.parametrize("request_id", ["x" * 201, {"a": 1}, [1], True])
def test_unechoable_ids_are_refused(request_id) -> None:
    """Ids that are not short strings or numbers get a subscribe_error, not an echo of junk."""
    text = json.dumps({"event": "gusher.subscribe", "data": {"id": request_id, "channel": "c"}}).encode()
    with pytest.raises(CommandError) as raised:
        GUSHER.parse(text)
    assert text_of(raised.value.reply)["event"] == "gusher.subscribe_error"


def test_multi_subscribe_parses_and_echoes_its_channels() -> None:
    """The later gusher.cluster's `gusher.multi_subscribe` with `multi_channel`; replies echo id and list."""
    command = GUSHER.parse(
        b'{"event":"gusher.multi_subscribe","data":{"id":"m","multi_channel":["a","b","a"]}}'
    )
    assert command == MultiSubscribe("m", ("a", "b"))
    assert text_of(GUSHER.multi_subscribed(command, "1.2")) == {
        "event": "gusher.multi_subscribe_succeeded",
        "data": {"id": "m", "multi_channel": ["a", "b"]},
        "socket_id": "1.2",
    }
    refused = text_of(GUSHER.multi_subscribe_refused(command, "b: channel not allowed", "1.2"))
    assert (
        refused["event"] == "gusher.multi_subscribe_error"
        and refused["data"]["reason"] == "b: channel not allowed"
    )


@pytest.mark.parametrize(
    "data",
    [
        {"id": "m"},
        {"id": "m", "multi_channel": []},
        {"id": "m", "multi_channel": ["ok", ""]},
        {"id": [1], "multi_channel": ["a"]},
    ],
)
def test_bad_multi_subscribes_get_its_error_event(data) -> None:
    """A multi_subscribe without a usable list or id is refused with multi_subscribe_error."""
    with pytest.raises(CommandError) as raised:
        GUSHER.parse(json.dumps({"event": "gusher.multi_subscribe", "data": data}).encode(), "7.7")
    reply = text_of(raised.value.reply)
    assert reply["event"] == "gusher.multi_subscribe_error" and reply["socket_id"] == "7.7"


def test_replies_carry_the_socket_id_but_publications_never() -> None:
    """Every reply names the connection (ext); a pushed message stays the published bytes."""
    assert text_of(GUSHER.pong(Ping(1), "12.34"))["socket_id"] == "12.34"
    with pytest.raises(CommandError) as raised:
        GUSHER.parse(b"not json", "12.34")
    assert text_of(raised.value.reply)["socket_id"] == "12.34"
    publication = Publication.create("c", "e", "d")
    assert server_frames(GUSHER.publication(publication)) == [(frames.OP_TEXT, publication.payload)]
