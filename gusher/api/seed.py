"""The master's HTTP API (seed): check an app, push a message, list slaves.

Stateless: any number of masters can serve the same Redis. Every error is a
JSON `{"error": reason}` with the status of its `GusherError` class.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify

from gusher.api import security
from gusher.api.context import authorized_app, current_broker, current_settings, data_parameter
from gusher.broker.base import Broker
from gusher.broker.factory import create_broker
from gusher.config import Settings
from gusher.core.publication import Publication
from gusher.errors import RequestError
from gusher.keys import check_name, pubsub_channel
from gusher.ops import heartbeat

log = logging.getLogger(__name__)

api = Blueprint("gusher_master", __name__, url_prefix="/api")


@api.get("/check/<path:app_key>")
@api.get("/check/", defaults={"app_key": ""})
def check(app_key: str) -> Any:
    """`200 {"app_key"}` when the app exists, else 400 (seed); signed when the app has a secret."""
    authorized_app(app_key)
    return jsonify(app_key=app_key)


@api.post("/push/<app_key>/<channel>/<event>")
def push(app_key: str, channel: str, event: str) -> Any:
    """Publish `{"channel","event","data"}` to `{app_key}@{channel}` (seed)."""
    check_name("channel", channel)
    check_name("event", event)
    authorized_app(app_key)
    publication = Publication.create(channel, event, data_parameter())
    current_broker().publish([(pubsub_channel(app_key, channel), publication)])
    return current_app.response_class(publication.payload, mimetype="application/json")


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
    return jsonify(heartbeat.slave_infos(current_broker().status, current_settings().heartbeat_interval))


def _log_open_apps(broker: Broker, settings: Settings) -> None:
    """Say at start what anyone who reaches this master can do (app keys only, never secrets)."""
    try:
        found = broker.apps.scan()
    except Exception as exc:
        log.warning("could not list apps to check which are open: %s", exc)
        return
    for line in security.describe_open_apps(found, settings):
        log.warning("%s", line)


def init_app(app: Flask, settings: Settings) -> None:
    """Attach the API blueprint and a broker to `app`."""
    broker = create_broker(settings, "gusher-master")
    app.extensions["gusher.settings"] = settings
    app.extensions["gusher.broker"] = broker
    app.register_blueprint(api)
    # In a thread (a greenlet under gunicorn): a slow or absent Redis must not delay start.
    threading.Thread(
        target=_log_open_apps, args=(broker, settings), name="gusher-open-apps", daemon=True
    ).start()

    @app.get("/healthz")
    def healthz() -> Any:
        """Ready when Redis answers; 503 otherwise."""
        current_broker().ping()
        return jsonify(status="ok", role="master")
