"""The slave's HTTP side: the WebSocket route, the demo page and `/healthz`.

`GET /app/{app_key}` speaks Pusher's protocol 7 (issue 13): malformed
upgrades get an HTTP error, but refusals of a well-formed one (unknown app,
a full worker) are Pusher's: `pusher:error` and a 4xxx close after the
upgrade, which pusher-js acts on (`handshake.pusher_refusal`).

`GET /ws/{app_key}?auth=…` is checked in a `before_request` (handshake
headers, capacity, app key, the app's webhook: `gusher.edge.handshake`), so
every refusal is an HTTP error with a JSON reason and no upgrade. Only then
does flask-sock upgrade the connection; its handler gives the socket to the
worker's `Hub` and returns, so the request's greenlet ends and an idle
connection owns no greenlet at all (simple-websocket's reader thread is
never started, see `_NoReaderThread`).
"""

from __future__ import annotations

import _socket
import logging
import os
import time
from typing import Any

import flask_sock
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask_sock import Sock
from simple_websocket import Server

from gusher import pages, version_info
from gusher.core.access import require_admin
from gusher.core.identity import Identity
from gusher.core.metrics import Metrics
from gusher.edge import handshake
from gusher.edge.pusher_channels import ANONYMOUS
from gusher.edge.services import SlaveServices
from gusher.errors import AuthError, BackendUnavailable, Forbidden, GusherError
from gusher.ops import exposition
from gusher.wire import frames
from gusher.wire.base import ClientProtocol
from gusher.wire.gusher import GUSHER
from gusher.wire.pusher import OVER_CAPACITY, error_frame

log = logging.getLogger(__name__)

bp = Blueprint("gusher_slave", __name__)
sock = Sock()


class _NoReaderThread:
    """Stands in for simple-websocket's per-connection reader thread.

    The event loop reads every socket instead (`gusher.edge.connection`), so
    the thread that `simple_websocket.Server` would start (one greenlet per
    connection) is never created.
    """

    name = "gusher-no-reader"

    def __init__(self, target: Any = None) -> None:
        self.target = target

    def start(self) -> None:
        """Do nothing: the connection's read watcher owns reading."""


# The environ key that says `handshake.check_upgrade` accepted the request.
_CHECKED = "gusher.upgrade_checked"


class _CheckedUpgradeServer(Server):
    """simple-websocket's Server, answering an upgrade gusher checked without parsing it again.

    simple-websocket rebuilds the HTTP request from the environ and has
    wsproto/h11 parse it a second time, only to write a 101 that follows from
    one header: ~18 % of a JWT connect's CPU (py-spy, issue 16). A request
    that `check_upgrade` let through (marked in its environ) gets that 101
    straight from `handshake.upgrade_response`; any other falls back to the
    library's handshake. flask-sock builds this class for every WebSocket
    route (`init_app`); after the upgrade the socket is the Hub's, so the
    wsproto state machine it would have advanced is never used.
    """

    def __init__(self, environ: dict[str, Any], **options: Any) -> None:
        if not environ.get(_CHECKED):
            super().__init__(environ, **options)
            return
        # The socket is the Hub's (or refused) as soon as the handler runs, so
        # none of the state simple-websocket's constructor builds (its wsproto
        # connection, its event, its reader) is ever used: ~6 % of a JWT
        # connect's CPU (py-spy, issue 16). `check_upgrade` made sure this is
        # gunicorn's socket. What flask-sock reads afterwards is here.
        self.environ = environ
        self.mode = "gunicorn"
        self.sock = environ["gunicorn.socket"]
        self.sock.sendall(handshake.upgrade_response(environ["HTTP_SEC_WEBSOCKET_KEY"]))
        self.connected = True

    def close(self, reason: Any = None, message: Any = None) -> None:
        """flask-sock's close after the handler: the socket was handed over, so never write to it."""
        if self.environ.get(_CHECKED):
            return
        super().close(reason, message)


def _services() -> SlaveServices:
    services: SlaveServices = current_app.extensions["gusher.services"]
    return services


def _client_address(services: SlaveServices) -> str:
    return handshake.client_address(
        request.remote_addr or "",
        request.headers.get("X-Forwarded-For", ""),
        services.settings.trusted_proxy_set,
    )


@bp.before_request
def authenticate() -> None:
    """Refuse the client before the upgrade, or keep its identity for the handler."""
    if request.endpoint == "gusher_slave.pusher":
        _check_pusher()
        return
    if request.endpoint != "gusher_slave.websocket":
        return
    services = _services()
    try:
        handshake.check_upgrade(request.environ)
        request.environ[_CHECKED] = True
        services.hub.reserve()
        g.gusher_slot = True
        app_key = (request.view_args or {}).get("app_key", "")
        g.gusher_identity = handshake.authenticate(
            services.apps,
            services.authenticator,
            app_key,
            request.args.get("auth", ""),
            request.headers.get("Origin"),
            _client_address(services),
            services.quota,
        )
        g.gusher_history = services.apps.load(app_key).history  # cached: read by the line above
    except GusherError as exc:
        _count_refusal(services.metrics, exc)
        raise
    # FACTS: simple-websocket accepts permessage-deflate whenever offered,
    # costing ~95 KB and 2.5x slower sends per connection; never negotiate it.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def _check_pusher() -> None:
    """A malformed upgrade is an HTTP error; any other refusal waits for the upgrade (`g`)."""
    services = _services()
    try:
        handshake.check_upgrade(request.environ)
    except GusherError as exc:
        _count_refusal(services.metrics, exc)
        raise
    request.environ[_CHECKED] = True
    try:
        services.hub.reserve()
    except BackendUnavailable as exc:
        g.pusher_refusal = (OVER_CAPACITY, exc.reason)
    else:
        g.gusher_slot = True
        app_key = (request.view_args or {}).get("app_key", "")
        version = request.args.get("protocol")
        origin = request.headers.get("Origin")
        g.pusher_refusal = handshake.pusher_refusal(services.apps, app_key, version, origin, services.quota)
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def _count_refusal(metrics: Metrics, error: GusherError) -> None:
    """One refused handshake, by the kind of answer it gets."""
    if isinstance(error, AuthError):
        metrics.handshakes_refused_auth += 1
    elif isinstance(error, Forbidden):
        metrics.handshakes_refused_origin += 1
    elif isinstance(error, BackendUnavailable):
        metrics.handshakes_refused_unavailable += 1
    else:
        metrics.handshakes_refused_request += 1


@bp.teardown_request
def give_back_the_slot(_: BaseException | None) -> None:
    """The handshake is over: its reserved slot is a connection now, or free again."""
    if g.pop("gusher_slot", False):
        _services().hub.unreserve()


@sock.route("/ws/<path:app_key>", bp=bp, endpoint="websocket")
def websocket(ws: Any, app_key: str) -> None:
    """Hand the upgraded socket to the Hub; the request greenlet then ends."""
    _adopt(ws, app_key, g.gusher_identity, GUSHER, g.get("gusher_history"))


@sock.route("/app/<path:app_key>", bp=bp, endpoint="pusher")
def pusher(ws: Any, app_key: str) -> None:
    """A Pusher client: refused with `pusher:error` and its close code, or handed to the Hub."""
    services = _services()
    refusal = g.get("pusher_refusal")
    if refusal is None:
        _adopt(ws, app_key, ANONYMOUS, services.pusher_protocol, None)
        return
    code, reason = refusal
    services.metrics.handshakes_refused_pusher += 1
    ws.connected = False
    raw = _socket.socket(fileno=ws.sock.detach())
    try:
        raw.setblocking(False)
        raw.send(error_frame(reason, code) + frames.encode_close(code, reason))  # a few bytes: never waits
    except OSError:
        pass  # the client is gone already
    finally:
        raw.close()


def _adopt(ws: Any, app_key: str, identity: Identity, protocol: ClientProtocol, history: Any) -> None:
    ws.connected = False  # flask-sock's close() must never write to this socket
    fd = ws.sock.detach()  # and gunicorn's close() must not close it
    raw = _socket.socket(fileno=fd)
    hub = _services().hub
    session = None
    try:
        raw.setblocking(False)
        session = hub.attach(raw, app_key, identity, protocol, history)
        hub.follow_user(session)
    except Exception:
        # The upgrade is done, so no HTTP error can be sent any more: drop the
        # socket (the client sees 1006 and reconnects) and keep the worker.
        log.exception("could not adopt an upgraded connection of app %r", app_key[:100])
        if session is not None:
            session.conn.release()
        else:
            raw.close()
        return
    if log.isEnabledFor(logging.DEBUG):
        log.debug("connected %r from %s", session.conn, _client_address(_services()))


@bp.get("/")
@bp.get("/demo")
def demo_page() -> Response:
    """A small page that connects, subscribes and shows pushed messages."""
    return Response(pages.demo_page(), mimetype="text/html")


@bp.get("/gusher.js")
def client_module() -> Response:
    """The JavaScript client (clients/js/gusher.js), importable from any page: CORS-open, it is public."""
    return Response(pages.client_module(), headers=pages.CLIENT_HEADERS)


@bp.get("/healthz")
def healthz() -> Any:
    """Ready when this worker's pub/sub connection is up; 503 otherwise."""
    services = _services()
    if not services.subscriber.connected:
        raise BackendUnavailable("redis pub/sub not connected")
    return jsonify(status="ok", role="slave", pid=os.getpid(), connections=len(services.hub.sessions))


@bp.get("/readyz")
def readyz() -> Any:
    """Readiness under the later gusher.cluster's name: `/healthz`'s check, `{"status": "ready"}`."""
    if not _services().subscriber.connected:
        raise BackendUnavailable("redis pub/sub not connected")
    return jsonify(status="ready", role="slave")


@bp.get("/version")
def version() -> Any:
    """gusher's version and the Python running it."""
    return jsonify(version_info("slave"))


@bp.get("/metrics")
def metrics_page() -> Any:
    """Prometheus metrics of this slave: its workers summed (admin token when one is set)."""
    services = _services()
    require_admin(services.settings, request.headers.get("Authorization", ""))
    heartbeat = services.heartbeat
    siblings = exposition.live_reports(
        services.broker.status.heartbeat_reports(heartbeat.slave_id),
        time.time(),
        services.settings.heartbeat_interval,
        skip=heartbeat.worker_id,
    )
    values = exposition.for_role(exposition.summed([heartbeat.report(), *siblings]), "slave")
    body = exposition.render(exposition.families(values))
    return Response(body, content_type=exposition.CONTENT_TYPE)


def init_app(app: Flask, services: SlaveServices) -> None:
    """Attach the WebSocket route, the demo page and the worker's services."""
    app.extensions["gusher.services"] = services
    app.config["SOCK_SERVER_OPTIONS"] = {"thread_class": _NoReaderThread}
    # flask-sock names simple-websocket's class in its module; this is the one hook to give it ours.
    flask_sock.Server = _CheckedUpgradeServer  # type: ignore[misc]
    app.register_blueprint(bp)
