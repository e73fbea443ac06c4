"""The webhook answer's validation (pure)."""

from __future__ import annotations

import pytest

from gusher.auth import Identity, parse_webhook_answer
from gusher.errors import WebhookError


def test_valid_answer() -> None:
    """{"user_id", "channels"} becomes an Identity."""
    assert parse_webhook_answer(b'{"user_id": "BlackJack", "channels": ["a", "b"]}') == Identity(
        "BlackJack", ("a", "b")
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"nope",
        b"[]",
        b'{"user_id": "u"}',
        b'{"user_id": "u", "channels": "a"}',
        b'{"user_id": "u", "channels": [1]}',
        b'{"user_id": "u", "channels": []}',
        b'{"user_id": "u", "channels": [""]}',
        b'{"user_id": [], "channels": ["a"]}',
    ],
)
def test_unusable_answers_are_refused(body: bytes) -> None:
    """Anything but a JSON object with a non-empty list of channel names is a WebhookError."""
    with pytest.raises(WebhookError):
        parse_webhook_answer(body)
