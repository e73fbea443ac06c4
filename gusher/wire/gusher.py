"""gusher's client protocol (the seed's), sans-I/O.

Client → server (seed)::

    {"event": "gusher.subscribe",   "data": {"id": "...", "channel": "..."}}
    {"event": "gusher.unsubscribe", "data": {"id": "...", "channel": "..."}}

A subscribe may resume a history channel (issue 12): `"since": {"offset", "epoch"}`
in its `data`; the reply then carries `offset`, `epoch` and `recovered`.

Server → client: `{"event": "<event>", "data": {"id", "channel"[, "reason"]},
"socket_id": "…"}` for replies (`socket_id` is ext, as the later
gusher.cluster has it: the connection's name, for pushes to one socket), and
for pushes the payload exactly as published in Redis (the common message
`{"channel", "event", "data"}`, or whatever a backend `PUBLISH`ed). A command
we cannot even attribute to a subscribe/unsubscribe is answered with the ext
event `gusher.error` carrying a `reason`; `gusher.ping` gets `gusher.pong`;
`gusher.multi_subscribe` with `{"id", "multi_channel": [...]}` (the later
gusher.cluster's) subscribes every channel or none. Keep-alive is the
WebSocket Ping frame; every close uses an RFC 6455 code.
"""

from __future__ import annotations

from typing import Any

from gusher.core import exactjson
from gusher.core.history import Since
from gusher.core.publication import Publication
from gusher.errors import CommandError, InvalidName
from gusher.keys import check_name
from gusher.wire import frames
from gusher.wire.base import (
    ClientProtocol,
    Command,
    Disconnect,
    MultiSubscribe,
    Ping,
    Position,
    Subscribe,
    Unsubscribe,
)

SUBSCRIBE = "gusher.subscribe"
MULTI_SUBSCRIBE = "gusher.multi_subscribe"
UNSUBSCRIBE = "gusher.unsubscribe"
PING = "gusher.ping"

SUBSCRIBE_SUCCEEDED = "gusher.subscribe_succeeded"
SUBSCRIBE_ERROR = "gusher.subscribe_error"
MULTI_SUBSCRIBE_SUCCEEDED = "gusher.multi_subscribe_succeeded"
MULTI_SUBSCRIBE_ERROR = "gusher.multi_subscribe_error"
UNSUBSCRIBE_SUCCEEDED = "gusher.unsubscribe_succeeded"
UNSUBSCRIBE_ERROR = "gusher.unsubscribe_error"
PONG = "gusher.pong"
ERROR = "gusher.error"

# Request ids are echoed back; anything else than a short scalar is refused so
# that a client cannot make us echo megabytes.
MAX_ID_LENGTH = 200
# Channels of one multi-subscribe (each still counts against the subscription limit).
MAX_MULTI_CHANNELS = 100
# Epochs are 8 characters (gusher.broker.history); a resume may carry one of any other source.
MAX_EPOCH_LENGTH = 64

_ERROR_OF = {
    SUBSCRIBE: SUBSCRIBE_ERROR,
    UNSUBSCRIBE: UNSUBSCRIBE_ERROR,
    MULTI_SUBSCRIBE: MULTI_SUBSCRIBE_ERROR,
}

_CLOSE_CODES = {
    Disconnect.SHUTDOWN: frames.CLOSE_GOING_AWAY,
    Disconnect.RATE_LIMITED: frames.CLOSE_POLICY_VIOLATION,
    Disconnect.TOO_MANY_COMMANDS: frames.CLOSE_POLICY_VIOLATION,
    Disconnect.SLOW_CONSUMER: frames.CLOSE_POLICY_VIOLATION,
    Disconnect.PING_TIMEOUT: frames.CLOSE_POLICY_VIOLATION,
    Disconnect.TERMINATED: frames.CLOSE_POLICY_VIOLATION,
}


def encode_event(event: str, data: dict[str, Any], socket_id: str = "") -> bytes:
    """A server event `{"event", "data"[, "socket_id"]}` as UTF-8 JSON bytes."""
    if socket_id:
        return exactjson.dumps({"event": event, "data": data, "socket_id": socket_id})
    return exactjson.dumps({"event": event, "data": data})


class _Refused(Exception):
    """A message `parse_command` refuses: the reply's event and data, framed by the protocol."""

    def __init__(self, reason: str, event: str, data: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason, self.event, self.data = reason, event, data


def _error(reason: str) -> _Refused:
    return _Refused(reason, ERROR, {"reason": reason})


def _echoable_id(data: dict[str, Any]) -> Any:
    """The request id to echo: a short string or number; `""` when absent, None when unusable."""
    value = data.get("id", "")
    if isinstance(value, bool) or (not isinstance(value, (str, int, float)) and value is not None):
        return None
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        return None
    return value


def parse_command(text: bytes) -> Command:
    """Parse one text message into a command.

    Raises:
        _Refused: the message is not a usable command; its event is the one the
            client will recognise (`*_error` for a (multi-)subscribe or an
            unsubscribe, else `gusher.error`) and its data says why.
    """
    try:
        message = exactjson.loads(text)
    except exactjson.JSONDecodeError:
        raise _error("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise _error("message must be a JSON object")
    event = message.get("event")
    if not isinstance(event, str):
        raise _error("'event' must be a string")
    if event not in (SUBSCRIBE, MULTI_SUBSCRIBE, UNSUBSCRIBE, PING):
        raise _error(f"unknown event {event[:100]!r}")
    data = message.get("data", {})
    if not isinstance(data, dict):
        if event == PING:
            return Ping(None)
        raise _error(f"'data' of {event} must be an object")
    request_id = _echoable_id(data)
    if event == PING:
        return Ping(request_id)
    if event == MULTI_SUBSCRIBE:
        return _multi_subscribe(request_id, data)
    channel = data.get("channel")
    reply_channel = channel if isinstance(channel, str) and len(channel) <= 200 else ""

    def refused(reason: str) -> _Refused:
        return _Refused(
            reason, _ERROR_OF[event], {"id": request_id, "channel": reply_channel, "reason": reason}
        )

    if request_id is None:
        raise refused("'id' must be a string or number")
    if not isinstance(channel, str):
        raise refused("'channel' must be a string")
    try:
        check_name("channel", channel)
    except InvalidName as exc:
        raise refused(exc.reason) from None
    if event == UNSUBSCRIBE:
        return Unsubscribe(request_id, channel)
    since = data.get("since")
    if since is None:
        return Subscribe(request_id, channel)
    offset, epoch = (since.get("offset"), since.get("epoch")) if isinstance(since, dict) else (None, None)
    if not (isinstance(offset, int) and not isinstance(offset, bool) and 0 <= offset < 2**63):
        raise refused('\'since\' must be {"offset": a whole number, "epoch": a string}')
    if not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_LENGTH:
        raise refused(f"'since' must carry the 'epoch' string (at most {MAX_EPOCH_LENGTH} characters)")
    return Subscribe(request_id, channel, Since(offset, epoch))


def _multi_subscribe(request_id: Any, data: dict[str, Any]) -> MultiSubscribe:
    channels = data.get("multi_channel")
    echoed = channels if isinstance(channels, list) and len(channels) <= MAX_MULTI_CHANNELS else []

    def refused(reason: str) -> _Refused:
        return _Refused(
            reason, MULTI_SUBSCRIBE_ERROR, {"id": request_id, "multi_channel": echoed, "reason": reason}
        )

    if request_id is None:
        raise refused("'id' must be a string or number")
    if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
        raise refused("'multi_channel' must be a non-empty list of channel names")
    if len(channels) > MAX_MULTI_CHANNELS:
        raise refused(f"more than {MAX_MULTI_CHANNELS} channels in one multi_subscribe")
    for channel in channels:
        try:
            check_name("channel", channel)
        except InvalidName as exc:
            raise refused(exc.reason) from None
    return MultiSubscribe(request_id, tuple(dict.fromkeys(channels)))


class GusherProtocol(ClientProtocol):
    """The seed's protocol at `/ws/{app_key}`."""

    name = "gusher"

    def parse(self, text: bytes, socket_id: str = "") -> Command:
        """See `parse_command`; a refusal comes as a `CommandError` with its reply framed."""
        try:
            return parse_command(text)
        except _Refused as refused:
            raise CommandError(refused.reason, self._reply(refused.event, refused.data, socket_id)) from None

    def greeting(self, socket_id: str = "") -> bytes:
        """Nothing: a seed client speaks first (its first reply carries its `socket_id`)."""
        return b""

    def publication(self, publication: Publication) -> bytes:
        """The payload as published: the seed's clients receive Redis's bytes unchanged.

        Only a routing `exclude` (a Pusher trigger's `socket_id`) is taken out,
        and Pusher's presence member events are not delivered (b"").
        """
        if publication.control or publication.exclude:
            if publication.control:
                return b""
            return frames.encode_text(publication.client_payload)
        return frames.encode_text(publication.payload)

    def subscribed(self, command: Subscribe, socket_id: str = "", position: Position | None = None) -> bytes:
        """`gusher.subscribe_succeeded` echoing id and channel; for a history channel also its
        `offset` and `epoch`, and `recovered` when the subscribe resumed (`since`)."""
        data: dict[str, Any] = {"id": command.id, "channel": command.channel}
        if position is not None:
            data["offset"], data["epoch"] = position.offset, position.epoch
            if position.recovered is not None:
                data["recovered"] = position.recovered
        return self._reply(SUBSCRIBE_SUCCEEDED, data, socket_id)

    def subscribe_refused(self, command: Subscribe, reason: str, socket_id: str = "") -> bytes:
        """`gusher.subscribe_error` echoing id and channel, with the ext `reason`."""
        data = {"id": command.id, "channel": command.channel, "reason": reason}
        return self._reply(SUBSCRIBE_ERROR, data, socket_id)

    def multi_subscribed(self, command: MultiSubscribe, socket_id: str = "") -> bytes:
        """`gusher.multi_subscribe_succeeded` echoing id and the channels."""
        data = {"id": command.id, "multi_channel": list(command.channels)}
        return self._reply(MULTI_SUBSCRIBE_SUCCEEDED, data, socket_id)

    def multi_subscribe_refused(self, command: MultiSubscribe, reason: str, socket_id: str = "") -> bytes:
        """`gusher.multi_subscribe_error` echoing id and the channels, with the `reason`."""
        data = {"id": command.id, "multi_channel": list(command.channels), "reason": reason}
        return self._reply(MULTI_SUBSCRIBE_ERROR, data, socket_id)

    def unsubscribed(self, command: Unsubscribe, socket_id: str = "") -> bytes:
        """`gusher.unsubscribe_succeeded` echoing id and channel."""
        return self._reply(UNSUBSCRIBE_SUCCEEDED, {"id": command.id, "channel": command.channel}, socket_id)

    def unsubscribe_refused(self, command: Unsubscribe, reason: str, socket_id: str = "") -> bytes:
        """`gusher.unsubscribe_error` echoing id and channel, with the ext `reason`."""
        data = {"id": command.id, "channel": command.channel, "reason": reason}
        return self._reply(UNSUBSCRIBE_ERROR, data, socket_id)

    def pong(self, command: Ping, socket_id: str = "") -> bytes:
        """`gusher.pong` echoing the id."""
        return self._reply(PONG, {"id": command.id}, socket_id)

    def binary_refused(self, socket_id: str = "") -> bytes:
        """`gusher.error`: the protocol is JSON text."""
        return self._reply(ERROR, {"reason": "binary frames are not supported; send JSON text"}, socket_id)

    def keepalive(self) -> bytes:
        """A WebSocket Ping frame; any answer (or any other frame) proves the client alive."""
        return _PING_FRAME

    def close_reason(self, why: Disconnect) -> tuple[int, str]:
        """RFC 6455 codes: 1001 for a shutdown, 1008 for every policy the client broke."""
        return _CLOSE_CODES[why], why.value

    @staticmethod
    def _reply(event: str, data: dict[str, Any], socket_id: str) -> bytes:
        return frames.encode_text(encode_event(event, data, socket_id))


_PING_FRAME = frames.encode_ping(b"")
GUSHER = GusherProtocol()
