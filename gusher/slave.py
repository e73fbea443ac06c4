"""The slave's WebSocket route: validate, authenticate, upgrade, hand over.

`GET /ws/{app_key}?auth=…` is checked in a `before_request` (handshake
headers, app key, the app's webhook), so every refusal is an HTTP error with a
JSON reason and no upgrade. Only then does flask-sock upgrade the connection;
its handler gives the socket to the worker's `Hub` and returns, so the
request's greenlet ends and an idle connection owns no greenlet at all
(simple-websocket's reader thread is never started, see `_NoReaderThread`).
"""

from __future__ import annotations

import _socket
import base64
import binascii
import logging
import os
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask_sock import Sock

from gusher.auth import Identity
from gusher.errors import AuthError, BackendUnavailable, Forbidden, HandshakeError, InvalidName, UnknownApp
from gusher.services import SlaveServices

log = logging.getLogger(__name__)

bp = Blueprint("gusher_slave", __name__)
sock = Sock()

_STATIC = Path(__file__).parent / "static"


class _NoReaderThread:
    """Stands in for simple-websocket's per-connection reader thread.

    The Hub reads every socket from the event loop instead, so the thread that
    `simple_websocket.Server` would start (one greenlet per connection) is
    never created.
    """

    name = "gusher-no-reader"

    def __init__(self, target: Any = None) -> None:
        self.target = target

    def start(self) -> None:
        """Do nothing: the Hub owns reading."""


def _services() -> SlaveServices:
    services: SlaveServices = current_app.extensions["gusher.services"]
    return services


def _check_handshake(environ: dict[str, Any]) -> None:
    """Refuse upgrades RFC 6455 §4.2.1 does not allow, before any webhook call."""
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


def _remote_address() -> str:
    """The client's address, as far as it can be trusted.

    `X-Forwarded-For` is believed only when the peer is one of
    `GUSHER_TRUSTED_PROXIES` (nginx appends the address it saw, so the
    rightmost entry that is not a trusted proxy is the client); otherwise any
    client could name itself whatever it likes to the webhook.
    """
    peer = request.remote_addr or ""
    trusted = _services().settings.trusted_proxy_set
    if peer not in trusted:
        return peer
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:100]
    return peer


@bp.before_request
def authenticate() -> None:
    """Everything that can refuse a client, in order of cost."""
    if request.endpoint != "gusher_slave.websocket":
        return
    services = _services()
    app_key = (request.view_args or {}).get("app_key", "")
    _check_handshake(request.environ)
    if services.hub.is_full():
        raise BackendUnavailable("this worker holds its maximum of connections")
    auth = request.args.get("auth", "")
    if not auth:
        raise AuthError("missing auth")
    try:
        app = services.apps.load(services.redis, app_key)
    except (UnknownApp, InvalidName) as exc:  # the seed answers 401 for any bad app
        raise AuthError(exc.reason) from None
    # Cross-site WebSocket hijacking: a page of another site could open this
    # socket with the user's cookies; refuse it before the webhook sees `auth`.
    if not app.allows_origin(request.headers.get("Origin")):
        raise Forbidden("origin not allowed for this app")
    if app.jwt_key:
        # Imported on first use: PyJWT + cryptography add ~10 MB to every
        # worker's RSS, a cost only deployments that use JWT should pay.
        from gusher import tokens

        identity = tokens.verify(auth, app.jwt_key)
    else:
        identity = services.authenticator.authenticate(app.url, auth, app_key, _remote_address(), app.secret)
    g.gusher_identity = identity
    # FACTS: simple-websocket accepts permessage-deflate whenever offered,
    # costing ~95 KB and 2.5x slower sends per connection; never negotiate it.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


@sock.route("/ws/<path:app_key>", bp=bp, endpoint="websocket")
def websocket(ws: Any, app_key: str) -> None:
    """Hand the upgraded socket to the Hub; the request greenlet then ends."""
    identity: Identity = g.gusher_identity
    ws.connected = False  # flask-sock's close() must never write to this socket
    fd = ws.sock.detach()  # and gunicorn's close() must not close it
    raw = _socket.socket(fileno=fd)
    hub = _services().hub
    try:
        raw.setblocking(False)
        conn = hub.attach(raw, app_key, identity)
        hub.follow_user(conn)
    except Exception:
        # The upgrade is done, so no HTTP error can be sent any more: drop the
        # socket (the client sees 1006 and reconnects) and keep the worker.
        log.exception("could not adopt an upgraded connection of app %r", app_key[:100])
        raw.close()
        return
    if log.isEnabledFor(logging.DEBUG):
        log.debug("connected %r from %s", conn, _remote_address())


@bp.get("/")
@bp.get("/demo")
def demo_page() -> Response:
    """A small page that connects, subscribes and shows pushed messages."""
    return Response((_STATIC / "demo.html").read_bytes(), mimetype="text/html")


@bp.get("/healthz")
def healthz() -> Any:
    """Ready when this worker's Redis pub/sub connection is up; 503 otherwise."""
    services = _services()
    if not services.bus.connected:
        raise BackendUnavailable("redis pub/sub not connected")
    return jsonify(status="ok", role="slave", pid=os.getpid(), connections=len(services.hub.connections))


def init_app(app: Flask, services: SlaveServices) -> None:
    """Attach the WebSocket route, the demo page and the worker's services."""
    app.extensions["gusher.services"] = services
    app.config["SOCK_SERVER_OPTIONS"] = {"thread_class": _NoReaderThread}
    app.register_blueprint(bp)
