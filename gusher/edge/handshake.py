"""Everything that can refuse a new WebSocket client, in order of cost, before the upgrade.

Each refusal is a `GusherError` that the slave answers as HTTP with a JSON
reason; no socket is upgraded for a client that is refused. The flask side
(`gusher.edge.routes`) passes in what it read of the request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Collection, Mapping
from typing import Any

from gusher.broker.apps import AppCache
from gusher.core.identity import Identity
from gusher.edge.quota import ConnectionQuota
from gusher.edge.webhook import Authenticator
from gusher.errors import (
    AuthError,
    BackendUnavailable,
    Forbidden,
    HandshakeError,
    InvalidName,
    OverQuota,
    UnknownApp,
)
from gusher.wire import pusher


def check_upgrade(environ: Mapping[str, Any]) -> None:
    """Refuse upgrades RFC 6455 §4.2.1 does not allow, before any webhook call.

    Everything the WebSocket library checks later is checked here first: a
    handshake it would refuse after the webhook had been called (no `Host`:
    a 500 from wsproto, issue 17) must cost the webhook nothing.
    """
    if not environ.get("HTTP_HOST", "").strip():
        raise HandshakeError("missing Host header")
    if environ.get("HTTP_UPGRADE", "").strip().lower() != "websocket":
        raise HandshakeError("not a WebSocket upgrade (need Upgrade: websocket)")
    tokens = {token.strip().lower() for token in environ.get("HTTP_CONNECTION", "").split(",")}
    if "upgrade" not in tokens:
        raise HandshakeError("not a WebSocket upgrade (need Connection: Upgrade)")
    version = environ.get("HTTP_SEC_WEBSOCKET_VERSION", "")
    if version != "13":
        raise HandshakeError("unsupported Sec-WebSocket-Version (need 13)", 426)
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "")
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise HandshakeError("invalid Sec-WebSocket-Key")
    if "gunicorn.socket" not in environ:
        raise HandshakeError("WebSocket upgrades need the gunicorn server", 500)


# RFC 6455 §1.3: the GUID appended to the client's key for its Sec-WebSocket-Accept.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def upgrade_response(key: str) -> bytes:
    """The 101 answer to a request `check_upgrade` let through — pure.

    The same bytes wsproto writes for a server that negotiates no extension
    and no subprotocol (gusher never negotiates either): computed from the
    key gunicorn already parsed, instead of simple-websocket rebuilding the
    request from the environ and parsing it again with h11 (issue 16: ~18 %
    of a JWT connect's CPU).
    """
    accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + _ACCEPT_GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def client_address(peer: str, forwarded_for: str, trusted: Collection[str]) -> str:
    """The client's address, as far as it can be trusted.

    `X-Forwarded-For` is believed only when the peer is one of
    `GUSHER_TRUSTED_PROXIES` (nginx appends the address it saw, so the
    rightmost entry that is not a trusted proxy is the client); otherwise any
    client could name itself whatever it likes to the webhook.
    """
    if peer not in trusted:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:100]
    return peer


def authenticate(
    apps: AppCache,
    authenticator: Authenticator,
    app_key: str,
    auth: str,
    origin: str | None,
    remote: str,
    quota: ConnectionQuota | None = None,
) -> Identity:
    """Who the client is: its app's record, its origin, then its JWT or the webhook's answer.

    Raises:
        AuthError: no `auth`, an unknown or malformed app (401, as the seed
            answers for any bad app), or a token/webhook refusal.
        Forbidden: a browser page of an origin the app does not list.
        OverQuota: the app holds its `max_connections` (429).
        BackendUnavailable: Redis cannot be reached.
    """
    if not auth:
        raise AuthError("missing auth")
    try:
        app = apps.load(app_key)
    except (UnknownApp, InvalidName) as exc:
        raise AuthError(exc.reason) from None
    # Cross-site WebSocket hijacking: a page of another site could open this
    # socket with the user's cookies; refuse it before the webhook sees `auth`.
    if not app.allows_origin(origin):
        raise Forbidden("origin not allowed for this app")
    refusal = quota.refusal(app) if quota is not None else ""
    if refusal:
        raise OverQuota(refusal)
    if app.jwt_key:
        # Imported on first use: PyJWT + cryptography add ~10 MB to every
        # worker's RSS, a cost only deployments that use JWT should pay.
        from gusher.core import tokens

        return tokens.verify(auth, app.jwt_key)
    return authenticator.authenticate(app.url, auth, app_key, remote, app.secret)


# Pusher protocol versions pusher-js speaks (7 since pusher-js 2.x); 4007 for others, as Pusher.
PUSHER_PROTOCOLS = ("5", "6", "7")


def pusher_refusal(
    apps: AppCache,
    app_key: str,
    version: str | None,
    origin: str | None,
    quota: ConnectionQuota | None = None,
) -> tuple[int, str] | None:
    """Why a Pusher client may not connect, as the close code pusher-js acts on, or None.

    Pusher refuses after the upgrade, with `pusher:error` and a close code
    (wave2 §1.4), never with an HTTP status: pusher-js gives up on 4001-4099
    but retries anything else, an HTTP 401 included.
    """
    if version is not None and version not in PUSHER_PROTOCOLS:
        return 4007, f"unsupported protocol version {version[:20]!r} (this server speaks 7)"
    try:
        app = apps.load(app_key)
    except (UnknownApp, InvalidName):
        return pusher.APP_NOT_FOUND, f"App key {app_key[:100]} does not exist"
    except BackendUnavailable:
        return pusher.OVER_CAPACITY, "redis unavailable, try again"
    if not app.pusher:
        return pusher.APP_DISABLED, "the Pusher protocol is not enabled for this app (its `pusher` field)"
    if not app.allows_origin(origin):
        return pusher.UNAUTHORIZED, "origin not allowed for this app"
    try:
        refusal = quota.refusal(app) if quota is not None else ""
    except BackendUnavailable:
        return pusher.OVER_CAPACITY, "redis unavailable, try again"
    if refusal:
        return pusher.OVER_QUOTA, refusal
    return None
