"""Who may call the master: app signatures, the bearer secret, the admin token.

The Flask side of `gusher.core.signing`: it takes the method, path, query, body
and headers of the current request and decides, raising `SignatureError`
(401) when the caller has not proved enough.

- An app whose hash has a `secret` accepts pushes and checks only when signed
  (`X-Gusher-Timestamp` + `X-Gusher-Signature`), or with
  `Authorization: Bearer <secret>` where `GUSHER_ALLOW_BEARER_SECRET` is on.
  Apps without a secret stay open, as in the seed.
- `/api/system/*` needs `Authorization: Bearer <GUSHER_ADMIN_TOKEN>` when one
  is configured.
- An app's listings (channels, users) accept the admin token, or the app's own
  signature; they are open only when neither an admin token nor the app's
  secret is configured.

Secrets and tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import logging
import time

from flask import request

from gusher.config import Settings
from gusher.core import access, signing
from gusher.core.access import bearer_token, has_admin_token
from gusher.core.apps import AppConfig
from gusher.errors import RequestError, SignatureError

log = logging.getLogger(__name__)


def _bearer() -> str:
    """The bearer token of this request, or ''."""
    return bearer_token(request.headers.get("Authorization", ""))


def _has_admin_token(settings: Settings) -> bool:
    return has_admin_token(settings, request.headers.get("Authorization", ""))


def _verify_signature(secret: str, settings: Settings) -> None:
    try:
        pairs = signing.query_pairs(request.query_string)
    except UnicodeDecodeError:
        raise RequestError("parameters are not valid UTF-8") from None
    signing.verify_request(
        secret,
        request.method,
        request.path,
        pairs,
        request.get_data(cache=True),
        request.headers.get(signing.TIMESTAMP_HEADER, ""),
        request.headers.get(signing.SIGNATURE_HEADER, ""),
        time.time(),
        settings.signature_tolerance,
        request.headers.get("Content-Type", ""),
    )


def authorize_app(app: AppConfig, settings: Settings) -> None:
    """Refuse a push or check of a secured `app` that does not prove it knows the secret."""
    if not app.is_secured:
        return
    if not app.secret:
        raise SignatureError("the app's secret field is empty: set a secret or remove the field")
    token = _bearer()
    if token and settings.allow_bearer_secret:
        if not signing.same(token, app.secret):
            raise SignatureError("bearer token does not match the app's secret")
        return
    _verify_signature(app.secret, settings)


def authorize_listing(app: AppConfig, settings: Settings) -> None:
    """Refuse a listing of `app`'s channels or users without the admin token or the app's proof."""
    if _has_admin_token(settings):
        return
    if app.is_secured:
        authorize_app(app, settings)
        return
    if settings.admin_token:
        raise SignatureError("this endpoint needs the admin token (Authorization: Bearer …)")


def require_admin(settings: Settings) -> None:
    """Refuse an admin endpoint to a caller without the admin token, when one is configured."""
    access.require_admin(settings, request.headers.get("Authorization", ""))


def describe_open_apps(apps: list[AppConfig], settings: Settings) -> list[str]:
    """The start-up warnings about what anyone who reaches the master can do — pure."""
    lines = []
    open_keys = [app.key for app in apps if not app.is_secured]
    if open_keys:
        shown = ", ".join(open_keys[:50]) + (" …" if len(open_keys) > 50 else "")
        lines.append(
            f"{len(open_keys)} app(s) have no secret; anyone who reaches the master may push to them: {shown}"
        )
    blank = [app.key for app in apps if app.is_secured and not app.secret]
    if blank:
        lines.append(
            f"{len(blank)} app(s) have an empty secret field and refuse every push: {', '.join(blank[:50])}"
        )
    if not settings.admin_token:
        lines.append("GUSHER_ADMIN_TOKEN is not set: /api/system/* and open apps' listings are open")
    return lines
