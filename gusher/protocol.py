"""gusher's client protocol: parse client commands, build server events — pure.

Client → server (seed)::

    {"event": "gusher.subscribe",   "data": {"id": "...", "channel": "..."}}
    {"event": "gusher.unsubscribe", "data": {"id": "...", "channel": "..."}}

Server → client: `{"event": "<event>", "data": {"id", "channel"[, "reason"]}}`
for replies, and the common message `{"channel", "event", "data"}` for pushes.
A command we cannot even attribute to a subscribe/unsubscribe is answered with
the ext event `gusher.error` carrying a `reason`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gusher.errors import GusherError, InvalidName
from gusher.keys import check_name

SUBSCRIBE = "gusher.subscribe"
UNSUBSCRIBE = "gusher.unsubscribe"
PING = "gusher.ping"

SUBSCRIBE_SUCCEEDED = "gusher.subscribe_succeeded"
SUBSCRIBE_ERROR = "gusher.subscribe_error"
UNSUBSCRIBE_SUCCEEDED = "gusher.unsubscribe_succeeded"
UNSUBSCRIBE_ERROR = "gusher.unsubscribe_error"
PONG = "gusher.pong"
ERROR = "gusher.error"

_ERROR_EVENT_OF = {SUBSCRIBE: SUBSCRIBE_ERROR, UNSUBSCRIBE: UNSUBSCRIBE_ERROR}
_SUCCESS_EVENT_OF = {SUBSCRIBE: SUBSCRIBE_SUCCEEDED, UNSUBSCRIBE: UNSUBSCRIBE_SUCCEEDED}

# Request ids are echoed back; anything else than a short scalar is refused so
# that a client cannot make us echo megabytes.
MAX_ID_LENGTH = 200


class CommandError(GusherError):
    """A command that gets an error reply instead of being carried out.

    Attributes:
        reply: the complete error event to send back.
    """

    def __init__(self, reason: str, reply: bytes) -> None:
        super().__init__(reason)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Command:
    """A valid client command: `event` is SUBSCRIBE, UNSUBSCRIBE or PING."""

    event: str
    id: Any
    channel: str

    def succeeded(self) -> bytes:
        """The success reply to this command."""
        if self.event == PING:
            return encode_event(PONG, {"id": self.id})
        return encode_event(_SUCCESS_EVENT_OF[self.event], {"id": self.id, "channel": self.channel})

    def failed(self, reason: str) -> bytes:
        """The error reply to this command, with the ext `reason` field."""
        return encode_event(
            _ERROR_EVENT_OF[self.event], {"id": self.id, "channel": self.channel, "reason": reason}
        )


def encode_event(event: str, data: dict[str, Any]) -> bytes:
    """A server event `{"event", "data"}` as UTF-8 JSON bytes."""
    return orjson.dumps({"event": event, "data": data})


def encode_message(channel: str, event: str, data: Any) -> bytes:
    """The common message clients receive, in the seed's key order."""
    return orjson.dumps({"channel": channel, "event": event, "data": data})


def error_event(reason: str) -> bytes:
    """The ext `gusher.error` event for a command we cannot attribute."""
    return encode_event(ERROR, {"reason": reason})


def _echoable_id(data: dict[str, Any]) -> Any:
    """The request id to echo: a short string or number; `""` when absent."""
    value = data.get("id", "")
    if isinstance(value, bool) or (not isinstance(value, (str, int, float)) and value is not None):
        return None
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        return None
    return value


def parse_command(text: bytes) -> Command:
    """Parse one text message into a `Command`.

    Raises:
        CommandError: the message is not a usable command; `reply` says why in
            the event the client will recognise (`*_error` when the command is
            a subscribe/unsubscribe, else `gusher.error`).
    """
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
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
            return Command(PING, None, "")
        raise CommandError("bad data", error_event(f"'data' of {event} must be an object"))
    request_id = _echoable_id(data)
    if event == PING:
        return Command(PING, request_id, "")
    channel = data.get("channel")
    reply_channel = channel if isinstance(channel, str) and len(channel) <= 200 else ""
    failure = Command(event, request_id, reply_channel)
    if request_id is None:
        raise CommandError("bad id", failure.failed("'id' must be a string or number"))
    if not isinstance(channel, str):
        raise CommandError("bad channel", failure.failed("'channel' must be a string"))
    try:
        check_name("channel", channel)
    except InvalidName as exc:
        raise CommandError(exc.reason, failure.failed(exc.reason)) from None
    return Command(event, request_id, channel)
