"""The admin console at `/ui` on the master: a page, its JSON, its sign-in.

- `GET  /ui`: the page (static HTML, CSS and JS from `gusher/static/console/`, no build step);
- `GET  /ui/api/session`, `POST` (sign in with the admin token), `DELETE` (sign out);
- `GET  /ui/api/cluster`: live slaves and masters with their workers (`gusher.ops.cluster`);
- `GET  /ui/api/apps`, `/ui/api/apps/{app_key}`: apps and how each is secured; one app's
  channels and online users;
- `POST /ui/api/push`: a test message `{"app_key", "channel", "event", "data"}`.

Who gets in, and which requests count as the console's own, is decided in
`gusher.core.console_access`; this module only reads the request for it and
sets the cookie. Every answer forbids framing and caching, and the page's
Content-Security-Policy allows nothing but its own files.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request, send_from_directory

from gusher.api import pushes
from gusher.api.context import current_broker, current_settings, json_body, publish
from gusher.core import console_access
from gusher.core.console_access import COOKIE_NAME, CSRF_HEADER, PROXY_HEADERS
from gusher.core.publication import Publication
from gusher.core.signing import same
from gusher.errors import AuthError, Forbidden, RequestError
from gusher.keys import check_name, pubsub_channel
from gusher.ops import cluster, presence

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static" / "console"
_FILES = {"console.js", "console.css"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

console = Blueprint("gusher_console", __name__, url_prefix="/ui")


def _token() -> str:
    return current_settings().admin_token


def _visit() -> console_access.Visit:
    return console_access.Visit(
        remote_addr=request.remote_addr or "",
        host=request.headers.get("Host", ""),
        proxied=any(name in request.headers for name in PROXY_HEADERS),
        cookie=request.cookies.get(COOKIE_NAME, ""),
    )


def _refuse(refusal: tuple[int, str] | None) -> None:
    if refusal is not None:
        status, reason = refusal
        raise (AuthError if status == 401 else Forbidden)(reason)


def _signed_in() -> None:
    """Raise unless the request may read the console's data."""
    _refuse(console_access.refusal(_token(), _visit(), time.time()))


def _reachable() -> None:
    """Raise unless the page may be served: anywhere with a token (it shows the sign-in)."""
    if not _token():
        _signed_in()


def _own_request(cookie: str) -> None:
    """Raise unless a state change comes from a console page of this master (CSRF)."""
    hosts = (request.headers.get("Host", ""), request.headers.get("X-Forwarded-Host", ""))
    reason = console_access.cross_site_reason(
        _token(),
        cookie,
        request.headers.get(CSRF_HEADER, ""),
        request.headers.get("Sec-Fetch-Site", ""),
        request.headers.get("Origin", ""),
        hosts,
    )
    if reason:
        raise Forbidden(reason)


def _is_https() -> bool:
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


@console.after_request
def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = _CSP
    return response


@console.get("")
@console.get("/")
def page() -> Any:
    """The console's one page; its script asks `/ui/api/session` whether to show the sign-in."""
    _reachable()
    return send_from_directory(STATIC, "index.html", max_age=0)


@console.get("/static/<name>")
def static_file(name: str) -> Any:
    _reachable()
    if name not in _FILES:
        raise RequestError("no such console file")
    return send_from_directory(STATIC, name, max_age=0)


@console.get("/api/session")
def session_state() -> Any:
    """`{"mode": "token" | "loopback", "signed_in", "csrf"}`: what the page shows."""
    _reachable()
    token, cookie = _token(), request.cookies.get(COOKIE_NAME, "")
    signed_in = not token or console_access.session_is_valid(token, cookie, time.time())
    return jsonify(
        mode="token" if token else "loopback",
        signed_in=signed_in,
        csrf=console_access.csrf_token(token, cookie) if signed_in else "",
    )


@console.post("/api/session")
def sign_in() -> Any:
    """`{"token"}`: the admin token buys an HttpOnly, SameSite=Strict session cookie."""
    _reachable()
    _own_request("")
    token = _token()
    if not token:
        raise RequestError("no GUSHER_ADMIN_TOKEN is set: the console needs no sign-in from loopback")
    given = json_body().get("token")
    if not isinstance(given, str) or not given or not same(given, token):
        log.warning("console sign-in refused from %s", request.remote_addr)
        raise AuthError("wrong admin token")
    cookie = console_access.new_session(token, time.time())
    response = jsonify(signed_in=True, csrf=console_access.csrf_token(token, cookie))
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=console_access.SESSION_SECONDS,
        path="/ui",
        httponly=True,
        samesite="Strict",
        secure=_is_https(),
    )
    log.info("console sign-in from %s", request.remote_addr)
    return response


@console.delete("/api/session")
def sign_out() -> Any:
    """End the session in this browser (the cookie is cleared)."""
    _signed_in()
    _own_request(request.cookies.get(COOKIE_NAME, ""))
    response = jsonify(signed_in=False)
    response.delete_cookie(COOKIE_NAME, path="/ui", httponly=True, samesite="Strict", secure=_is_https())
    return response


@console.get("/api/cluster")
def cluster_state() -> Any:
    _signed_in()
    return jsonify(cluster.read(current_broker().status, current_settings().heartbeat_interval))


@console.get("/api/apps")
def apps() -> Any:
    """The apps and how each is secured: never a secret, nor the webhook's URL credentials."""
    _signed_in()
    return jsonify(
        apps=[
            {
                "key": app.key,
                "signed_pushes": app.is_secured,
                "jwt": bool(app.jwt_key),
                "webhook": bool(app.url),
                "origins": list(app.origins),
            }
            for app in current_broker().apps.scan()
        ]
    )


@console.get("/api/apps/<app_key>")
def app_detail(app_key: str) -> Any:
    """One app's live channels (subscribers, users) and online users (connections)."""
    _signed_in()
    current_broker().apps.load(app_key)  # 400 for an unknown app, as everywhere
    merged = presence.read(current_broker().status, app_key)
    return jsonify(
        app_key=app_key,
        channels=[
            {"name": name, "subscriptions": count, "users": len(users)}
            for name, (count, users) in sorted(merged.channels.items())
        ],
        users=[{"id": user, "connections": n} for user, n in sorted(merged.users.items())],
    )


@console.post("/api/push")
def push() -> Any:
    """A test message from the console's form: `{"app_key", "channel", "event", "data"}`."""
    _signed_in()
    _own_request(request.cookies.get(COOKIE_NAME, ""))
    body = json_body()
    app_key, channel, event = (_name(body, field) for field in ("app_key", "channel", "event"))
    app = current_broker().apps.load(app_key)
    data = pushes.data_of(body)
    publish([(pubsub_channel(app_key, channel), Publication.create(channel, event, data))], numbered_for=app)
    log.info("console push to %s/%s (%s) from %s", app_key, channel, event, request.remote_addr)
    return jsonify(app_key=app_key, channel=channel, event=event, data=data)


def _name(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise RequestError(f"{field} must be a string")
    return check_name(field, value)


def init_app(app: Flask) -> None:
    app.register_blueprint(console)
