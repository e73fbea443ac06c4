"""The master's HTTP API (seed): check an app, push a message, list slaves.

Stateless: any number of masters can serve the same Redis. Every error is a
JSON `{"error": reason}` with the status of its `GusherError` class.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from gusher import pages, version_info
from gusher.api import security
from gusher.api.context import authorized_app, current_broker, current_settings, data_parameter, publish
from gusher.api.services import MasterServices
from gusher.broker.apps import AppCache
from gusher.broker.base import Broker
from gusher.broker.factory import create_broker
from gusher.config import Settings
from gusher.core.metrics import Metrics
from gusher.core.publication import Publication
from gusher.errors import RequestError
from gusher.keys import check_name, pubsub_channel
from gusher.ops import exposition, heartbeat

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
    app = authorized_app(app_key)
    publication = Publication.create(channel, event, data_parameter())
    positions = publish([(pubsub_channel(app_key, channel), publication)], numbered_for=app)
    # The answer is what clients receive: with history, the payload with its offset.
    body = publication.payload if not positions else publication.numbered_payload(positions[0][0])
    return current_app.response_class(body, mimetype="application/json")


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


_PUSH_ENDPOINTS = {
    "gusher_master.push",
    "gusher_ext.push_event",
    "gusher_ext.push_batch",
    "gusher_ext.push_user",
    "gusher_ext.push_socket",
    "gusher_ext.push_pattern",
    "gusher_ext.add_user_channels",
    "gusher_ext.replace_user_channels",
    "gusher_console.push",
    "gusher_pusher.trigger",
    "gusher_pusher.trigger_batch",
    "gusher_pusher.terminate_connections",
    "gusher_pusher.terminate_connections_unprefixed",
}


def _count_push(metrics: Metrics, response: Response) -> Response:
    """Every push request, answered or refused, is counted and timed (gusher_push_* metrics)."""
    if request.endpoint in _PUSH_ENDPOINTS:
        if response.status_code == 200:
            metrics.pushes += 1
        elif response.status_code < 500:
            metrics.pushes_refused += 1
        metrics.observe("push_seconds", time.monotonic() - g.get("gusher_started", time.monotonic()))
    return response


def _attach_hooks(app: Flask, services: MasterServices, metrics: Metrics) -> None:
    """One hook before each request, one after: Flask's dispatch of each hook cost ~0.6 % of a push's
    CPU, and the metrics and services are this app's, known here without a lookup per request."""

    def begin_request() -> None:
        services.start()  # served without gunicorn.conf.py's post_worker_init hook: start lazily
        g.gusher_started = time.monotonic()

    def end_request(response: Response) -> Response:
        return _count_push(metrics, response)

    app.before_request(begin_request)
    app.after_request(end_request)


def metrics_page() -> Any:
    """Prometheus metrics: this master's workers summed, and every live slave (admin token when set)."""
    security.require_admin(current_settings())
    services: MasterServices = current_app.extensions["gusher.services"]
    status, interval = current_broker().status, current_settings().heartbeat_interval
    heartbeat_ = services.heartbeat
    own = heartbeat_.report()
    siblings = exposition.live_reports(
        status.heartbeat_reports(heartbeat_.slave_id, "master"),
        time.time(),
        interval,
        skip=heartbeat_.worker_id,
    )
    body = exposition.render(
        [
            *exposition.families(exposition.for_role(exposition.summed([own, *siblings]), "master")),
            *exposition.cluster_families(heartbeat.slave_infos(status, interval)),
        ]
    )
    return current_app.response_class(body, mimetype=None, content_type=exposition.CONTENT_TYPE)


def init_app(app: Flask, settings: Settings) -> None:
    """Attach the API blueprint, a broker and the worker's services to `app`."""
    broker = create_broker(settings, "gusher-master")
    app.extensions["gusher.settings"] = settings
    app.extensions["gusher.broker"] = broker
    app.extensions["gusher.apps"] = AppCache(broker.apps, settings.app_cache_seconds)
    metrics: Metrics = app.extensions["gusher.metrics"]
    services = app.extensions["gusher.services"] = MasterServices(settings, broker, metrics)
    _attach_hooks(app, services, metrics)
    app.register_blueprint(api)
    app.add_url_rule("/metrics", "metrics", metrics_page)
    # In a thread (a greenlet under gunicorn): a slow or absent Redis must not delay start.
    threading.Thread(
        target=_log_open_apps, args=(broker, settings), name="gusher-open-apps", daemon=True
    ).start()

    @app.get("/demo")
    def demo_page() -> Any:
        """The demo (the slave serves it too): from here it pushes and shows who is online."""
        return current_app.response_class(pages.demo_page(), mimetype="text/html")

    @app.get("/gusher.js")
    def client_module() -> Any:
        """The JavaScript client, as the slaves serve it (the demo imports it from here)."""
        return current_app.response_class(pages.client_module(), headers=pages.CLIENT_HEADERS)

    @app.get("/healthz")
    def healthz() -> Any:
        """Ready when Redis answers; 503 otherwise."""
        current_broker().ping()
        return jsonify(status="ok", role="master")

    @app.get("/readyz")
    def readyz() -> Any:
        """Readiness under the later gusher.cluster's name: `/healthz`'s check, `{"status": "ready"}`."""
        current_broker().ping()
        return jsonify(status="ready", role="master")

    @app.get("/version")
    def version() -> Any:
        """gusher's version and the Python running it."""
        return jsonify(version_info("master"))
