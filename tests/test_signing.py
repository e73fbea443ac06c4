"""The request signature scheme (pure)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from gusher.core import signing
from gusher.errors import SignatureError

SECRET = "app-secret-0123456789"
NOW = 1_700_000_000


def _sign(method="POST", path="/api/push/a/c/e", pairs=(("data", "x"),), body=b"", ts=str(NOW)) -> str:
    return signing.sign(SECRET, signing.canonical_request(method, path, pairs, body, ts))


def _verify(
    signature: str,
    method="POST",
    path="/api/push/a/c/e",
    pairs=(("data", "x"),),
    body=b"",
    ts=str(NOW),
    now=NOW,
) -> None:
    signing.verify_request(SECRET, method, path, pairs, body, ts, signature, now, 300)


def test_canonical_string_is_documented_shape() -> None:
    """METHOD, path, sorted query, content type, sha256(body), timestamp — one per line."""
    pairs = [("b", "2"), ("a", "x y/é")]
    message = signing.canonical_request("post", "/p", pairs, b"body", "17", " application/json ")
    digest = hashlib.sha256(b"body").hexdigest()
    assert message == f"POST\n/p\na=x%20y%2F%C3%A9&b=2\napplication/json\n{digest}\n17".encode()
    legacy = signing.canonical_request("post", "/p", pairs, b"body", "17", None)
    assert legacy == f"POST\n/p\na=x%20y%2F%C3%A9&b=2\n{digest}\n17".encode()
    expected = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert signing.sign(SECRET, message) == expected


def test_a_correct_signature_passes_within_the_window() -> None:
    """Signed now, checked up to ±tolerance later or earlier: accepted (hex case-insensitive)."""
    signature = _sign()
    _verify(signature)
    _verify(signature.upper())
    _verify(signature, now=NOW + 300)
    _verify(signature, now=NOW - 300)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"method": "GET"}, "does not match"),
        ({"path": "/api/push/a/c/other"}, "does not match"),
        ({"pairs": (("data", "y"),)}, "does not match"),
        ({"body": b"tampered"}, "does not match"),
        ({"now": NOW + 301}, "clock"),
        ({"now": NOW - 301}, "clock"),
    ],
)
def test_anything_changed_is_refused(change: dict, reason: str) -> None:
    """A different method, path, query or body, or a stale timestamp, is a SignatureError."""
    with pytest.raises(SignatureError, match=reason):
        _verify(_sign(), **change)


@pytest.mark.parametrize(
    "ts, signature",
    [("", "ab"), (str(NOW), ""), ("12.5", "ab"), ("-1", "ab"), ("9" * 30, "ab"), ("\uff11\uff12", "ab")],
)
def test_missing_or_malformed_headers_are_refused(ts: str, signature: str) -> None:
    """Missing headers and non-integer timestamps are refused before any HMAC."""
    with pytest.raises(SignatureError):
        _verify(signature, ts=ts)


def test_query_order_and_escaping_do_not_matter() -> None:
    """The client's choice of query order and percent-escaping does not change the signature."""
    a = signing.query_pairs("b=2&a=x+y")
    b = signing.query_pairs(b"a=x%20y&b=%32")
    assert signing.canonical_query(a) == signing.canonical_query(b)


def test_signed_headers_helper_matches_the_server_side() -> None:
    """`signed_headers` (used by `gusher sign`) produces what `verify_request` accepts."""
    url = "http://h:1/api/push/my%20app/c/e?data=hi%21&z=1"
    headers = signing.signed_headers(SECRET, "post", url, b"{}", NOW)
    signing.verify_request(
        SECRET,
        "POST",
        "/api/push/my app/c/e",
        [("z", "1"), ("data", "hi!")],
        b"{}",
        headers[signing.TIMESTAMP_HEADER],
        headers[signing.SIGNATURE_HEADER],
        NOW,
        300,
    )


def test_constant_time_comparison_handles_any_text() -> None:
    """`same` compares non-ASCII without raising."""
    assert signing.same("é", "é") and not signing.same("é", "e")


def test_repeated_query_keys_keep_their_order() -> None:
    """`?data=a&data=b` pushes "a": swapping the values is another request, so another signature."""
    first = signing.canonical_query(signing.query_pairs("data=a&data=b"))
    swapped = signing.canonical_query(signing.query_pairs("data=b&data=a"))
    assert first != swapped
    assert first == "data=a&data=b"
    assert signing.canonical_query(signing.query_pairs("z=1&data=b&a=2&data=a")) == "a=2&data=b&data=a&z=1"
    with pytest.raises(SignatureError, match="does not match"):
        _verify(_sign(pairs=(("data", "a"), ("data", "b"))), pairs=(("data", "b"), ("data", "a")))


def test_binary_secrets_sign_with_their_raw_bytes() -> None:
    """A secret read from Redis with undecodable bytes (surrogate-escaped) keys the HMAC with those bytes."""
    raw = b"\xff\xfe-binary-\x80"
    secret = raw.decode("utf-8", "surrogateescape")
    assert signing.sign(secret, b"m") == hmac.new(raw, b"m", hashlib.sha256).hexdigest()
    other = b"\xfe\xff-binary-\x81".decode("utf-8", "surrogateescape")
    assert signing.sign(secret, b"m") != signing.sign(other, b"m")
