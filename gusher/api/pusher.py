"""The master's Pusher HTTP API: the official server SDKs, unchanged, pointed at the master.

Every route answers JSON (the Python SDK `json.loads` each 200 body) and
needs Pusher's request signature (`gusher.core.pusher_api`): the app is the
one whose key is `auth_key`, and it must have a `secret`. When its hash has
an `app_id` field, `{app_id}` in the path must equal it.

- `POST /apps/{app_id}/events`: one event to up to `GUSHER_MAX_PUSH_CHANNELS` channels;
- `POST /apps/{app_id}/batch_events`: up to `GUSHER_MAX_BATCH_EVENTS` events, all or nothing;
- `GET  /apps/{app_id}/channels[?filter_by_prefix=&info=]`: the occupied channels;
- `GET  /apps/{app_id}/channels/{channel}[?info=]`: one channel;
- `GET  /apps/{app_id}/channels/{channel}/users`: a presence channel's members;
- `POST /apps/{app_id}/users/{user_id}/terminate_connections`, and
  `POST /users/{user_id}/terminate_connections`, the path pusher-http-python
  really calls (it leaves out `/apps/{app_id}`).

Where the figures come from: a channel is occupied when some slave worker
holds its pub/sub key now (`Broker.live_keys`, exact); `subscription_count`
is the sum of the slaves' presence snapshots (`gusher.ops.presence`, at most
one heartbeat interval old); `user_count` and the users of a presence
channel are its members in Redis (`Broker.members`, exact).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Flask, jsonify, request

from gusher.api.context import current_apps, current_broker, current_settings, publish
from gusher.core import exactjson, pusher_api, signing
from gusher.core.apps import AppConfig
from gusher.core.pusher import PRESENCE_PREFIX, is_presence
from gusher.core.pusher_api import SUBSCRIPTION_COUNT, USER_COUNT, Event
from gusher.errors import InvalidName, RequestError, SignatureError, UnknownApp
from gusher.keys import is_internal, pubsub_channel, split_pubsub_channel
from gusher.ops import presence

pusher = Blueprint("gusher_pusher", __name__)


def _params() -> dict[str, str]:
    try:
        pairs = signing.query_pairs(request.query_string)
    except UnicodeDecodeError:
        raise RequestError("parameters are not valid UTF-8") from None
    return pusher_api.query_params(pairs)


def _signed_app(app_id: str | None, takes: tuple[str, ...] = ()) -> tuple[AppConfig, dict[str, str], bytes]:
    """The app of `auth_key` once the request proved it knows the app's secret; its query and body.

    `takes` are the query parameters the route reads besides the signature's;
    any other is a 400, once the request is known to be the app's.

    Raises:
        SignatureError: 401 for an unknown `auth_key`, an app without a
            secret, a bad signature, a stale timestamp or another `app_id`.
    """
    params = _params()
    app_key = params.get("auth_key", "")
    if not app_key:
        raise SignatureError("auth_key is missing (the app key)")
    try:
        app = current_apps().load(app_key)
    except (UnknownApp, InvalidName):
        raise SignatureError(f"unknown auth_key {app_key[:100]!r}") from None
    if not app.secret:
        raise SignatureError(f"the app of auth_key {app_key[:100]!r} has no secret to check signatures with")
    body = request.get_data(cache=True)
    pusher_api.verify_request(app.secret, request.method, request.path, params, body, time.time())
    if app_id is not None:
        pusher_api.check_app_id(app.app_id, app_id)
    pusher_api.check_params(params, takes)
    return app, params, body


def _publish(app: AppConfig, events: list[Event]) -> None:
    """Publish every event; channel messages are numbered for an app with history, user ones never.

    Without history it is one broker call, so all or nothing; with history
    the users' messages follow in a second call.
    """
    routed = [e.routed for e in events]
    if app.history is None:
        publish(routed)
        return
    channels = [item for item in routed if not is_internal(item[0])]
    users = [item for item in routed if is_internal(item[0])]
    if channels:
        publish(channels, numbered_for=app)
    if users:
        publish(users)


class _Figures:
    """The counts of one app's channels, each source read once per request and only when asked."""

    def __init__(self, app_key: str) -> None:
        self.app_key = app_key
        self._online: presence.AppPresence | None = None

    def subscriptions(self, channel: str) -> int:
        if self._online is None:
            self._online = presence.read(current_broker().status, self.app_key)
        user_id = pusher_api.user_of(channel)
        if user_id is not None:
            return self._online.users.get(user_id, 0)
        return self._online.channels.get(channel, (0, set()))[0]

    def users(self, channel: str) -> int:
        return current_broker().members.count(pubsub_channel(self.app_key, channel))

    def of(self, channel: str, info: tuple[str, ...]) -> dict[str, int]:
        subscriptions = self.subscriptions(channel) if SUBSCRIPTION_COUNT in info else 0
        users = self.users(channel) if USER_COUNT in info and is_presence(channel) else 0
        return pusher_api.attributes(channel, info, subscriptions, users)


@pusher.post("/apps/<app_id>/events")
def trigger(app_id: str) -> Any:
    """One event to each channel: `{}`, or with `info` `{"channels": {name: {...}}}`."""
    app, _, body = _signed_app(app_id)
    settings = current_settings()
    events = pusher_api.parse_trigger(app.key, body, settings.max_push_channels, settings.max_push_bytes)
    _publish(app, events)
    info = events[0].info
    if not info:
        return jsonify({})
    figures = _Figures(app.key)
    return jsonify(channels={e.channel: figures.of(e.channel, info) for e in events})


@pusher.post("/apps/<app_id>/batch_events")
def trigger_batch(app_id: str) -> Any:
    """Different events, checked whole first: `{}`, or with any `info` `{"batch": [{...}, ...]}`."""
    app, _, body = _signed_app(app_id)
    settings = current_settings()
    events = pusher_api.parse_batch(app.key, body, settings.max_batch_events, settings.max_push_bytes)
    _publish(app, events)
    if not any(e.info for e in events):
        return jsonify({})
    figures = _Figures(app.key)
    return jsonify(batch=[figures.of(e.channel, e.info) for e in events])


@pusher.get("/apps/<app_id>/channels")
def list_channels(app_id: str) -> Any:
    """`{"channels": {name: {...}}}`: the occupied channels whose names start with `filter_by_prefix`."""
    app, params, _ = _signed_app(app_id, ("filter_by_prefix", "info"))
    prefix = params.get("filter_by_prefix", "")
    if len(prefix) > pusher_api.MAX_CHANNEL_LENGTH:
        raise InvalidName(f"filter_by_prefix is longer than {pusher_api.MAX_CHANNEL_LENGTH} characters")
    info = pusher_api.parse_info(params.get("info", ""))
    pusher_api.check_user_count(info, prefix.startswith(PRESENCE_PREFIX), "filter_by_prefix=presence-")
    keys = current_broker().live_keys(pubsub_channel(app.key, prefix))
    names = sorted(split_pubsub_channel(key)[1] for key in keys)
    figures = _Figures(app.key)
    return jsonify(channels={name: figures.of(name, info) for name in names})


@pusher.get("/apps/<app_id>/channels/<channel>")
def show_channel(app_id: str, channel: str) -> Any:
    """`{"occupied": bool, ...}`, with the attributes `info` asks for."""
    app, params, _ = _signed_app(app_id, ("info",))
    pusher_api.check_channel(channel)
    info = pusher_api.parse_info(params.get("info", ""))
    pusher_api.check_user_count(info, is_presence(channel), f"{channel[:100]!r} is not one")
    key = pusher_api.key_of(app.key, channel)
    occupied = key in current_broker().live_keys(key)
    return jsonify(occupied=occupied, **_Figures(app.key).of(channel, info))


@pusher.get("/apps/<app_id>/channels/<channel>/users")
def list_users(app_id: str, channel: str) -> Any:
    """`{"users": [{"id": ...}]}`: the members of a presence channel."""
    app, _, _ = _signed_app(app_id)
    pusher_api.check_channel(channel)
    if not is_presence(channel):
        raise RequestError(f"users are listed for presence channels only; {channel[:100]!r} is not one")
    members = current_broker().members.members(pubsub_channel(app.key, channel))
    return jsonify(users=[{"id": user_id} for user_id in sorted(members)])


@pusher.post("/apps/<app_id>/users/<user_id>/terminate_connections")
def terminate_connections(app_id: str, user_id: str) -> Any:
    """Close every connection of `user_id`, on every slave: `{}`."""
    return _terminate(app_id, user_id)


@pusher.post("/users/<user_id>/terminate_connections")
def terminate_connections_unprefixed(user_id: str) -> Any:
    """The same, at the path pusher-http-python 3.3 calls (no `/apps/{app_id}`)."""
    return _terminate(None, user_id)


def _terminate(app_id: str | None, user_id: str) -> Any:
    app, _, body = _signed_app(app_id)
    pusher_api.check_user_id(user_id)
    if body:
        exactjson.loads_object(body)  # the SDKs send `{}`; anything else is no request of theirs
    publish([pusher_api.terminate(app.key, user_id)])
    return jsonify({})


def init_app(app: Flask) -> None:
    """Attach the Pusher blueprint to the master."""
    app.register_blueprint(pusher)
