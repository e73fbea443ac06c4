"""JWT instead of the webhook: verify a client's token locally — pure.

An app whose hash holds `jwt_key` lets clients connect with `?auth=<JWT>`
signed by the app's backend; no webhook is called. The algorithm is pinned by
the kind of key, never taken from the token's header (that is how `alg: none`
and the RS256→HS256 key-confusion forgeries work): a PEM public key means
RS256, anything else is an HS256 shared secret. `exp` is required, so a
leaked token stops working by itself.

Claims: `channels` (list of allowed channels, patterns welcome) and `user_id`
(`sub` is accepted when `user_id` is absent).
"""

from __future__ import annotations

from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gusher.core.identity import Identity, identity_from
from gusher.errors import TokenError

# Tokens longer than this are refused before any parsing. The request line is
# at most 8,190 bytes (gunicorn.conf.py), which leaves ~7,900 for `?auth=`.
MAX_TOKEN_LENGTH = 7900


def algorithm_for(key: str) -> str:
    """The one algorithm a key may verify: RS256 for a PEM public key, else HS256."""
    return "RS256" if key.lstrip().startswith("-----BEGIN") else "HS256"


def _verification_key(key: str, algorithm: str) -> Any:
    """The key as PyJWT wants it: bytes for HS256, an RSA public key object for RS256.

    Loading the PEM here refuses what PyJWT would accept and then fail on (a
    private key stored by mistake raised AttributeError, a 500 on every
    handshake) or misuse (an EC key).
    """
    raw = key.encode("utf-8", "surrogateescape")  # every byte of a binary HS256 secret counts
    if algorithm == "HS256":
        return raw
    try:
        public = load_pem_public_key(raw.strip())
    except (ValueError, TypeError):
        raise TokenError("the app's jwt_key is not a PEM public key") from None
    if not isinstance(public, RSAPublicKey):
        raise TokenError("the app's jwt_key is not an RSA public key")
    return public


def verify(token: str, key: str, leeway: float = 0.0) -> Identity:
    """Check `token`'s signature and expiry with `key`, and read who the client is.

    Raises:
        TokenError: malformed, wrongly signed, signed with another algorithm,
            expired, without `exp`, or without usable `channels`.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"token is longer than {MAX_TOKEN_LENGTH} characters")
    algorithm = algorithm_for(key)
    verification_key = _verification_key(key, algorithm)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            verification_key,
            algorithms=[algorithm],
            leeway=leeway,
            # `iat` is informative (RFC 7519 §4.1.6), not a validity bound: checking it
            # would refuse fresh tokens from a backend whose clock runs a second ahead.
            options={"require": ["exp"], "verify_aud": False, "verify_iss": False, "verify_iat": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenError("token is not valid yet (nbf in the future)") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"token has no '{exc.claim}' claim") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError(f"token is not signed with {algorithm}") from None
    except jwt.InvalidSignatureError:
        raise TokenError("token signature is invalid") from None
    except jwt.InvalidKeyError:
        raise TokenError("the app's jwt_key cannot verify tokens") from None
    except jwt.PyJWTError:
        raise TokenError("token is malformed") from None
    # RFC 7519 §2: a NumericDate is a JSON number; PyJWT also takes "123" and true.
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise TokenError("token's 'exp' is not a number")
    if "user_id" not in claims and isinstance(claims.get("sub"), str):
        claims["user_id"] = claims["sub"]
    return identity_from(claims, "token", TokenError)
