"""Pusher's HTTP API as the official server SDKs call it: request signatures and bodies — pure.

The master's Flask side (`gusher.api.pusher`) hands this module what it read
of a request (method, decoded path, query parameters, raw body) and gets
back a refusal (`SignatureError` 401, `RequestError` 400, `PayloadTooLarge`
413) or what to publish.

**Signatures** are Pusher's (its REST API reference; pusher-http-python
`http.py`, pusher-http-node `requests.js`). The query carries `auth_key`
(the app key), `auth_timestamp` (unix seconds), `auth_version=1.0`,
`body_md5` (hex MD5 of the raw body) and `auth_signature`, the hex
HMAC-SHA256 under the app's secret of::

    METHOD\\nPATH\\nk1=v1&k2=v2…

where the pairs are every other query parameter, decoded, keys lower-cased,
sorted by key, neither escaped nor encoded again. The Python SDK sends
`body_md5` on a GET too (the MD5 of the empty body); the Node SDK only with a
body. So `body_md5` is checked when present and required when there is a
body: it is what ties the body to the signature. A timestamp more than
`TIMESTAMP_TOLERANCE` seconds from the server's clock is refused (Pusher's
600 s), which bounds replays without any server state. The signature is
compared in constant time. A refusal names the string that should have been
signed, as Pusher's does: it holds nothing secret, and it is what a developer
whose signature differs needs to see.

**Bodies.** `data` is a string: both SDKs JSON-encode anything else before
sending it, and it is published as that string (gusher clients receive a
string too). A trigger names `channels` (a list) or `channel`, at most
`max_channels` of them; a batch is checked whole before anything is
published. Channel names follow Pusher's charset (`gusher.core.pusher`);
`#server-to-user-{user_id}` is Pusher's channel of one user and travels on
the user's own key (`gusher.keys.user_channel`), as gusher's user pushes do.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gusher.core import exactjson
from gusher.core.publication import TERMINATE_CONTROL, Publication, Routed
from gusher.core.pusher import CHANNEL_NAME, EVENT_NAME_MAX, SOCKET_ID, USER_CHANNEL_PREFIX, is_presence
from gusher.core.pusher import sign as hmac_sign
from gusher.errors import InvalidName, PayloadTooLarge, RequestError, SignatureError
from gusher.keys import check_name, pubsub_channel, user_channel

AUTH_VERSION = "1.0"
# Pusher's servers refuse a request whose auth_timestamp is more than 600 s off (its REST API reference).
TIMESTAMP_TOLERANCE = 600
SIGNATURE_PARAM = "auth_signature"
AUTH_PARAMS = ("auth_key", "auth_timestamp", "auth_version", "body_md5", SIGNATURE_PARAM)
# The attributes a request may ask for with `info` (Pusher's REST API).
SUBSCRIPTION_COUNT = "subscription_count"
USER_COUNT = "user_count"
INFO_ATTRIBUTES = (SUBSCRIPTION_COUNT, USER_COUNT)
# The event a user's connections get before they are closed (the slaves act on its control).
TERMINATE_EVENT = "pusher:terminate"
MAX_CHANNEL_LENGTH = 200
_CHARSET = "a-z A-Z 0-9 _ - = @ , . ;"


@dataclass(frozen=True)
class Event:
    """One event to one channel, checked: where it travels and what the caller asked back.

    Attributes:
        channel: the Pusher channel name (`#server-to-user-…` included).
        routed: the pub/sub key and the publication.
        info: the attributes to answer for the channel (`info`), in the order asked.
    """

    channel: str
    routed: Routed
    info: tuple[str, ...] = ()


def query_params(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The decoded query pairs as a dict; a name given twice is refused (400).

    The SDKs build their query from a dict, so a repeated name is never
    theirs, and which of two values a signature covers would be a guess.
    """
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise RequestError(f"query parameter {name[:50]!r} is given more than once")
        params[name] = value
    return params


def check_params(params: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    """Refuse a query parameter the route does not take (400): a typo such as `filter_by_prefx`
    would otherwise list every channel without a word."""
    for name in params:
        if name not in AUTH_PARAMS and name not in allowed:
            takes = ", ".join(allowed) if allowed else "none but the signature's"
            raise RequestError(f"unknown query parameter {name[:50]!r} (this route takes {takes})")


def string_to_sign(method: str, path: str, params: Mapping[str, str]) -> str:
    """`METHOD\\nPATH\\nk=v&…`: every parameter but `auth_signature`, keys lower-cased and sorted."""
    pairs = sorted((k.lower(), v) for k, v in params.items() if k != SIGNATURE_PARAM)
    return "\n".join([method.upper(), path, "&".join(f"{k}={v}" for k, v in pairs)])


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


def verify_request(
    secret: str, method: str, path: str, params: Mapping[str, str], body: bytes, now: float
) -> None:
    """Check a request's Pusher signature (`params`: its decoded query, `body`: its raw bytes).

    Raises:
        SignatureError: the app has no secret, or `auth_timestamp`,
            `auth_version`, `body_md5` or `auth_signature` is missing or wrong.
    """
    if not secret:
        raise SignatureError("the app has no secret: the Pusher HTTP API needs one to check signatures")
    timestamp = params.get("auth_timestamp", "")
    if not timestamp:
        raise SignatureError("auth_timestamp is missing")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 20:
        raise SignatureError("auth_timestamp must be unix seconds")
    if abs(now - int(timestamp)) > TIMESTAMP_TOLERANCE:
        raise SignatureError(
            f"auth_timestamp {timestamp} is not within {TIMESTAMP_TOLERANCE} s of the server's time {now:.0f}"
        )
    if params.get("auth_version") != AUTH_VERSION:
        raise SignatureError(f"auth_version must be {AUTH_VERSION}")
    md5 = params.get("body_md5")
    if md5 is None and body:
        raise SignatureError("body_md5 is missing: a request with a body signs the body's MD5")
    if md5 is not None and md5.lower() != hashlib.md5(body).hexdigest():
        raise SignatureError("body_md5 is not the MD5 of the body")
    signature = params.get(SIGNATURE_PARAM, "")
    if not signature:
        raise SignatureError("auth_signature is missing")
    text = string_to_sign(method, path, params)
    if not _same(signature, hmac_sign(secret, text)):
        raise SignatureError(
            f"invalid auth_signature: expected hex HMAC-SHA256 of {text!r} with the app's secret"
        )


def check_app_id(expected: str, given: str) -> None:
    """`{app_id}` of the path must be the app's `app_id` field when the app has one.

    A mismatch is a 401, not a 404: the Python SDK raises `PusherBadAuth`
    with the reason for a 401 but `PusherBadStatus("404: …")` for a 404,
    which reads as a wrong host or URL; a wrong `app_id` is wrong credentials
    (the key and the id do not belong together), so it is reported as such.
    """
    if expected and not _same(expected, given):
        raise SignatureError(f"app_id {given[:50]!r} is not the app_id of this auth_key")


def check_channel(channel: Any, where: str = "") -> str:
    """A Pusher channel name (`#server-to-user-{user_id}` included), else 400."""
    if not isinstance(channel, str):
        raise RequestError(f"{where}channel must be a string")
    name = channel[len(USER_CHANNEL_PREFIX) :] if channel.startswith(USER_CHANNEL_PREFIX) else channel
    if len(channel) > MAX_CHANNEL_LENGTH or not CHANNEL_NAME.match(name):
        raise InvalidName(
            f"{where}channel {channel[:100]!r} is not a Pusher channel name"
            f" (1-{MAX_CHANNEL_LENGTH} of {_CHARSET}; or #server-to-user-{{user_id}})"
        )
    return channel


def check_user_id(user_id: str) -> str:
    """A user id as the SDKs check it (Pusher's channel charset, at most 200), else 400."""
    if len(user_id) > MAX_CHANNEL_LENGTH or not CHANNEL_NAME.match(user_id):
        raise InvalidName(f"user_id {user_id[:100]!r} must be 1-{MAX_CHANNEL_LENGTH} of {_CHARSET}")
    return user_id


def user_of(channel: str) -> str | None:
    """The user id of a `#server-to-user-{user_id}` channel, else None."""
    return channel[len(USER_CHANNEL_PREFIX) :] if channel.startswith(USER_CHANNEL_PREFIX) else None


def key_of(app_key: str, channel: str) -> str:
    """The pub/sub key a Pusher channel travels on: the user's own for `#server-to-user-…`."""
    user_id = user_of(channel)
    return user_channel(app_key, user_id) if user_id is not None else pubsub_channel(app_key, channel)


def parse_info(raw: Any, where: str = "") -> tuple[str, ...]:
    """`info` (`"user_count,subscription_count"`) as the attributes asked, each once; "" is none."""
    if not isinstance(raw, str):
        raise RequestError(f"{where}info must be a comma-separated string")
    if not raw:
        return ()
    asked = tuple(dict.fromkeys(raw.split(",")))
    unknown = [a for a in asked if a not in INFO_ATTRIBUTES]
    if unknown:
        raise RequestError(f"{where}info asks for {unknown[0][:50]!r}; known: {', '.join(INFO_ATTRIBUTES)}")
    return asked


def check_user_count(info: tuple[str, ...], presence: bool, what: str) -> None:
    """`user_count` is a presence channel's: asking it of others is a 400, as at Pusher."""
    if USER_COUNT in info and not presence:
        raise RequestError(f"user_count may only be requested for presence channels ({what})")


def attributes(channel: str, info: tuple[str, ...], subscriptions: int, users: int) -> dict[str, int]:
    """What `info` asked of one channel; `user_count` only for a presence channel."""
    found: dict[str, int] = {}
    for name in info:
        if name == SUBSCRIPTION_COUNT:
            found[name] = subscriptions
        elif name == USER_COUNT and is_presence(channel):
            found[name] = users
    return found


def _event_name(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{where}name must be a string (the event name)")
    if len(value) > EVENT_NAME_MAX:
        raise InvalidName(f"{where}name is longer than {EVENT_NAME_MAX} characters")
    try:
        return check_name("name", value)
    except InvalidName as exc:
        raise InvalidName(where + exc.reason) from None


def _data(value: Any, max_bytes: int, where: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{where}data must be a string (the SDKs JSON-encode other values)")
    if len(value) > max_bytes // 4 and len(value.encode("utf-8")) > max_bytes:
        raise PayloadTooLarge(f"{where}data over {max_bytes} bytes")
    return value


def _socket_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.isascii() or not SOCKET_ID.match(value):
        raise RequestError(f"{where}socket_id must be two numbers joined by a dot, as `123.45`")
    return value


def event(app_key: str, channel: str, name: str, data: str, socket_id: str, info: tuple[str, ...]) -> Event:
    """One checked event, routed: `socket_id` is the one connection that does not receive it."""
    publication = Publication.create(channel, name, data, exclude=socket_id)
    return Event(channel, (key_of(app_key, channel), publication), info)


def parse_trigger(app_key: str, body: bytes, max_channels: int, max_bytes: int) -> list[Event]:
    """`POST …/events`: `{"name", "data", "channels": [...] | "channel", "socket_id"?, "info"?}`.

    Each channel is published once, in the order given.
    """
    fields = exactjson.loads_object(body)
    if "channels" in fields and "channel" in fields:
        raise RequestError("give channels or channel, not both")
    channels = fields["channels"] if "channels" in fields else [fields.get("channel")]
    if not isinstance(channels, list) or not channels:
        raise RequestError("channels must be a non-empty list of channel names")
    if len(channels) > max_channels:
        raise RequestError(f"more than {max_channels} channels in one trigger")
    names = list(dict.fromkeys(check_channel(c) for c in channels))
    name = _event_name(fields.get("name"), "")
    data = _data(fields.get("data"), max_bytes, "")
    socket_id = _socket_id(fields["socket_id"], "") if "socket_id" in fields else ""
    info = parse_info(fields.get("info", ""))
    return [event(app_key, channel, name, data, socket_id, info) for channel in names]


def parse_batch(app_key: str, body: bytes, max_events: int, max_bytes: int) -> list[Event]:
    """`POST …/batch_events`: `{"batch": [{"channel", "name", "data", "socket_id"?, "info"?}]}`, whole."""
    batch = exactjson.loads_object(body).get("batch")
    if not isinstance(batch, list) or not batch:
        raise RequestError("batch must be a non-empty list of events")
    if len(batch) > max_events:
        raise RequestError(f"more than {max_events} events in one batch")
    events = []
    for index, item in enumerate(batch):
        where = f"batch[{index}]: "
        if not isinstance(item, dict):
            raise RequestError(f"{where}must be an object")
        channel = check_channel(item.get("channel"), where)
        name = _event_name(item.get("name"), where)
        data = _data(item.get("data"), max_bytes, where)
        socket_id = _socket_id(item["socket_id"], where) if "socket_id" in item else ""
        events.append(event(app_key, channel, name, data, socket_id, parse_info(item.get("info", ""), where)))
    return events


def terminate(app_key: str, user_id: str) -> Routed:
    """What closes every connection of `user_id`, on every slave: a control on the user's key."""
    publication = Publication.create("", TERMINATE_EVENT, {}, control=TERMINATE_CONTROL)
    return user_channel(app_key, user_id), publication
