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

from gusher.auth import Identity, identity_from
from gusher.errors import TokenError

# Tokens longer than this are refused before any parsing.
MAX_TOKEN_LENGTH = 8192


def algorithm_for(key: str) -> str:
    """The one algorithm a key may verify: RS256 for a PEM public key, else HS256."""
    return "RS256" if key.lstrip().startswith("-----BEGIN") else "HS256"


def verify(token: str, key: str, leeway: float = 0.0) -> Identity:
    """Check `token`'s signature and expiry with `key`, and read who the client is.

    Raises:
        TokenError: malformed, wrongly signed, signed with another algorithm,
            expired, without `exp`, or without usable `channels`.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"token is longer than {MAX_TOKEN_LENGTH} characters")
    algorithm = algorithm_for(key)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            leeway=leeway,
            options={"require": ["exp"], "verify_aud": False, "verify_iss": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
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
    if "user_id" not in claims and isinstance(claims.get("sub"), str):
        claims["user_id"] = claims["sub"]
    return identity_from(claims, "token", TokenError)
