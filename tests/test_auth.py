"""The webhook answer's validation (pure), and how the webhook is reached."""

from __future__ import annotations

import pytest

from gusher.core.identity import Identity
from gusher.edge.webhook import Authenticator, parse_webhook_answer
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


def test_identities_allowed_the_same_list_share_it() -> None:
    """One compiled allow-list per distinct answer; `{user_id}` lists stay per user."""
    first = parse_webhook_answer(b'{"user_id": "u1", "channels": ["news", "chat.*"]}')
    second = parse_webhook_answer(b'{"user_id": "u2", "channels": ["news", "chat.*"]}')
    assert first.rules is second.rules and first.channels is second.channels
    assert second.rules.allows("chat.room") and not second.rules.allows("sport")

    mine = parse_webhook_answer(b'{"user_id": "u1", "channels": ["private.{user_id}"]}')
    theirs = parse_webhook_answer(b'{"user_id": "u2", "channels": ["private.{user_id}"]}')
    assert mine.rules is not theirs.rules
    assert mine.rules.allows("private.u1") and not mine.rules.allows("private.u2")
    assert theirs.rules.allows("private.u2") and not theirs.rules.allows("private.u1")


def test_the_shared_lists_are_bounded() -> None:
    """However many distinct lists arrive, the memo keeps a bounded number."""
    from gusher.core import identity

    for i in range(identity._ALLOWANCES_KEPT + 50):
        Identity("u", (f"c{i}",))
    assert len(identity._allowances) == identity._ALLOWANCES_KEPT
    assert Identity("u", ("c0",)).rules.allows("c0")  # evicted, compiled again

    long_list = tuple(f"long{i}" for i in range(identity._SHARED_LIST_MAX + 1))
    assert Identity("u", long_list).rules.allows("long0")
    assert not any(key[0] == long_list for key in identity._allowances)  # never kept


def test_webhook_urls_of_one_origin_share_its_kept_connections(webhook) -> None:
    """Each URL is asked at its own path and query, through one pool per origin; a URL that is
    not http(s) or has no host is a WebhookError, never a call."""
    from tests.support import allow

    authenticator = Authenticator(timeout=5, max_body=4096, concurrency=4)
    first, second = webhook.url + "?app=1", webhook.url.replace("/auth", "/other")
    before = len(webhook.requests)
    assert authenticator.authenticate(first, allow("u", "a")).user_id == "u"
    assert authenticator.authenticate(second, allow("v", "b")).user_id == "v"
    assert [request["path"] for request in webhook.requests[before:]] == ["/auth?app=1", "/other"]
    assert len(authenticator._pools) == 1
    for bad in ("ftp://example.com/auth", "http://", "http://[::1/auth"):
        with pytest.raises(WebhookError):
            authenticator.authenticate(bad, allow("u", "a"))
