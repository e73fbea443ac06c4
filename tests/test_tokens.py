"""JWT verification (pure): pinned algorithm, required expiry, claims."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gusher.core import tokens
from gusher.errors import TokenError

HS_KEY = "an-hs256-shared-secret-of-enough-length-0123456789"


def rsa_pair() -> tuple[str, str]:
    """A fresh RSA key: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


PRIVATE, PUBLIC = rsa_pair()


def claims(**extra) -> dict:
    return {
        "user_id": "u1",
        "channels": ["news.*", "private.{user_id}"],
        "exp": int(time.time()) + 60,
        **extra,
    }


def test_hs256_token_gives_identity() -> None:
    """A valid HS256 token yields its user and channel rules."""
    identity = tokens.verify(jwt.encode(claims(), HS_KEY, algorithm="HS256"), HS_KEY)
    assert identity.user_id == "u1"
    assert identity.rules.allows("news.a") and identity.rules.allows("private.u1")
    assert not identity.rules.allows("private.u2")


def test_rs256_token_gives_identity_and_sub_is_accepted() -> None:
    """An RS256 token verifies with the app's public key; `sub` stands in for `user_id`."""
    token = jwt.encode(
        {"sub": "s9", "channels": ["c"], "exp": int(time.time()) + 60}, PRIVATE, algorithm="RS256"
    )
    assert tokens.verify(token, PUBLIC).user_id == "s9"


def _unsigned(payload: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


@pytest.mark.parametrize(
    "make_token, key, reason",
    [
        (lambda: jwt.encode(claims(exp=int(time.time()) - 5), HS_KEY, algorithm="HS256"), HS_KEY, "expired"),
        (lambda: jwt.encode({"user_id": "u", "channels": ["c"]}, HS_KEY, algorithm="HS256"), HS_KEY, "'exp'"),
        (
            lambda: jwt.encode(claims(), "another-secret-of-sufficient-length-xxxxxxxx", algorithm="HS256"),
            HS_KEY,
            "signature",
        ),
        (lambda: _unsigned(claims()), HS_KEY, "not signed with HS256"),
        (lambda: jwt.encode(claims(), PRIVATE, algorithm="RS256"), HS_KEY, "not signed with HS256"),
        # Key confusion: an HS256 token whose HMAC key is the app's *public* key.
        (lambda: _hmac_with_public_key(), PUBLIC, "not signed with RS256"),
        (lambda: jwt.encode(claims(), rsa_pair()[0], algorithm="RS256"), PUBLIC, "signature"),
        (lambda: "not.a.jwt", HS_KEY, "malformed"),
        (lambda: "", HS_KEY, "malformed"),
        (lambda: "x" * 9000, HS_KEY, "longer"),
        (lambda: jwt.encode(claims(channels=[]), HS_KEY, algorithm="HS256"), HS_KEY, "no channels"),
        (lambda: jwt.encode(claims(channels="c"), HS_KEY, algorithm="HS256"), HS_KEY, "'channels'"),
        (lambda: jwt.encode(claims(user_id=["x"]), HS_KEY, algorithm="HS256"), HS_KEY, "user_id"),
    ],
)
def test_forged_expired_and_unusable_tokens_are_refused(make_token, key: str, reason: str) -> None:
    """Expired, unsigned (`alg: none`), wrongly signed, algorithm-swapped or claim-less tokens: TokenError."""
    with pytest.raises(TokenError, match=reason):
        tokens.verify(make_token(), key)


def _hmac_with_public_key() -> str:
    import hashlib
    import hmac

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims())}"
    mac = hmac.new(PUBLIC.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _ec_public() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    "key, reason",
    [
        (PRIVATE, "not a PEM public key"),  # stored by mistake: was an AttributeError (500)
        (_ec_public(), "not an RSA public key"),
        ("-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----", "not a PEM public key"),
    ],
)
def test_unusable_rs256_keys_are_a_token_error(key: str, reason: str) -> None:
    """A jwt_key that looks like PEM but is no RSA public key refuses the client (401), never a 500."""
    token = jwt.encode(claims(), PRIVATE, algorithm="RS256")
    with pytest.raises(TokenError, match=reason):
        tokens.verify(token, key)


@pytest.mark.parametrize("exp", ["9999999999", True, None, [1]])
def test_exp_must_be_a_number(exp) -> None:
    """`exp` is a NumericDate: a string, boolean or other type is refused."""
    token = jwt.encode(claims(exp=exp), HS_KEY, algorithm="HS256")
    with pytest.raises(TokenError):
        tokens.verify(token, HS_KEY)


def test_not_before_is_enforced_with_its_own_reason() -> None:
    """A token whose `nbf` lies ahead is refused as not valid yet (not as 'malformed')."""
    token = jwt.encode(claims(nbf=int(time.time()) + 60), HS_KEY, algorithm="HS256")
    with pytest.raises(TokenError, match="not valid yet"):
        tokens.verify(token, HS_KEY)


def test_an_iat_slightly_ahead_is_accepted() -> None:
    """`iat` is informative: a backend clock a little ahead must not lock clients out."""
    token = jwt.encode(claims(iat=int(time.time()) + 30), HS_KEY, algorithm="HS256")
    assert tokens.verify(token, HS_KEY).user_id == "u1"


def test_binary_hs256_keys_use_every_byte() -> None:
    """A non-UTF-8 key (surrogate-escaped, as read from Redis) verifies with its raw bytes only."""
    raw = bytes(range(128, 192))
    key = raw.decode("utf-8", "surrogateescape")
    assert tokens.verify(jwt.encode(claims(), raw, algorithm="HS256"), key).user_id == "u1"
    lossy = raw.decode("utf-8", "replace").encode("utf-8")  # what a lossy decode would have used
    with pytest.raises(TokenError, match="signature"):
        tokens.verify(jwt.encode(claims(), lossy, algorithm="HS256"), key)
