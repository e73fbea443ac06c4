"""gusher's client protocol (the seed's), sans-I/O.

Client → server (seed)::

    {"event": "gusher.subscribe",   "data": {"id": "...", "channel": "..."}}
    {"event": "gusher.unsubscribe", "data": {"id": "...", "channel": "..."}}

Server → client: `{"event": "<event>", "data": {"id", "channel"[, "reason"]}}`
for replies, and for pushes the payload exactly as published in Redis (the
common message `{"channel", "event", "data"}`, or whatever a backend
`PUBLISH`ed). A command we cannot even attribute to a subscribe/unsubscribe is
answered with the ext event `gusher.error` carrying a `reason`; `gusher.ping`
gets `gusher.pong`. Keep-alive is the WebSocket Ping frame; every close uses
an RFC 6455 code.
"""

from __future__ import annotations

from typing import Any

from gusher.core import exactjson
from gusher.core.publication import Publication
from gusher.errors import CommandError, InvalidName
from gusher.keys import check_name
from gusher.wire import frames
from gusher.wire.base import (
    ClientProtocol,
    Command,
    Disconnect,
    Ping,
    Subscribe,
    Unsubscribe,
)

SUBSCRIBE = "gusher.subscribe"
UNSUBSCRIBE = "gusher.unsubscribe"
PING = "gusher.ping"

SUBSCRIBE_SUCCEEDED = "gusher.subscribe_succeeded"
SUBSCRIBE_ERROR = "gusher.subscribe_error"
UNSUBSCRIBE_SUCCEEDED = "gusher.unsubscribe_succeeded"
UNSUBSCRIBE_ERROR = "gusher.unsubscribe_error"
PONG = "gusher.pong"
ERROR = "gusher.error"

# Request ids are echoed back; anything else than a short scalar is refused so
# that a client cannot make us echo megabytes.
MAX_ID_LENGTH = 200

_CLOSE_CODES = {
    Disconnect.SHUTDOWN: frames.CLOSE_GOING_AWAY,
    Disconnect.RATE_LIMITED: frames.CLOSE_POLICY_VIOLATION,
    Disconnect.TOO_MANY_COMMANDS: frames.CLOSE_POLICY_VIOLATION,
    Disconnect.SLOW_CONSUMER: frames.CLOSE_POLICY_VIOLATION,
    Disconnect.PING_TIMEOUT: frames.CLOSE_POLICY_VIOLATION,
}


def encode_event(event: str, data: dict[str, Any]) -> bytes:
    """A server event `{"event", "data"}` as UTF-8 JSON bytes."""
    return exactjson.dumps({"event": event, "data": data})


def error_event(reason: str) -> bytes:
    """The ext `gusher.error` event for a message we cannot attribute to a command."""
    return encode_event(ERROR, {"reason": reason})


def _echoable_id(data: dict[str, Any]) -> Any:
    """The request id to echo: a short string or number; `""` when absent, None when unusable."""
    value = data.get("id", "")
    if isinstance(value, bool) or (not isinstance(value, (str, int, float)) and value is not None):
        return None
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        return None
    return value


def _refusal(event: str, request_id: Any, channel: str, reason: str) -> bytes:
    error_event_name = SUBSCRIBE_ERROR if event == SUBSCRIBE else UNSUBSCRIBE_ERROR
    return encode_event(error_event_name, {"id": request_id, "channel": channel, "reason": reason})


def parse_command(text: bytes) -> Command:
    """Parse one text message into a command.

    Raises:
        CommandError: the message is not a usable command; `reply` (the bare
            JSON, unframed) says why in the event the client will recognise
            (`*_error` when it is a subscribe/unsubscribe, else `gusher.error`).
    """
    try:
        message = exactjson.loads(text)
    except exactjson.JSONDecodeError:
        raise CommandError("not JSON", error_event("message is not valid JSON")) from None
    if not isinstance(message, dict):
        raise CommandError("not an object", error_event("message must be a JSON object"))
    event = message.get("event")
    if not isinstance(event, str):
        raise CommandError("no event", error_event("'event' must be a string"))
    if event not in (SUBSCRIBE, UNSUBSCRIBE, PING):
        raise CommandError("unknown event", error_event(f"unknown event {event[:100]!r}"))
    data = message.get("data", {})
    if not isinstance(data, dict):
        if event == PING:
            return Ping(None)
        raise CommandError("bad data", error_event(f"'data' of {event} must be an object"))
    request_id = _echoable_id(data)
    if event == PING:
        return Ping(request_id)
    channel = data.get("channel")
    reply_channel = channel if isinstance(channel, str) and len(channel) <= 200 else ""
    if request_id is None:
        reason = "'id' must be a string or number"
        raise CommandError(reason, _refusal(event, request_id, reply_channel, reason))
    if not isinstance(channel, str):
        reason = "'channel' must be a string"
        raise CommandError(reason, _refusal(event, request_id, reply_channel, reason))
    try:
        check_name("channel", channel)
    except InvalidName as exc:
        raise CommandError(exc.reason, _refusal(event, request_id, reply_channel, exc.reason)) from None
    return Subscribe(request_id, channel) if event == SUBSCRIBE else Unsubscribe(request_id, channel)


class GusherProtocol(ClientProtocol):
    """The seed's protocol at `/ws/{app_key}`."""

    name = "gusher"

    def parse(self, text: bytes) -> Command:
        """See `parse_command`; the error reply comes framed."""
        try:
            return parse_command(text)
        except CommandError as exc:
            raise CommandError(exc.reason, frames.encode_text(exc.reply)) from None

    def greeting(self) -> bytes:
        """Nothing: a seed client speaks first."""
        return b""

    def publication(self, publication: Publication) -> bytes:
        """The payload as published: the seed's clients receive Redis's bytes unchanged."""
        return frames.encode_text(publication.payload)

    def subscribed(self, command: Subscribe) -> bytes:
        """`gusher.subscribe_succeeded` echoing id and channel."""
        return self._reply(SUBSCRIBE_SUCCEEDED, {"id": command.id, "channel": command.channel})

    def subscribe_refused(self, command: Subscribe, reason: str) -> bytes:
        """`gusher.subscribe_error` echoing id and channel, with the ext `reason`."""
        return frames.encode_text(_refusal(SUBSCRIBE, command.id, command.channel, reason))

    def unsubscribed(self, command: Unsubscribe) -> bytes:
        """`gusher.unsubscribe_succeeded` echoing id and channel."""
        return self._reply(UNSUBSCRIBE_SUCCEEDED, {"id": command.id, "channel": command.channel})

    def unsubscribe_refused(self, command: Unsubscribe, reason: str) -> bytes:
        """`gusher.unsubscribe_error` echoing id and channel, with the ext `reason`."""
        return frames.encode_text(_refusal(UNSUBSCRIBE, command.id, command.channel, reason))

    def pong(self, command: Ping) -> bytes:
        """`gusher.pong` echoing the id."""
        return self._reply(PONG, {"id": command.id})

    def binary_refused(self) -> bytes:
        """`gusher.error`: the protocol is JSON text."""
        return frames.encode_text(error_event("binary frames are not supported; send JSON text"))

    def keepalive(self) -> bytes:
        """A WebSocket Ping frame; any answer (or any other frame) proves the client alive."""
        return _PING_FRAME

    def close_reason(self, why: Disconnect) -> tuple[int, str]:
        """RFC 6455 codes: 1001 for a shutdown, 1008 for every policy the client broke."""
        return _CLOSE_CODES[why], why.value

    @staticmethod
    def _reply(event: str, data: dict[str, Any]) -> bytes:
        return frames.encode_text(encode_event(event, data))


_PING_FRAME = frames.encode_ping(b"")
GUSHER = GusherProtocol()
