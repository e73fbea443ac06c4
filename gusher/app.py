"""Application factories for the two roles, and the one error → HTTP mapping."""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from flask import Flask, jsonify, request
from flask.sessions import NullSession, SessionInterface
from werkzeug.exceptions import HTTPException

from gusher.config import Settings, load_settings
from gusher.core.metrics import Metrics
from gusher.edge import routes
from gusher.edge.services import SlaveServices
from gusher.errors import GusherError, HandshakeError, PayloadTooLarge, RequestError, RequestTimeout
from gusher.limits import BoundedBodies

log = logging.getLogger(__name__)


_PROBES = {"healthz", "gusher_slave.healthz"}


def _error_response(error: GusherError) -> Any:
    response = jsonify(error.payload())
    response.status_code = error.http_status
    if isinstance(error, HandshakeError) and error.http_status == 426:
        response.headers["Sec-WebSocket-Version"] = "13"
    if isinstance(error, (RequestTimeout, PayloadTooLarge)):
        response.headers["Connection"] = "close"  # the rest of the body is never read
    return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(GusherError)
    def gusher_error(error: GusherError) -> Any:
        # A readiness probe's 503 is its answer, not an incident (it was a warning at every boot).
        if error.http_status >= 500 and request.endpoint not in _PROBES:
            log.warning("%s: %s", type(error).__name__, error.reason)
        return _error_response(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        response = jsonify(error=error.description or error.name)
        response.status_code = error.code or 500
        # werkzeug's own headers, `Allow` of a 405 above all (RFC 9110 §15.5.6), in a JSON answer.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        log.exception("unhandled error")
        response = jsonify(error="internal error")
        response.status_code = 500
        return response


def _refuse_undecodable_urls() -> None:
    """400 for a path or query that is not UTF-8 once percent-decoded.

    WSGI hands the path over as latin-1 and werkzeug would decode it with
    replacement: `%fe` and `%ff` reached the same channel U+FFFD, and
    `auth=%ff` reached the webhook as U+FFFD (issue 17). ASCII without a `%`
    escape is UTF-8 as it stands: the usual request skips the decoding (it was
    ~1.6 % of a push's CPU).
    """
    path = request.environ.get("PATH_INFO", "")
    if not path.isascii():
        try:
            path.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise RequestError("path is not valid UTF-8") from None
    query = request.query_string
    if b"%" in query or not query.isascii():
        try:
            urllib.parse.unquote_to_bytes(query.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("parameters are not valid UTF-8") from None


class _NoSessions(SessionInterface):
    """The master keeps no Flask session (the console signs its own cookie, `gusher.core.console_access`).

    Flask's default interface built a fresh null session for every request,
    only to see at its end that there was nothing to save (~1 % of a push's CPU);
    this one hands out one shared, read-only `NullSession` and saves nothing.
    """

    _null = NullSession()

    def open_session(self, app: Flask, request: Any) -> NullSession:
        return self._null

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


def _new_app(name: str, settings: Settings, metrics: Metrics) -> Flask:
    app = Flask(name)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # seed key order
    app.config["MAX_CONTENT_LENGTH"] = settings.max_push_bytes + 4096
    app.extensions["gusher.metrics"] = metrics
    _register_error_handlers(app)
    app.before_request(_refuse_undecodable_urls)
    app.wsgi_app = BoundedBodies(  # type: ignore[method-assign]
        app.wsgi_app, settings.request_timeout, settings.max_push_bytes, metrics
    )
    return app


def create_master_app(settings: Settings | None = None) -> Flask:
    """The master: the stateless HTTP API."""
    # Imported here: a slave worker never loads the master's routes (fewer modules to boot, less RSS).
    from gusher.api import console, ext, pusher, seed

    settings = settings or load_settings()
    app = _new_app("gusher.master", settings, Metrics())
    app.session_interface = _NoSessions()
    seed.init_app(app, settings)
    ext.init_app(app)
    pusher.init_app(app)
    console.init_app(app)
    return app


def create_slave_app(settings: Settings | None = None) -> Flask:
    """The slave: the WebSocket route; per-worker services start with the worker."""
    settings = settings or load_settings()
    services = SlaveServices(settings)
    app = _new_app("gusher.slave", settings, services.metrics)
    routes.init_app(app, services)

    @app.before_request
    def ensure_started() -> None:
        # Served without gunicorn.conf.py's post_worker_init hook: start lazily.
        services.start()
        services.requests_in_flight += 1

    @app.teardown_request
    def request_done(_: BaseException | None) -> None:
        services.requests_in_flight -= 1

    return app
