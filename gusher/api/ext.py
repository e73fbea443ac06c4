"""The master's ext HTTP API: pushes beyond the seed, and presence.

Everything here answers JSON and is guarded like the seed routes (an app with
a `secret` needs signed requests, see `gusher.api.security`):

- `POST /api/apps/{app_key}/events`: one event to many channels;
- `POST /api/apps/{app_key}/batch_events`: different events in one call;
- `POST /api/apps/{app_key}/users/{user_id}/events`: every connection of a user;
- `POST /api/apps/{app_key}/sockets/{socket_id}/events`: one connection;
- `POST|PUT /api/apps/{app_key}/users/{user_id}/channels`: add to, or replace,
  what a connected user may subscribe to;
- `POST /api/apps/{app_key}/pattern_events`: one event to the live channels matching a pattern;
- `GET  /api/apps/{app_key}/channels[/{channel}[/users]]`, `/users`: presence;
- `GET  /api/apps/{app_key}/channels/{channel}/history`: a history channel's kept messages;
- `GET  /api/system/apps`: the apps and how each is secured (admin).

Bodies are validated whole before anything is published (`gusher.api.pushes`), and
a batch is published at once by the broker, so it is all or nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request

from gusher.api import pushes, security
from gusher.api.context import (
    authorized_app,
    current_broker,
    current_settings,
    json_body,
    listed_app,
    publish,
)
from gusher.core import exactjson
from gusher.core.publication import Publication
from gusher.errors import RequestError
from gusher.keys import check_name, pubsub_channel
from gusher.ops import presence

ext = Blueprint("gusher_ext", __name__, url_prefix="/api")


@ext.post("/apps/<app_key>/events")
def push_event(app_key: str) -> Any:
    """One event to every channel of `channels`: `{"channels", "event", "data"}`."""
    app = authorized_app(app_key)
    channels, event, data, publications = pushes.parse_event(
        app_key, json_body(), current_settings().max_push_channels
    )
    publish(publications, numbered_for=app)
    return jsonify(channels=channels, event=event, data=data)


@ext.post("/apps/<app_key>/batch_events")
def push_batch(app_key: str) -> Any:
    """Different events in one call: `{"batch": [{"channel", "event", "data"}, ...]}`."""
    app = authorized_app(app_key)
    publications = pushes.parse_batch(app_key, json_body(), current_settings().max_batch_events)
    publish(publications, numbered_for=app)
    return jsonify(published=len(publications))


@ext.post("/apps/<app_key>/pattern_events")
def push_pattern(app_key: str) -> Any:
    """`{"channel_pattern", "event", "data"}` to every channel that has a subscriber now and matches."""
    app = authorized_app(app_key)
    pattern, event, data = pushes.parse_pattern_push(json_body())
    broker = current_broker()
    live = broker.live_keys(pubsub_channel(app_key, pushes.pattern_prefix(pattern)))
    channels = pushes.matching_channels(app_key, pattern, live, current_settings().max_push_channels)
    if channels:
        publish(
            [(pubsub_channel(app_key, c), Publication.create(c, event, data)) for c in channels],
            numbered_for=app,
        )
    return jsonify(channel_pattern=pattern, channels=channels, event=event, data=data)


@ext.post("/apps/<app_key>/users/<user_id>/events")
def push_user(app_key: str, user_id: str) -> Any:
    """`{"event", "data"[, "channel"]}` to every connection of `user_id`, on every slave."""
    authorized_app(app_key)
    channel, event, data, publication = pushes.parse_user_push(app_key, user_id, json_body())
    publish([publication])
    return jsonify(user_id=user_id, channel=channel, event=event, data=data)


@ext.post("/apps/<app_key>/sockets/<socket_id>/events")
def push_socket(app_key: str, socket_id: str) -> Any:
    """`{"event", "data"[, "channel"]}` to the one connection `socket_id` (from its replies)."""
    authorized_app(app_key)
    channel, event, data, publication = pushes.parse_socket_push(app_key, socket_id, json_body())
    publish([publication])
    return jsonify(socket_id=socket_id, channel=channel, event=event, data=data)


@ext.post("/apps/<app_key>/users/<user_id>/channels")
def add_user_channels(app_key: str, user_id: str) -> Any:
    """`{"channels": [...]}`: more channels the connected user may subscribe to, on every slave."""
    return _change_user_channels(app_key, user_id, replace=False)


@ext.put("/apps/<app_key>/users/<user_id>/channels")
def replace_user_channels(app_key: str, user_id: str) -> Any:
    """`{"channels": [...]}`: all the connected user may subscribe to; other subscriptions end."""
    return _change_user_channels(app_key, user_id, replace=True)


def _change_user_channels(app_key: str, user_id: str, replace: bool) -> Any:
    authorized_app(app_key)
    channels, publication = pushes.parse_user_channels(app_key, user_id, json_body(), replace)
    publish([publication])
    return jsonify(user_id=user_id, channels=channels, mode="replace" if replace else "add")


def _presence_of(app_key: str) -> presence.AppPresence:
    listed_app(app_key)
    return presence.read(current_broker().status, app_key)


@ext.get("/apps/<app_key>/channels")
def list_channels(app_key: str) -> Any:
    """Occupied channels with subscriber and user counts; `?prefix=` filters by name."""
    prefix = request.args.get("prefix", "")
    online = _presence_of(app_key)
    channels = {
        name: {"subscription_count": count, "user_count": len(users)}
        for name, (count, users) in sorted(online.channels.items())
        if name.startswith(prefix)
    }
    return jsonify(channels=channels)


@ext.get("/apps/<app_key>/channels/<channel>")
def show_channel(app_key: str, channel: str) -> Any:
    """One channel's counts (an empty channel is simply unoccupied)."""
    check_name("channel", channel)
    count, users = _presence_of(app_key).channels.get(channel, (0, set()))
    return jsonify(channel=channel, occupied=count > 0, subscription_count=count, user_count=len(users))


@ext.get("/apps/<app_key>/channels/<channel>/users")
def list_channel_users(app_key: str, channel: str) -> Any:
    """The users subscribed to `channel`."""
    check_name("channel", channel)
    _, users = _presence_of(app_key).channels.get(channel, (0, set()))
    return jsonify(users=[{"id": user} for user in sorted(users)])


MAX_HISTORY_LIMIT = 1000


@ext.get("/apps/<app_key>/channels/<channel>/history")
def channel_history(app_key: str, channel: str) -> Any:
    """`{"epoch", "offset", "messages"}`: the kept messages after `since` (exclusive), oldest first.

    The messages are the payloads exactly as published and kept (each with its
    `offset`); `offset` is the channel's latest. `limit` defaults to 100, at
    most `MAX_HISTORY_LIMIT`.
    """
    app = listed_app(app_key)
    check_name("channel", channel)
    if app.history is None:
        raise RequestError(f"app {app_key[:100]!r} keeps no history (set its history_size and history_ttl)")
    since = _whole_number("since", 0, None)
    limit = _whole_number("limit", 100, MAX_HISTORY_LIMIT)
    kept = current_broker().history.read(pubsub_channel(app_key, channel), since, limit, app.history)
    head = exactjson.dumps({"epoch": kept.epoch, "offset": kept.offset})[:-1]
    body = head + b',"messages":[' + b",".join(p.payload for p in kept.publications) + b"]}"
    return current_app.response_class(body, mimetype="application/json")


def _whole_number(name: str, default: int, maximum: int | None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise RequestError(f"{name} must be a whole number")
    if maximum is not None and int(raw) > maximum:
        raise RequestError(f"{name} must be at most {maximum}")
    return int(raw)


@ext.get("/apps/<app_key>/users")
def list_users(app_key: str) -> Any:
    """The users online in the app, with their connection counts."""
    users = _presence_of(app_key).users
    return jsonify(users=[{"id": user, "connections": n} for user, n in sorted(users.items())])


@ext.get("/system/apps")
def list_apps() -> Any:
    """The apps found in Redis and how each is secured (never the secrets)."""
    security.require_admin(current_settings())
    return jsonify(
        apps={
            app.key: {"secured": app.is_secured, "jwt": bool(app.jwt_key), "origins": list(app.origins)}
            for app in current_broker().apps.scan()
        }
    )


def init_app(app: Flask) -> None:
    """Attach the ext blueprint (after `gusher.api.seed.init_app`)."""
    app.register_blueprint(ext)
