"""Who holds the admin token — pure: the bearer token of an `Authorization` header, checked.

Shared by the master's admin endpoints (`gusher.api.security`) and by both
roles' `/metrics`, which take the same token.
"""

from __future__ import annotations

from gusher.config import Settings
from gusher.core.signing import same
from gusher.errors import SignatureError


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer …` header value, or ''.

    WSGI hands headers over as latin-1 text; re-read the bytes as UTF-8 (like
    secrets from Redis, losslessly) so a non-ASCII secret compares equal.
    """
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip().encode("latin-1", "replace").decode("utf-8", "surrogateescape")


def has_admin_token(settings: Settings, authorization: str) -> bool:
    """Whether the header carries the configured admin token (constant-time)."""
    token = bearer_token(authorization)
    return bool(settings.admin_token and token) and same(token, settings.admin_token)


def require_admin(settings: Settings, authorization: str) -> None:
    """Refuse a caller without the admin token, when one is configured (401)."""
    if settings.admin_token and not has_admin_token(settings, authorization):
        raise SignatureError("this endpoint needs the admin token (Authorization: Bearer …)")
