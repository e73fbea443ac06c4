"""The request signature of the master API and of webhook calls — pure.

A backend proves it knows an app's `secret` by sending two headers::

    X-Gusher-Timestamp: <unix seconds>
    X-Gusher-Signature: hex(HMAC-SHA256(secret, canonical request))

where the canonical request is six lines joined by `\\n`::

    METHOD                      upper case, e.g. POST
    PATH                        percent-decoded, as the master sees it: /api/push/app/news/created
    SORTED QUERY                decoded (key, value) pairs sorted by key, repeated keys kept in
                                the order sent; each part percent-encoded (RFC 3986
                                unreserved kept), joined `k=v&k=v`; empty if none
    CONTENT TYPE                the Content-Type header as sent, trimmed; empty if none
    SHA256(BODY)                hex digest of the raw body bytes (of b"" when there is none)
    TIMESTAMP                   the header's value

The content type is signed because it decides how the body is read: a signed
JSON push `{"data":"hello &data=PWNED"}` replayed as a form delivered
`PWNED"}` (issue 17). A request without a body may still be signed the way
earlier versions did, with the five lines other than CONTENT TYPE: without a
body, the type changes nothing.

Decoding before re-encoding makes the signature independent of how a client
library happens to escape its URL. The timestamp bounds replays to a window
(±`GUSHER_SIGNATURE_TOLERANCE`, default 5 minutes) without any server state;
within the window a captured request can be replayed, which at worst repeats a
push — use HTTPS so requests cannot be captured. All comparisons are
constant-time (`hmac.compare_digest`).

Webhook calls carry `X-Gusher-Signature: hex(HMAC-SHA256(secret, body))`.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Iterable

from gusher.errors import SignatureError

TIMESTAMP_HEADER = "X-Gusher-Timestamp"
SIGNATURE_HEADER = "X-Gusher-Signature"

_MAX_TIMESTAMP_LENGTH = 20


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Decoded query pairs, sorted by key and re-encoded one canonical way.

    The sort is stable and by key only: the master reads the *first* of
    repeated parameters (`?data=a&data=b` pushes "a"), so swapping their values
    changes the request and must change the signature too.
    """
    quote = urllib.parse.quote
    ordered = sorted(pairs, key=lambda pair: pair[0])
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in ordered)


def query_pairs(raw_query: bytes | str) -> list[tuple[str, str]]:
    """The decoded pairs of a raw query string (`+` is a space); non-UTF-8 raises UnicodeDecodeError."""
    text = raw_query.decode("utf-8") if isinstance(raw_query, bytes) else raw_query
    return urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")


def canonical_request(
    method: str,
    path: str,
    pairs: Iterable[tuple[str, str]],
    body: bytes,
    timestamp: str,
    content_type: str | None = "",
) -> bytes:
    """The exact bytes that are signed; `content_type=None` gives the five-line form of old."""
    lines = [method.upper(), path, canonical_query(pairs), hashlib.sha256(body).hexdigest(), timestamp]
    if content_type is not None:
        lines.insert(3, content_type.strip())
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def sign(secret: str, message: bytes) -> str:
    """hex(HMAC-SHA256(secret, message))."""
    # surrogateescape: a secret read from Redis with undecodable bytes signs with those bytes.
    return hmac.new(secret.encode("utf-8", "surrogateescape"), message, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time string equality (any characters)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


def verify_request(
    secret: str,
    method: str,
    path: str,
    pairs: Iterable[tuple[str, str]],
    body: bytes,
    timestamp: str,
    signature: str,
    now: float,
    tolerance: float,
    content_type: str = "",
) -> None:
    """Check a request's signature headers (`content_type`: its Content-Type header, "" if none).

    Raises:
        SignatureError: a header is missing, the timestamp is malformed or
            outside ±`tolerance` seconds of `now`, or the signature is wrong.
    """
    if not timestamp or not signature:
        raise SignatureError(f"this app needs signed requests ({TIMESTAMP_HEADER} and {SIGNATURE_HEADER})")
    if len(timestamp) > _MAX_TIMESTAMP_LENGTH or not timestamp.isdigit() or not timestamp.isascii():
        raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds")
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {tolerance:g} s from the server's clock")
    given = signature.strip().lower()
    pairs = list(pairs)
    if same(sign(secret, canonical_request(method, path, pairs, body, timestamp, content_type)), given):
        return
    if not body and same(sign(secret, canonical_request(method, path, pairs, body, timestamp, None)), given):
        return  # the five-line form of earlier versions: without a body the type changes nothing
    raise SignatureError("signature does not match")


def signed_headers(
    secret: str, method: str, url: str, body: bytes, now: float, content_type: str = ""
) -> dict[str, str]:
    """The two headers that sign a request to `url` sent with `content_type` (used by `gusher sign`)."""
    parts = urllib.parse.urlsplit(url)
    timestamp = str(int(now))
    message = canonical_request(
        method, urllib.parse.unquote(parts.path), query_pairs(parts.query), body, timestamp, content_type
    )
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, message)}
