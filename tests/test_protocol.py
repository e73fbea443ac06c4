"""Client commands and server events (pure)."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gusher import protocol


def test_parse_subscribe() -> None:
    """A seed subscribe command parses into its event, id and channel."""
    command = protocol.parse_command(b'{"event":"gusher.subscribe","data":{"id":"7","channel":"news"}}')
    assert command == protocol.Command("gusher.subscribe", "7", "news")
    assert orjson.loads(command.succeeded()) == {
        "event": "gusher.subscribe_succeeded",
        "data": {"id": "7", "channel": "news"},
    }
    assert orjson.loads(command.failed("why")) == {
        "event": "gusher.subscribe_error",
        "data": {"id": "7", "channel": "news", "reason": "why"},
    }


def test_missing_id_is_echoed_as_empty_string() -> None:
    """Seed clients may omit the id; the reply still carries one."""
    command = protocol.parse_command(b'{"event":"gusher.unsubscribe","data":{"channel":"c"}}')
    assert command.id == ""


def test_common_message_keeps_seed_key_order() -> None:
    """Pushed messages are {"channel","event","data"} in that order."""
    assert protocol.encode_message("c", "e", "d") == b'{"channel":"c","event":"e","data":"d"}'


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
    """Property: every input parses or raises CommandError carrying a well-formed reply event."""
    try:
        command = protocol.parse_command(text)
    except protocol.CommandError as exc:
        reply = orjson.loads(exc.reply)
        assert reply["event"] in ("gusher.error", "gusher.subscribe_error", "gusher.unsubscribe_error")
        assert isinstance(reply["data"]["reason"], str) and reply["data"]["reason"]
        return
    assert command.event in (protocol.SUBSCRIBE, protocol.UNSUBSCRIBE, protocol.PING)
    orjson.loads(command.succeeded())


@pytest.mark.parametrize("request_id", ["x" * 201, {"a": 1}, [1], True])
def test_unechoable_ids_are_refused(request_id) -> None:
    """Ids that are not short strings or numbers get a subscribe_error, not an echo of junk."""
    text = json.dumps({"event": "gusher.subscribe", "data": {"id": request_id, "channel": "c"}}).encode()
    with pytest.raises(protocol.CommandError) as raised:
        protocol.parse_command(text)
    assert orjson.loads(raised.value.reply)["event"] == "gusher.subscribe_error"
