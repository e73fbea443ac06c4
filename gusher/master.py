"""The master's HTTP API (seed): check an app, push a message, list slaves.

Stateless: any number of masters can serve the same Redis. Every error is a
JSON `{"error": reason}` with the status of its `GusherError` class.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request

from gusher import apps, heartbeat, pushes, security
from gusher.config import Settings
from gusher.errors import PayloadTooLarge, RequestError
from gusher.keys import check_name, pubsub_channel
from gusher.protocol import encode_message

log = logging.getLogger(__name__)

api = Blueprint("gusher_master", __name__, url_prefix="/api")


def current_settings() -> Settings:
    """The settings of the app serving this request."""
    settings: Settings = current_app.extensions["gusher.settings"]
    return settings


def current_redis() -> Any:
    """The Redis client of the app serving this request."""
    return current_app.extensions["gusher.redis"]


def authorized_app(app_key: str) -> apps.AppConfig:
    """The app, once the caller proved it may push to it (see `gusher.security`).

    Raises:
        InvalidName / UnknownApp: 400, as in the seed.
        SignatureError: 401, the app has a secret and the request is not signed with it.
    """
    app = apps.load_app(current_redis(), app_key)
    security.authorize_app(app, current_settings())
    return app


@api.get("/check/<path:app_key>")
@api.get("/check/", defaults={"app_key": ""})
def check(app_key: str) -> Any:
    """`200 {"app_key"}` when the app exists, else 400 (seed); signed when the app has a secret."""
    authorized_app(app_key)
    return jsonify(app_key=app_key)


def _strict_field(encoded: bytes, name: str) -> str | None:
    """Field `name` of an urlencoded string; non-UTF-8 is refused, not replaced."""
    try:
        fields = urllib.parse.parse_qs(encoded.decode("utf-8"), encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise RequestError("parameters are not valid UTF-8") from None
    values = fields.get(name)
    return values[0] if values else None


def _data_parameter() -> Any:
    """`data` from the query string or the form body (seed, a string), or a JSON body (ext, any value)."""
    limit = current_settings().max_push_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    data = _strict_field(request.query_string, "data")
    if data is None:
        if request.mimetype == "application/x-www-form-urlencoded":
            data = _strict_field(request.get_data(cache=True), "data")
        elif request.mimetype == "application/json":
            # ext: `{"data": <any JSON>}` is delivered as that JSON value.
            return pushes.data_of(pushes.parse_json_body(request.get_data(cache=True)))
        else:
            data = request.form.get("data")
    if not data:
        raise RequestError("data is empty")
    if len(data) > limit:
        raise PayloadTooLarge(f"data over {limit} bytes")
    return data


@api.post("/push/<app_key>/<channel>/<event>")
def push(app_key: str, channel: str, event: str) -> Any:
    """Publish `{"channel","event","data"}` to `{app_key}@{channel}` (seed)."""
    check_name("channel", channel)
    check_name("event", event)
    authorized_app(app_key)
    data = _data_parameter()
    message = encode_message(channel, event, data)
    with apps.backend():
        current_redis().publish(pubsub_channel(app_key, channel), message)
    return current_app.response_class(message, mimetype="application/json")


@api.post("/push/", defaults={"rest": ""})
@api.post("/push/<path:rest>")
def push_malformed(rest: str) -> Any:
    """Pushes whose path lacks a part: say which."""
    parts = rest.split("/")
    names = ("app_key", "channel", "event")
    for name, part in zip(names, [*parts, "", "", ""][:3], strict=True):
        if not part:
            raise RequestError(f"{name} is empty")
    raise RequestError("push path must be /api/push/{app_key}/{channel}/{event}")


@api.get("/system/slaveinfos")
def slaveinfos() -> Any:
    """Every live slave, merged over its workers (seed shape); admin token when configured."""
    security.require_admin(current_settings())
    return jsonify(heartbeat.slave_infos(current_redis(), current_settings().heartbeat_interval))


def _log_open_apps(client: Any, settings: Settings) -> None:
    """Say at start what anyone who reaches this master can do (app keys only, never secrets)."""
    try:
        found = apps.scan_apps(client)
    except Exception as exc:
        log.warning("could not list apps to check which are open: %s", exc)
        return
    for line in security.describe_open_apps(found, settings):
        log.warning("%s", line)


def init_app(app: Flask, settings: Settings) -> None:
    """Attach the API blueprint and a Redis client to `app`."""
    app.extensions["gusher.settings"] = settings
    app.extensions["gusher.redis"] = apps.connect_redis(settings, "gusher-master")
    app.register_blueprint(api)
    # In a thread (a greenlet under gunicorn): a slow or absent Redis must not delay start.
    threading.Thread(
        target=_log_open_apps,
        args=(app.extensions["gusher.redis"], settings),
        name="gusher-open-apps",
        daemon=True,
    ).start()

    @app.get("/healthz")
    def healthz() -> Any:
        """Ready when Redis answers; 503 otherwise."""
        with apps.backend():
            current_redis().ping()
        return jsonify(status="ok", role="master")
