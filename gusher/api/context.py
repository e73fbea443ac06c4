"""What every master route needs of the request it serves: settings, broker, app, body.

Shared by the seed routes (`gusher.api.seed`) and the ext routes
(`gusher.api.ext`), so both read bodies, bound them and check callers the
same way.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from flask import current_app, request

from gusher.api import pushes, security
from gusher.broker.apps import AppCache
from gusher.broker.base import Broker
from gusher.config import Settings
from gusher.core import exactjson
from gusher.core.apps import AppConfig
from gusher.core.metrics import Metrics
from gusher.core.publication import Routed
from gusher.errors import PayloadTooLarge, RequestError


def current_settings() -> Settings:
    """The settings of the app serving this request."""
    settings: Settings = current_app.extensions["gusher.settings"]
    return settings


def current_broker() -> Broker:
    """The broker of the app serving this request."""
    broker: Broker = current_app.extensions["gusher.broker"]
    return broker


def publish(items: list[Routed], numbered_for: AppConfig | None = None) -> list[tuple[int, str]]:
    """Publish through the broker; the master's `publications` counter counts each message.

    Channel pushes pass their app as `numbered_for`: when it keeps history,
    each message is numbered and kept too, and its (offset, epoch) returned.
    Pushes to a user or a socket are never numbered (nobody resumes them).
    """
    history = numbered_for.history if numbered_for is not None else None
    positions = current_broker().publish(items, history)
    metrics: Metrics = current_app.extensions["gusher.metrics"]
    metrics.publications += len(items)
    return positions


def current_apps() -> AppCache:
    """App records as this worker reads them: through its cache (`GUSHER_APP_CACHE_SECONDS`).

    A push needed one HGETALL of its app before its PUBLISH (17 % of a push's
    CPU in a profile); a record is reused for the cache's time, so a changed
    secret or a removed app takes effect within it, on the slaves as here.
    """
    apps: AppCache = current_app.extensions["gusher.apps"]
    return apps


def authorized_app(app_key: str) -> AppConfig:
    """The app, once the caller proved it may push to it (see `gusher.api.security`).

    Raises:
        InvalidName / UnknownApp: 400, as in the seed.
        SignatureError: 401, the app has a secret and the request is not signed with it.
    """
    app = current_apps().load(app_key)
    security.authorize_app(app, current_settings())
    return app


def listed_app(app_key: str) -> AppConfig:
    """The app, once the caller proved it may read the app's listings."""
    app = current_apps().load(app_key)
    security.authorize_listing(app, current_settings())
    return app


def _check_length() -> None:
    # No CONTENT_LENGTH in the environ, no declared length: a seed push with its data in the
    # query skips werkzeug's header parsing (~2 % of its CPU). A chunked body is bounded as
    # it is read (`gusher.limits`).
    if not request.environ.get("CONTENT_LENGTH"):
        return
    limit = current_settings().max_push_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, whatever the Content-Type (`curl -d '{…}'` sends a form type)."""
    _check_length()
    return exactjson.loads_object(request.get_data(cache=True))


def _strict_field(encoded: bytes, name: str) -> str | None:
    """The first field `name` of an urlencoded string, even blank; non-UTF-8 is refused, not replaced.

    Blank values count (`?data=&data=y` is an empty `data`): the signing
    scheme documents that the first of repeated names is the one used.
    """
    try:
        fields = urllib.parse.parse_qs(
            encoded.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict"
        )
    except UnicodeDecodeError:
        raise RequestError("parameters are not valid UTF-8") from None
    values = fields.get(name)
    return values[0] if values else None


def data_parameter() -> Any:
    """`data` from the query string or the form body (seed, a string), or a JSON body (ext, any value)."""
    _check_length()
    limit = current_settings().max_push_bytes
    data = _strict_field(request.query_string, "data")
    if data is None:
        if request.mimetype == "application/x-www-form-urlencoded":
            data = _strict_field(request.get_data(cache=True), "data")
        elif request.mimetype == "application/json":
            # ext: `{"data": <any JSON>}` is delivered as that JSON value.
            return pushes.data_of(exactjson.loads_object(request.get_data(cache=True)))
        else:
            data = request.form.get("data")
    if not data:
        if request.get_data(cache=True).lstrip()[:1] in (b"{", b"["):
            # `curl -d '{"data": …}'` sends a form type: say what would have worked.
            raise RequestError(
                "data is empty: the body looks like JSON; send it with Content-Type: application/json"
            )
        raise RequestError("data is empty")
    if len(data) > limit:
        raise PayloadTooLarge(f"data over {limit} bytes")
    return data
