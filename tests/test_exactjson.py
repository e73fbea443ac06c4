"""JSON values pass through exactly, integers of any size included (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gusher.core import exactjson

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def test_integers_beyond_64_bits_stay_integers() -> None:
    """Issue 17 #11: 123456789012345678901234567890 is not turned into 1.2345678901234568e+29."""
    text = (
        b'{"data":123456789012345678901234567890,"n":-98765432109876543210987,"s":"12345678901234567890123"}'
    )
    value = exactjson.loads(text)
    assert value == {
        "data": 123456789012345678901234567890,
        "n": -98765432109876543210987,
        "s": "12345678901234567890123",
    }
    assert exactjson.dumps(value) == text


@given(VALUES)
@settings(max_examples=300, deadline=None)
def test_any_value_round_trips(value: object) -> None:
    """Property: dumps then loads gives the value back, whatever the size of its integers."""
    assert exactjson.loads(exactjson.dumps(value)) == value


@pytest.mark.parametrize(
    "text", [b"NaN", b"[Infinity]", b'{"a": 1', b"\xff", b"123456789012345678901234567890x"]
)
def test_invalid_json_is_refused(text: bytes) -> None:
    """Only valid JSON parses, on the slow path as on the fast one."""
    with pytest.raises(exactjson.JSONDecodeError):
        exactjson.loads(text)
