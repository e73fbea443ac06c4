"""Pusher Channels protocol 7, sans-I/O, as pusher-js 8 expects it (issue 13; research wave2 §1).

Client → server (`data` is an object; pusher-js never double-encodes it)::

    {"event": "pusher:subscribe",   "data": {"channel", "auth"?, "channel_data"?}}
    {"event": "pusher:unsubscribe", "data": {"channel"}}
    {"event": "pusher:ping" | "pusher:pong", "data": {}}
    {"event": "pusher:signin",      "data": {"auth", "user_data"}}
    {"event": "client-…", "channel": "private-…" | "presence-…", "data": …}

Server → client: `{"event", "channel"?, "data"}` where `data` is a JSON
*string* (Pusher double-encodes; pusher-js parses it), except `pusher:error`
and `pusher:subscription_error`, whose `data` is an object as Pusher's.
A pushed message's `data` reaches Pusher clients as the string pushed, or,
for any other JSON value, JSON-encoded (SPEC). Payloads a backend PUBLISHed
raw (not the common message) have no Pusher event to travel as and are
not delivered to Pusher clients; gusher-protocol clients still get them.

Close codes follow pusher-js's `getCloseAction` (wave2 §1.4): 4009 refuses
for good (terminated connections), 4100 makes the client back off a second
(a slow consumer, a full worker), 4200-4299 reconnect at once (4200 a
server going away, 4201 a missed pong), 4301 refuses (a flood of commands).
"""

from __future__ import annotations

from typing import Any

from gusher.core import exactjson
from gusher.core.publication import COUNT_CONTROL, MEMBER_CONTROL, Publication
from gusher.core.pusher import CLIENT_EVENT_PREFIX, EVENT_NAME_MAX, is_channel_name, is_user_channel
from gusher.errors import CommandError
from gusher.wire import frames
from gusher.wire.base import (
    ClientEvent,
    ClientProtocol,
    Command,
    Disconnect,
    MultiSubscribe,
    Ping,
    Position,
    Signin,
    Subscribe,
    Unsubscribe,
)

SUBSCRIBE = "pusher:subscribe"
UNSUBSCRIBE = "pusher:unsubscribe"
PING = "pusher:ping"
PONG = "pusher:pong"
SIGNIN = "pusher:signin"

CONNECTION_ESTABLISHED = "pusher:connection_established"
ERROR = "pusher:error"
SUBSCRIPTION_ERROR = "pusher:subscription_error"
SUBSCRIPTION_SUCCEEDED = "pusher_internal:subscription_succeeded"
SIGNIN_SUCCESS = "pusher:signin_success"
CACHE_MISS = "pusher:cache_miss"

# Pusher's own codes (pusher.md §3): what each tells pusher-js to do.
APP_NOT_FOUND = 4001  # refused, no reconnect
APP_DISABLED = 4003  # refused
OVER_QUOTA = 4004  # refused: the app's connection quota is full
UNAUTHORIZED = 4009  # refused
OVER_CAPACITY = 4100  # back off 1 s
GENERIC_RECONNECT = 4200  # reconnect at once
PONG_TIMEOUT = 4201  # reconnect at once
CLIENT_EVENT_REFUSED = 4301  # as a frame: a client event was refused (rate, rules)

_CLOSE_CODES = {
    Disconnect.SHUTDOWN: GENERIC_RECONNECT,
    Disconnect.RATE_LIMITED: CLIENT_EVENT_REFUSED,
    Disconnect.TOO_MANY_COMMANDS: CLIENT_EVENT_REFUSED,
    Disconnect.SLOW_CONSUMER: OVER_CAPACITY,
    Disconnect.PING_TIMEOUT: PONG_TIMEOUT,
    Disconnect.TERMINATED: UNAUTHORIZED,
}

# What a subscribe refusal is to pusher-js: the `type` and `status` of its subscription_error.
_REFUSAL_KINDS = (
    ("subscription limit", "LimitReached", OVER_CAPACITY),
    ("members", "LimitReached", OVER_CAPACITY),
    ("redis unavailable", "ServerError", 503),
    ("not allowed", "AuthError", 401),
    ("signature", "AuthError", 401),
    ("channel_data", "AuthError", 401),
)


def _frame(message: dict[str, Any]) -> bytes:
    return frames.encode_text(exactjson.dumps(message))


def _event(event: str, data: Any, channel: str | None = None) -> bytes:
    """A server event; `data` double-encoded, as Pusher sends it."""
    message: dict[str, Any] = {"event": event}
    if channel is not None:
        message["channel"] = channel
    message["data"] = data if isinstance(data, str) else exactjson.dumps(data).decode()
    return _frame(message)


def error_frame(message: str, code: int | None = None) -> bytes:
    """`pusher:error` with `{"code", "message"}` (an object, as Pusher sends it)."""
    return _frame({"event": ERROR, "data": {"code": code, "message": message}})


def subscription_error(channel: str, error: str, kind: str = "AuthError", status: int = 401) -> bytes:
    """`pusher:subscription_error` for `channel`, shaped as soketi's: `{type, error, status}`."""
    return _frame(
        {
            "event": SUBSCRIPTION_ERROR,
            "channel": channel,
            "data": {"type": kind, "error": error, "status": status},
        }
    )


def _refused(reason: str, reply: bytes) -> CommandError:
    return CommandError(reason, reply)


def _data_object(message: dict[str, Any]) -> dict[str, Any]:
    """The command's `data`: an object (a JSON string of one is accepted too, as some clients send)."""
    data = message.get("data", {})
    if isinstance(data, str):
        try:
            data = exactjson.loads(data.encode())
        except exactjson.JSONDecodeError:
            data = None
    if not isinstance(data, dict):
        raise _refused(
            "'data' must be an object", error_frame(f"'data' of {message['event']} must be an object")
        )
    return data


def parse_command(text: bytes) -> Command:
    """One Pusher message → a command.

    Raises:
        CommandError: not a usable command; its reply says why (empty for a
            `pusher:pong`, which needs no answer: any frame proves the client alive).
    """
    try:
        message = exactjson.loads(text)
    except exactjson.JSONDecodeError:
        raise _refused("message is not valid JSON", error_frame("message is not valid JSON")) from None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise _refused("not an event", error_frame("a message must be a JSON object with an 'event' string"))
    event: str = message["event"]
    if event == PING:
        return Ping(None)
    if event == PONG:
        raise _refused("pong", b"")
    if event.startswith(CLIENT_EVENT_PREFIX):
        return _client_event(message, event)
    if event not in (SUBSCRIBE, UNSUBSCRIBE, SIGNIN):
        raise _refused("unknown event", error_frame(f"unknown event {event[:100]!r}"))
    data = _data_object(message)
    if event == SIGNIN:
        auth, user_data = data.get("auth"), data.get("user_data")
        if not isinstance(auth, str) or not isinstance(user_data, str):
            raise _refused(
                "bad signin", error_frame("pusher:signin needs the strings 'auth' and 'user_data'")
            )
        return Signin(auth, user_data)
    channel = data.get("channel")
    if not isinstance(channel, str) or not (is_channel_name(channel) or is_user_channel(channel)):
        shown = channel[:200] if isinstance(channel, str) else ""
        reply = subscription_error(
            shown, "invalid channel name (1-200 of A-Z a-z 0-9 _ - = @ , . ;)", "InvalidChannel", 400
        )
        raise _refused(
            "invalid channel name", reply if event == SUBSCRIBE else error_frame("invalid channel name")
        )
    if event == UNSUBSCRIBE:
        return Unsubscribe(None, channel)
    auth, channel_data = data.get("auth", ""), data.get("channel_data")
    if not isinstance(auth, str) or (channel_data is not None and not isinstance(channel_data, str)):
        reply = subscription_error(channel, "'auth' and 'channel_data' must be strings")
        raise _refused("bad auth", reply)
    return Subscribe(None, channel, None, auth, channel_data)


def _client_event(message: dict[str, Any], event: str) -> ClientEvent:
    channel = message.get("channel")
    if not isinstance(channel, str) or not is_channel_name(channel):
        raise _refused(
            "client event channel", error_frame("a client event needs its 'channel'", CLIENT_EVENT_REFUSED)
        )
    if len(event) > EVENT_NAME_MAX:
        raise _refused("client event name", error_frame("event name too long", CLIENT_EVENT_REFUSED))
    return ClientEvent(channel, event, message.get("data"))


class PusherProtocol(ClientProtocol):
    """Pusher protocol 7 at `/app/{app_key}`.

    `activity_timeout` (seconds) is told in the handshake: pusher-js pings
    after that long without a frame, so its connection never looks quiet to
    the server's keep-alive, which pings with `pusher:ping` too.
    """

    name = "pusher"

    def __init__(self, activity_timeout: int = 120) -> None:
        self.activity_timeout = max(1, min(int(activity_timeout), 120))

    def parse(self, text: bytes, socket_id: str = "") -> Command:
        """See `parse_command`."""
        return parse_command(text)

    def greeting(self, socket_id: str) -> bytes:
        """`pusher:connection_established` with the socket id and the activity timeout."""
        return _event(
            CONNECTION_ESTABLISHED, {"socket_id": socket_id, "activity_timeout": self.activity_timeout}
        )

    def publication(self, publication: Publication) -> bytes:
        """`{"event", "channel", "data": <string>[, "user_id"]}`; b"" for what Pusher clients never see."""
        if publication.control:
            if publication.control not in _PUSHER_CONTROLS:
                return b""
        elif not publication.is_common:
            return b""
        data = publication.data
        message: dict[str, Any] = {
            "event": publication.event,
            "channel": publication.channel,
            "data": data if isinstance(data, str) else exactjson.dumps(data).decode(),
        }
        if publication.user_id:
            message["user_id"] = publication.user_id
        return _frame(message)

    def subscribed(self, command: Subscribe, socket_id: str = "", position: Position | None = None) -> bytes:
        """`pusher_internal:subscription_succeeded` with `data` "{}"."""
        return _event(SUBSCRIPTION_SUCCEEDED, "{}", command.channel)

    def presence_subscribed(self, channel: str, members: dict[str, Any]) -> bytes:
        """A presence channel's `subscription_succeeded`: `{"presence": {ids, hash, count}}`."""
        presence = {"ids": list(members), "hash": members, "count": len(members)}
        return _event(SUBSCRIPTION_SUCCEEDED, {"presence": presence}, channel)

    def cache_miss(self, channel: str) -> bytes:
        """`pusher:cache_miss`: a cache channel has no kept event."""
        return _event(CACHE_MISS, "{}", channel)

    def signin_success(self, user_data: str) -> bytes:
        """`pusher:signin_success` carrying the signed `user_data` string back."""
        return _event(SIGNIN_SUCCESS, {"user_data": user_data})

    def subscribe_refused(self, command: Subscribe, reason: str, socket_id: str = "") -> bytes:
        """`pusher:subscription_error` for the channel, typed by what refused it."""
        for needle, kind, status in _REFUSAL_KINDS:
            if needle in reason:
                return subscription_error(command.channel, reason, kind, status)
        return subscription_error(command.channel, reason, "SubscriptionError", 400)

    def multi_subscribed(self, command: MultiSubscribe, socket_id: str = "") -> bytes:
        """Pusher has no multi-subscribe (the parser never makes one)."""
        return b""

    def multi_subscribe_refused(self, command: MultiSubscribe, reason: str, socket_id: str = "") -> bytes:
        """Pusher has no multi-subscribe."""
        return b""

    def unsubscribed(self, command: Unsubscribe, socket_id: str = "") -> bytes:
        """Nothing: Pusher does not acknowledge an unsubscribe."""
        return b""

    def unsubscribe_refused(self, command: Unsubscribe, reason: str, socket_id: str = "") -> bytes:
        """Nothing: unsubscribing a channel one is not on is no error to Pusher."""
        return b""

    def pong(self, command: Ping, socket_id: str = "") -> bytes:
        """`pusher:pong`."""
        return _PONG

    def binary_refused(self, socket_id: str = "") -> bytes:
        """`pusher:error`: the protocol is JSON text."""
        return error_frame("binary frames are not supported; send JSON text")

    def keepalive(self) -> bytes:
        """`pusher:ping`, which pusher-js answers with `pusher:pong`."""
        return _PING

    def close_reason(self, why: Disconnect) -> tuple[int, str]:
        """Pusher's 4xxx codes, so pusher-js reconnects, backs off or gives up as each means."""
        return _CLOSE_CODES[why], why.value


_PUSHER_CONTROLS = (MEMBER_CONTROL, COUNT_CONTROL)  # what only Pusher clients see
_PONG = _event(PONG, "{}")
_PING = _event(PING, "{}")
