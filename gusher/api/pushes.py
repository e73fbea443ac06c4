"""The ext push API's request bodies: validate them whole, then publish — pure.

Every body is checked completely before anything is published (all or
nothing): a batch with one bad event publishes none. Each push becomes a
pub/sub key and a `Publication` of the seed's common message
`{"channel","event","data"}`, whose `data` is any JSON value here (the seed's
form/query `data` stays a string).
"""

from __future__ import annotations

from typing import Any

from gusher.core.identity import MAX_ALLOWED_CHANNELS
from gusher.core.patterns import WILDCARD, matches
from gusher.core.publication import CHANNELS_CONTROL, Publication, Routed
from gusher.errors import InvalidName, RequestError
from gusher.keys import (
    check_name,
    is_targetable_user,
    parse_socket_id,
    pubsub_channel,
    split_pubsub_channel,
    user_channel,
    worker_channel,
)

# The `channel` field of a message pushed to a user, or to one socket, unless the push names one.
USER_CHANNEL_NAME = "gusher.user"
SOCKET_CHANNEL_NAME = "gusher.socket"
# The event a user's connections get when their allowed channels change (gusher.edge.hub).
CHANNELS_CHANGED_EVENT = "gusher.channels_changed"


def data_of(body: dict[str, Any], where: str = "") -> Any:
    """`data` of a body: any JSON value but missing, null or "" (the seed's "empty data")."""
    data = body.get("data")
    if data is None or data == "":
        raise RequestError(f"{where}data is empty")
    return data


def _name(kind: str, value: Any, where: str = "") -> str:
    if not isinstance(value, str):
        raise RequestError(f"{where}{kind} must be a string")
    try:
        return check_name(kind, value)
    except InvalidName as exc:
        raise InvalidName(where + exc.reason) from None


def parse_event(
    app_key: str, body: dict[str, Any], max_channels: int
) -> tuple[list[str], str, Any, list[Routed]]:
    """`{"channels": [...], "event", "data"}` (or one `"channel"`): one event to many channels."""
    channels = body.get("channels", [body["channel"]] if "channel" in body else None)
    if not isinstance(channels, list) or not channels:
        raise RequestError("channels must be a non-empty list")
    if len(channels) > max_channels:
        raise RequestError(f"more than {max_channels} channels in one push")
    names = list(dict.fromkeys(_name("channel", c) for c in channels))  # each channel once
    event = _name("event", body.get("event"))
    data = data_of(body)
    return (
        names,
        event,
        data,
        [(pubsub_channel(app_key, name), Publication.create(name, event, data)) for name in names],
    )


def parse_batch(app_key: str, body: dict[str, Any], max_events: int) -> list[Routed]:
    """`{"batch": [{"channel", "event", "data"}, ...]}`: different events, published in order."""
    batch = body.get("batch")
    if not isinstance(batch, list) or not batch:
        raise RequestError("batch must be a non-empty list")
    if len(batch) > max_events:
        raise RequestError(f"more than {max_events} events in one batch")
    publications: list[Routed] = []
    for index, item in enumerate(batch):
        where = f"batch[{index}]: "
        if not isinstance(item, dict):
            raise RequestError(f"{where}must be an object")
        channel = _name("channel", item.get("channel"), where)
        event = _name("event", item.get("event"), where)
        data = data_of(item, where)
        publications.append((pubsub_channel(app_key, channel), Publication.create(channel, event, data)))
    return publications


def parse_user_push(app_key: str, user_id: str, body: dict[str, Any]) -> tuple[str, str, Any, Routed]:
    """`{"event", "data"[, "channel"]}` for every connection of `user_id`.

    The message keeps the common shape; its `channel` is `gusher.user` unless
    the push names another, so client code can tell personal messages apart.
    """
    if not is_targetable_user(user_id):
        raise InvalidName("user_id must be 1-200 characters without control characters")
    channel = _name("channel", body.get("channel", USER_CHANNEL_NAME))
    event = _name("event", body.get("event"))
    data = data_of(body)
    return (
        channel,
        event,
        data,
        (user_channel(app_key, user_id), Publication.create(channel, event, data)),
    )


def parse_socket_push(app_key: str, socket_id: str, body: dict[str, Any]) -> tuple[str, str, Any, Routed]:
    """`{"event", "data"[, "channel"]}` for the one connection `socket_id` (`{worker}.{number}`).

    It travels on the channel of the slave worker that holds the socket,
    naming its app, so a socket of another app is never reached.
    """
    worker, number = parse_socket_id(socket_id)
    channel = _name("channel", body.get("channel", SOCKET_CHANNEL_NAME))
    event = _name("event", body.get("event"))
    data = data_of(body)
    publication = Publication.create(channel, event, data, socket=f"{app_key}@{number}")
    return channel, event, data, (worker_channel(worker), publication)


def parse_user_channels(
    app_key: str, user_id: str, body: dict[str, Any], replace: bool
) -> tuple[list[str], Routed]:
    """`{"channels": [...]}` (or one `"channel"`) to add to, or replace, what `user_id` may subscribe to.

    Entries are what a webhook may allow: exact names, `*` globs and the
    `{user_id}` placeholder. Replacing with `[]` revokes everything. Every
    slave applies it to the user's live connections (`gusher.edge.hub`), so it
    lasts as long as they do: the app's webhook or tokens must allow the same
    for the user's next connection.
    """
    if not is_targetable_user(user_id):
        raise InvalidName("user_id must be 1-200 characters without control characters")
    channels = body.get("channels", [body["channel"]] if "channel" in body else None)
    if not isinstance(channels, list) or not (channels or replace):
        raise RequestError("channels must be a non-empty list" if not replace else "channels must be a list")
    if len(channels) > MAX_ALLOWED_CHANNELS:
        raise RequestError(f"more than {MAX_ALLOWED_CHANNELS} channels")
    names = list(dict.fromkeys(_name("channel", c) for c in channels))
    mode = "replace" if replace else "add"
    publication = Publication.create(
        USER_CHANNEL_NAME, CHANNELS_CHANGED_EVENT, {"channels": names, "mode": mode}, control=CHANNELS_CONTROL
    )
    return names, (user_channel(app_key, user_id), publication)


def parse_pattern_push(body: dict[str, Any]) -> tuple[str, str, Any]:
    """`{"channel_pattern", "event", "data"}`: the pattern (`*` globs), the event and its data."""
    pattern = _name("channel_pattern", body.get("channel_pattern"))
    return pattern, _name("event", body.get("event")), data_of(body)


def pattern_prefix(pattern: str) -> str:
    """What every channel matching `pattern` starts with: the broker lists only those."""
    return pattern.split(WILDCARD, 1)[0]


def matching_channels(app_key: str, pattern: str, live_keys: list[str], max_channels: int) -> list[str]:
    """The app's live channels (from their pub/sub keys) that match `pattern`, sorted.

    Raises:
        RequestError: more match than one push may reach; nothing is published.
    """
    channels = sorted(
        channel
        for app, channel in map(split_pubsub_channel, live_keys)
        if app == app_key and matches(pattern, channel)
    )
    if len(channels) > max_channels:
        raise RequestError(
            f"{len(channels)} live channels match; one push reaches at most {max_channels}"
            " (GUSHER_MAX_PUSH_CHANNELS)"
        )
    return channels
